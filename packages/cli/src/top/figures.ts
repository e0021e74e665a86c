// What `meshport top` computes from two reads of a sidecar's /services page: per service and method the request rate,
// the success rate and p50/p99 over the interval between the reads, the callers by rate, and the order rows are shown in.
// Pure functions of the two snapshots, so the arithmetic is tested without a sidecar.

/** The /services page (docs/observability.md): monotonic totals since the sidecar started. */
export interface ServicesPage {
  /** When the page was made, Date.now() of the sidecar. */
  at: number;
  services: ServiceTotals[];
  callers: CallerTotals[];
  folded?: Partial<Record<Direction, { method?: number; caller?: number }>>;
  /** Upper bounds (seconds) of the latency buckets; `latency.counts` has one more, the last one unbounded. */
  buckets: number[];
}

export type Direction = 'outbound' | 'inbound';

export interface ServiceTotals {
  direction: Direction;
  service: string;
  method: string;
  requests: number;
  outcomes: Record<string, number>;
  latency: { counts: number[]; sum: number; count: number };
}

export interface CallerTotals {
  direction: Direction;
  service: string;
  caller: string;
  requests: number;
}

/**
 * A latency quantile read from the bucket counts: seconds, or past a bucket table's end, where no value can be
 * interpolated: `below` the first bound (faster than it), `above` the last (slower than it).
 */
export interface Quantile {
  seconds: number;
  bound?: 'below' | 'above';
}

/** One service and method in one direction over the interval. */
export interface MethodFigures {
  direction: Direction;
  service: string;
  method: string;
  /** Requests received in the interval, and per second. */
  requests: number;
  rps: number;
  /** Answers written in the interval (every outcome), and of those `ok`. */
  answered: number;
  ok: number;
  /** ok / answered; undefined when nothing was answered. */
  successRate: number | undefined;
  /** The outcomes of the interval's answers that happened at least once. */
  outcomes: Record<string, number>;
  p50: Quantile | undefined;
  p99: Quantile | undefined;
}

export interface CallerFigures {
  direction: Direction;
  service: string;
  caller: string;
  requests: number;
  rps: number;
}

export interface Interval {
  /** Seconds between the two reads (by the sidecar's clock). */
  seconds: number;
  rows: MethodFigures[];
  /** Every caller with a call in the interval, fastest first. */
  callers: CallerFigures[];
  /** Calls whose method or caller was counted under `other` in the interval (the label caps were reached). */
  folded: Record<Direction, { method: number; caller: number }>;
}

const rowKey = (r: { direction: string; service: string; method: string }) =>
  `${r.direction}\0${r.service}\0${r.method}`;
const callerKey = (c: CallerTotals) => `${c.direction}\0${c.service}\0${c.caller}`;

/**
 * A counter's growth between reads. A total smaller than before means the sidecar restarted between them (its
 * counters start again at zero): everything it counted since is the growth.
 */
const growth = (now: number, before: number | undefined) => (before === undefined || now < before ? now : now - before);

/** The figures of the interval between `before` and `now`, two reads of the same sidecar's /services. */
export function interval(before: ServicesPage, now: ServicesPage): Interval {
  const seconds = Math.max((now.at - before.at) / 1000, 1e-3);
  const restarted = now.services.some((s) => {
    const b = before.services.find((x) => rowKey(x) === rowKey(s));
    return b !== undefined && s.requests < b.requests;
  });
  const previous = new Map(restarted ? [] : before.services.map((s) => [rowKey(s), s]));
  const rows = now.services.map((s): MethodFigures => {
    const b = previous.get(rowKey(s));
    const requests = growth(s.requests, b?.requests);
    const outcomes: Record<string, number> = {};
    let answered = 0;
    for (const [outcome, n] of Object.entries(s.outcomes)) {
      const d = growth(n, b?.outcomes[outcome]);
      if (d > 0) outcomes[outcome] = d;
      answered += d;
    }
    const ok = outcomes.ok ?? 0;
    const counts = s.latency.counts.map((n, i) => growth(n, b?.latency.counts[i]));
    return {
      direction: s.direction,
      service: s.service,
      method: s.method,
      requests,
      rps: requests / seconds,
      answered,
      ok,
      successRate: answered > 0 ? ok / answered : undefined,
      outcomes,
      p50: quantile(counts, now.buckets, 0.5),
      p99: quantile(counts, now.buckets, 0.99),
    };
  });
  const callersBefore = new Map(restarted ? [] : before.callers.map((c) => [callerKey(c), c.requests]));
  const callers = now.callers
    .map((c): CallerFigures => {
      const requests = growth(c.requests, callersBefore.get(callerKey(c)));
      return { direction: c.direction, service: c.service, caller: c.caller, requests, rps: requests / seconds };
    })
    .filter((c) => c.requests > 0)
    .sort((a, b) => b.requests - a.requests || a.caller.localeCompare(b.caller));
  const folded = (d: Direction) => ({
    method: growth(now.folded?.[d]?.method ?? 0, restarted ? 0 : (before.folded?.[d]?.method ?? 0)),
    caller: growth(now.folded?.[d]?.caller ?? 0, restarted ? 0 : (before.folded?.[d]?.caller ?? 0)),
  });
  return { seconds, rows, callers, folded: { outbound: folded('outbound'), inbound: folded('inbound') } };
}

