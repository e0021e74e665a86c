// The README's front door as a new user meets it: a fresh clone of the repository, then the two commands of its
// "Two commands" section, run verbatim. The nested `npm test` runs every suite again except this one.

import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');
/** Set for the nested run, so the clone's own `npm test` does not clone again. */
const NESTED = 'MESHPORT_README_CLONE';

/** The commands of the first shell block under "## Two commands", comments dropped. */
function twoCommands(): string[] {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Two commands'));
  const block = /```sh\n([\s\S]*?)```/.exec(section);
  assert.ok(block, 'the Two commands section has a sh block');
  return block[1]!
    .split('\n')
    .map((line) => line.replace(/#.*$/, '').trim())
    .filter(Boolean);
}

describe('README: the two commands on a fresh clone', function () {
  this.timeout(45 * 60_000);

  it('names exactly npm run demo and npm test', () => {
    assert.deepEqual(twoCommands(), ['npm run demo', 'npm test']);
  });

  it('npm run demo shows the whole flow, then npm test passes, in a new clone', function () {
    if (process.env[NESTED] === '1') this.skip(); // the nested run: this very test is what is running it
    const dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-readme-'));
    // mkdtemp makes it 0700; the suites run some processes as other uids (the sidecar as 1337, doctor's non-root case),
    // which must reach the clone's files as they reach a checkout anywhere else.
    chmodSync(dir, 0o755);
    try {
      const clone = spawnSync('git', ['clone', '--quiet', ROOT, dir], { encoding: 'utf8' });
      assert.equal(clone.status, 0, clone.stderr);
      const run = (command: string) =>
        spawnSync('bash', ['-c', command], {
          cwd: dir,
          encoding: 'utf8',
          env: { ...process.env, [NESTED]: '1', MESHPORT_DEMO_SECONDS: '2', NO_COLOR: '1' },
          timeout: 40 * 60_000,
          maxBuffer: 256 * 1024 * 1024,
        });
      const [demo, test] = twoCommands();
      const demoRun = run(demo!);
      assert.equal(demoRun.status, 0, `${demo} failed:\n${demoRun.stdout.slice(-4000)}\n${demoRun.stderr.slice(-4000)}`);
      // The demo's summary: calls through both pods, none failed, everything stopped.
      // (pod addresses: network namespaces as root, loopback ports otherwise)
      assert.match(demoRun.stdout, /consumer pod outbound route com\.example\.EchoService:1\.0 -> [\d.]+:\d+ {2}= provider pod inbound/);
      assert.match(demoRun.stdout, /provider pod \/stats inbound ok com\.example\.EchoService:1\.0: [1-9]\d*/);
      assert.doesNotMatch(demoRun.stdout, /failed [1-9]/);
      assert.match(demoRun.stdout, /^stopped: zookeeper pid \d+/m);
      const testRun = run(test!);
      const tail = `${testRun.stdout.slice(-6000)}\n${testRun.stderr.slice(-3000)}`;
      assert.equal(testRun.status, 0, `${test} failed:\n${tail}`);
      assert.match(testRun.stdout, /\d+ passing/, tail);
      assert.doesNotMatch(testRun.stdout, /\d+ failing/, tail);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
