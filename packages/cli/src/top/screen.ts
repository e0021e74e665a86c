// What `meshport top` draws: one screen of text lines fitted to the terminal's width and height, from the figures of
// the last interval (or a line saying what it waits for). Plain text in, plain text out; the live loop adds the ANSI.

import {
  type CallerFigures,
  type Direction,
  formatQuantile,
  formatRate,
  formatSuccess,
  type Interval,
  type MethodFigures,
  type SortKey,
  sortRows,
} from './figures';

/** Which directions the rows show: `d` steps through them. */
export const DIRECTION_FILTERS = ['all', 'outbound', 'inbound'] as const;
export type DirectionFilter = (typeof DIRECTION_FILTERS)[number];

export interface ScreenState {
  /** The admin address read, as shown in the header. */
  admin: string;
  /** When the figures were read (or the wait began). */
  now: Date;
  intervalSeconds: number;
  sort: SortKey;
  direction: DirectionFilter;
  /** The last interval's figures; undefined until two reads have been made. */
  figures?: Interval;
  /** Why there are no (fresh) figures: `waiting for 127.0.0.1:15000 (connection refused)`, `first read...`. */
  status?: string;
}

/** The rows and callers that pass the direction filter. */
export function visible<T extends { direction: Direction }>(items: T[], filter: DirectionFilter): T[] {
  return filter === 'all' ? items : items.filter((i) => i.direction === filter);
}

/** Totals over rows: requests, rate, answered, ok. */
export function totals(rows: MethodFigures[]): { requests: number; rps: number; answered: number; ok: number } {
  const t = { requests: 0, rps: 0, answered: 0, ok: 0 };
  for (const r of rows) {
    t.requests += r.requests;
    t.rps += r.rps;
    t.answered += r.answered;
    t.ok += r.ok;
  }
  return t;
}

interface Column {
  title: string;
  sort?: SortKey;
  /** Right-aligned (numbers). */
  right?: boolean;
  width: number;
  cell: (r: MethodFigures) => string;
}

const KEYS_LINE = 'keys: r req/s  s success  5 p50  9 p99  n name  d dir  q quit';

/** The screen, `height` lines at most, each `width` characters at most. */
export function renderScreen(state: ScreenState, width: number, height: number): string[] {
  const w = Math.max(width, 40);
  const lines: string[] = [];
  const time = state.now.toISOString().slice(11, 19);
  lines.push(
    `meshport top - sidecar ${state.admin} - ${time} UTC - every ${state.intervalSeconds}s - direction ${state.direction} - sorted by ${sortTitle(state.sort)}`,
  );
  const figures = state.figures;
  const rows = figures ? sortRows(visible(figures.rows, state.direction), state.sort) : [];
  if (figures) {
    const t = totals(rows);
    const dirs = (['outbound', 'inbound'] as const)
      .filter((d) => state.direction === 'all' || state.direction === d)
      .map((d) => `${d} ${formatRate(totals(rows.filter((r) => r.direction === d)).rps)}`);
    const folded = (['outbound', 'inbound'] as const)
      .map((d) => figures.folded[d].method + figures.folded[d].caller)
      .reduce((a, b) => a + b, 0);
    lines.push(
      `total ${formatRate(t.rps)}  success ${formatSuccess(t.answered > 0 ? t.ok / t.answered : undefined)}  ${dirs.join('  ')}` +
        (folded > 0 ? `  folded into 'other' ${folded}` : ''),
    );
  } else {
    lines.push('');
  }
  lines.push(state.status ?? '');
  const columns = layout(w);
  lines.push(
    columns
      .map((c) => {
        const title = c.sort === state.sort ? `${c.title}*` : c.title;
        return c.right ? title.padStart(c.width) : title.padEnd(c.width);
      })
      .join(' '),
  );
  // Rows fill what is left above the callers and the keys line; the callers get what rows leave (at least a few).
  const callers = figures ? callerLines(visible(figures.callers, state.direction), rows, w) : [];
  const reserve = 1 + (callers.length > 0 ? Math.min(callers.length + 2, 6) : 0);
  const roomForRows = Math.max(height - lines.length - reserve, 1);
  const shown = rows.slice(0, roomForRows);
  for (const r of shown) lines.push(columns.map((c) => fit(c.cell(r), c.width, c.right === true)).join(' '));
  if (rows.length > shown.length) lines[lines.length - 1] = `... ${rows.length - shown.length + 1} more rows`;
  if (figures && rows.length === 0)
    lines.push(figures.rows.length === 0 ? '(no service has been called yet)' : `(no ${state.direction} calls)`);
  const roomForCallers = height - lines.length - 1;
  if (callers.length > 0 && roomForCallers >= 3) {
    lines.push('');
    lines.push('TOP CALLERS (per service, by req/s)');
    lines.push(...callers.slice(0, roomForCallers - 2));
  }
  while (lines.length < height - 1) lines.push('');
  lines.push(KEYS_LINE);
  return lines.slice(0, height).map((l) => fit(l, w, false).trimEnd());
}

