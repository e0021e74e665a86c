// `meshport hijack` as a user runs it: print in both forms, apply/remove in a network namespace the suite creates,
// exit codes for usage mistakes and loop-check refusals, and connect-hook BPF attach on a cgroup the suite creates.

import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  rmdirSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  HIJACK_DEFAULTS,
  bpfPinDir,
  createNetns,
  deleteNetns,
  installedState,
  listNetns,
  run,
  spawnInNetns,
  uniqueNetnsName,
} from '@meshport/hijack';
import { skipOrFail } from '@meshport/testkit';

const BIN = path.resolve(__dirname, '../../bin/meshport.js');

function meshport(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { env: { ...process.env, NO_COLOR: '' } });
  return { code: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** `-N`/`-A` lines of print output as iptables-save shows them, per table. */
function iptablesLines(printed: string): Record<'nat' | 'mangle', string[]> {
  const out: Record<'nat' | 'mangle', string[]> = { nat: [], mangle: [] };
  for (const line of printed.split('\n')) {
    const m = /(?:^|\s)iptables -t (nat|mangle) (-[NA]) (\S+)(.*)$/.exec(line);
    if (m) out[m[1] as 'nat' | 'mangle'].push(m[2] === '-N' ? `:${m[3]} - [0:0]` : `-A ${m[3]}${m[4]}`);
  }
  return out;
}

const sorted = (xs: string[]) => [...xs].sort();

const mounts = () =>
  readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '));
const bpffsMounted = () => mounts().some((m) => m[1] === '/sys/fs/bpf' && m[2] === 'bpf');
const cgroup2Root = () => mounts().find((m) => m[2] === 'cgroup2')?.[1];

/** Programs attached to a cgroup, as bpftool sees them (attach types). */
async function cgroupPrograms(cgroup: string): Promise<string[]> {
  const r = await run('bpftool', ['-j', 'cgroup', 'show', cgroup]);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout.trim() || '[]') as { attach_type: string }[]).map((p) => p.attach_type).sort();
}

/** The links on a cgroup as `id -> attach type`, by bpftool (link ids stay the same across bpf_link_update). */
async function cgroupLinks(cgroup: string): Promise<Record<string, number>> {
  const progs = new Set(
    (JSON.parse((await run('bpftool', ['-j', 'cgroup', 'show', cgroup])).stdout || '[]') as { id: number }[]).map(
      (p) => p.id,
    ),
  );
  const links = JSON.parse((await run('bpftool', ['-j', 'link', 'show'])).stdout || '[]') as {
    id: number;
    prog_id: number;
    attach_type?: string;
  }[];
  const out: Record<string, number> = {};
  for (const l of links) if (progs.has(l.prog_id)) out[`${l.id}:${l.attach_type}`] = l.prog_id;
  return out;
}

