// The native engine's libFuzzer campaigns in short mode (fuzz/run.sh: each target until 100k runs or 30 s), with
// every regression input replayed first: any crash, sanitizer report or broken invariant fails the suite.

import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import path from 'node:path';

// dist/test/fuzz.test.js -> packages/engine/fuzz
const fuzzDir = path.resolve(__dirname, '..', '..', 'fuzz');
/**
 * Each target, with the coverage (edges of our own code: OpenSSL is not instrumented) below which it reached too
 * little to mean anything. fuzz_san's code under test is one SAN walk, hence its lower bar.
 */
const TARGETS: Record<string, number> = {
  fuzz_codec: 100,
  fuzz_stream: 100,
  fuzz_authz: 100,
  fuzz_san: 30,
  fuzz_tls: 100,
  fuzz_trace: 100,
};

function hasClang(): boolean {
  return spawnSync('clang++', ['--version'], { stdio: 'ignore' }).status === 0;
}

describe('native engine fuzzing (libFuzzer, ASan + UBSan)', function () {
  // Building the targets with sanitizers, then up to 30 s per target.
  this.timeout(10 * 60_000);

  it('runs every target without a crash, sanitizer report or broken invariant', function () {
    if (!hasClang()) {
      // The one reason to skip: no compiler to build the targets with (scripts/bootstrap.sh installs clang).
      console.log(
        '      skipped: clang++ is not installed, so the libFuzzer targets cannot be built (run scripts/bootstrap.sh)',
      );
      this.skip();
    }
    const run = spawnSync('bash', [path.join(fuzzDir, 'run.sh'), '--runs', '100000', '--max-time', '30'], {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    const output = `${run.stdout}\n${run.stderr}`;
    assert.equal(run.status, 0, `fuzz/run.sh failed (exit ${run.status}):\n${output.slice(-6000)}`);
    assert.doesNotMatch(
      output,
      /ERROR: (AddressSanitizer|UndefinedBehaviorSanitizer|LeakSanitizer|libFuzzer)|runtime error:|invariant broken/,
    );
    for (const [target, minEdges] of Object.entries(TARGETS)) {
      const line = run.stdout.split('\n').find((l) => l.startsWith(`${target}:`));
      assert.ok(line, `no summary line for ${target} in:\n${output.slice(-3000)}`);
      const field = (name: string) => Number(new RegExp(`${name}=(\\d+)`).exec(line)?.[1]);
      assert.ok(field('executions') >= 1000, `${target} ran too little: ${line}`);
      assert.equal(field('crashes'), 0, line);
      assert.equal(field('sanitizer_reports'), 0, line);
      assert.ok(field('cov_edges') > minEdges, `${target} covered too little: ${line}`);
      console.log(`      ${line}`);
    }
  });
});
