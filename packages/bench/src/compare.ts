// `--compare FILE`: this run's metrics against saved ones (a `--json` / `--save` output, or docs/bench/results.jsonl).
// A change counts as a regression only when it is worse than the noise both runs showed: the larger of their spreads,
// and never less than a floor, since a figure made of one round has no spread of its own to go by.

import { readFileSync } from 'node:fs';
import { fixed, percent } from './format';
import type { ReportTable } from './render';
import type { Metric } from './suite';

/** Tolerance for metrics of several rounds whose spreads are tiny: below this, run-to-run drift is not a finding. */
export const MIN_TOLERANCE = 0.03;
/** Tolerance for a metric made of one round or sample: it carries no spread, so this stands in for it. */
export const SINGLE_ROUND_TOLERANCE = 0.1;

export interface SavedSuite {
  suite: string;
  date?: string;
  metrics: Metric[];
}

/** Every suite line of a saved file (JSON lines; a later line for the same suite wins). */
export function readSaved(file: string): Map<string, SavedSuite> {
  const out = new Map<string, SavedSuite>();
  const text = readFileSync(file, 'utf8');
  text.split('\n').forEach((line, i) => {
    const l = line.trim();
    if (!l.startsWith('{')) return; // progress or other text mixed into a saved stdout
    let parsed: unknown;
    try {
      parsed = JSON.parse(l);
    } catch (err) {
      throw new Error(`${file}:${i + 1}: not JSON: ${(err as Error).message}`);
    }
    const o = parsed as Partial<SavedSuite> & { env?: { date?: string } };
    if (typeof o.suite !== 'string' || 'skipped' in o) return; // a suite that could not run here saved no figures
    if (!Array.isArray(o.metrics))
      throw new Error(`${file}:${i + 1}: suite ${o.suite} has no "metrics" (saved by an older bench?)`);
    out.set(o.suite, { suite: o.suite, date: o.env?.date, metrics: o.metrics });
  });
  if (out.size === 0)
    throw new Error(`${file}: no suite results in it (expected the JSON lines of \`npm run bench -- --json\`)`);
  return out;
}

export type Verdict = 'regression' | 'improvement' | 'within spread' | 'new' | 'not in this run';

export interface Comparison {
  name: string;
  unit: string;
  then: number | null;
  now: number | null;
  /** (now - then) / then. */
  change: number | null;
  tolerance: number | null;
  verdict: Verdict;
}

function tolerance(a: Metric, b: Metric): number {
  const floor = a.rounds < 2 || b.rounds < 2 ? SINGLE_ROUND_TOLERANCE : MIN_TOLERANCE;
  return Math.max(a.spread, b.spread, floor);
}

export function compareMetrics(then: Metric[], now: Metric[]): Comparison[] {
  const before = new Map(then.map((m) => [m.name, m]));
  const out: Comparison[] = [];
  for (const m of now) {
    const t = before.get(m.name);
    before.delete(m.name);
    if (!t || !(t.value !== 0 && Number.isFinite(t.value))) {
      out.push({
        name: m.name,
        unit: m.unit,
        then: t?.value ?? null,
        now: m.value,
        change: null,
        tolerance: null,
        verdict: 'new',
      });
      continue;
    }
    const change = (m.value - t.value) / Math.abs(t.value);
    const tol = tolerance(m, t);
    const worse = m.better === 'higher' ? -change : change;
    const verdict: Verdict = worse > tol ? 'regression' : -worse > tol ? 'improvement' : 'within spread';
    out.push({ name: m.name, unit: m.unit, then: t.value, now: m.value, change, tolerance: tol, verdict });
  }
  for (const t of before.values()) {
    out.push({
      name: t.name,
      unit: t.unit,
      then: t.value,
      now: null,
      change: null,
      tolerance: null,
      verdict: 'not in this run',
    });
  }
  return out;
}

function value(v: number | null, unit: string): string {
  if (v === null) return '-';
  const digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  return `${fixed(v, digits)}${unit === 'x' ? 'x' : ` ${unit}`}`;
}

export function comparisonTable(rows: Comparison[]): ReportTable {
  const headers = ['metric', 'saved', 'now', 'change', 'allowed', 'verdict'];
  const cells = rows.map((r) => [
    r.name,
    value(r.then, r.unit),
    value(r.now, r.unit),
    r.change === null ? '-' : `${r.change >= 0 ? '+' : ''}${percent(r.change)}`,
    r.tolerance === null ? '-' : `±${percent(r.tolerance)}`,
    r.verdict === 'regression' ? 'REGRESSION' : r.verdict,
  ]);
  return { headers, align: ['l', 'r', 'r', 'r', 'r', 'l'], rows: cells };
}
