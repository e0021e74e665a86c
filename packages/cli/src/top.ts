// `meshport top`: a live view of a running sidecar from its admin page /services — per service and method the request
// rate, success rate and p50/p99 of the last interval, the busiest callers — on the full terminal, sortable by key;
// or, with --json, one JSON object per interval for scripts.

import http from 'node:http';
import { CliError, UsageError } from './errors';
import { interval, type Interval, type Quantile, type ServicesPage, type SortKey, sortRows } from './top/figures';
import { DIRECTION_FILTERS, type DirectionFilter, renderScreen, totals, visible } from './top/screen';
import type { Io } from './io';

export interface TopOptions {
  /** `host:port`, `:port` or `port` (loopback). */
  admin: string;
  /** Seconds between reads. @default 1 */
  intervalSeconds: number;
  sort: SortKey;
  direction: DirectionFilter;
  /** One JSON object per interval on stdout instead of the screen. */
  json: boolean;
  /** One interval (two reads `intervalSeconds` apart), printed, then exit. */
  once: boolean;
}

/** `host:port` from what --admin takes; a usage mistake for anything else. */
export function parseAdmin(text: string): { host: string; port: number } {
  const m = /^(?:(\[[^\]]+\]|[^:]*):)?(\d+)$/.exec(text.trim());
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535)
    throw new UsageError(`--admin ${JSON.stringify(text)}: give HOST:PORT, :PORT or PORT (the sidecar's admin port)`);
  return { host: m[1] || '127.0.0.1', port };
}

/** The admin port did not answer: `reason` says how, for the live view's "waiting for" line. */
export class AdminUnreachable extends CliError {
  constructor(
    readonly admin: string,
    readonly reason: string,
  ) {
    super('MESHPORT_CLI_ADMIN_UNREACHABLE', `cannot read the sidecar's admin port at ${admin} (${reason})`);
  }
}

/** Reads /services of the admin port at `admin`; the errors say what is wrong in the user's terms. */
export async function readServices(admin: string, timeoutMs = 3000): Promise<ServicesPage> {
  const { host, port } = parseAdmin(admin);
  let answer: { status: number; text: string };
  try {
    answer = await httpGet(host, port, '/services', timeoutMs);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    const why =
      code === 'ECONNREFUSED'
        ? 'connection refused: is the sidecar running, with its admin port there?'
        : code === 'ETIMEDOUT'
          ? `no answer in ${timeoutMs / 1000} s`
          : code;
    throw new AdminUnreachable(admin, why);
  }
  const { status, text } = answer;
  if (status === 404)
    throw new CliError(
      'MESHPORT_CLI_NO_SERVICES_PAGE',
      `the sidecar at ${admin} has no /services page: it is older than meshport top (per-service metrics came with it); upgrade the sidecar`,
    );
  let page: ServicesPage | undefined;
  try {
    page = JSON.parse(text) as ServicesPage;
  } catch {
    page = undefined;
  }
  if (status !== 200 || !page || !Array.isArray(page.services) || !Array.isArray(page.buckets))
    throw new CliError(
      'MESHPORT_CLI_NO_SERVICES_PAGE',
      `the sidecar at ${admin} answered /services with ${status} and not the page meshport top reads: ${text.slice(0, 120).trim()}`,
    );
  page.callers ??= [];
  return page;
}

/**
 * GET over node:http rather than fetch: fetch refuses ports browsers block (6000, 6667...), and an admin port may be
 * any port.
 */
function httpGet(
  host: string,
  port: number,
  path: string,
  timeoutMs: number,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: host.replace(/^\[|\]$/g, ''), port, path, timeout: timeoutMs }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
  });
}

