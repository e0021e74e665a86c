// The README's front door as a new user meets it: a fresh clone of the repository, then the demo command of its
// "Two commands" section, run verbatim (it installs and builds the clone from nothing). The other command, `npm test`,
// is what CI runs on a clean clone (.ci/run), so this suite checks that .ci/run is exactly that command rather than
// running every suite a second time inside the first run.

import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');

/** Shell lines without comments and blank lines. */
function commands(script: string): string[] {
  return script
    .split('\n')
    .map((line) => line.replace(/#.*$/, '').trim())
    .filter(Boolean);
}

/** The commands of the first shell block under "## Two commands", comments dropped. */
function twoCommands(): string[] {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Two commands'));
  const block = /```sh\n([\s\S]*?)```/.exec(section);
  assert.ok(block, 'the Two commands section has a sh block');
  return commands(block[1]!);
}

describe('README: the two commands on a fresh clone', function () {
  this.timeout(20 * 60_000);

  it('names exactly npm run demo and npm test', () => {
    assert.deepEqual(twoCommands(), ['npm run demo', 'npm test']);
  });

  it('CI (.ci/run) runs exactly the test command the README gives, from the repository root', () => {
    const ci = commands(readFileSync(path.join(ROOT, '.ci/run'), 'utf8'));
    // Shell set-up lines (strict mode, cd to the root) aside, the one command is the README's.
    const steps = ci.filter((line) => !/^set -/.test(line) && !/^cd "\$\(dirname "\$0"\)\/\.\."$/.test(line));
    assert.deepEqual(steps, [twoCommands()[1]]);
    assert.ok(ci.includes('set -euo pipefail'), '.ci/run fails on the first failing command');
  });

  it('npm run demo installs, builds and shows the whole flow in a new clone', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-readme-'));
    // mkdtemp makes it 0700; the suites run some processes as other uids (the sidecar as 1337, doctor's non-root case),
    // which must reach the clone's files as they reach a checkout anywhere else.
    chmodSync(dir, 0o755);
    try {
      const clone = spawnSync('git', ['clone', '--quiet', ROOT, dir], { encoding: 'utf8' });
      assert.equal(clone.status, 0, clone.stderr);
      const [demo] = twoCommands();
      const demoRun = spawnSync('bash', ['-c', demo!], {
        cwd: dir,
        encoding: 'utf8',
        env: { ...process.env, MESHPORT_DEMO_SECONDS: '2', NO_COLOR: '1' },
        timeout: 15 * 60_000,
        maxBuffer: 256 * 1024 * 1024,
      });
      assert.equal(demoRun.status, 0, `${demo} failed:\n${demoRun.stdout.slice(-4000)}\n${demoRun.stderr.slice(-4000)}`);
      // The demo's summary: calls through both pods, none failed, everything stopped.
      // (pod addresses: network namespaces as root, loopback ports otherwise)
      assert.match(demoRun.stdout, /consumer pod outbound route com\.example\.EchoService:1\.0 -> [\d.]+:\d+ {2}= provider pod inbound/);
      assert.match(demoRun.stdout, /provider pod \/stats inbound ok com\.example\.EchoService:1\.0: [1-9]\d*/);
      assert.doesNotMatch(demoRun.stdout, /failed [1-9]/);
      assert.match(demoRun.stdout, /^stopped: zookeeper pid \d+/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