/**
 * The q-quantile (0 < q < 1) of the latencies counted in `counts` (per bucket, not cumulative; the last bucket has no
 * upper bound), by linear interpolation inside the bucket that holds it, as Prometheus' histogram_quantile does. The
 * first bucket has no lower bound worth interpolating from and the last no upper: a quantile there is only "below the
 * first bound" or "above the last". Undefined when nothing was counted.
 */
export function quantile(counts: number[], bounds: number[], q: number): Quantile | undefined {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total <= 0) return undefined;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < counts.length; i++) {
    const n = counts[i]!;
    if (n > 0 && below + n >= rank) {
      if (i === 0) return { seconds: bounds[0]!, bound: 'below' };
      if (i >= bounds.length) return { seconds: bounds[bounds.length - 1]!, bound: 'above' };
      const lower = bounds[i - 1]!;
      const upper = bounds[i]!;
      return { seconds: lower + ((upper - lower) * (rank - below)) / n };
    }
    below += n;
  }
  return { seconds: bounds[bounds.length - 1]!, bound: 'above' };
}

/** What the rows can be ordered by: the keys of the live view and the values of --sort. */
export const SORT_KEYS = ['rps', 'success', 'p50', 'p99', 'name'] as const;
export type SortKey = (typeof SORT_KEYS)[number];

/** The quantile as one number to order by: past the last bound is slower than any bound, below the first faster. */
const latencyOrder = (q: Quantile | undefined) =>
  q === undefined ? -1 : q.bound === 'above' ? Number.POSITIVE_INFINITY : q.bound === 'below' ? 0 : q.seconds;

const byName = (a: MethodFigures, b: MethodFigures) =>
  a.service.localeCompare(b.service) || a.method.localeCompare(b.method) || a.direction.localeCompare(b.direction);

/**
 * The rows in the order a person reading for trouble wants: the busiest, the least successful, the slowest first;
 * by name alphabetically. Rows with nothing answered have no success rate and go last under `success`; ties by name.
 */
export function sortRows(rows: MethodFigures[], key: SortKey): MethodFigures[] {
  const order: Record<SortKey, (a: MethodFigures, b: MethodFigures) => number> = {
    rps: (a, b) => b.rps - a.rps,
    success: (a, b) => (a.successRate ?? 2) - (b.successRate ?? 2),
    p50: (a, b) => latencyOrder(b.p50) - latencyOrder(a.p50),
    p99: (a, b) => latencyOrder(b.p99) - latencyOrder(a.p99),
    name: () => 0,
  };
  return [...rows].sort((a, b) => order[key](a, b) || byName(a, b));
}

/** A quantile for people: `0.42ms`, `12.5ms`, `1.20s`, `<0.1ms`, `>10s`, `-` when there is none. */
export function formatQuantile(q: Quantile | undefined): string {
  if (q === undefined) return '-';
  // A bound is shown as the bucket table writes it (0.1 ms, 10 s), a value with the digits it has.
  if (q.bound === 'below') return `<${trim(formatSeconds(q.seconds))}`;
  if (q.bound === 'above') return `>${trim(formatSeconds(q.seconds))}`;
  return formatSeconds(q.seconds);
}

function formatSeconds(s: number): string {
  if (s >= 1) return `${s < 10 ? s.toFixed(2) : s.toFixed(1)}s`;
  const ms = s * 1000;
  return `${ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : ms.toFixed(0)}ms`;
}

/** Trailing zeros off a number with its unit (`10.0s` -> `10s`, `0.10ms` -> `0.1ms`). */
function trim(text: string): string {
  return text.replace(/\.?0+(?=[a-z]+$)/, '');
}

/** A rate for people: `812/s`, `12.5/s`, `0.3/s`. */
export function formatRate(rps: number): string {
  return rps >= 100 ? `${rps.toFixed(0)}/s` : `${rps.toFixed(1)}/s`;
}

/** A success rate for people: `100%`, `99.2%`, `-` when nothing was answered. */
export function formatSuccess(rate: number | undefined): string {
  if (rate === undefined) return '-';
  if (rate === 1) return '100%';
  // Never round a failure up to 100%.
  return `${(Math.floor(rate * 1000) / 10).toFixed(1)}%`;
}