/** The JSON object of one interval (docs/observability.md, `meshport top --json`). */
export function intervalJson(
  admin: string,
  at: number,
  figures: Interval,
  sort: SortKey,
  direction: DirectionFilter,
): Record<string, unknown> {
  const rows = visible(figures.rows, direction);
  const t = totals(rows);
  const ms = (q: Quantile | undefined) => (q === undefined ? null : round(q.seconds * 1000, 3));
  const text = (q: Quantile | undefined) =>
    q === undefined ? null : q.bound === 'below' ? 'below' : q.bound === 'above' ? 'above' : null;
  return {
    at: new Date(at).toISOString(),
    admin,
    intervalSeconds: round(figures.seconds, 3),
    direction,
    totals: {
      requests: t.requests,
      rps: round(t.rps, 3),
      answered: t.answered,
      ok: t.ok,
      successRate: t.answered > 0 ? round(t.ok / t.answered, 6) : null,
    },
    services: sortRows(rows, sort).map((r) => ({
      direction: r.direction,
      service: r.service,
      method: r.method,
      requests: r.requests,
      rps: round(r.rps, 3),
      answered: r.answered,
      ok: r.ok,
      successRate: r.successRate === undefined ? null : round(r.successRate, 6),
      outcomes: r.outcomes,
      p50Ms: ms(r.p50),
      p50Bound: text(r.p50),
      p99Ms: ms(r.p99),
      p99Bound: text(r.p99),
    })),
    callers: visible(figures.callers, direction).map((c) => ({ ...c, rps: round(c.rps, 3) })),
    folded: figures.folded,
  };
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects: a stop is not an error here). */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, signal.aborted ? 0 : ms);
    signal.addEventListener('abort', done);
  });
}

/** Runs `meshport top` and resolves to its exit code. */
export async function runTop(given: TopOptions, io: Io): Promise<number> {
  // Shown and named in errors as the address read: `15000` is 127.0.0.1:15000.
  const { host, port } = parseAdmin(given.admin);
  const options = { ...given, admin: `${host}:${port}` };
  if (options.json || options.once) return runPlain(options, io);
  const stdout = process.stdout;
  if (!stdout.isTTY) throw new UsageError('the live view needs a terminal; use --json (or --once) for a pipe or file');
  return runLive(options, stdout, process.stdin);
}

/** --json (an object per interval, or one with --once) and --once (one plain table): no terminal control at all. */
async function runPlain(options: TopOptions, io: Io): Promise<number> {
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  try {
    let before = await readServices(options.admin);
    let waiting = false;
    while (!stop.signal.aborted) {
      await sleep(options.intervalSeconds * 1000, stop.signal);
      if (stop.signal.aborted) break;
      let now: ServicesPage;
      try {
        now = await readServices(options.admin);
      } catch (err) {
        // One failed read of a running stream is a note on stderr, not the end: the sidecar may be restarting.
        if (options.once || !(err instanceof AdminUnreachable)) throw err;
        if (!waiting) io.stderr.write(`meshport top: waiting for ${options.admin} (${err.reason})\n`);
        waiting = true;
        continue;
      }
      if (waiting) {
        // The first read after an outage starts the rates afresh: an interval spanning the outage says nothing.
        waiting = false;
        before = now;
        continue;
      }
      const figures = interval(before, now);
      before = now;
      if (options.json) {
        io.stdout.write(
          `${JSON.stringify(intervalJson(options.admin, now.at, figures, options.sort, options.direction))}\n`,
        );
      } else {
        const columns = (process.stdout.columns as number | undefined) ?? 120;
        const rows = figures.rows.length + figures.callers.length + 12;
        const screen = renderScreen(
          { ...options, now: new Date(now.at), intervalSeconds: options.intervalSeconds, figures },
          columns,
          rows,
        );
        // The screen without the keys line (no keys here) and without its filler lines.
        const text = screen.slice(0, -1).filter((l, i, all) => l !== '' || (i > 0 && all[i - 1] !== ''));
        io.stdout.write(`${text.join('\n').trimEnd()}\n`);
      }
      if (options.once) break;
    }
    return 0;
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
  }
}