describe('meshport hijack', () => {
  const created = new Set<string>();
  const bpffsWasMounted = bpffsMounted();
  const pinRootExisted = existsSync(HIJACK_DEFAULTS.bpfPinRoot);
  let tmp: string;
  let kernelProblem: string | undefined;

  before(async () => {
    tmp = mkdtempSync(path.join(tmpdir(), 'meshport-hijack-'));
    if (typeof process.getuid === 'function' && process.getuid() !== 0) kernelProblem = 'not root';
    else if ((await run('ip', ['netns', 'list'])).code !== 0) kernelProblem = 'ip netns unavailable';
    else if ((await run('iptables', ['--version'])).code !== 0) kernelProblem = 'iptables unavailable';
  });

  after(async () => {
    rmSync(tmp, { recursive: true, force: true });
    for (const n of [...created]) await deleteNetns(n);
    // Only what this suite brought: the pin root if it made it (and it is empty), bpffs if it mounted it and
    // nothing but the kernel's own *.debug iterators is in it.
    if (!pinRootExisted) {
      try {
        rmdirSync(HIJACK_DEFAULTS.bpfPinRoot);
      } catch {
        // absent, or someone else's pins are in it
      }
    }
    if (!bpffsWasMounted && bpffsMounted() && readdirSync('/sys/fs/bpf').every((n) => n.endsWith('.debug')))
      await run('umount', ['/sys/fs/bpf']);
    const left = (await listNetns()).filter((n) => n.startsWith(`mpcli-${process.pid}-`));
    assert.deepEqual(left, [], 'the suite left network namespaces behind');
  });

  function needKernel(ctx: Mocha.Context): void {
    if (kernelProblem !== undefined) skipOrFail(ctx, `kernel test: ${kernelProblem}`);
  }

  async function withNetns(body: (ns: string) => Promise<void>): Promise<void> {
    const ns = uniqueNetnsName('mpcli');
    await createNetns(ns);
    created.add(ns);
    try {
      await body(ns);
    } finally {
      await deleteNetns(ns);
      created.delete(ns);
    }
  }

  it('print --mode redirect shows the iptables commands, exit 0', () => {
    const r = meshport(['hijack', 'print', '--mode', 'redirect', '--exclude-ports', '2181,6379']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^iptables -t nat -A MESHPORT_OUTPUT -m owner --uid-owner 1337 -j RETURN$/m);
    assert.match(r.stdout, /^iptables -t nat -A MESHPORT_OUTPUT -p tcp -m tcp --dport 6379 -j RETURN$/m);
    assert.match(r.stdout, /^iptables -t nat -A MESHPORT_OUTPUT -p tcp -j REDIRECT --to-ports 15001$/m);
    assert.match(r.stdout, /^iptables -t nat -A OUTPUT -p tcp -j MESHPORT_OUTPUT$/m);
  });

  it('print --json gives the plan with its commands; flags reach the plan', () => {
    const r = meshport([
      'hijack',
      'print',
      '--json',
      '--mode',
      'tproxy',
      '--netns',
      'pod1',
      '--uid',
      '2000',
      '--inbound-ports',
      '80,8080',
      '--mark',
      '0x77',
      '--route-table',
      '150',
      '--outbound-port',
      '16001',
      '--inbound-port',
      '16006',
      '--admin-port',
      '16000',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const plan = JSON.parse(r.stdout);
    assert.equal(plan.mode, 'tproxy');
    assert.equal(plan.options.uid, 2000);
    assert.deepEqual(plan.options.inboundPorts, [80, 8080]);
    assert.deepEqual(plan.ipRules, [{ fwmark: 0x77, table: 150 }]);
    assert.ok(plan.commands.includes('ip netns exec pod1 ip rule add fwmark 0x77 lookup 150'));
    assert.ok(
      plan.commands.includes(
        'ip netns exec pod1 iptables -t mangle -A MESHPORT_INBOUND -p tcp -m tcp --dport 8080 -j TPROXY --on-port 16006 --on-ip 0.0.0.0 --tproxy-mark 0x77/0xffffffff',
      ),
    );
    assert.ok(
      plan.commands.includes(
        'ip netns exec pod1 iptables -t nat -A MESHPORT_OUTPUT -m owner --uid-owner 2000 -j RETURN',
      ),
    );
  });

  it('print --mode connect-hook shows the BPF attachments', () => {
    const r = meshport(['hijack', 'print', '--mode', 'connect-hook', '--cgroup', '/sys/fs/cgroup/pod', '--sockmap']);
    assert.equal(r.code, 0, r.stderr);
    for (const p of ['connect4', 'connect6', 'sockops', 'getsockopt', 'sk_msg']) {
      assert.match(
        r.stdout,
        new RegExp(`^bpf attach ${p} /sys/fs/cgroup/pod pin=/sys/fs/bpf/meshport/hijack-sys-fs-cgroup-pod`, 'm'),
      );
    }
    assert.match(
      r.stdout,
      /^bpf attach connect4 .* capture=127\.0\.0\.1:15001 sidecar-uid=1337 exclude-ports=12201,12220,13330,15000,15001,15006$/m,
    );
  });

  it('usage mistakes and loop-check refusals exit 2', () => {
    for (const args of [
      ['hijack'],
      ['hijack', 'print'],
      ['hijack', 'frobnicate', '--mode', 'redirect'],
      ['hijack', 'print', '--mode', 'sideways'],
      ['hijack', 'print', '--mode', 'redirect', '--uid', 'root'],
      ['hijack', 'print', '--mode', 'redirect', '--no-such-flag'],
      ['hijack', 'apply', '--mode', 'redirect', '--json'],
      ['hijack', 'print', '--mode', 'connect-hook'],
      ['hijack', 'print', '--mode', 'redirect', '--netns', '../etc'],
    ]) {
      const r = meshport(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    }
    const loop = meshport(['hijack', 'print', '--mode', 'redirect', '--inbound-ports', '80,15006']);
    assert.equal(loop.code, 2);
    assert.match(loop.stderr, /MESHPORT_HIJACK_LOOP: .*15006/);
    const loopOut = meshport(['hijack', 'print', '--mode', 'redirect', '--outbound-ports', '15000']);
    assert.equal(loopOut.code, 2);
    assert.match(loopOut.stderr, /MESHPORT_HIJACK_LOOP/);
    const help = meshport(['hijack', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--inbound-ports LIST/);
  });

  it('apply --plan refuses an edited plan that would capture uid 1337 (exit 2, nothing installed)', async function () {
    needKernel(this);
    const printed = meshport(['hijack', 'print', '--json', '--mode', 'redirect']);
    const plan = JSON.parse(printed.stdout);
    plan.rules = plan.rules.filter((r: { match: { uidOwner?: number } }) => r.match.uidOwner === undefined);
    const file = path.join(tmp, 'loop.json');
    writeFileSync(file, JSON.stringify(plan));
    await withNetns(async (ns) => {
      const r = meshport(['hijack', 'apply', '--plan', file, '--netns', ns]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /MESHPORT_HIJACK_LOOP: .*uid 1337/);
      assert.deepEqual((await installedState({ netns: ns })).iptables, { nat: [], mangle: [] });
    });
  });

  for (const mode of ['redirect', 'tproxy'] as const) {
    it(`apply/remove --mode ${mode} --netns: installs what print shows, once; removes all of it`, async function () {
      needKernel(this);
      await withNetns(async (ns) => {
        const flags = ['--mode', mode, '--netns', ns, '--exclude-ports', '2181'];
        const printed = meshport(['hijack', 'print', ...flags]);
        assert.equal(printed.code, 0, printed.stderr);
        for (let i = 0; i < 2; i += 1) {
          const applied = meshport(['hijack', 'apply', ...flags]);
          assert.equal(applied.code, 0, applied.stderr);
          if (i === 1) assert.equal(applied.stdout, '', 'the second apply changes nothing');
        }
        const state = await installedState({ netns: ns, routeTables: [133] });
        const want = iptablesLines(printed.stdout);
        assert.deepEqual(sorted(state.iptables.nat), sorted(want.nat));
        assert.deepEqual(sorted(state.iptables.mangle), sorted(want.mangle));
        assert.equal(state.ipRules.length, mode === 'tproxy' ? 1 : 0);
        assert.equal(state.routes[133].length, mode === 'tproxy' ? 1 : 0);

        const removed = meshport(['hijack', 'remove', ...flags]);
        assert.equal(removed.code, 0, removed.stderr);
        assert.deepEqual(await installedState({ netns: ns, routeTables: [133] }), {
          iptables: { nat: [], mangle: [] },
          ipRules: [],
          routes: { 133: [] },
        });
        const again = meshport(['hijack', 'remove', ...flags]);
        assert.equal(again.code, 0, again.stderr);
        assert.equal(again.stdout, '');
      });
    });
  }

  it('apply/remove --mode connect-hook --cgroup: BPF pinned on the cgroup once, inbound TPROXY in the netns; remove takes all', async function () {
    needKernel(this);
    const root = cgroup2Root();
    if (root === undefined) skipOrFail(this, 'kernel test: no cgroup v2 mount');
    const cgroup = path.join(root, `meshport-cli-test-${process.pid}`);
    mkdirSync(cgroup);
    const pinDir = bpfPinDir(cgroup);
    try {
      await withNetns(async (ns) => {
        const flags = ['--mode', 'connect-hook', '--cgroup', cgroup, '--netns', ns];
        const linksBefore: Record<string, number>[] = [];
        for (let i = 0; i < 2; i += 1) {
          const applied = meshport(['hijack', 'apply', ...flags]);
          if (applied.code === 1 && /MESHPORT_HIJACK_NOT_SUPPORTED/.test(applied.stderr))
            skipOrFail(this, `kernel test: ${applied.stderr.trim()}`);
          assert.equal(applied.code, 0, applied.stderr);
          // An identical re-apply changes nothing: no detach, no update, the same links and programs (issue 14).
          const bpfSteps = applied.stdout
            .split('\n')
            .filter((l) => l.startsWith('bpf '))
            .map((l) => l.split(' ').slice(0, 2).join(' '));
          assert.deepEqual(bpfSteps, i === 0 ? ['bpf load', 'bpf attach'] : [], applied.stdout);
          linksBefore.push(await cgroupLinks(cgroup));
        }
        assert.deepEqual(linksBefore[1], linksBefore[0]);
        assert.equal(Object.keys(linksBefore[0]).length, 4); // connect4, connect6, sockops, getsockopt
        // A changed config (another capture port) replaces the programs of the same links in place.
        const changedPort = meshport(['hijack', 'apply', ...flags, '--outbound-port', '15011']);
        assert.equal(changedPort.code, 0, changedPort.stderr);
        assert.deepEqual(
          changedPort.stdout
            .split('\n')
            .filter((l) => l.startsWith('bpf '))
            .map((l) => l.split(' ').slice(0, 2).join(' ')),
          ['bpf load', 'bpf update'],
        );
        const linksAfter = await cgroupLinks(cgroup);
        assert.deepEqual(Object.keys(linksAfter).sort(), Object.keys(linksBefore[0]).sort(), 'the same links');
        assert.notDeepEqual(
          Object.values(linksAfter).sort(),
          Object.values(linksBefore[0]).sort(),
          'running new programs',
        );
        assert.ok(existsSync(pinDir));
        assert.deepEqual(
          await cgroupPrograms(cgroup),
          ['cgroup_getsockopt', 'cgroup_inet4_connect', 'cgroup_inet6_connect', 'cgroup_sock_ops'],
          'one copy after apply twice',
        );
        const state = await installedState({ netns: ns, routeTables: [133] });
        assert.equal(state.iptables.nat.length, 0, 'outbound is the BPF hook: no nat rules');
        assert.ok(state.iptables.mangle.some((l) => l.includes('-j TPROXY --on-port 15006')));
        assert.equal(state.ipRules.length, 1);

        const removed = meshport(['hijack', 'remove', ...flags]);
        assert.equal(removed.code, 0, removed.stderr);
        assert.equal(existsSync(pinDir), false);
        assert.deepEqual(await cgroupPrograms(cgroup), []);
        assert.deepEqual(await installedState({ netns: ns, routeTables: [133] }), {
          iptables: { nat: [], mangle: [] },
          ipRules: [],
          routes: { 133: [] },
        });
        assert.equal(meshport(['hijack', 'remove', ...flags]).code, 0);
      });
    } finally {
      // Belt and braces: the BPF part only, through the CLI, with a plan that has no rules for any namespace.
      if (existsSync(pinDir))
        meshport([
          'hijack',
          'remove',
          '--mode',
          'connect-hook',
          '--cgroup',
          cgroup,
          '--inbound-ports',
          '',
          '--netns',
          'unused',
        ]);
      rmdirSync(cgroup);
    }
  });

  it('a dead sidecar: status, print and doctor show an attached hook with no listener and the remove command (issue 14)', async function () {
    needKernel(this);
    const root = cgroup2Root();
    if (root === undefined) skipOrFail(this, 'kernel test: no cgroup v2 mount');
    const cgroup = path.join(root, `meshport-cli-dead-${process.pid}`);
    mkdirSync(cgroup);
    const pinDir = bpfPinDir(cgroup);
    try {
      await withNetns(async (ns) => {
        const flags = ['--mode', 'connect-hook', '--cgroup', cgroup, '--netns', ns];
        const notAttached = meshport(['hijack', 'status', ...flags]);
        assert.equal(notAttached.code, 0, notAttached.stderr);
        assert.match(notAttached.stdout, /not attached/);

        const applied = meshport(['hijack', 'apply', ...flags]);
        if (applied.code === 1 && /MESHPORT_HIJACK_NOT_SUPPORTED/.test(applied.stderr))
          skipOrFail(this, `kernel test: ${applied.stderr.trim()}`);
        assert.equal(applied.code, 0, applied.stderr);

        // Programs pinned, no sidecar: every connect of the pod would go to a closed 127.0.0.1:15001.
        const removeCommand = `meshport hijack remove --mode connect-hook --cgroup ${cgroup} --netns ${ns}`;
        const dead = meshport(['hijack', 'status', ...flags]);
        assert.equal(dead.code, 1, dead.stdout + dead.stderr);
        assert.match(dead.stdout, /connect4, connect6 attached .* 127\.0\.0\.1:15001 has NO LISTENER/);
        assert.ok(
          dead.stdout.includes(`Recover: restart the sidecar, or take the hook away: ${removeCommand}`),
          dead.stdout,
        );
        const json = JSON.parse(meshport(['hijack', 'status', '--json', ...flags]).stdout) as {
          blackhole: boolean;
          rewrites: string[];
        };
        assert.equal(json.blackhole, true);
        assert.deepEqual(json.rewrites, ['connect4', 'connect6']);
        const printed = meshport(['hijack', 'print', ...flags]);
        assert.equal(printed.code, 0);
        assert.match(printed.stderr, /NO LISTENER/);
        const doctor = meshport(['doctor', '--cgroup', cgroup, '--netns', ns]);
        assert.equal(doctor.code, 1);
        assert.ok(doctor.stdout.includes(removeCommand), doctor.stdout);

        // A sidecar listening on the capture port in the pod's namespace: healthy.
        const listener = spawnInNetns(ns, process.execPath, [
          '-e',
          "require('net').createServer().listen(15001, '127.0.0.1', () => console.log('ready')); setTimeout(() => process.exit(0), 20000)",
        ]);
        try {
          await new Promise<void>((resolve, reject) => {
            listener.stdout?.once('data', () => resolve());
            listener.once('exit', (code) => reject(new Error(`listener exited ${code}`)));
          });
          const alive = meshport(['hijack', 'status', ...flags]);
          assert.equal(alive.code, 0, alive.stdout);
          assert.match(alive.stdout, /is listening/);
          assert.doesNotMatch(meshport(['hijack', 'print', ...flags]).stderr, /NO LISTENER/);
        } finally {
          listener.kill();
        }

        // The printed recovery command works as printed.
        const removed = meshport(removeCommand.split(' ').slice(1));
        assert.equal(removed.code, 0, removed.stderr);
        assert.equal(existsSync(pinDir), false);
        assert.deepEqual(await cgroupPrograms(cgroup), []);
      });
    } finally {
      if (existsSync(pinDir))
        meshport([
          'hijack',
          'remove',
          '--mode',
          'connect-hook',
          '--cgroup',
          cgroup,
          '--inbound-ports',
          '',
          '--netns',
          'unused',
        ]);
      rmdirSync(cgroup);
    }
  });

  it('a command that fails exits 1 (a namespace that does not exist)', function () {
    needKernel(this);
    const r = meshport(['hijack', 'apply', '--mode', 'redirect', '--netns', `mpcli-${process.pid}-absent`]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /MESHPORT_HIJACK_COMMAND_FAILED/);
  });
});
