// The V8 heap settings the sidecar daemon runs with: a small young generation and a tight old-generation growth step.
// A module of its own, with no imports beyond node:v8, so `meshport sidecar` can apply them before it loads anything.

import { setFlagsFromString } from 'node:v8';

/**
 * Each setting, the node flags an operator would use to choose otherwise, and why it is the default.
 *
 * - Young generation held at its initial 1 MiB semi-spaces (`--semi-space-growth-factor=1` set after start-up, which is
 *   what `--max-semi-space-size=1` does when given at launch). V8 grows them to 16 MiB each under load: 32 MiB of
 *   heap, most of it resident, for a process whose live heap is 8-25 MB. Measured (docs/benchmarks.md, "Where the
 *   sidecar's memory goes"): the JS router's peak RSS under the forward load 100-104 -> 58-65 MB at the same req/s
 *   and CPU per request; a sidecar with 10k endpoints about 60 MB less.
 * - Old generation grown by 20% over what the last full GC kept (`--heap-growing-percent=20`; V8 otherwise grows it by
 *   up to 4x when GC is fast). With a small young generation, the garbage of a registry burst (a bulk of watch events
 *   re-reading every provider list) is promoted, and the default let the old space reach 60-90 MB for 21 MB live;
 *   V8 still grows it by at least 8 MB a step, so a small heap is not collected on every promotion.
 */
export const SIDECAR_V8_SETTINGS = [
  {
    flag: '--semi-space-growth-factor=1',
    overriddenBy: ['--max-semi-space-size', '--min-semi-space-size', '--semi-space-growth-factor'],
  },
  { flag: '--heap-growing-percent=20', overriddenBy: ['--heap-growing-percent'] },
] as const;

/**
 * Applies SIDECAR_V8_SETTINGS to this process, except those an operator chose otherwise in the node flags
 * (`execArgv`) or NODE_OPTIONS: e.g. `NODE_OPTIONS=--max-semi-space-size=16` brings V8's own young generation back.
 * Returns the flags applied. Process-wide, so it is the daemon's entry point that calls it (`meshport sidecar`), never
 * the Sidecar class, which may be embedded in another program.
 */
export function applySidecarV8Settings(
  execArgv: readonly string[] = process.execArgv,
  nodeOptions: string = process.env.NODE_OPTIONS ?? '',
  setFlags: (flags: string) => void = setFlagsFromString,
): string[] {
  const given = [...execArgv, ...nodeOptions.split(/\s+/)].map((arg) => arg.replace(/_/g, '-'));
  const applied: string[] = [];
  for (const { flag, overriddenBy } of SIDECAR_V8_SETTINGS) {
    if (given.some((arg) => overriddenBy.some((name) => arg === name || arg.startsWith(`${name}=`)))) continue;
    setFlags(flag);
    applied.push(flag);
  }
  return applied;
}
