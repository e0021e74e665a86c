// The forward suite's observability cases (issue 19): what per-service metrics, access logs and tracing cost per
// request, each case set against the plain pair it differs from by that one thing.
//
//   meshport-2hop-accesslog(-js)  the plain pair (native; js) with access logs on both routers at 1%
//                                 (RouterOptions.telemetry.accessLog {everyN: 100, errors: true, slowMs: 1000}),
//                                 the lines appended to a file per router by runners/router-process's sink
//   meshport-2hop-tracing(-js)    the same with tracing of every call (telemetry.tracing {everyN: 1}), spans to a file
//                                 per router, one OTLP ExportTraceServiceRequest per batch and line
//   meshport-2hop-baseline(-js)   with `--baseline DIR` only: the plain pair on the router and engine built at DIR
//                                 (scripts/baseline.sh: the commit before issue 19), so the cost of the per-service
//                                 metrics, which are always on, is now / then in the same rounds
//
// A case that writes nothing, or far from what its sampling says, measures nothing: the run fails (see checkWritten).

import { closeSync, openSync, readSync } from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { type Align, fixed, int, percent } from '../format';
import type { ReportSection, ReportTable } from '../render';
import { roundRatio } from '../stats';
import type { Metric } from '../suite';
import type { BenchProtocol } from './wire';

/** What a case turns on: access logs, tracing, or nothing new (the build before issue 19). */
export type ObsKind = 'accesslog' | 'tracing' | 'baseline';

/** The plain cases the observability cases are measured against (forward.ts's targets of those names). */
export type PlainTwin = 'meshport-2hop-native' | 'meshport-2hop-js';

export const OBS_CASES = {
  'meshport-2hop-accesslog': { engine: 'native', kind: 'accesslog', twin: 'meshport-2hop-native' },
  'meshport-2hop-tracing': { engine: 'native', kind: 'tracing', twin: 'meshport-2hop-native' },
  'meshport-2hop-accesslog-js': { engine: 'js', kind: 'accesslog', twin: 'meshport-2hop-js' },
  'meshport-2hop-tracing-js': { engine: 'js', kind: 'tracing', twin: 'meshport-2hop-js' },
  'meshport-2hop-baseline': { engine: 'native', kind: 'baseline', twin: 'meshport-2hop-native' },
  'meshport-2hop-baseline-js': { engine: 'js', kind: 'baseline', twin: 'meshport-2hop-js' },
} as const satisfies Record<string, { engine: 'native' | 'js'; kind: ObsKind; twin: PlainTwin }>;
export type ObsTarget = keyof typeof OBS_CASES;
export const OBS_TARGETS = Object.keys(OBS_CASES) as ObsTarget[];
export const isObs = (t: string): t is ObsTarget => t in OBS_CASES;

/** The sampling of the cases, as the issue's goals name them: access logs at 1%, tracing of every call. */
export const ACCESS_LOG = { everyN: 100, errors: true, slowMs: 1000 } as const;
export const TRACING = { everyN: 1 } as const;

/** The issue's goals: CPU per request of both sidecars / the case without it, at most. */
export const OBS_GOAL = { metrics: 1.05, accesslog: 1.05, tracing: 1.25 } as const;

/** docs/benchmarks.md's section of these figures. */
export const OBS_SECTION = 'observability';

/** The router's entry point in a build made by scripts/baseline.sh (what MESHPORT_BENCH_ROUTER loads). */
export function baselineRouter(dir: string): string {
  return path.join(dir, 'packages/router/dist/src/index.js');
}

/** What a router of an observability case is started with, beside its routes (runners/router-process's input). */
export interface ObsRouterSetup {
  /** RouterOptions.telemetry (absent: off). */
  options: { telemetry?: object };
  /** runners/router-process's sink files. */
  telemetryFiles?: { access?: string; span?: string };
  /** The environment of the router's process (the baseline's: its own router and engine). */
  env?: NodeJS.ProcessEnv;
}

