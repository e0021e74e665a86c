// The README's benchmark figures come from docs/bench/results.jsonl: this fails when someone edits them by hand, or
// records a run without rewriting them (`npm run bench -- SUITE --update-docs` does both).

import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { README_FILE, RESULTS_FILE } from '../src/docs';
import type { ResultRow } from '../src/suite';
import { SUITES } from '../src/suites';

function inline(page: string, key: string): string | undefined {
  const start = `<!-- bench:glance:${key}:start -->`;
  const end = `<!-- bench:glance:${key}:end -->`;
  const i = page.indexOf(start);
  const j = i < 0 ? -1 : page.indexOf(end, i + start.length);
  return i < 0 || j < 0 ? undefined : page.slice(i + start.length, j);
}

describe('README: benchmarks at a glance', () => {
  it('shows, for every suite that has a glance, exactly what its saved results make', () => {
    const readme = readFileSync(README_FILE, 'utf8');
    const lines = readFileSync(RESULTS_FILE, 'utf8')
      .split('\n')
      .filter((l) => l.trim().startsWith('{'));
    let checked = 0;
    for (const line of lines) {
      const o = JSON.parse(line) as { suite?: string; results?: ResultRow[] };
      const suite = o.suite === undefined ? undefined : SUITES.get(o.suite);
      const made = suite?.glance && o.results ? suite.glance(o.results) : null;
      if (!made) continue;
      for (const part of ['figures', 'goal'] as const) {
        const shown = inline(readme, `${o.suite}:${part}`);
        assert.notEqual(shown, undefined, `README has no glance markers for ${o.suite}:${part}`);
        assert.equal(
          shown,
          made[part],
          `README's ${o.suite} ${part} differ from docs/bench/results.jsonl: run the suite with --update-docs`,
        );
        checked++;
      }
    }
    assert.ok(checked >= 2, `glance cells checked: ${checked}`);
  });
});
