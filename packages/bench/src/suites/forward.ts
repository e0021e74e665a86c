// Suite `forward`: requests through two proxy hops on loopback, meshport next to haproxy, each process on its own.
//
//   direct         load generator -> echo server
//   haproxy-2hop   load generator -> haproxy (hop1) -> haproxy (hop2) -> echo server      one haproxy, `mode tcp`
//   meshport-2hop  load generator -> Router outbound (consumer side) -> Router inbound (provider side) -> echo server
//
// Every piece is a process of its own: the load generator, the echo server, haproxy, and each of the two routers
// (runners/*.js). Each protocol (Bolt, Dubbo) gets fresh proxies, so peak RSS is per protocol. Two load shapes:
// throughput (8 connections x 16 in flight) and latency (1 connection x 1 in flight). Samples are taken round-robin
// across targets and shapes, so a drift of the machine touches every target alike.
//
// MESHPORT_BENCH_PROFILE=DIR also profiles both routers under the throughput load (node:inspector CPU profile, after
// the measurements, so the figures are not affected), writes DIR/forward-<protocol>-<consumer|provider>.cpuprofile
// and adds where the time goes to the report.

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type Started, request, startRunner, stopChild } from '../forward/children';
import { type Haproxy, haproxyVersion, startHaproxy } from '../forward/haproxy';
import { type CpuTimes, cpuDelta, cpuTimes, peakRssMB } from '../proc';
import { type ProfileSummary, profilesMarkdown, readProfile, summarizeProfile } from '../forward/profile';
import { type BenchProtocol, ROUTE_KEYS, requestTemplate } from '../forward/wire';
import { type Align, fixed, int, markdownTable, percent, textTable } from '../format';
import type { Job, Result } from '../runners/loadgen-process';
import { median, quantile, roundRatio, spread } from '../stats';
import type { Figure, Metric, ProcessUsage, ResultRow, Suite, SuiteOptions, SuiteReport } from '../suite';

const PROTOCOLS: BenchProtocol[] = ['bolt', 'dubbo'];
const TARGETS = ['direct', 'haproxy-2hop', 'meshport-2hop'] as const;
type Target = (typeof TARGETS)[number];

const SHAPES = {
  throughput: { connections: 8, depth: 16 },
  latency: { connections: 1, depth: 1 },
} as const;
type Shape = keyof typeof SHAPES;

/** Goals: meshport's throughput at least haproxy's; its added p50 latency no more than haproxy's. */
const GOAL_RPS_RATIO = 1.0;

/** Untimed load per sample, after the connections are up and before the window (less in quick mode). */
const SAMPLE_WARMUP_MS = 150;
const QUICK_SAMPLE_WARMUP_MS = 50;
/** Timed seconds per case and shape in quick mode: 2 protocols x 3 targets x 2 shapes x rounds samples add up. */
const QUICK_DURATION = 0.6;

interface Proc {
  role: string;
  pid: number;
}

interface Accumulated {
  rps: number[];
  completed: number;
  elapsedNs: number;
  errors: number;
  firstError: string | null;
  latencies: Float64Array[];
  /** CPU over the timed windows, per proxy process role. */
  cpu: Map<string, CpuTimes>;
  /** CPU of the load generator and echo server over the same windows. */
  benchCpu: CpuTimes;
}

function emptyAcc(): Accumulated {
  return { rps: [], completed: 0, elapsedNs: 0, errors: 0, firstError: null, latencies: [], cpu: new Map(), benchCpu: { user: 0, system: 0 } };
}

function addCpu(into: CpuTimes, d: CpuTimes): void {
  into.user += d.user;
  into.system += d.system;
}