/** A file per router, in `dir`, for what the case writes. */
export function obsRouterSetup(
  target: ObsTarget,
  protocol: BenchProtocol,
  role: 'consumer' | 'provider',
  dir: string,
  baselineDir: string | undefined,
): ObsRouterSetup {
  const kind = OBS_CASES[target].kind;
  const file = path.join(dir, `${protocol}-${target}-${role}.jsonl`);
  if (kind === 'accesslog')
    return { options: { telemetry: { accessLog: ACCESS_LOG } }, telemetryFiles: { access: file } };
  if (kind === 'tracing') return { options: { telemetry: { tracing: TRACING } }, telemetryFiles: { span: file } };
  if (!baselineDir) throw new Error(`${target}: needs --baseline DIR`);
  // The baseline's @meshport/engine loads its own addon; an addon named here would be today's.
  const { MESHPORT_ENGINE_ADDON: _, ...env } = process.env;
  return { options: {}, env: { ...env, MESHPORT_BENCH_ROUTER: baselineRouter(baselineDir) } };
}

/** What a telemetry file holds: its lines, the items (access log lines or spans) in them, its size. */
export interface Written {
  lines: number;
  items: number;
  bytes: number;
  /** Its first line (up to 4 KiB), to check its shape. */
  first: string;
}

const SPAN_KEY = Buffer.from('"spanId":');

/**
 * Counts a telemetry file without parsing it (tracing every call writes hundreds of MB): lines, and for spans the
 * `"spanId":` keys (one per span; `parentSpanId` does not match, a quote inside a string value is escaped).
 */
export function countWritten(file: string, kind: 'access' | 'span'): Written {
  const fd = openSync(file, 'r');
  try {
    const chunk = Buffer.alloc(1 << 20);
    let lines = 0;
    let spans = 0;
    let bytes = 0;
    let first = '';
    // The last bytes of the previous chunk, so that a key split across two reads is still counted once.
    let carry = Buffer.alloc(0);
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      const part = chunk.subarray(0, n);
      if (bytes === 0) first = part.subarray(0, 4096).toString('utf8').split('\n')[0];
      bytes += n;
      for (let i = part.indexOf(10); i >= 0; i = part.indexOf(10, i + 1)) lines++;
      if (kind === 'span') {
        const hay = Buffer.concat([carry, part]);
        for (let i = hay.indexOf(SPAN_KEY); i >= 0; i = hay.indexOf(SPAN_KEY, i + 1)) spans++;
        const keep = Math.min(hay.length, SPAN_KEY.length - 1);
        carry = Buffer.from(hay.subarray(hay.length - keep));
      }
    }
    return { lines, items: kind === 'span' ? spans : lines, bytes, first };
  } finally {
    closeSync(fd);
  }
}

/** How many a router should have written after carrying `requests` calls, all ok and fast. */
export function expectedWritten(kind: 'accesslog' | 'tracing', requests: number): number {
  return kind === 'accesslog' ? Math.floor(requests / ACCESS_LOG.everyN) : Math.floor(requests / TRACING.everyN);
}

/**
 * Why a router's file says its case is broken, or null: nothing written, or what it wrote and what the sidecar's
 * writer dropped (a full queue: the disk behind) off by more than 10% (and 2) from what the sampling makes of the
 * calls its /stats counted. A line must also look like one (the spec's first keys). Drops are reported, not failed.
 */
