// The rule for tests that need something the machine may lack (root, a kernel feature, the native addon, a JDK):
// skip where it is missing, but fail under CI, where a skip would hide a broken runner (`.ci/run` sets CI=true).

/** What the rule needs of a mocha test or hook context (`this` in a `function () {}` body). */
export interface Skippable {
  skip(): void;
}

/** True in a CI run, where a missing requirement is a failure instead of a skip. */
export function underCi(): boolean {
  return process.env.CI === 'true';
}

/**
 * Skips the test (or the suite, from a `before` hook), printing `reason`; under CI=true, throws an error naming the
 * reason instead. Use: `if (problem !== undefined) skipOrFail(this, problem)`.
 */
export function skipOrFail(ctx: Skippable, reason: string): never {
  if (underCi()) throw new Error(`cannot run under CI (CI=true makes a skip a failure): ${reason}`);
  console.log(`      skipped: ${reason}`);
  ctx.skip();
  // mocha's skip() throws to end the test; a context that does not still must not go on.
  throw new Error(`skipped: ${reason}`);
}