function sortTitle(key: SortKey): string {
  return key === 'rps' ? 'req/s' : key;
}

/**
 * The columns for a width: the figures keep their widths, service and method share what is left (service 60%), so
 * the line is exactly as wide as the terminal.
 */
function layout(width: number): Column[] {
  const fixed: Column[] = [
    { title: 'REQ/S', sort: 'rps', right: true, width: 9, cell: (r) => formatRate(r.rps) },
    { title: 'SUCCESS', sort: 'success', right: true, width: 8, cell: (r) => formatSuccess(r.successRate) },
    { title: 'P50', sort: 'p50', right: true, width: 8, cell: (r) => formatQuantile(r.p50) },
    { title: 'P99', sort: 'p99', right: true, width: 8, cell: (r) => formatQuantile(r.p99) },
    { title: 'ERRORS', width: 0, cell: (r) => errors(r) },
  ];
  const dir: Column = { title: 'DIR', width: 3, cell: (r) => (r.direction === 'outbound' ? 'out' : 'in') };
  const separators = 7;
  const figuresWidth = fixed.reduce((a, c) => a + c.width, 0) + dir.width;
  const flexible = Math.max(width - figuresWidth - separators, 12);
  // Errors get a third of the flexible room on a wide terminal; service and method the rest.
  const errorsWidth = width >= 110 ? Math.floor(flexible / 4) : 0;
  const names = flexible - errorsWidth;
  const serviceWidth = Math.ceil(names * 0.62);
  const methodWidth = names - serviceWidth;
  const columns: Column[] = [
    dir,
    { title: 'SERVICE', sort: 'name', width: serviceWidth, cell: (r) => r.service },
    { title: 'METHOD', width: methodWidth, cell: (r) => r.method },
    ...fixed.slice(0, 4),
  ];
  if (errorsWidth > 0) columns.push({ ...fixed[4]!, width: errorsWidth });
  else {
    // No room for the errors column: service and method take the separator it would have had.
    columns[2] = { ...columns[2]!, width: methodWidth + 1 };
  }
  return columns;
}

/** The interval's outcomes other than ok, most frequent first: `status-18 12, timeout 1`. */
function errors(r: MethodFigures): string {
  return Object.entries(r.outcomes)
    .filter(([o]) => o !== 'ok')
    .sort((a, b) => b[1] - a[1])
    .map(([o, n]) => `${o} ${n}`)
    .join(', ');
}

/** Per service (the busiest service first), its three busiest callers. */
function callerLines(callers: CallerFigures[], rows: MethodFigures[], width: number): string[] {
  const rates = new Map<string, { direction: Direction; service: string; rps: number }>();
  for (const r of rows) {
    const key = `${r.direction}\0${r.service}`;
    const s = rates.get(key) ?? { direction: r.direction, service: r.service, rps: 0 };
    s.rps += r.rps;
    rates.set(key, s);
  }
  const services = [...rates.values()].sort((a, b) => b.rps - a.rps || a.service.localeCompare(b.service));
  const width0 = Math.max(0, ...services.map((s) => s.service.length));
  const lines: string[] = [];
  for (const s of services) {
    const top = callers.filter((c) => c.direction === s.direction && c.service === s.service).slice(0, 3);
    if (top.length === 0) continue;
    const head = `${s.direction === 'outbound' ? 'out' : 'in '} ${s.service.padEnd(width0)}`;
    const list = top.map((c) => `${c.caller} ${formatRate(c.rps)}`).join('  ');
    lines.push(fit(`${head}  ${list}`, width, false));
  }
  return lines;
}

/** Text cut or padded to exactly `width` (a cut ends with `~`, so it is never mistaken for the whole value). */
function fit(text: string, width: number, right: boolean): string {
  if (width <= 0) return '';
  if (text.length > width) return width === 1 ? '~' : `${text.slice(0, width - 1)}~`;
  return right ? text.padStart(width) : text.padEnd(width);
}