export function checkWritten(kind: 'accesslog' | 'tracing', requests: number, w: Written, dropped = 0): string | null {
  const expected = expectedWritten(kind, requests);
  const what = kind === 'accesslog' ? 'access log lines' : 'spans';
  if (w.items === 0) return `no ${what} written after ${int(requests)} calls`;
  if (Math.abs(w.items + dropped - expected) > Math.max(2, expected * 0.1))
    return `${int(w.items)} ${what} written${dropped > 0 ? ` and ${int(dropped)} dropped` : ''} after ${int(requests)} calls, ${int(expected)} expected`;
  const shape =
    kind === 'accesslog' ? /^\{"time":"[^"]+","direction":"/ : /^\{"resourceSpans":\[.*"traceId":"[0-9a-f]{32}"/;
  if (!shape.test(w.first)) return `its first line does not look like ${what}: ${w.first.slice(0, 160)}`;
  return null;
}

/** A router's /stats: the calls it counted (meshport_requests_total), and whether it has the per-service families. */
export function routerCounts(adminPort: number): Promise<{ requests: number; perService: boolean }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: adminPort, path: '/stats', timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`/stats answered ${res.statusCode}`));
        let requests = 0;
        for (const m of body.matchAll(/^meshport_requests_total\{[^}]*\} (\S+)$/gm)) requests += Number(m[1]);
        resolve({ requests, perService: /^meshport_service_requests_total\{/m.test(body) });
      });
    });
    req.on('timeout', () => req.destroy(new Error('/stats did not answer within 5 s')));
    req.on('error', reject);
  });
}

/** One router of an access log or tracing case at the end of a protocol's run. */
export interface WrittenCount {
  role: string;
  requests: number;
  expected: number;
  written: Written;
  /** What the sidecar's writer dropped (its queue full). */
  dropped: number;
}

/** The figures of a case these tables read (forward.ts's Row has them). */
export interface ObsRow {
  protocol: BenchProtocol;
  target: string;
  rps: number;
  rpsSamples: number[];
  /** CPU us per request of each 8x16 sample, in round order. */
  cpuSamples: number[];
  p50: number;
  p50ByRound: number[];
  cpuPerReqUs: number | null;
}

/** One comparison of the section: a case against the one it differs from by one thing. */
export interface Comparison {
  protocol: BenchProtocol;
  label: string;
  /** What is measured (the newer) and against what (the older or plainer). */
  subject: ObsRow;
  against: ObsRow;
  goal: number;
  goalName: keyof typeof OBS_GOAL;
  engine: 'native' | 'js';
  cpuRatio: number;
  /** The same round by round: the median and spread of the per-round ratios (how far to trust cpuRatio). */
  cpuRounds: { ratio: number; spread: number; rounds: number };
  rpsRatio: number;
  p50Ratio: number;
  p50Diff: number;
}

const P = (p: BenchProtocol) => (p === 'bolt' ? 'Bolt' : 'Dubbo');

/** Each measured observability case of each protocol against its twin (metrics: the plain pair now against then). */
export function comparisons(
  protocols: BenchProtocol[],
  find: (p: BenchProtocol, t: ObsTarget | PlainTwin) => ObsRow | undefined,
): Comparison[] {
  const out: Comparison[] = [];
  for (const protocol of protocols) {
    for (const t of OBS_TARGETS) {
      const obs = find(protocol, t);
      const twin = find(protocol, OBS_CASES[t].twin);
      if (!obs || !twin || obs.cpuPerReqUs === null || twin.cpuPerReqUs === null) continue;
      const kind = OBS_CASES[t].kind;
      const engine = OBS_CASES[t].engine;
      // The baseline is the older build: the plain pair of today is what is measured against it.
      const [subject, against] = kind === 'baseline' ? [twin, obs] : [obs, twin];
      const label =
        kind === 'baseline'
          ? `metrics (always on), ${engine}`
          : kind === 'accesslog'
            ? `access log 1%, ${engine}`
            : `tracing every call, ${engine}`;
      const goalName = kind === 'baseline' ? 'metrics' : kind;
      out.push({
        protocol,
        label,
        subject,
        against,
        goal: OBS_GOAL[goalName],
        goalName,
        engine,
        cpuRatio: subject.cpuPerReqUs! / against.cpuPerReqUs!,
        cpuRounds: roundRatio(subject.cpuSamples, against.cpuSamples),
        rpsRatio: roundRatio(subject.rpsSamples, against.rpsSamples).ratio,
        p50Ratio: roundRatio(subject.p50ByRound, against.p50ByRound).ratio,
        p50Diff: subject.p50 - against.p50,
      });
    }
  }
  return out;
}

