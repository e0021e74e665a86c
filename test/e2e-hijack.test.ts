// Transparent capture end to end through the real sidecar: `meshport sidecar --config` as uid 1337 inside a pod's
// network namespace (and cgroup), the rules applied with @meshport/hijack, sofa-rpc-node Bolt servers at real
// 198.18.x addresses, and an app that calls a server by that address without knowing a sidecar exists.
// Per mode: a service the route table does not know is relayed to where the app dialled; one it knows is routed to
// the endpoint of the file registry (a second server); the sidecar's own upstream connections are never captured.
// Everything the suite creates (namespaces, veth pairs, rules, cgroups, BPF pins, temp files, processes) goes in
// the teardown, also on failure.

import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  rmdirSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  bpfProbe,
  bpfStats,
  createCgroup,
  findCgroup2Mount,
  nativeAddonStatus,
  removeCgroup,
  type BpfStats,
} from '@meshport/socket';
import { type Json, JsonLinesChild, skipOrFail } from '@meshport/testkit';
import {
  HIJACK_DEFAULTS,
  addTestAddress,
  applyPlan,
  bpfPinDir,
  commandArgv,
  createNetns,
  createVethPair,
  deleteNetns,
  installedState,
  listNetns,
  planRules,
  removePlan,
  run,
  uniqueNetnsName,
  type HijackMode,
  type HijackPlan,
} from '@meshport/hijack';

const BIN = path.resolve(__dirname, '../../packages/cli/bin/meshport.js');
const RPC_APP = path.join(__dirname, 'support', 'hijack-rpc.js');
const SIDECAR_UID = 1337;

/** The pod: two servers on its loopback at real (test-range) addresses, and its veth address for inbound calls. */
const POD = {
  serverA: { host: '198.18.0.1', port: 12200 },
  serverB: { host: '198.18.0.2', port: 12300 },
  veth: '198.18.1.1',
  peerVeth: '198.18.1.2',
} as const;

const ROUTED = 'com.example.Echo';
const RELAYED = 'com.example.Plain';

/**
 * argv that joins `cgroup` (as root, before any socket exists) and execs `argv`. It wraps `ip netns exec`, not the
 * other way round: `ip netns exec` mounts a fresh /sys, which hides the cgroup v2 mount.
 */