const ENTER_SCREEN = '\x1b[?1049h\x1b[?25l';
const LEAVE_SCREEN = '\x1b[?25h\x1b[?1049l';

/** The full-screen view: alternate screen, cursor hidden, keys read raw; the terminal is given back on every exit. */
async function runLive(options: TopOptions, stdout: NodeJS.WriteStream, stdin: NodeJS.ReadStream): Promise<number> {
  const stop = new AbortController();
  let wake = new AbortController();
  let sort = options.sort;
  let direction = options.direction;
  let before: ServicesPage | undefined;
  let figures: Interval | undefined;
  let status: string | undefined = `reading ${options.admin} ...`;
  let fatal: CliError | undefined;
  let readAt = new Date();

  const draw = () => {
    const lines = renderScreen(
      { admin: options.admin, now: readAt, intervalSeconds: options.intervalSeconds, sort, direction, figures, status },
      stdout.columns || 80,
      stdout.rows || 24,
    );
    // Home, each line cleared to its end, the rest of the screen cleared: no flicker from a whole-screen clear.
    stdout.write(`\x1b[H${lines.map((l) => `${l}\x1b[K`).join('\r\n')}\x1b[J`);
  };
  const onKey = (data: Buffer) => {
    for (const ch of data.toString('utf8')) {
      if (ch === 'q' || ch === 'Q' || ch === '\x03' || ch === '\x04') stop.abort();
      else if (ch === 'r') sort = 'rps';
      else if (ch === 's') sort = 'success';
      else if (ch === '5') sort = 'p50';
      else if (ch === '9') sort = 'p99';
      else if (ch === 'n') sort = 'name';
      else if (ch === 'd') direction = DIRECTION_FILTERS[(DIRECTION_FILTERS.indexOf(direction) + 1) % 3]!;
    }
    if (stop.signal.aborted) wake.abort();
    else draw();
  };
  const onSignal = () => {
    stop.abort();
    wake.abort();
  };
  const restore = () => {
    if (stdin.isTTY) stdin.setRawMode(false);
    stdout.write(LEAVE_SCREEN);
  };
  // An exit we do not see coming (an uncaught error) still gives the terminal back.
  process.on('exit', restore);
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal).on('SIGHUP', onSignal);
  stdout.on('resize', draw);
  stdout.write(`${ENTER_SCREEN}\x1b[2J`);
  if (stdin.isTTY) stdin.setRawMode(true);
  stdin.on('data', onKey);
  stdin.resume();
  try {
    while (!stop.signal.aborted) {
      try {
        const now = await readServices(options.admin);
        readAt = new Date(now.at);
        if (before) {
          figures = interval(before, now);
          status = undefined;
        } else status = `first read done; the figures come after ${options.intervalSeconds}s`;
        before = now;
      } catch (err) {
        if (!(err instanceof CliError)) throw err;
        if (!(err instanceof AdminUnreachable)) {
          fatal = err;
          break;
        }
        // Keep the last figures on screen, say what we wait for, and start the rates afresh once it answers.
        readAt = new Date();
        before = undefined;
        status = `waiting for ${options.admin} (${err.reason})`;
      }
      draw();
      wake = new AbortController();
      await sleep(options.intervalSeconds * 1000, AbortSignal.any([stop.signal, wake.signal]));
    }
  } finally {
    stdin.off('data', onKey);
    stdin.pause();
    stdout.off('resize', draw);
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal).off('SIGHUP', onSignal);
    restore();
    process.off('exit', restore);
  }
  if (fatal) throw fatal;
  return 0;
}

/** The exit of a failed `meshport top`: its error printed with its code, exit 1. */
export function topFailure(err: unknown, io: Io): number {
  if (!(err instanceof CliError) || err instanceof UsageError) throw err;
  io.stderr.write(`meshport top: ${err.code}: ${err.message}\n`);
  return 1;
}