/** The section's tables: the costs against the goals, then what each router wrote. */
export function obsTables(list: Comparison[], written: Map<string, WrittenCount[]>): ReportSection[] {
  const headers = [
    'cost of',
    'case / against',
    'CPU us/req',
    'x',
    'x by round (spread)',
    'goal',
    'met',
    'req/s 8x16',
    'x',
    'p50 us 1x1',
    'x',
    '+ us',
  ];
  const align: Align[] = ['l', 'l', 'r', 'r', 'r', 'r', 'l', 'r', 'r', 'r', 'r', 'r'];
  const costs: ReportTable = {
    title:
      'CPU per request of both sidecars (8x16), req/s (8x16) and p50 (1x1) of each case against the case it differs from by one thing, same rounds:',
    headers,
    align,
    rows: list.map((c) => [
      `${P(c.protocol)}: ${c.label}`,
      `${c.subject.target} / ${c.against.target}`,
      `${fixed(c.subject.cpuPerReqUs!, 2)} / ${fixed(c.against.cpuPerReqUs!, 2)}`,
      `${fixed(c.cpuRatio, 3)}x`,
      `${fixed(c.cpuRounds.ratio, 3)}x (${percent(c.cpuRounds.spread)})`,
      `<= ${fixed(c.goal, 2)}x`,
      c.cpuRatio <= c.goal ? 'met' : 'MISSED',
      `${int(c.subject.rps)} / ${int(c.against.rps)}`,
      `${fixed(c.rpsRatio, 3)}x`,
      `${fixed(c.subject.p50, 1)} / ${fixed(c.against.p50, 1)}`,
      `${fixed(c.p50Ratio, 3)}x`,
      `${c.p50Diff >= 0 ? '+' : ''}${fixed(c.p50Diff, 1)}`,
    ]),
  };
  const rows = [...written].flatMap(([key, counts]) =>
    counts.map((w) => [
      key,
      w.role,
      int(w.requests),
      int(w.expected),
      int(w.written.items),
      w.dropped > 0 ? `${int(w.dropped)} (${percent(w.dropped / Math.max(1, w.expected))})` : '0',
      int(w.written.lines),
      w.written.items > 0 ? int(w.written.bytes / w.written.items) : '-',
      `${fixed(w.written.bytes / 1048576, 1)} MB`,
    ]),
  );
  const files: ReportTable = {
    title:
      "What each router wrote over the protocol's whole run (warm-ups included), checked against the calls its /stats counted " +
      '(access log: one line per 100 calls; tracing: one span per call; written + dropped off by more than 10% fails the run); dropped: by the ' +
      "native engine (8 MiB of batches waiting on JavaScript: the main thread behind) or the sidecar's writer (16 MiB queued: the disk behind), " +
      'each counted and logged where it happens:',
    headers: ['case', 'router', 'calls', 'expected', 'written', 'dropped', 'lines', 'bytes each', 'file'],
    align: ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    rows,
  };
  return rows.length > 0 ? [costs, files] : [costs];
}

/** The `--compare` figures: each cost as a ratio. */
export function obsMetrics(list: Comparison[]): Metric[] {
  return list.map((c) => ({
    name: `${P(c.protocol)}: ${c.subject.target} / ${c.against.target} CPU per request`,
    value: Math.round(c.cpuRatio * 1000) / 1000,
    unit: 'x',
    better: 'lower',
    spread: Math.round(c.cpuRounds.spread * 1000) / 1000,
    rounds: c.cpuRounds.rounds,
    peer: c.against.target,
  }));
}

