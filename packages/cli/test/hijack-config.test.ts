// `meshport hijack … --config meshport.yaml`: the rules take the mode, uid and ports from the sidecar's own config,
// so the two cannot disagree by a flag copied wrongly (issue 16). And in a network namespace the suite creates, the
// rules it installs are those of that config.

import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createNetns, deleteNetns, installedState, run, uniqueNetnsName } from '@meshport/hijack';
import { skipOrFail } from '@meshport/testkit';

const BIN = path.resolve(__dirname, '../../bin/meshport.js');

function meshport(args: string[], cwd?: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, NO_COLOR: '' } });
  return { code: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

const CONFIG = [
  'listeners: { outbound: "127.0.0.1:22220", inbound: "0.0.0.0:22201" }',
  'admin: 127.0.0.1:25000',
  'hijack: { mode: tproxy, uid: 1500, outboundCapturePort: 25001, inboundCapturePort: 25006 }',
  'registries:',
  '  - { name: zk, type: zookeeper, upstream: "127.0.0.1:2999", facade: "127.0.0.1:2281" }',
  '  - { name: mesh, type: sofa-mesh, via: zk }',
].join('\n');

describe('meshport hijack --config', () => {
  let dir: string;
  let config: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'meshport-hijack-config-'));
    config = path.join(dir, 'meshport.yaml');
    writeFileSync(config, CONFIG + '\n');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("takes the mode, uid, capture and admin ports, and every listener's and facade's port from the config", () => {
    const r = meshport(['hijack', 'print', '--config', config, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const { options } = JSON.parse(r.stdout) as { options: Record<string, unknown> };
    assert.equal(options.mode, 'tproxy');
    assert.equal(options.uid, 1500);
    assert.equal(options.outboundPort, 25001);
    assert.equal(options.inboundPort, 25006);
    assert.equal(options.adminPort, 25000);
    // The sidecar's listeners, the ZooKeeper facade, and the mesh API facade at its default port.
    assert.deepEqual(
      [...(options.facadePorts as number[])].sort((a, b) => a - b),
      [2281, 13330, 22201, 22220],
    );
  });

  it('a flag given as well wins; --plan with --config, a missing config and one without hijack are usage errors', () => {
    const r = meshport(['hijack', 'print', '--config', config, '--json', '--mode', 'redirect', '--uid', '1600']);
    assert.equal(r.code, 0, r.stderr);
    const { options } = JSON.parse(r.stdout) as { options: Record<string, unknown> };
    assert.deepEqual([options.mode, options.uid, options.outboundPort], ['redirect', 1600, 25001]);

    const missing = meshport(['hijack', 'print', '--config', path.join(dir, 'nope.yaml')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^meshport hijack: --config \S+nope\.yaml: MESHPORT_CONFIG_INVALID: /);
    const bare = path.join(dir, 'bare.yaml');
    writeFileSync(bare, 'admin: 127.0.0.1:25000\n');
    const noHijack = meshport(['hijack', 'print', '--config', bare]);
    assert.equal(noHijack.code, 2);
    assert.match(noHijack.stderr, /has no hijack key/);
    const plan = path.join(dir, 'plan.json');
    writeFileSync(plan, meshport(['hijack', 'print', '--config', config, '--json']).stdout);
    const both = meshport(['hijack', 'apply', '--plan', plan, '--config', config]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--plan carries its own options; drop --config/);
  });

  it('apply --config installs the rules of that config in a network namespace, and remove --config takes them out', async function () {
    if (typeof process.getuid === 'function' && process.getuid() !== 0) return skip(this, 'not root');
    if ((await run('ip', ['netns', 'list'])).code !== 0) return skip(this, 'ip netns unavailable');
    const ns = uniqueNetnsName('mpcfg');
    await createNetns(ns);
    try {
      const applied = meshport(['hijack', 'apply', '--config', config, '--netns', ns]);
      assert.equal(applied.code, 0, applied.stderr);
      const state = await installedState({ netns: ns, routeTables: [133] });
      assert.ok(
        state.iptables.nat.some((l) => l.includes('--uid-owner 1500 -j RETURN')),
        state.iptables.nat.join('\n'),
      );
      assert.ok(state.iptables.nat.some((l) => l.includes('-j REDIRECT --to-ports 25001')));
      assert.ok(state.iptables.mangle.some((l) => l.includes('-j TPROXY --on-port 25006')));
      assert.ok(
        state.iptables.mangle.some((l) => l.includes('--dport 2281 -j RETURN')),
        'the facade port is never captured',
      );
      const removed = meshport(['hijack', 'remove', '--config', config, '--netns', ns]);
      assert.equal(removed.code, 0, removed.stderr);
      assert.deepEqual(await installedState({ netns: ns, routeTables: [133] }), {
        iptables: { nat: [], mangle: [] },
        ipRules: [],
        routes: { 133: [] },
      });
    } finally {
      await deleteNetns(ns);
    }
  });
});

/** Skips a kernel test where it cannot run (fails under CI: the kit's rule). */
function skip(ctx: Mocha.Context, why: string): never {
  return skipOrFail(ctx, `kernel test: ${why}`);
}