function pooled(parts: Float64Array[]): Float64Array {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Float64Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out.sort();
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

interface Rig {
  echo: Started<{ ready: string; pid: number; port: number }>;
  loadgen: Started<{ ready: string; pid: number }>;
}

interface ProtocolTargets {
  haproxy: Haproxy;
  consumer: Started<RouterReady>;
  provider: Started<RouterReady>;
}

interface RouterReady {
  ready: string;
  pid: number;
  outbound: number | null;
  inbound: number | null;
  admin: number | null;
}

async function startRouters(echoPort: number): Promise<{ consumer: Started<RouterReady>; provider: Started<RouterReady> }> {
  const endpoint = { host: '127.0.0.1', port: echoPort };
  const provider = await startRunner<RouterReady>('router-process.js', {
    args: [JSON.stringify({ inbound: Object.fromEntries(Object.values(ROUTE_KEYS).map((k) => [k, endpoint])) })],
    readyVia: 'stdout',
  });
  try {
    const inbound = { host: '127.0.0.1', port: provider.ready.inbound! };
    const consumer = await startRunner<RouterReady>('router-process.js', {
      args: [JSON.stringify({ outbound: Object.fromEntries(Object.values(ROUTE_KEYS).map((k) => [k, { endpoints: [inbound] }])) })],
      readyVia: 'stdout',
    });
    return { consumer, provider };
  } catch (err) {
    await stopChild(provider.child);
    throw err;
  }
}

/** One load-generator job; CPU of `procs` (and of the rig) read at the window's edges. */
async function runJob(
  rig: Rig,
  job: Job,
  procs: Proc[],
): Promise<{ result: Result; cpu: Map<string, CpuTimes>; benchCpu: CpuTimes }> {
  const all = [...procs, { role: 'loadgen', pid: rig.loadgen.pid }, { role: 'echo', pid: rig.echo.pid }];
  let before = new Map<string, CpuTimes | null>();
  let after = new Map<string, CpuTimes | null>();
  const onMark = (msg: { mark?: string }) => {
    if (msg?.mark === 'start') before = new Map(all.map((p) => [p.role, cpuTimes(p.pid)]));
    else if (msg?.mark === 'end') after = new Map(all.map((p) => [p.role, cpuTimes(p.pid)]));
  };
  rig.loadgen.child.on('message', onMark);
  try {
    const result = await request<Result>(rig.loadgen.child, job, (m) => (m && 'result' in m ? (m.result as Result) : undefined));
    const cpu = new Map<string, CpuTimes>();
    for (const p of procs) cpu.set(p.role, cpuDelta(before.get(p.role) ?? null, after.get(p.role) ?? null));
    const benchCpu = { user: 0, system: 0 };
    addCpu(benchCpu, cpuDelta(before.get('loadgen') ?? null, after.get('loadgen') ?? null));
    addCpu(benchCpu, cpuDelta(before.get('echo') ?? null, after.get('echo') ?? null));
    return { result, cpu, benchCpu };
  } finally {
    rig.loadgen.child.off('message', onMark);
  }
}

interface TargetInfo {
  port: number;
  procs: Proc[];
}

function targetsOf(echoPort: number, t: ProtocolTargets): Record<Target, TargetInfo> {
  return {
    direct: { port: echoPort, procs: [] },
    'haproxy-2hop': { port: t.haproxy.port, procs: [{ role: 'haproxy', pid: t.haproxy.pid }] },
    'meshport-2hop': {
      port: t.consumer.ready.outbound!,
      procs: [
        { role: 'consumer', pid: t.consumer.pid },
        { role: 'provider', pid: t.provider.pid },
      ],
    },
  };
}

interface ProtocolRun {
  acc: Map<string, Accumulated>; // `${target}/${shape}`
  peakRss: Map<string, number | null>; // role -> MiB
  haproxyThreads: number | null;
  profiles: { role: string; file: string; summary: ProfileSummary }[];
  profiledRps?: number;
}

/** The commit measured, and whether the router or protocol sources differed from it (read-only git calls). */
function provenance(): string {
  const root = path.resolve(__dirname, '../../../../..');
  const git = (args: string[]) => execFileSync('git', ['--no-optional-locks', '-C', root, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    const head = git(['rev-parse', '--short', 'HEAD']);
    let dirty = false;
    try {
      git(['diff', '--quiet', 'HEAD', '--', 'packages/router/src', 'protocol/src']);
    } catch {
      dirty = true;
    }
    return `commit ${head}${dirty ? ' with uncommitted changes in packages/router/src or protocol/src' : ''}`;
  } catch {
    return 'commit unknown';
  }
}

function threadsOf(pid: number): number | null {
  try {
    const m = /^Threads:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Steps of one protocol's run, for the progress bar: warm-ups, then rounds x targets x shapes. */
function protocolSteps(options: SuiteOptions): number {
  return TARGETS.length * 2 * (1 + options.rounds);
}

async function runProtocol(
  rig: Rig,
  protocol: BenchProtocol,
  options: SuiteOptions,
  profileDir: string | undefined,
  step: () => void,
): Promise<ProtocolRun> {
  const log = (l: string) => options.log(`forward: ${protocol}: ${l}`);
  const sampleWarmupMs = options.quick ? QUICK_SAMPLE_WARMUP_MS : SAMPLE_WARMUP_MS;
  log('starting haproxy and two meshport routers');
  let haproxy: Haproxy | undefined;
  let routers: { consumer: Started<RouterReady>; provider: Started<RouterReady> } | undefined;
  try {
    haproxy = await startHaproxy(rig.echo.ready.port);
    routers = await startRouters(rig.echo.ready.port);
    const targets = targetsOf(rig.echo.ready.port, { haproxy, ...routers });
    const job = (target: Target, shape: Shape, seconds: number, warmupMs = sampleWarmupMs): Job => ({
      port: targets[target].port,
      protocol,
      ...SHAPES[shape],
      warmupMs,
      durationMs: Math.round(seconds * 1000),
    });

    // Warm-up: JIT of routers, load generator and echo server; haproxy's pools.
    const warmSeconds = Math.min(1.5, Math.max(options.quick ? 0.15 : 0.3, options.durationSeconds / 3));
    for (const target of TARGETS) {
      for (const shape of ['throughput', 'latency'] as Shape[]) {
        log(`warming up ${target} (${shape})`);
        const { result } = await runJob(rig, job(target, shape, shape === 'throughput' ? warmSeconds : warmSeconds / 3), targets[target].procs);
        if (result.errors > 0) throw new Error(`${protocol} ${target}: ${result.errors} wrong answers, first: ${result.firstError}`);
        step();
      }
    }

    const acc = new Map<string, Accumulated>();
    const per = options.durationSeconds / options.rounds;
    for (let r = 0; r < options.rounds; r++) {
      log(`round ${r + 1}/${options.rounds}`);
      // Rotate the order each round: no target always runs right after another one.
      const order = TARGETS.map((_, i) => TARGETS[(i + r) % TARGETS.length]);
      for (const target of order) {
        for (const shape of ['throughput', 'latency'] as Shape[]) {
          const key = `${target}/${shape}`;
          const a = acc.get(key) ?? emptyAcc();
          acc.set(key, a);
          const { result, cpu, benchCpu } = await runJob(rig, job(target, shape, per), targets[target].procs);
          a.rps.push((result.completed * 1e9) / result.elapsedNs);
          a.completed += result.completed;
          a.elapsedNs += result.elapsedNs;
          a.errors += result.errors;
          a.firstError ??= result.firstError;
          a.latencies.push(result.latenciesUs);
          for (const [role, d] of cpu) {
            const c = a.cpu.get(role) ?? { user: 0, system: 0 };
            addCpu(c, d);
            a.cpu.set(role, c);
          }
          addCpu(a.benchCpu, benchCpu);
          step();
        }
      }
    }

    const peakRss = new Map<string, number | null>([
      ['haproxy', peakRssMB(haproxy.pid)],
      ['consumer', peakRssMB(routers.consumer.pid)],
      ['provider', peakRssMB(routers.provider.pid)],
    ]);
    const haproxyThreads = threadsOf(haproxy.pid);

    const profiles: ProtocolRun['profiles'] = [];
    let profiledRps: number | undefined;
    if (profileDir) {
      mkdirSync(profileDir, { recursive: true });
      const seconds = Math.max(3, options.durationSeconds);
      log(`profiling both routers under the throughput load for ${seconds} s`);
      const both = [
        { role: 'consumer', child: routers.consumer.child },
        { role: 'provider', child: routers.provider.child },
      ];
      await Promise.all(both.map((b) => request(b.child, { profile: 'start' }, (m) => (m && m.profiling ? true : undefined))));
      const { result } = await runJob(rig, job('meshport-2hop', 'throughput', seconds), []);
      const files = await Promise.all(
        both.map((b) => {
          const file = path.join(profileDir, `forward-${protocol}-${b.role}.cpuprofile`);
          return request(b.child, { profile: 'stop', file }, (m) => (m && m.profiled ? (m.profiled as string) : undefined));
        }),
      );
      profiledRps = (result.completed * 1e9) / result.elapsedNs;
      log(`profiled run: ${int(profiledRps)} requests/s (profiler on); ${files.join(', ')}`);
      for (let i = 0; i < both.length; i++) profiles.push({ role: both[i].role, file: files[i], summary: summarizeProfile(readProfile(files[i]), 20) });
    }
    return { acc, peakRss, haproxyThreads, profiles, profiledRps };
  } finally {
    const stops: Promise<void>[] = [];
    if (haproxy) stops.push(haproxy.stop());
    if (routers) stops.push(stopChild(routers.consumer.child), stopChild(routers.provider.child));
    await Promise.all(stops);
  }
}

interface Row {
  protocol: BenchProtocol;
  target: Target;
  rps: number;
  rpsSpread: number;
  latRps: number;
  p50: number;
  p90: number;
  p99: number;
  loadP50: number;
  loadP99: number;
  cpu: CpuTimes | null;
  cpuPerReqUs: number | null;
  latencyCpuPerReqUs: number | null;
  rss: number | null;
  perProcess: Record<string, { cpuSeconds: number; peakRssMB: number | null }> | null;
  benchCpuPerReqUs: number;
  errors: number;
  firstError: string | null;
  rpsSamples: number[];
  /** 1x1 p50 of each round, in round order. */
  p50ByRound: number[];
}

function makeRow(protocol: BenchProtocol, target: Target, run: ProtocolRun, roles: string[]): Row {
  const tp = run.acc.get(`${target}/throughput`)!;
  const lat = run.acc.get(`${target}/latency`)!;
  const latSorted = pooled(lat.latencies);
  const loadSorted = pooled(tp.latencies);
  const rps = median(tp.rps);
  let cpu: CpuTimes | null = null;
  let latCpu = 0;
  let rss: number | null = null;
  let perProcess: Row['perProcess'] = null;
  if (roles.length > 0) {
    cpu = { user: 0, system: 0 };
    perProcess = {};
    rss = 0;
    for (const role of roles) {
      const c = tp.cpu.get(role) ?? { user: 0, system: 0 };
      addCpu(cpu, c);
      const lc = lat.cpu.get(role) ?? { user: 0, system: 0 };
      latCpu += lc.user + lc.system;
      const r = run.peakRss.get(role) ?? null;
      rss = rss === null || r === null ? null : rss + r;
      perProcess[role] = { cpuSeconds: round(c.user + c.system, 2), peakRssMB: r === null ? null : round(r, 1) };
    }
  }
  const cpuSeconds = cpu ? cpu.user + cpu.system : 0;
  return {
    protocol,
    target,
    rps,
    rpsSpread: (Math.max(...tp.rps) - Math.min(...tp.rps)) / rps,
    latRps: median(lat.rps),
    p50: quantile(latSorted, 0.5),
    p90: quantile(latSorted, 0.9),
    p99: quantile(latSorted, 0.99),
    loadP50: quantile(loadSorted, 0.5),
    loadP99: quantile(loadSorted, 0.99),
    cpu,
    cpuPerReqUs: cpu ? (cpuSeconds / tp.completed) * 1e6 : null,
    latencyCpuPerReqUs: cpu ? (latCpu / lat.completed) * 1e6 : null,
    rss,
    perProcess,
    benchCpuPerReqUs: ((tp.benchCpu.user + tp.benchCpu.system) / tp.completed) * 1e6,
    errors: tp.errors + lat.errors,
    firstError: tp.firstError ?? lat.firstError,
    rpsSamples: tp.rps,
    p50ByRound: lat.latencies.map((l) => quantile(Float64Array.from(l).sort(), 0.5)),
  };
}

async function run(given: SuiteOptions): Promise<SuiteReport> {
  const options = given.quick ? { ...given, durationSeconds: Math.min(given.durationSeconds, QUICK_DURATION) } : given;
  const log = (l: string) => options.log(`forward: ${l}`);
  const profileDir = process.env.MESHPORT_BENCH_PROFILE ? path.resolve(process.env.MESHPORT_BENCH_PROFILE) : undefined;
  const version = await haproxyVersion();
  const bodies = Object.fromEntries(PROTOCOLS.map((p) => [p, requestTemplate(p)])) as Record<BenchProtocol, { frame: Buffer; bodyBytes: number }>;

  log('starting the echo server and the load generator');
  let rig: Rig | undefined;
  const runs = new Map<BenchProtocol, ProtocolRun>();
  // An interrupted run still stops its children (by pid, in the exit hook of forward/children) and haproxy's dir.
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`forward: ${signal}, stopping\n`);
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const echo = await startRunner<{ ready: string; pid: number; port: number }>('echo-process.js', { readyVia: 'stdout' });
    rig = { echo, loadgen: undefined as never };
    rig.loadgen = await startRunner<{ ready: string; pid: number }>('loadgen-process.js', { readyVia: 'ipc', serialization: 'advanced' });
    let done = 0;
    const total = PROTOCOLS.length * protocolSteps(options);
    const step = () => options.progress(++done, total);
    for (const protocol of PROTOCOLS) runs.set(protocol, await runProtocol(rig, protocol, options, profileDir, step));
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (rig?.loadgen) await stopChild(rig.loadgen.child);
    if (rig?.echo) await stopChild(rig.echo.child);
  }

  const rows: Row[] = [];
  for (const protocol of PROTOCOLS) {
    const r = runs.get(protocol)!;
    rows.push(makeRow(protocol, 'direct', r, []));
    rows.push(makeRow(protocol, 'haproxy-2hop', r, ['haproxy']));
    rows.push(makeRow(protocol, 'meshport-2hop', r, ['consumer', 'provider']));
  }
  const bad = rows.filter((r) => r.errors > 0);
  if (bad.length > 0) {
    throw new Error(`forward: wrong answers: ${bad.map((r) => `${r.protocol}/${r.target}: ${r.errors} (${r.firstError})`).join('; ')}`);
  }
  const find = (p: BenchProtocol, t: Target) => rows.find((r) => r.protocol === p && r.target === t)!;

  interface Goal {
    protocol: BenchProtocol;
    rpsRatio: number;
    meshportAddedP50: number;
    haproxyAddedP50: number;
    p50Diff: number;
    cpuRatio: number;
  }
  const goals: Goal[] = PROTOCOLS.map((p) => {
    const d = find(p, 'direct');
    const h = find(p, 'haproxy-2hop');
    const m = find(p, 'meshport-2hop');
    return {
      protocol: p,
      rpsRatio: m.rps / h.rps,
      meshportAddedP50: m.p50 - d.p50,
      haproxyAddedP50: h.p50 - d.p50,
      p50Diff: m.p50 - h.p50,
      cpuRatio: m.cpuPerReqUs! / h.cpuPerReqUs!,
    };
  });

  const results: ResultRow[] = rows.map((r) => {
    const g = goals.find((x) => x.protocol === r.protocol)!;
    const extra: Record<string, Figure> =
      r.target === 'meshport-2hop'
        ? {
            rpsRatioVsHaproxy: round(g.rpsRatio, 3),
            rpsRatioGoal: GOAL_RPS_RATIO,
            rpsGoalMet: g.rpsRatio >= GOAL_RPS_RATIO,
            addedP50us: round(g.meshportAddedP50, 1),
            haproxyAddedP50us: round(g.haproxyAddedP50, 1),
            p50DiffVsHaproxyUs: round(g.p50Diff, 1),
            p50GoalMet: g.meshportAddedP50 <= g.haproxyAddedP50,
            cpuPerReqRatioVsHaproxy: round(g.cpuRatio, 2),
          }
        : {};
    return {
      name: `${r.protocol}/${r.target}`,
      target: r.target,
      protocol: r.protocol,
      bodyBytes: bodies[r.protocol].bodyBytes,
      frameBytes: bodies[r.protocol].frame.length,
      rps: Math.round(r.rps),
      rpsSpread: round(r.rpsSpread, 3),
      rpsSamples: r.rpsSamples.map((x) => Math.round(x)),
      p50us: round(r.p50, 1),
      p90us: round(r.p90, 1),
      p99us: round(r.p99, 1),
      latencyRps: Math.round(r.latRps),
      loadP50us: round(r.loadP50, 1),
      loadP99us: round(r.loadP99, 1),
      cpuSeconds: r.cpu ? round(r.cpu.user + r.cpu.system, 2) : null,
      cpuUserSeconds: r.cpu ? round(r.cpu.user, 2) : null,
      cpuSystemSeconds: r.cpu ? round(r.cpu.system, 2) : null,
      cpuUsPerRequest: r.cpuPerReqUs === null ? null : round(r.cpuPerReqUs, 2),
      latencyCpuUsPerRequest: r.latencyCpuPerReqUs === null ? null : round(r.latencyCpuPerReqUs, 2),
      peakRssMB: r.rss === null ? null : round(r.rss, 1),
      ...(r.perProcess
        ? (Object.fromEntries(
            Object.entries(r.perProcess).flatMap(([role, v]) => [
              [`${role}CpuSeconds`, v.cpuSeconds],
              [`${role}PeakRssMB`, v.peakRssMB],
            ]),
          ) as Record<string, Figure>)
        : {}),
      benchCpuUsPerRequest: round(r.benchCpuPerReqUs, 2),
      ...extra,
    };
  });

  const mb = (x: number | null) => (x === null ? 'n/a' : fixed(x, 1));
  const figureHeaders = ['case', 'req/s 8x16', 'spread', 'p50 us 1x1', 'p99 us 1x1', 'p50 us 8x16', 'proxy CPU s', 'CPU us/req', 'peak RSS MB'];
  const figureAlign: Align[] = ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'];
  const figureRows = rows.map((r) => [
    `${r.protocol === 'bolt' ? 'Bolt' : 'Dubbo'}: ${r.target}`,
    int(r.rps),
    percent(r.rpsSpread),
    fixed(r.p50, 1),
    fixed(r.p99, 1),
    fixed(r.loadP50, 0),
    r.cpu ? fixed(r.cpu.user + r.cpu.system, 2) : '-',
    r.cpuPerReqUs === null || r.cpu === null ? '-' : `${fixed(r.cpuPerReqUs, 1)} (usr ${fixed((r.cpuPerReqUs * r.cpu.user) / Math.max(1e-9, r.cpu.user + r.cpu.system), 1)})`,
    r.target === 'direct' ? '-' : r.target === 'meshport-2hop' ? `${mb(r.rss)} (${mb(r.perProcess!.consumer.peakRssMB)} + ${mb(r.perProcess!.provider.peakRssMB)})` : mb(r.rss),
  ]);
  const goalHeaders = ['goal', 'measured', 'target', 'met'];
  const goalAlign: Align[] = ['l', 'r', 'r', 'l'];
  const goalRows = goals.flatMap((g) => {
    const P = g.protocol === 'bolt' ? 'Bolt' : 'Dubbo';
    return [
      [`${P}: meshport-2hop / haproxy-2hop req/s (8x16)`, `${fixed(g.rpsRatio, 2)}x`, `>= ${fixed(GOAL_RPS_RATIO, 1)}x`, g.rpsRatio >= GOAL_RPS_RATIO ? 'yes' : 'NO'],
      [
        `${P}: p50 added to direct (1x1), meshport vs haproxy`,
        `${fixed(g.meshportAddedP50, 1)} us vs ${fixed(g.haproxyAddedP50, 1)} us (${g.p50Diff >= 0 ? '+' : ''}${fixed(g.p50Diff, 1)} us)`,
        '<= haproxy',
        g.meshportAddedP50 <= g.haproxyAddedP50 ? 'yes' : 'NO',
      ],
    ];
  });
  const cpuLine = goals
    .map((g) => `${g.protocol === 'bolt' ? 'Bolt' : 'Dubbo'} ${fixed(g.cpuRatio, 1)}x`)
    .join(', ');

  const anyRun = runs.get('bolt')!;
  const notes = [
    `Measured: meshport at ${provenance()}, default RouterOptions (as built by \`tsc --build\` just before).`,
    `Machine: ${os.cpus().length} logical CPUs shared by every process of the run: load generator, echo server, and the proxies ` +
      `(haproxy ${version}: one process, ${anyRun.haproxyThreads ?? '?'} threads, its default on this machine; meshport: two Node processes, one event loop each). ` +
      'Every process competes for those CPUs, so req/s follows the CPU each spends per request (CPU us/req; usr = its user-space part) ' +
      'and how the kernel schedules them; the spread between samples is wide on a small VM, the CPU per request much less so.',
    `Requests: Bolt v1 SofaRequest by sofa-bolt-node (${bodies.bolt.bodyBytes}-byte content, ${bodies.bolt.frame.length}-byte frame), ` +
      `Dubbo hessian2 request by dubbo-remoting (${bodies.dubbo.bodyBytes}-byte body, ${bodies.dubbo.frame.length}-byte frame); the echo server ` +
      '(runners/echo-process, FrameSplitter + decodeFrame) answers each with a success response of the same id carrying the request\'s body, ' +
      'one write per read; the load generator (runners/loadgen-process, a process of its own) checks every answer\'s id, status and length.',
    'Shapes: 8x16 = 8 connections with 16 requests in flight on each (a new one leaves when an answer comes back), req/s; 1x1 = one ' +
      'connection, one request at a time, p50/p99 over every request of the timed windows (hrtime from write to answer).',
    'haproxy-2hop: one haproxy, two `mode tcp` frontend/backend pairs chained on 127.0.0.1 (a connection per client connection on each hop). ' +
      'meshport-2hop: consumer-side Router (outbound listener) -> provider-side Router (inbound listener), each `runners/router-process` ' +
      'with default settings (pino at warn, prom-client stats, admin on); each multiplexes all callers onto one upstream connection with ids rewritten.',
    `req/s is the median of ${options.rounds} samples of ${fixed(options.durationSeconds / options.rounds, 2)} s per case and shape, taken ` +
      'round-robin across targets (order rotated each round) after a warm-up, each sample on fresh client connections after ' +
      `${options.quick ? QUICK_SAMPLE_WARMUP_MS : SAMPLE_WARMUP_MS} ms untimed; spread = (max - min) / median. Latency percentiles pool the samples of all rounds.`,
    'proxy CPU s: user + system seconds of the proxy processes (/proc/<pid>/stat) over the timed 8x16 windows ' +
      `(${fixed(options.durationSeconds, 1)} s in all); CPU us/req = that / answers in those windows. meshport's CPU per request is ${cpuLine} haproxy's. ` +
      'peak RSS: VmHWM of /proc/<pid>/status at the end of the protocol\'s run (meshport: consumer + provider).',
  ];

  const profileLines: string[] = [];
  for (const protocol of PROTOCOLS) {
    const run = runs.get(protocol)!;
    if (run.profiles.length === 0) continue;
    profileLines.push(
      '',
      ...profilesMarkdown(
        `Profile of both routers, ${protocol === 'bolt' ? 'Bolt' : 'Dubbo'} 8x16 (MESHPORT_BENCH_PROFILE; node:inspector, 100 us sampling, after the measurements; ` +
          `${int(run.profiledRps ?? 0)} req/s with the profilers on)`,
        run.profiles,
        10,
      ),
    );
  }

  const text = [
    textTable(figureHeaders, figureRows, figureAlign),
    '',
    textTable(goalHeaders, goalRows, goalAlign),
    '',
    ...notes.map((n) => `- ${n}`),
    ...profileLines,
  ].join('\n');
  const markdown = [
    markdownTable(figureHeaders, figureRows, figureAlign),
    '',
    markdownTable(goalHeaders, goalRows, goalAlign),
    '',
    ...notes.map((n) => `- ${n}`),
    ...profileLines,
  ].join('\n');
  const P = (p: BenchProtocol) => (p === 'bolt' ? 'Bolt' : 'Dubbo');
  const metrics: Metric[] = PROTOCOLS.flatMap((p) => {
    const d = find(p, 'direct');
    const h = find(p, 'haproxy-2hop');
    const m = find(p, 'meshport-2hop');
    const ratio = (name: string, a: number[], b: number[], peer: string, better: Metric['better']): Metric => {
      const r = roundRatio(a, b);
      return { name: `${P(p)}: ${name}`, value: round(r.ratio, 3), unit: 'x', better, spread: round(r.spread, 3), rounds: r.rounds, peer };
    };
    return [
      ratio('meshport-2hop / haproxy-2hop req/s (8x16)', m.rpsSamples, h.rpsSamples, 'haproxy-2hop', 'higher'),
      ratio('meshport-2hop / direct req/s (8x16)', m.rpsSamples, d.rpsSamples, 'direct', 'higher'),
      ratio('haproxy-2hop / direct req/s (8x16)', h.rpsSamples, d.rpsSamples, 'direct', 'higher'),
      ratio('meshport-2hop / haproxy-2hop p50 (1x1)', m.p50ByRound, h.p50ByRound, 'haproxy-2hop', 'lower'),
      {
        // Over all timed windows together: one figure, so it is compared with the single-round tolerance.
        name: `${P(p)}: meshport-2hop / haproxy-2hop CPU per request`,
        value: round(m.cpuPerReqUs! / h.cpuPerReqUs!, 3),
        unit: 'x',
        better: 'lower',
        spread: 0,
        rounds: 1,
        peer: 'haproxy-2hop',
      },
      { name: `${P(p)}: meshport-2hop req/s (8x16)`, value: Math.round(m.rps), unit: 'req/s', better: 'higher', spread: round(spread(m.rpsSamples), 3), rounds: m.rpsSamples.length },
      { name: `${P(p)}: meshport-2hop p50 (1x1)`, value: round(m.p50, 1), unit: 'us', better: 'lower', spread: round(spread(m.p50ByRound), 3), rounds: m.p50ByRound.length },
    ];
  });
  const roleName: Record<string, string> = { haproxy: 'haproxy (both hops)', consumer: 'meshport consumer router', provider: 'meshport provider router' };
  const processes: ProcessUsage[] = rows.flatMap((r) =>
    Object.entries(r.perProcess ?? {}).map(([role, v]) => ({ scope: `${P(r.protocol)}: ${r.target} (8x16 windows)`, process: roleName[role] ?? role, cpuSeconds: v.cpuSeconds, peakRssMB: v.peakRssMB })),
  );
  const label = (r: Row) => `${P(r.protocol)}: ${r.target}`;
  const charts = {
    bars: { title: 'Requests/s, 8 connections x 16 in flight (whisker: spread of the rounds)', unit: 'req/s', bars: rows.map((r) => ({ label: label(r), value: r.rps, spread: r.rpsSpread })) },
    lines: { title: 'Latency, 1 connection x 1 in flight', unit: 'us', x: ['p50', 'p90', 'p99'], series: rows.map((r) => ({ label: label(r), values: [r.p50, r.p90, r.p99] })) },
  };
  return { suite: 'forward', results, metrics, processes, charts, text, markdown };
}

export const forwardSuite: Suite = {
  name: 'forward',
  summary: 'two proxy hops on loopback: direct vs haproxy (tcp) vs meshport routers, Bolt and Dubbo, req/s, p50/p99, CPU, RSS',
  run,
};