/** The `--json` flags of a compared case: its cost and whether the goal was met. */
export function obsResultFigures(list: Comparison[], protocol: BenchProtocol, target: string) {
  const c = list.find(
    (x) =>
      x.protocol === protocol && (x.against.target === target ? x.goalName === 'metrics' : x.subject.target === target),
  );
  if (!c) return {};
  const key = c.goalName;
  return {
    [`${key}CpuRatio`]: Math.round(c.cpuRatio * 1000) / 1000,
    [`${key}GoalMet`]: c.cpuRatio <= c.goal,
  };
}

/** Whether each goal was met, judged on the native engine (the default one); the TypeScript engine's for reference. */
export function obsVerdict(list: Comparison[]): string {
  const native = list.filter((c) => c.engine === 'native');
  const missed = native.filter((c) => c.cpuRatio > c.goal);
  if (native.length === 0) return 'Goals (issue 19): not judged, no native case measured.';
  return (
    `Goals (issue 19), CPU per request judged on the native engine: ${missed.length === 0 ? `all ${native.length} met` : `${missed.length} of ${native.length} missed (${missed.map((c) => `${P(c.protocol)} ${c.label} ${fixed(c.cpuRatio, 3)}x`).join('; ')})`}; ` +
    "the TypeScript engine's for reference."
  );
}

/** A router of an access log or tracing case, and the file it writes. */
export interface ObsRouter {
  target: ObsTarget;
  role: string;
  admin: number;
  file: string;
  /** What its sink's writer dropped so far (runners/router-process, over IPC). */
  dropped(): Promise<number>;
}

/** Longer than a sink waits before handing over a batch (telemetry.ts: at most every 100 ms). */
const FLUSH_WAIT_MS = 350;

/** A file counted again until it stops growing: the writer may still have MBs queued for the disk. */
async function settled(file: string, kind: 'access' | 'span'): Promise<Written> {
  let last = countWritten(file, kind);
  for (let i = 0; i < 40; i++) {
    await new Promise((r) => setTimeout(r, 250));
    const now = countWritten(file, kind);
    if (now.bytes === last.bytes) return now;
    last = now;
  }
  return last;
}

/**
 * What each router wrote against what its /stats counted; throws when a case is broken. `soFar` (after the warm-up):
 * only that something was written, so a broken case stops the run in seconds rather than after it.
 */
export async function readWritten(
  protocol: BenchProtocol,
  routers: ObsRouter[],
  soFar: boolean,
): Promise<Map<string, WrittenCount[]>> {
  const out = new Map<string, WrittenCount[]>();
  if (routers.length === 0) return out;
  await new Promise((r) => setTimeout(r, FLUSH_WAIT_MS));
  const broken: string[] = [];
  for (const r of routers) {
    const kind = OBS_CASES[r.target].kind;
    if (kind === 'baseline') continue;
    const { requests } = await routerCounts(r.admin);
    let written: Written;
    try {
      written = soFar
        ? countWritten(r.file, kind === 'accesslog' ? 'access' : 'span')
        : await settled(r.file, kind === 'accesslog' ? 'access' : 'span');
    } catch (err) {
      written = { lines: 0, items: 0, bytes: 0, first: `(${(err as Error).message})` };
    }
    const dropped = await r.dropped();
    const why = soFar
      ? written.items === 0
        ? `nothing written after ${int(requests)} calls`
        : null
      : checkWritten(kind, requests, written, dropped);
    if (why) broken.push(`${r.target} ${r.role}: ${why}`);
    const key = `${P(protocol)}: ${r.target}`;
    out.set(key, [
      ...(out.get(key) ?? []),
      { role: r.role, requests, expected: expectedWritten(kind, requests), written, dropped },
    ]);
  }
  if (broken.length > 0)
    throw new Error(
      `forward: ${P(protocol)}: an observability case is broken (its figures would measure nothing): ${broken.join('; ')}`,
    );
  return out;
}
