// `meshport doctor` as a user runs it: the real binary, --json, every feature really tried here, nothing left behind.

import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { HIJACK_DEFAULTS, listNetns } from '@meshport/hijack';
import { skipOrFail } from '@meshport/testkit';

const BIN = path.resolve(__dirname, '../../bin/meshport.js');

function meshport(args: string[], uid?: number) {
  const ids = uid === undefined ? {} : { uid, gid: uid };
  const r = spawnSync(process.execPath, [BIN, ...args], {
    env: { ...process.env, NO_COLOR: '' },
    timeout: 60000,
    ...ids,
  });
  return { code: r.status, pid: r.pid, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

const cgroup2Root = () =>
  readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .find((m) => m[2] === 'cgroup2')?.[1];

/**
 * What a doctor run (process `pid`) could leave: its scratch namespaces (mpdoctor-<pid>-N), the probe cgroups
 * (meshport-probe-<pid>-N), pins. Named by pid, so other suites running meanwhile on this host do not count.
 */
async function leftovers(pid: number, pinsBefore: string[]) {
  const root = cgroup2Root();
  return {
    netns: (await listNetns()).filter((n) => n.startsWith(`mpdoctor-${pid}-`)),
    cgroups: root ? readdirSync(root).filter((n) => n.startsWith(`meshport-probe-${pid}-`)) : [],
    // doctor pins nothing: no new pin may carry its pid
    pins: pinNames().filter((n) => !pinsBefore.includes(n) && n.includes(`-${pid}-`)),
  };
}

const pinNames = () => (existsSync(HIJACK_DEFAULTS.bpfPinRoot) ? readdirSync(HIJACK_DEFAULTS.bpfPinRoot) : []);

const FEATURES = ['redirect', 'tproxy', 'connectHook', 'sockmap'] as const;

describe('meshport doctor', function () {
  this.timeout(60000);
  const root = typeof process.getuid === 'function' && process.getuid() === 0;

  it('--json: all four features really supported here, exit 0, and nothing left behind', async function () {
    if (!root) skipOrFail(this, 'kernel test: not root');
    const pinsBefore = pinNames();
    const r = meshport(['doctor', '--json']);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 1, `one JSON line: ${r.stdout}`);
    const report = JSON.parse(lines[0]) as Record<string, { supported: boolean; reason: string }>;
    assert.deepEqual(Object.keys(report), [...FEATURES]);
    for (const f of FEATURES) {
      assert.equal(typeof report[f].reason, 'string');
      assert.equal(report[f].supported, true, `${f}: ${report[f].reason}`);
    }
    assert.match(report.redirect.reason, /198\.18\.254\.1:80/, 'the redirect check read SO_ORIGINAL_DST');
    assert.match(report.tproxy.reason, /198\.18\.253\.1:80/, 'the tproxy check saw the original destination');
    assert.equal(r.code, 0, r.stderr);
    assert.ok(typeof r.pid === 'number');
    assert.deepEqual(
      await leftovers(r.pid, pinsBefore),
      { netns: [], cgroups: [], pins: [] },
      'doctor left a namespace, cgroup or pin behind',
    );
  });

  it('human output: one line per feature with ✓ and the reason', function () {
    if (!root) skipOrFail(this, 'kernel test: not root');
    const r = meshport(['doctor']);
    const lines = r.stdout.trim().split('\n');
    assert.deepEqual(
      lines.map((l) => l.split(/\s+/).slice(0, 2).join(' ')),
      ['✓ redirect', '✓ tproxy', '✓ connect-hook', '✓ sockmap'],
    );
    assert.equal(r.code, 0, r.stderr);
  });

  it('not root: every feature unsupported with "needs root", exit 1, no crash', function () {
    if (!root) this.skip(); // dropping to another uid needs root; a non-root run is this case already
    const r = meshport(['doctor', '--json'], 65534);
    assert.equal(r.code, 1, r.stderr);
    const report = JSON.parse(r.stdout) as Record<string, { supported: boolean; reason: string }>;
    for (const f of FEATURES) assert.deepEqual(report[f], { supported: false, reason: 'needs root (CAP_NET_ADMIN)' });
  });

  it('usage errors exit 2', () => {
    const r = meshport(['doctor', '--nope']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /meshport doctor:/);
  });
});