function inCgroup(cgroup: string | undefined, argv: string[]): string[] {
  return cgroup === undefined
    ? argv
    : ['sh', '-c', 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', 'sh', cgroup, ...argv];
}

function start(what: string, argv: string[]): JsonLinesChild {
  const [cmd, ...args] = argv;
  return new JsonLinesChild(what, spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
}

let kernelProblem: string | undefined;
let cgroupRoot = '';

/** Skips where the kernel test cannot run (fails under CI: the kit's rule). */
function needKernel(ctx: Mocha.Context): void {
  if (kernelProblem !== undefined) skipOrFail(ctx, `kernel test: ${kernelProblem}`);
}

const bpffsMounted = () =>
  readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === '/sys/fs/bpf' && l.split(' ')[2] === 'bpf');

interface Scenario {
  mode: HijackMode;
  sockmap?: boolean;
}

const SCENARIOS: Scenario[] = [
  { mode: 'redirect' },
  { mode: 'tproxy' },
  { mode: 'connect-hook' },
  { mode: 'connect-hook', sockmap: true },
];

describe('e2e: transparent capture through the real sidecar (sofa-rpc-node Bolt, uid 1337, netns/cgroup)', function () {
  this.timeout(60000);
  const bpffsWasMounted = bpffsMounted();
  const pinRootExisted = existsSync(HIJACK_DEFAULTS.bpfPinRoot);
  const netnsPrefix = `mpe2e-${process.pid}-`;
  const cgroups = new Set<string>();

  before(async () => {
    if (typeof process.getuid === 'function' && process.getuid() !== 0) kernelProblem = 'not root';
    else {
      for (const [cmd, args] of [
        ['ip', ['netns', 'list']],
        ['iptables', ['--version']],
        ['setpriv', ['--version']],
      ] as const) {
        const r = await run(cmd, args);
        if (r.code !== 0) {
          kernelProblem = `'${cmd}' unavailable: ${r.stderr.trim()}`;
          return;
        }
      }
      const addon = nativeAddonStatus();
      if (!addon.loaded) kernelProblem = `@meshport/socket addon: ${addon.reason}`;
      const root = findCgroup2Mount();
      if (root === undefined) kernelProblem ??= 'no cgroup v2 mount';
      else cgroupRoot = root;
      if (kernelProblem === undefined) {
        const probe = bpfProbe();
        if (!probe.connectHook.supported) kernelProblem = `connect hook: ${probe.connectHook.reason}`;
        else if (!probe.sockmap.supported) kernelProblem = `sockmap: ${probe.sockmap.reason}`;
      }
    }
  });

  after(async () => {
    for (const n of (await listNetns()).filter((n) => n.startsWith(netnsPrefix))) await deleteNetns(n);
    for (const c of cgroups) await removeCgroup(c, cgroupRoot);
    if (!pinRootExisted) {
      try {
        rmdirSync(HIJACK_DEFAULTS.bpfPinRoot);
      } catch {
        // absent, or someone else's pins are in it
      }
    }
    // bpffs only when this suite mounted it and nothing but the kernel's own *.debug iterators is left in it.
    if (!bpffsWasMounted && bpffsMounted() && readdirSync('/sys/fs/bpf').every((n) => n.endsWith('.debug')))
      await run('umount', ['/sys/fs/bpf']);
    assert.deepEqual(
      (await listNetns()).filter((n) => n.startsWith(netnsPrefix)),
      [],
      'network namespaces left behind',
    );
    assert.deepEqual(
      [...cgroups].filter((c) => existsSync(c)),
      [],
      'cgroups left behind',
    );
  });

  for (const scenario of SCENARIOS) {
    const title = `${scenario.mode}${scenario.sockmap ? ' + sockmap' : ''}`;
    it(`${title}: the app's call by real address is captured, relayed or routed, and the sidecar's upstream is not captured again`, async function () {
      needKernel(this);
      await runScenario(scenario, cgroups);
    });
  }

  async function runScenario(scenario: Scenario, cgroupSet: Set<string>): Promise<void> {
    const { mode } = scenario;
    const bpfMode = mode === 'connect-hook';
    const procs: JsonLinesChild[] = [];
    const namespaces: string[] = [];
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'meshport-e2e-hijack-'));
    let cgroup: string | undefined;
    let plan: HijackPlan | undefined;
    let pod = '';
    let bodyFailed = true;
    try {
      // The files the sidecar (uid 1337) reads.
      chmodSync(tmp, 0o755);
      const routes = path.join(tmp, 'routes.json');
      const routeUrl = `bolt://${POD.serverB.host}:${POD.serverB.port}?interface=${ROUTED}&version=1.0`;
      writeFileSync(routes, JSON.stringify({ services: { [`${ROUTED}:1.0`]: [routeUrl] } }), { mode: 0o644 });
      const config = path.join(tmp, 'meshport.yaml');
      writeFileSync(
        config,
        [
          'node: { ip: 127.0.0.1 }',
          'registries:',
          `  - { name: static, type: file, upstream: "${routes}" }`,
          'log: { level: debug }',
          `hijack: { mode: ${mode}, outboundCapturePort: 15001, inboundCapturePort: 15006, uid: ${SIDECAR_UID}, sockmap: ${scenario.sockmap === true} }`,
          '',
        ].join('\n'),
        { mode: 0o644 },
      );

      pod = uniqueNetnsName('mpe2e');
      await createNetns(pod);
      namespaces.push(pod);
      await addTestAddress(pod, 'lo', `${POD.serverA.host}/32`);
      await addTestAddress(pod, 'lo', `${POD.serverB.host}/32`);
      let peer: string | undefined;
      if (mode === 'tproxy') {
        peer = uniqueNetnsName('mpe2e');
        await createNetns(peer);
        namespaces.push(peer);
        await createVethPair({ netnsA: pod, netnsB: peer, addressA: `${POD.veth}/24`, addressB: `${POD.peerVeth}/24` });
      }
      if (bpfMode) {
        cgroup = createCgroup(
          path.join(cgroupRoot, `meshport-e2e-hijack-${process.pid}-${mode}${scenario.sockmap ? '-sockmap' : ''}`),
        );
        cgroupSet.add(cgroup);
      }

      // The servers: outside the cgroup, as root, on all addresses of the pod (A on 12200, B on 12300).
      for (const [name, port] of [
        ['A', POD.serverA.port],
        ['B', POD.serverB.port],
      ] as const) {
        const server = start(
          `server ${name}`,
          commandArgv(process.execPath, [RPC_APP, 'server', name, String(port)], { netns: pod }),
        );
        procs.push(server);
        await server.waitFor((m) => m.ready === port, `server ${name} to listen`);
      }

      // The rules. connect-hook: the plan's inbound part is TPROXY, which the tproxy scenario covers; here inbound
      // capture stays off so the scenario is about the connect hook alone.
      plan = planRules({ mode, cgroup, sockmap: scenario.sockmap, inboundPorts: bpfMode ? [] : '*' });
      await applyPlan(plan, { netns: pod });

      // The sidecar: uid 1337 inside the pod's netns (and cgroup); the transparent inbound listener of tproxy and
      // connect-hook modes needs CAP_NET_ADMIN.
      const caps = mode !== 'redirect' ? ['--inh-caps=+net_admin,+net_raw', '--ambient-caps=+net_admin,+net_raw'] : [];
      const sidecarArgv = commandArgv(
        'setpriv',
        [
          `--reuid=${SIDECAR_UID}`,
          `--regid=${SIDECAR_UID}`,
          '--clear-groups',
          ...caps,
          '--',
          process.execPath,
          BIN,
          'sidecar',
          '--config',
          config,
        ],
        { netns: pod },
      );
      const sidecar = start('sidecar', inCgroup(cgroup, sidecarArgv));
      procs.push(sidecar);
      await sidecar.waitFor((m) => m.msg === 'meshport sidecar running', 'the sidecar to run');
      const ready = await sidecar.waitFor((m) => m.msg === 'capture listeners ready', 'the capture listeners');
      assert.equal(ready.mode, mode);
      assert.equal(
        Number(readFileSync(`/proc/${sidecar.child.pid}/status`, 'utf8').match(/^Uid:\s+(\d+)/m)?.[1]),
        SIDECAR_UID,
        'the sidecar runs as uid 1337',
      );

      const pinDir = cgroup === undefined ? undefined : bpfPinDir(cgroup);
      const statsBefore: BpfStats | undefined = scenario.sockmap ? bpfStats({ pinDir }) : undefined;

      // The app: calls server A by its real address; one process (one connection) per call.
      const call = async (netns: string, target: string, iface: string, inGroup: string | undefined): Promise<Json> => {
        const app = start(
          `app ${iface}`,
          inCgroup(inGroup, commandArgv(process.execPath, [RPC_APP, 'call', target, iface, 'hi'], { netns })),
        );
        procs.push(app);
        const out = await app.waitFor((m) => m.ok !== undefined, `the ${iface} call to answer`);
        await app.exited;
        return out;
      };
      const target = `${POD.serverA.host}:${POD.serverA.port}`;
      const relayed = await call(pod, target, RELAYED, cgroup);
      assert.deepEqual(
        relayed,
        { ok: true, result: 'A: hi' },
        `a service not in the route table goes where the app dialled\n${sidecar.output()}`,
      );
      const routed = await call(pod, target, ROUTED, cgroup);
      assert.deepEqual(
        routed,
        { ok: true, result: 'B: hi' },
        `a service in the route table goes to the file registry's endpoint\n${sidecar.output()}`,
      );

      let inbound: Json | undefined;
      if (peer !== undefined) {
        // TPROXY: a call from another netns over the veth to the pod's address reaches the app through the inbound
        // capture, which sees the original destination as its local address.
        inbound = await call(peer, `${POD.veth}:${POD.serverA.port}`, RELAYED, undefined);
        assert.deepEqual(inbound, { ok: true, result: 'A: hi' }, `inbound call through TPROXY\n${sidecar.output()}`);
      }

      // The capture log: one line per app connection, with the destination the app dialled; none for the sidecar's
      // own upstream connections (to A on pass-through, to B when routed), which would be a loop.
      await sidecar.waitFor((m) => m.msg === 'captured connection' && m.route === true, 'the routed capture line');
      const captured = sidecar.lines.filter((m) => m.msg === 'captured connection');
      const expected = [
        { direction: 'outbound', original: { host: POD.serverA.host, port: POD.serverA.port }, route: false },
        { direction: 'outbound', original: { host: POD.serverA.host, port: POD.serverA.port }, route: true },
        ...(peer !== undefined
          ? [{ direction: 'inbound', original: { host: POD.veth, port: POD.serverA.port }, route: false }]
          : []),
      ];
      assert.deepEqual(
        captured.map((m) => ({ direction: m.direction, original: m.original, route: m.route })),
        expected,
        `capture log lines:\n${sidecar.output()}`,
      );
      if (peer !== undefined) {
        // TPROXY keeps the client's real source address: the inbound capture saw the peer namespace's address.
        assert.equal(captured[2].client?.host, POD.peerVeth, `inbound capture client:\n${sidecar.output()}`);
      }
      assert.match(String(captured[0].why), new RegExp(`no route for ${RELAYED}`));
      assert.match(String(captured[1].why), new RegExp(`service ${ROUTED}:1.0 has a route`));
      assert.equal(
        captured.some((m) => m.original?.host === POD.serverB.host),
        false,
        "the sidecar's routed upstream connection to B was captured again",
      );
      assert.deepEqual(
        sidecar.lines.filter((m) => /refusing the loop|no original destination/.test(String(m.msg))),
        [],
      );

      if (scenario.sockmap && statsBefore !== undefined) {
        // App <-> sidecar bytes took the sk_msg shortcut: the counters of the maps hijack pinned for this cgroup.
        const after = bpfStats({ pinDir });
        assert.ok(
          after.hookedConnects - statsBefore.hookedConnects >= 2,
          `connect4 hooked the app's connects: ${JSON.stringify(after)}`,
        );
        assert.ok(
          after.sockmapAdded > statsBefore.sockmapAdded,
          `sockets went into the SOCKHASH: ${JSON.stringify(after)}`,
        );
        assert.ok(
          after.redirectedMessages > statsBefore.redirectedMessages,
          `sk_msg redirected messages: ${JSON.stringify(after)}`,
        );
        assert.ok(
          after.redirectedBytes > statsBefore.redirectedBytes,
          `sk_msg redirected bytes: ${JSON.stringify(after)}`,
        );
      }
      bodyFailed = false;
    } finally {
      // Every step runs whatever the one before did; the first teardown problem is reported after all of them.
      const problems: unknown[] = [];
      const step = async (fn: () => unknown) => {
        try {
          await fn();
        } catch (err) {
          problems.push(err);
        }
      };
      for (const p of procs) await step(() => p.kill());
      if (plan !== undefined && pod !== '') {
        const applied = plan;
        await step(() => removePlan(applied, { netns: pod }));
        await step(async () => {
          const state = await installedState({ netns: pod, routeTables: [HIJACK_DEFAULTS.routeTable] });
          assert.deepEqual(
            state,
            { iptables: { nat: [], mangle: [] }, ipRules: [], routes: { [HIJACK_DEFAULTS.routeTable]: [] } },
            'removePlan left rules',
          );
        });
      }
      for (const n of namespaces) await step(() => deleteNetns(n));
      if (cgroup !== undefined) {
        const group = cgroup;
        await step(() => assert.equal(existsSync(bpfPinDir(group)), false, 'removePlan left BPF pins'));
        await step(async () => {
          await removeCgroup(group, cgroupRoot);
          cgroupSet.delete(group);
        });
      }
      rmSync(tmp, { recursive: true, force: true });
      // A failing body keeps its own error; teardown problems then only go to stderr.
      // biome-ignore lint/correctness/noUnsafeFinally: only when the body did not fail, so no error is replaced
      if (problems.length > 0 && !bodyFailed) throw problems[0];
      for (const p of problems) if (bodyFailed) console.error('teardown:', p);
    }
  }
});
