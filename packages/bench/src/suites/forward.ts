// Suite `forward`: requests through two proxy hops on loopback, meshport next to haproxy, each process on its own.
//
//   direct                 load generator -> echo server
//   haproxy-2hop           load generator -> haproxy (hop1) -> haproxy (hop2) -> echo server      one haproxy, `mode tcp`
//   meshport-2hop-native   load generator -> consumer-side router -> provider-side router -> echo server, both routers
//                          on the native engine (@meshport/engine's loop thread)
//   meshport-2hop-js       the same on the TypeScript engine (what `meshport-2hop` measured before the native engine)
//   meshport-2hop+sockmap  the native pair with the app <-> consumer-sidecar leg shortcut by sockops + sk_msg: a load
//                          generator and the consumer router of its own, both in a cgroup the suite makes (root only)
//   haproxy-2hop-tls       issue 18's peer: a second haproxy whose hops talk mutual TLS 1.3 to each other (the first
//                          originates it with the consumer's certificate, the second terminates it with the provider's)
//   meshport-2hop-mtls     the native pair talking mutual TLS 1.3 (RouterOptions.security on both routers, strict; the
//                          consumer's endpoint carries the provider's identity), certificates from one dev CA
//   meshport-2hop-mtls-js  the same on the TypeScript engine
//
// The TLS cases also get a third load: new connections per second with a full handshake, from a load generator of
// its own (runners/handshake-process) that connects with TLS and a client certificate straight to the second hop's
// TLS listener (the provider router's inbound one, haproxy's second frontend), makes one call and closes, over and
// over. An mTLS case whose engine does not speak TLS yet (no handshake counted on its /stats after a probe call) is
// left out of the run, with the reason in the report.
//
// Every piece is a process of its own: the load generator, the echo server, haproxy, and each router
// (runners/*.js). Each protocol (Bolt, Dubbo) gets fresh proxies, so peak RSS is per protocol. Two load shapes:
// throughput (8 connections x 16 in flight) and latency (1 connection x 1 in flight). Samples are taken round-robin
// across targets and shapes, so a drift of the machine touches every target alike.
//
// The native engine's goals (issue 15) are judged on meshport-2hop-native against haproxy-2hop of the same run; the
// mutual TLS goals (issue 18) on meshport-2hop-mtls against haproxy-2hop-tls. The mTLS figures also go to a section
// of docs/benchmarks.md of their own (`forward-mtls`), which `--update-docs --docs-section forward-mtls` rewrites alone.
//
// MESHPORT_BENCH_PROFILE=DIR also profiles both routers of meshport-2hop-js under the throughput load
// (node:inspector CPU profile, after the measurements, so the figures are not affected), writes
// DIR/forward-<protocol>-<consumer|provider>.cpuprofile and adds where the time goes to the report; issue 19's js cases
// likewise (DIR/forward-<protocol>-<case>-<role>.cpuprofile, in their section). The native
// engine's time is not in V8: MESHPORT_BENCH_PERF=DIR runs `perf` instead, after the measurements, over one more
// 8x16 window of haproxy-2hop and of each native case (CPU, system calls and context switches per request and per
// thread), and records the native pair's self time per shared object and symbol (DIR/forward-<protocol>.perf.data);
// for the TLS cases also one window of the handshake load, and the mTLS pair's recordings (forward-<protocol>-mtls*).
// MESHPORT_BENCH_FORWARD_SKIP=case,case leaves cases out of the run (not direct, haproxy-2hop, meshport-2hop-native).
//
// Issue 19's cases (forward/observability.ts): meshport-2hop-accesslog(-js) and meshport-2hop-tracing(-js), the plain
// pairs with access logs at 1% or tracing of every call written to files, and with `--baseline DIR` (a build of the
// commit before issue 19, scripts/baseline.sh) meshport-2hop-baseline(-js), the plain pairs on that build: the cost of
// the always-on per-service metrics. Their figures go to a section of their own (`observability`).

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type Started, request, startRunner, stopChild, trackTempDir } from '../forward/children';
import { type Haproxy, haproxyVersion, startHaproxy } from '../forward/haproxy';
import { type PerfResult, type ThreadCounts, perfUnavailable, startPerf } from '../forward/perf';
import { type CgroupJoin, SockmapCgroup, forwardCgroupLeftovers, sockmapUnavailable } from '../forward/sockmap';
import { type CpuTimes, cpuDelta, cpuTimes, peakRssMB } from '../proc';
import { type ProfileSummary, profilesMarkdown, readProfile, summarizeProfile } from '../forward/profile';
import {
  type BenchPki,
  PROVIDER_ID,
  type TlsCounters,
  haproxyMaterial,
  makeBenchPki,
  routerSecurity,
  tlsCounters,
} from '../forward/tls';
import { type BenchProtocol, ROUTE_KEYS, requestTemplate } from '../forward/wire';
import {
  OBS_CASES,
  OBS_SECTION,
  type ObsRouter,
  type ObsRouterSetup,
  type WrittenCount,
  comparisons,
  countWritten,
  isObs,
  obsMetrics,
  obsResultFigures,
  obsRouterSetup,
  obsTables,
  obsVerdict,
  readWritten,
  routerCounts,
} from '../forward/observability';
import { type Align, fixed, int, percent } from '../format';
import { renderReport, type ReportSection, type ReportTable } from '../render';
import type { HandshakeJob, HandshakeResult } from '../runners/handshake-process';
import type { Job, Result } from '../runners/loadgen-process';
import { median, quantile, roundRatio, spread } from '../stats';
import type {
  DocsPart,
  Figure,
  Metric,
  ProcessUsage,
  ResultRow,
  Suite,
  SuiteCharts,
  SuiteOptions,
  SuiteReport,
} from '../suite';

const PROTOCOLS: BenchProtocol[] = ['bolt', 'dubbo'];

type Engine = 'native' | 'js';
/**
 * The meshport cases: which engine both routers run, whether the app <-> consumer-sidecar leg is shortcut, and
 * whether the two routers talk mutual TLS.
 */
const MESH = {
  'meshport-2hop-native': { engine: 'native', sockmap: false, mtls: false },
  'meshport-2hop-js': { engine: 'js', sockmap: false, mtls: false },
  'meshport-2hop+sockmap': { engine: 'native', sockmap: true, mtls: false },
  'meshport-2hop-mtls': { engine: 'native', sockmap: false, mtls: true },
  'meshport-2hop-mtls-js': { engine: 'js', sockmap: false, mtls: true },
  // Issue 19's (forward/observability.ts's OBS_CASES): the plain pairs with one thing on, or of the older build.
  'meshport-2hop-accesslog': { engine: 'native', sockmap: false, mtls: false },
  'meshport-2hop-tracing': { engine: 'native', sockmap: false, mtls: false },
  'meshport-2hop-accesslog-js': { engine: 'js', sockmap: false, mtls: false },
  'meshport-2hop-tracing-js': { engine: 'js', sockmap: false, mtls: false },
  'meshport-2hop-baseline': { engine: 'native', sockmap: false, mtls: false },
  'meshport-2hop-baseline-js': { engine: 'js', sockmap: false, mtls: false },
} as const satisfies Record<string, { engine: Engine; sockmap: boolean; mtls: boolean }>;
type MeshTarget = keyof typeof MESH;
const ALL_TARGETS = [
  'direct',
  'haproxy-2hop',
  'meshport-2hop-native',
  'meshport-2hop-js',
  'meshport-2hop+sockmap',
  'haproxy-2hop-tls',
  'meshport-2hop-mtls',
  'meshport-2hop-mtls-js',
  'meshport-2hop-accesslog',
  'meshport-2hop-tracing',
  'meshport-2hop-accesslog-js',
  'meshport-2hop-tracing-js',
  'meshport-2hop-baseline',
  'meshport-2hop-baseline-js',
] as const;
type Target = (typeof ALL_TARGETS)[number];
const isMesh = (t: Target): t is MeshTarget => t in MESH;
/** The haproxy cases: plain TCP hops, and the peer of the mTLS cases. */
type Peer = 'haproxy-2hop' | 'haproxy-2hop-tls';
const isHaproxy = (t: Target): t is Peer => t === 'haproxy-2hop' || t === 'haproxy-2hop-tls';
const TLS_PEER: Peer = 'haproxy-2hop-tls';
/** Whether a case speaks TLS between its hops (and so gets the handshake load). */
const isTls = (t: Target): boolean => t === TLS_PEER || (isMesh(t) && MESH[t].mtls);
/** The haproxy case a meshport case is set against: the TLS one for the mTLS cases. */
const peerOf = (t: MeshTarget): Peer => (MESH[t].mtls ? TLS_PEER : 'haproxy-2hop');
/** A meshport mTLS case's plaintext twin (same engine), for the cost of TLS. */
const PLAIN_TWIN: Partial<Record<MeshTarget, MeshTarget>> = {
  'meshport-2hop-mtls': 'meshport-2hop-native',
  'meshport-2hop-mtls-js': 'meshport-2hop-js',
};
const twinOf = (t: Target): Target | undefined =>
  t === TLS_PEER ? 'haproxy-2hop' : isMesh(t) ? PLAIN_TWIN[t] : undefined;
/** The case the issue's goals are judged on. */
const GOAL_TARGET: MeshTarget = 'meshport-2hop-native';
/** The case the mutual TLS goals (issue 18) are judged on, against haproxy-2hop-tls. */
const MTLS_GOAL_TARGET: MeshTarget = 'meshport-2hop-mtls';
/** docs/benchmarks.md's section of the mTLS figures. */
const MTLS_SECTION = 'forward-mtls';
/** The case named `meshport-2hop` in results saved before the native engine (docs/bench/results.jsonl's history). */
const LEGACY_TARGET: MeshTarget = 'meshport-2hop-js';

/** The cases MESHPORT_BENCH_PROFILE profiles (the TypeScript engine's: its time is in V8). */
const PROFILED: MeshTarget[] = ['meshport-2hop-js', 'meshport-2hop-accesslog-js', 'meshport-2hop-tracing-js'];

const SHAPES = {
  throughput: { connections: 8, depth: 16 },
  latency: { connections: 1, depth: 1 },
} as const;
type Shape = keyof typeof SHAPES;

/** Goals of the native engine (issue 15), each against haproxy-2hop of the same run. */
const GOAL = {
  /** CPU per request of both sidecars together / haproxy's (both hops), at most. */
  cpuRatio: 1.0,
  /** req/s at 8x16 / haproxy's, at least. */
  rpsRatio: 1.0,
  /** Peak RSS of each sidecar under the load, at most (MiB). */
  rssMB: 60,
} as const;

/** Goals of mutual TLS (issue 18), meshport-2hop-mtls against haproxy-2hop-tls of the same run. */
const MTLS_GOAL = {
  /** CPU per request of both sidecars with mTLS / haproxy's with TLS (both hops), at most. */
  cpuRatio: 1.0,
  /** New connections with a full handshake per second / haproxy's, at least. */
  handshakeRatio: 1.0,
} as const;

/** The handshake load: connections in the making at once (each: TLS handshake, one call, close). */
const HANDSHAKE_CONCURRENCY = 8;

/** Untimed load per sample, after the connections are up and before the window (less in quick mode). */
const SAMPLE_WARMUP_MS = 150;
const QUICK_SAMPLE_WARMUP_MS = 50;
/** Timed seconds per case and shape in quick mode: 2 protocols x 5 targets x 2 shapes x rounds samples add up. */
const QUICK_DURATION = 0.6;

const SIDECARS = ['consumer', 'provider'] as const;
type Sidecar = (typeof SIDECARS)[number];

interface Proc {
  role: string;
  pid: number;
}

interface Accumulated {
  rps: number[];
  /** CPU us per answer of each sample, all proxy processes together (0 for direct). */
  cpuPerReq: number[];
  completed: number;
  elapsedNs: number;
  errors: number;
  firstError: string | null;
  latencies: Float64Array[];
  /** CPU over the timed windows, per proxy process role. */
  cpu: Map<string, CpuTimes>;
  /** CPU of the load generator and echo server over the same windows. */
  benchCpu: CpuTimes;
  /** sk_msg counters over the timed windows (the sockmap case). */
  redirected: number;
  misses: number;
}

function emptyAcc(): Accumulated {
  return {
    rps: [],
    cpuPerReq: [],
    completed: 0,
    elapsedNs: 0,
    errors: 0,
    firstError: null,
    latencies: [],
    cpu: new Map(),
    benchCpu: { user: 0, system: 0 },
    redirected: 0,
    misses: 0,
  };
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

type Loadgen = Started<{ ready: string; pid: number }>;

interface Rig {
  echo: Started<{ ready: string; pid: number; port: number }>;
  loadgen: Loadgen;
  /** The sockmap case: its cgroup, and the load generator in it. */
  sockmap?: { cgroup: SockmapCgroup; loadgen: Loadgen };
  /** The TLS cases: their certificates, and the handshake load generator. */
  tls?: { pki: BenchPki; handshaker: Loadgen };
  /** Issue 19's cases: where their routers write, and the baseline build (`--baseline`). */
  obs: { dir: string; baseline: string | undefined };
}

interface RouterReady {
  ready: string;
  pid: number;
  engine?: string;
  outbound: number | null;
  inbound: number | null;
  admin: number | null;
}

interface Pair {
  consumer: Started<RouterReady>;
  provider: Started<RouterReady>;
}

async function startRouter(
  routes: object,
  engine: Engine,
  join?: CgroupJoin,
  options: object = {},
  obs?: ObsRouterSetup,
): Promise<Started<RouterReady>> {
  const r = await startRunner<RouterReady>('router-process.js', {
    args: [
      JSON.stringify({
        ...routes,
        ...(obs?.telemetryFiles ? { telemetryFiles: obs.telemetryFiles } : {}),
        options: { ...options, ...obs?.options, engine },
      }),
    ],
    readyVia: 'stdout',
    ...(join ? { execArgv: join.execArgv, env: join.env } : {}),
    ...(obs?.env ? { env: obs.env } : {}),
  });
  if (r.ready.engine !== engine) {
    await stopChild(r.child);
    throw new Error(
      `forward: asked a router for the ${engine} engine and got ${r.ready.engine ?? 'an unnamed one'} (its warning above says why; ` +
        'scripts/bootstrap.sh builds packages/engine, MESHPORT_ENGINE_ADDON points at another build)',
    );
  }
  return r;
}

/**
 * A provider-side router in front of the echo server and a consumer-side one in front of it (in `join`'s cgroup).
 * With `pki`, the two talk mutual TLS: each has its RouterSecurity (strict, a policy that lets the consumer in), and
 * the consumer's endpoint carries the provider's identity, as the provider's published URL would.
 */
async function startPair(
  echoPort: number,
  engine: Engine,
  join?: CgroupJoin,
  pki?: BenchPki,
  obs?: (role: Sidecar) => ObsRouterSetup,
): Promise<Pair> {
  const endpoint = { host: '127.0.0.1', port: echoPort };
  const services = Object.values(ROUTE_KEYS);
  const provider = await startRouter(
    { inbound: Object.fromEntries(services.map((k) => [k, endpoint])) },
    engine,
    undefined,
    pki ? { security: routerSecurity(pki, pki.provider, services) } : {},
    obs?.('provider'),
  );
  try {
    const inbound = { host: '127.0.0.1', port: provider.ready.inbound!, ...(pki ? { identity: PROVIDER_ID } : {}) };
    const consumer = await startRouter(
      { outbound: Object.fromEntries(services.map((k) => [k, { endpoints: [inbound] }])) },
      engine,
      join,
      pki ? { security: routerSecurity(pki, pki.consumer, services) } : {},
      obs?.('consumer'),
    );
    return { consumer, provider };
  } catch (err) {
    await stopChild(provider.child);
    throw err;
  }
}

interface TargetInfo {
  port: number;
  procs: Proc[];
  loadgen: Loadgen;
  /** A TLS case: its second hop's TLS listener and the process behind it, for the handshake load. */
  handshake?: { port: number; procs: Proc[] };
}

interface JobOutcome<R extends Result = Result> {
  result: R;
  cpu: Map<string, CpuTimes>;
  benchCpu: CpuTimes;
  redirected: number;
  misses: number;
}

/** One load-generator job; CPU of the target's proxies and of the rig (and sk_msg counters) read at the window's edges. */
async function runJob<R extends Result = Result>(
  rig: Rig,
  target: TargetInfo,
  job: Job | HandshakeJob,
  sockmap?: SockmapCgroup,
): Promise<JobOutcome<R>> {
  const loadgen = target.loadgen;
  const all = [...target.procs, { role: 'loadgen', pid: loadgen.pid }, { role: 'echo', pid: rig.echo.pid }];
  const read = () => ({
    cpu: new Map(all.map((p) => [p.role, cpuTimes(p.pid)])),
    bpf: sockmap?.stats(),
  });
  let before: ReturnType<typeof read> | undefined;
  let after: ReturnType<typeof read> | undefined;
  const onMark = (msg: { mark?: string }) => {
    if (msg?.mark === 'start') before = read();
    else if (msg?.mark === 'end') after = read();
  };
  loadgen.child.on('message', onMark);
  try {
    const result = await request<R>(loadgen.child, job, (m) => (m && 'result' in m ? (m.result as R) : undefined));
    const cpuOf = (role: string) => cpuDelta(before?.cpu.get(role) ?? null, after?.cpu.get(role) ?? null);
    const cpu = new Map<string, CpuTimes>(target.procs.map((p) => [p.role, cpuOf(p.role)]));
    const benchCpu = { user: 0, system: 0 };
    addCpu(benchCpu, cpuOf('loadgen'));
    addCpu(benchCpu, cpuOf('echo'));
    const redirected = before?.bpf && after?.bpf ? after.bpf.redirectedMessages - before.bpf.redirectedMessages : 0;
    const misses = before?.bpf && after?.bpf ? after.bpf.redirectMisses - before.bpf.redirectMisses : 0;
    return { result, cpu, benchCpu, redirected, misses };
  } finally {
    loadgen.child.off('message', onMark);
  }
}

function targetsOf(
  rig: Rig,
  haproxy: Haproxy,
  tlsHaproxy: Haproxy | undefined,
  pairs: Map<MeshTarget, Pair>,
): Map<Target, TargetInfo> {
  const out = new Map<Target, TargetInfo>([
    ['direct', { port: rig.echo.ready.port, procs: [], loadgen: rig.loadgen }],
    ['haproxy-2hop', { port: haproxy.port, procs: [{ role: 'haproxy', pid: haproxy.pid }], loadgen: rig.loadgen }],
  ]);
  if (tlsHaproxy) {
    const procs = [{ role: 'haproxy', pid: tlsHaproxy.pid }];
    out.set(TLS_PEER, {
      port: tlsHaproxy.port,
      procs,
      loadgen: rig.loadgen,
      handshake: { port: tlsHaproxy.hop2Port, procs },
    });
  }
  for (const [t, pair] of pairs) {
    const provider = { role: 'provider', pid: pair.provider.pid };
    out.set(t, {
      port: pair.consumer.ready.outbound!,
      procs: [{ role: 'consumer', pid: pair.consumer.pid }, provider],
      loadgen: MESH[t].sockmap ? rig.sockmap!.loadgen : rig.loadgen,
      ...(MESH[t].mtls ? { handshake: { port: pair.provider.ready.inbound!, procs: [provider] } } : {}),
    });
  }
  return out;
}

interface ProtocolRun {
  acc: Map<string, Accumulated>; // `${target}/${shape}`
  peakRss: Map<string, number | null>; // `${target}/${role}` -> MiB
  haproxyThreads: number | null;
  /** Threads of a native router (its loop thread among them). */
  nativeThreads: number | null;
  profiles: { target: MeshTarget; role: string; file: string; summary: ProfileSummary }[];
  /** Req/s of each profiled case's window (profilers on). */
  profiledRps: Map<MeshTarget, number>;
  /** MESHPORT_BENCH_PERF: one 8x16 window per case under perf. */
  perf: PerfCase[];
  /** The TLS cases' handshake load: what it negotiated (from its last connection), and any session resumed. */
  handshakes: Map<Target, { protocolVersion: string | null; cipher: string | null; resumed: number }>;
  /** Each mTLS case's routers' TLS counters on /stats at the end of the run (or why they could not be read). */
  tlsStats: Map<MeshTarget, { consumer: TlsCounters; provider: TlsCounters } | string>;
  /** Issue 19's access log and tracing cases: what each router wrote (`Bolt: <case>` -> per router). */
  written: Map<string, WrittenCount[]>;
  /** Whether a plain or baseline case's consumer router has the per-service families on /stats. */
  perService: Map<MeshTarget, boolean>;
}

interface PerfCase {
  target: Target;
  /** `handshake`: the TLS cases' handshake load against their second hop (procs: the process behind it). */
  shape: Shape | 'handshake';
  answers: number;
  seconds: number;
  procs: Proc[];
  result: PerfResult;
}

/** The commit measured, and whether the engine, router or protocol sources differed from it (read-only git calls). */
function provenance(): string {
  const root = path.resolve(__dirname, '../../../../..');
  const git = (args: string[]) =>
    execFileSync('git', ['--no-optional-locks', '-C', root, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  try {
    const head = git(['rev-parse', '--short', 'HEAD']);
    let dirty = false;
    try {
      git([
        'diff',
        '--quiet',
        'HEAD',
        '--',
        'packages/engine/native',
        'packages/engine/src',
        'packages/router/src',
        'protocol/src',
      ]);
    } catch {
      dirty = true;
    }
    return `commit ${head}${dirty ? ' with uncommitted changes in packages/engine, packages/router/src or protocol/src' : ''}`;
  } catch {
    return 'commit unknown';
  }
}

/** Where the native routers loaded the engine addon from, and when it was built. */
function addonProvenance(): string {
  const given = process.env.MESHPORT_ENGINE_ADDON;
  // dist/src/suites -> packages/engine/build/Release, where @meshport/engine loads it from by default.
  const file = given || path.resolve(__dirname, '../../../../engine/build/Release/meshport_engine.node');
  let built = 'build time unknown';
  try {
    built = `built ${statSync(file)
      .mtime.toISOString()
      .replace(/\.\d+Z$/, 'Z')}`;
  } catch {
    // not there: the routers would have said so, and the run stopped
  }
  return given
    ? `the addon at MESHPORT_ENGINE_ADDON=${given} (${built})`
    : `packages/engine/build/Release/meshport_engine.node (${built})`;
}

function threadsOf(pid: number): number | null {
  try {
    const m = /^Threads:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Steps of one protocol's run, for the progress bar: warm-ups, then rounds x targets x shapes (+ handshakes). */
function protocolSteps(targets: readonly Target[], options: SuiteOptions): number {
  return (targets.length * 2 + targets.filter(isTls).length) * (1 + options.rounds);
}

/** Adds one sample's outcome to a case's accumulated figures. */
function accumulate(a: Accumulated, o: JobOutcome<Result>): void {
  a.rps.push((o.result.completed * 1e9) / o.result.elapsedNs);
  let cpu = 0;
  for (const d of o.cpu.values()) cpu += d.user + d.system;
  a.cpuPerReq.push((cpu / Math.max(1, o.result.completed)) * 1e6);
  a.completed += o.result.completed;
  a.elapsedNs += o.result.elapsedNs;
  a.errors += o.result.errors;
  a.firstError ??= o.result.firstError;
  a.latencies.push(o.result.latenciesUs);
  for (const [role, d] of o.cpu) {
    const c = a.cpu.get(role) ?? { user: 0, system: 0 };
    addCpu(c, d);
    a.cpu.set(role, c);
  }
  addCpu(a.benchCpu, o.benchCpu);
  a.redirected += o.redirected;
  a.misses += o.misses;
}

async function runProtocol(
  rig: Rig,
  protocol: BenchProtocol,
  targetList: readonly Target[],
  options: SuiteOptions,
  profileDir: string | undefined,
  perfDir: string | undefined,
  step: () => void,
): Promise<ProtocolRun> {
  const log = (l: string) => options.log(`forward: ${protocol}: ${l}`);
  const sampleWarmupMs = options.quick ? QUICK_SAMPLE_WARMUP_MS : SAMPLE_WARMUP_MS;
  const meshTargets = targetList.filter(isMesh);
  const withTls = targetList.includes(TLS_PEER);
  log(`starting haproxy${withTls ? ' (twice: TCP, TLS)' : ''} and ${meshTargets.length * 2} meshport routers`);
  let haproxy: Haproxy | undefined;
  let tlsHaproxy: Haproxy | undefined;
  const pairs = new Map<MeshTarget, Pair>();
  let obsRouters: ObsRouter[] = [];
  try {
    haproxy = await startHaproxy(rig.echo.ready.port);
    if (withTls) tlsHaproxy = await startHaproxy(rig.echo.ready.port, haproxyMaterial(rig.tls!.pki));
    for (const t of meshTargets)
      pairs.set(
        t,
        await startPair(
          rig.echo.ready.port,
          MESH[t].engine,
          MESH[t].sockmap ? rig.sockmap!.cgroup.join() : undefined,
          MESH[t].mtls ? rig.tls!.pki : undefined,
          isObs(t) ? (role) => obsRouterSetup(t, protocol, role, rig.obs.dir, rig.obs.baseline) : undefined,
        ),
      );
    const targets = targetsOf(rig, haproxy, tlsHaproxy, pairs);
    obsRouters = [...pairs].flatMap(([t, pair]) => {
      if (!isObs(t) || OBS_CASES[t].kind === 'baseline') return [];
      return SIDECARS.map((role) => {
        const files = obsRouterSetup(t, protocol, role, rig.obs.dir, rig.obs.baseline).telemetryFiles!;
        const child = pair[role].child;
        return {
          target: t,
          role,
          admin: pair[role].ready.admin!,
          file: (files.access ?? files.span)!,
          dropped: () =>
            request(child, { telemetry: 'dropped' }, (m) => (typeof m?.dropped === 'number' ? m.dropped : undefined)),
        };
      });
    });
    const job = (target: Target, shape: Shape, seconds: number, warmupMs = sampleWarmupMs): Job => ({
      port: targets.get(target)!.port,
      protocol,
      ...SHAPES[shape],
      warmupMs,
      durationMs: Math.round(seconds * 1000),
    });
    const sockmapOf = (target: Target) => (isMesh(target) && MESH[target].sockmap ? rig.sockmap?.cgroup : undefined);
    const handshakes: ProtocolRun['handshakes'] = new Map();
    /** One window of the handshake load against a TLS case's second hop (CPU: the process behind that listener). */
    const handshakeJob = async (target: Target, seconds: number, warmupMs = sampleWarmupMs) => {
      const hs = targets.get(target)!.handshake!;
      const { pki, handshaker } = rig.tls!;
      const o = await runJob<HandshakeResult>(
        rig,
        { port: hs.port, procs: hs.procs, loadgen: handshaker },
        {
          handshake: true,
          port: hs.port,
          protocol,
          concurrency: HANDSHAKE_CONCURRENCY,
          warmupMs,
          durationMs: Math.round(seconds * 1000),
          cert: pki.consumer.certPem,
          key: pki.consumer.keyPem,
          ca: pki.pki.caPem,
          identity: PROVIDER_ID,
        },
      );
      const seen = handshakes.get(target);
      handshakes.set(target, {
        protocolVersion: o.result.protocolVersion ?? seen?.protocolVersion ?? null,
        cipher: o.result.cipher ?? seen?.cipher ?? null,
        resumed: (seen?.resumed ?? 0) + o.result.resumed,
      });
      return o;
    };

    // Warm-up: JIT of routers, load generator and echo server; haproxy's pools.
    const warmSeconds = Math.min(1.5, Math.max(options.quick ? 0.15 : 0.3, options.durationSeconds / 3));
    for (const target of targetList) {
      for (const shape of ['throughput', 'latency'] as Shape[]) {
        log(`warming up ${target} (${shape})`);
        const { result } = await runJob(
          rig,
          targets.get(target)!,
          job(target, shape, shape === 'throughput' ? warmSeconds : warmSeconds / 3),
        );
        if (result.errors > 0)
          throw new Error(`${protocol} ${target}: ${result.errors} wrong answers, first: ${result.firstError}`);
        step();
      }
      if (isTls(target)) {
        log(`warming up ${target} (handshakes)`);
        const { result } = await handshakeJob(target, warmSeconds / 3);
        if (result.errors > 0)
          throw new Error(
            `${protocol} ${target}: ${result.errors} failed handshake connections, first: ${result.firstError}`,
          );
        step();
      }
    }
    // Issue 19's cases: something written already, else the run stops here rather than after measuring nothing.
    await readWritten(protocol, obsRouters, true);

    const acc = new Map<string, Accumulated>();
    const per = options.durationSeconds / options.rounds;
    for (let r = 0; r < options.rounds; r++) {
      log(`round ${r + 1}/${options.rounds}`);
      // Rotate the order each round: no target always runs right after another one.
      const order = targetList.map((_, i) => targetList[(i + r) % targetList.length]);
      for (const target of order) {
        for (const shape of ['throughput', 'latency'] as Shape[]) {
          const key = `${target}/${shape}`;
          const a = acc.get(key) ?? emptyAcc();
          acc.set(key, a);
          accumulate(a, await runJob(rig, targets.get(target)!, job(target, shape, per), sockmapOf(target)));
          step();
        }
        if (isTls(target)) {
          const key = `${target}/handshake`;
          const a = acc.get(key) ?? emptyAcc();
          acc.set(key, a);
          accumulate(a, await handshakeJob(target, per));
          step();
        }
      }
    }

    const tlsStats: ProtocolRun['tlsStats'] = new Map();
    for (const [t, pair] of pairs) {
      if (!MESH[t].mtls) continue;
      try {
        tlsStats.set(t, {
          consumer: await tlsCounters(pair.consumer.ready.admin!),
          provider: await tlsCounters(pair.provider.ready.admin!),
        });
      } catch (err) {
        tlsStats.set(t, (err as Error).message);
      }
    }
    const peakRss = new Map<string, number | null>([['haproxy-2hop/haproxy', peakRssMB(haproxy.pid)]]);
    if (tlsHaproxy) peakRss.set(`${TLS_PEER}/haproxy`, peakRssMB(tlsHaproxy.pid));
    for (const [t, pair] of pairs) {
      peakRss.set(`${t}/consumer`, peakRssMB(pair.consumer.pid));
      peakRss.set(`${t}/provider`, peakRssMB(pair.provider.pid));
    }
    const haproxyThreads = threadsOf(haproxy.pid);
    const nativePair = pairs.get(GOAL_TARGET);
    const nativeThreads = nativePair ? threadsOf(nativePair.consumer.pid) : null;

    const profiles: ProtocolRun['profiles'] = [];
    const profiledRps: ProtocolRun['profiledRps'] = new Map();
    // meshport-2hop-js, and issue 19's js cases: where their access log and span writing goes.
    for (const [profiled, jsPair] of [...pairs].filter(([t]) => PROFILED.includes(t))) {
      if (!profileDir) break;
      mkdirSync(profileDir, { recursive: true });
      const seconds = Math.max(3, options.durationSeconds);
      log(`profiling both routers of ${profiled} under the throughput load for ${seconds} s`);
      const both = [
        { role: 'consumer', child: jsPair.consumer.child },
        { role: 'provider', child: jsPair.provider.child },
      ];
      await Promise.all(
        both.map((b) => request(b.child, { profile: 'start' }, (m) => (m?.profiling ? true : undefined))),
      );
      const { result } = await runJob(
        rig,
        { ...targets.get(profiled)!, procs: [] },
        job(profiled, 'throughput', seconds),
      );
      const files = await Promise.all(
        both.map((b) => {
          const name = profiled === 'meshport-2hop-js' ? b.role : `${profiled}-${b.role}`;
          const file = path.join(profileDir, `forward-${protocol}-${name}.cpuprofile`);
          return request(b.child, { profile: 'stop', file }, (m) => (m?.profiled ? (m.profiled as string) : undefined));
        }),
      );
      const rps = (result.completed * 1e9) / result.elapsedNs;
      profiledRps.set(profiled, rps);
      log(`profiled run: ${int(rps)} requests/s (profiler on); ${files.join(', ')}`);
      for (let i = 0; i < both.length; i++)
        profiles.push({
          target: profiled,
          role: both[i].role,
          file: files[i],
          summary: summarizeProfile(readProfile(files[i]), 20),
        });
    }
    const perf: PerfCase[] = [];
    if (perfDir) {
      mkdirSync(perfDir, { recursive: true });
      const seconds = Math.max(3, options.durationSeconds);
      for (const t of targetList.filter((x) => isHaproxy(x) || (isMesh(x) && MESH[x].engine === 'native'))) {
        for (const shape of ['throughput', 'latency'] as Shape[]) {
          const info = targets.get(t)!;
          const name = t === GOAL_TARGET ? '' : t === MTLS_GOAL_TARGET ? '-mtls' : isObs(t) ? `-${t}` : undefined;
          const file =
            name !== undefined && shape === 'throughput'
              ? path.join(perfDir, `forward-${protocol}${name}.perf.data`)
              : undefined;
          log(`perf on ${t} (${shape}) for ${seconds} s`);
          const window = await startPerf(
            info.procs.map((p) => p.pid),
            file,
          );
          // No untimed warm-up: the answers counted are those of the whole window perf saw (but the last in flight).
          const { result } = await runJob(rig, { ...info, procs: [] }, job(t, shape, seconds, 0));
          perf.push({
            target: t,
            shape,
            answers: result.completed,
            seconds: result.elapsedNs / 1e9,
            procs: info.procs,
            result: await window.stop(),
          });
        }
        if (isTls(t)) {
          const hs = targets.get(t)!.handshake!;
          const file =
            t === MTLS_GOAL_TARGET ? path.join(perfDir, `forward-${protocol}-mtls-handshake.perf.data`) : undefined;
          log(`perf on ${t} (handshakes) for ${seconds} s`);
          const window = await startPerf(
            hs.procs.map((p) => p.pid),
            file,
          );
          const { result } = await handshakeJob(t, seconds, 0);
          perf.push({
            target: t,
            shape: 'handshake',
            answers: result.completed,
            seconds: result.elapsedNs / 1e9,
            procs: hs.procs,
            result: await window.stop(),
          });
        }
      }
    }
    const written = await readWritten(protocol, obsRouters, false);
    const perService: ProtocolRun['perService'] = new Map();
    for (const [t, pair] of pairs)
      if (t === GOAL_TARGET || t === 'meshport-2hop-js' || (isObs(t) && OBS_CASES[t].kind === 'baseline'))
        perService.set(t, (await routerCounts(pair.consumer.ready.admin!)).perService);
    return {
      acc,
      peakRss,
      haproxyThreads,
      nativeThreads,
      profiles,
      profiledRps,
      perf,
      handshakes,
      tlsStats,
      written,
      perService,
    };
  } finally {
    const stops: Promise<void>[] = [];
    if (haproxy) stops.push(haproxy.stop());
    if (tlsHaproxy) stops.push(tlsHaproxy.stop());
    for (const pair of pairs.values()) stops.push(stopChild(pair.consumer.child), stopChild(pair.provider.child));
    await Promise.all(stops);
    // Tracing every call writes hundreds of MB per protocol: counted above, not kept.
    for (const r of obsRouters) rmSync(r.file, { force: true });
  }
}

/** One proxy process of a case: what it cost per request of the 8x16 windows. */
interface ProcFigures {
  role: string;
  cpuSeconds: number;
  cpuPerReqUs: number;
  userPerReqUs: number;
  peakRssMB: number | null;
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
  /** Sum over the case's proxy processes. */
  rss: number | null;
  procs: ProcFigures[];
  benchCpuPerReqUs: number;
  redirectedPerReq: number;
  redirectMisses: number;
  errors: number;
  firstError: string | null;
  rpsSamples: number[];
  /** CPU us per request of each 8x16 sample, in round order. */
  cpuSamples: number[];
  /** 1x1 p50 of each round, in round order. */
  p50ByRound: number[];
  /** A TLS case's handshake load; null for the others. */
  hs: HandshakeFigures | null;
}

/** New connections with a full TLS handshake (and one call each) against a TLS case's second hop. */
interface HandshakeFigures {
  /** Median of the samples, connections per second. */
  rate: number;
  samples: number[];
  spread: number;
  completed: number;
  /** connect() to the call's answer, per connection. */
  p50: number;
  p99: number;
  /** CPU of the process behind the second hop's listener (provider router; haproxy) per connection. */
  serverCpuPerHsUs: number;
  serverUserPerHsUs: number;
  /** CPU of the handshake load generator and the echo server per connection. */
  benchCpuPerHsUs: number;
}

function rolesOf(target: Target): string[] {
  return target === 'direct' ? [] : isHaproxy(target) ? ['haproxy'] : [...SIDECARS];
}

function handshakeFigures(a: Accumulated | undefined): HandshakeFigures | null {
  if (!a || a.rps.length === 0) return null;
  const lat = pooled(a.latencies);
  let server = { user: 0, system: 0 };
  for (const c of a.cpu.values()) server = { user: server.user + c.user, system: server.system + c.system };
  const n = Math.max(1, a.completed);
  const rate = median(a.rps);
  return {
    rate,
    samples: a.rps,
    spread: (Math.max(...a.rps) - Math.min(...a.rps)) / rate,
    completed: a.completed,
    p50: quantile(lat, 0.5),
    p99: quantile(lat, 0.99),
    serverCpuPerHsUs: ((server.user + server.system) / n) * 1e6,
    serverUserPerHsUs: (server.user / n) * 1e6,
    benchCpuPerHsUs: ((a.benchCpu.user + a.benchCpu.system) / n) * 1e6,
  };
}

function makeRow(protocol: BenchProtocol, target: Target, run: ProtocolRun): Row {
  const tp = run.acc.get(`${target}/throughput`)!;
  const lat = run.acc.get(`${target}/latency`)!;
  const latSorted = pooled(lat.latencies);
  const loadSorted = pooled(tp.latencies);
  const rps = median(tp.rps);
  const roles = rolesOf(target);
  let cpu: CpuTimes | null = null;
  let latCpu = 0;
  let rss: number | null = null;
  const procs: ProcFigures[] = [];
  if (roles.length > 0) {
    cpu = { user: 0, system: 0 };
    rss = 0;
    for (const role of roles) {
      const c = tp.cpu.get(role) ?? { user: 0, system: 0 };
      addCpu(cpu, c);
      const lc = lat.cpu.get(role) ?? { user: 0, system: 0 };
      latCpu += lc.user + lc.system;
      const r = run.peakRss.get(`${target}/${role}`) ?? null;
      rss = rss === null || r === null ? null : rss + r;
      procs.push({
        role,
        cpuSeconds: c.user + c.system,
        cpuPerReqUs: ((c.user + c.system) / tp.completed) * 1e6,
        userPerReqUs: (c.user / tp.completed) * 1e6,
        peakRssMB: r,
      });
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
    procs,
    benchCpuPerReqUs: ((tp.benchCpu.user + tp.benchCpu.system) / tp.completed) * 1e6,
    redirectedPerReq: (tp.redirected + lat.redirected) / (tp.completed + lat.completed),
    redirectMisses: tp.misses + lat.misses,
    errors: tp.errors + lat.errors + (run.acc.get(`${target}/handshake`)?.errors ?? 0),
    firstError: tp.firstError ?? lat.firstError ?? run.acc.get(`${target}/handshake`)?.firstError ?? null,
    rpsSamples: tp.rps,
    cpuSamples: tp.cpuPerReq,
    p50ByRound: lat.latencies.map((l) => quantile(Float64Array.from(l).sort(), 0.5)),
    hs: handshakeFigures(run.acc.get(`${target}/handshake`)),
  };
}

/** A meshport case against its haproxy peer (haproxy-2hop; haproxy-2hop-tls for mTLS) and direct of the same run. */
interface Versus {
  protocol: BenchProtocol;
  target: MeshTarget;
  peer: Peer;
  /** Median of the per-round ratios of req/s at 8x16. */
  rpsRatio: number;
  /** CPU per request over all 8x16 windows / haproxy-2hop's. */
  cpuRatio: number;
  addedP50: number;
  haproxyAddedP50: number;
  p50Diff: number;
  rss: Record<Sidecar, number | null>;
  /** The mTLS cases: handshakes per second / the peer's (median of per-round ratios), and CPU per handshake / its. */
  hsRatio: number | null;
  hsCpuRatio: number | null;
}

function versus(m: Row, h: Row, d: Row): Versus {
  const rssOf = (role: Sidecar) => m.procs.find((p) => p.role === role)?.peakRssMB ?? null;
  const hs = m.hs && h.hs ? m.hs : null;
  return {
    protocol: m.protocol,
    target: m.target as MeshTarget,
    peer: h.target as Peer,
    hsRatio: hs && h.hs ? roundRatio(hs.samples, h.hs.samples).ratio : null,
    hsCpuRatio: hs && h.hs ? hs.serverCpuPerHsUs / h.hs.serverCpuPerHsUs : null,
    // Round by round (the median of per-round ratios), as the ratio metrics: a slow spell touches both alike.
    rpsRatio: roundRatio(m.rpsSamples, h.rpsSamples).ratio,
    cpuRatio: m.cpuPerReqUs! / h.cpuPerReqUs!,
    addedP50: m.p50 - d.p50,
    haproxyAddedP50: h.p50 - d.p50,
    p50Diff: m.p50 - h.p50,
    rss: { consumer: rssOf('consumer'), provider: rssOf('provider') },
  };
}

const P = (p: BenchProtocol) => (p === 'bolt' ? 'Bolt' : 'Dubbo');

/** One goal of the native engine: how a case measures on it, whether that meets it, and by how much. */
interface GoalCheck {
  label: string;
  target: string;
  measure(v: Versus): { text: string; met: boolean | null; by: string };
}

const GOALS: GoalCheck[] = [
  {
    label: 'CPU per request, both sidecars / haproxy-2hop (8x16)',
    target: `<= ${fixed(GOAL.cpuRatio, 1)}x`,
    measure: (v) => ({
      text: `${fixed(v.cpuRatio, 2)}x`,
      met: v.cpuRatio <= GOAL.cpuRatio,
      by:
        v.cpuRatio <= GOAL.cpuRatio
          ? `${percent(1 - v.cpuRatio / GOAL.cpuRatio)} under`
          : `${percent(v.cpuRatio / GOAL.cpuRatio - 1)} over`,
    }),
  },
  {
    label: 'req/s / haproxy-2hop (8x16)',
    target: `>= ${fixed(GOAL.rpsRatio, 1)}x`,
    measure: (v) => ({
      text: `${fixed(v.rpsRatio, 2)}x`,
      met: v.rpsRatio >= GOAL.rpsRatio,
      by:
        v.rpsRatio >= GOAL.rpsRatio
          ? `${percent(v.rpsRatio / GOAL.rpsRatio - 1)} over`
          : `${percent(1 - v.rpsRatio / GOAL.rpsRatio)} under`,
    }),
  },
  {
    label: "p50 added to direct (1x1) vs haproxy-2hop's",
    target: '<= haproxy',
    measure: (v) => ({
      text: `${fixed(v.addedP50, 1)} vs ${fixed(v.haproxyAddedP50, 1)} us`,
      met: v.addedP50 <= v.haproxyAddedP50,
      by: `${fixed(Math.abs(v.p50Diff), 1)} us ${v.p50Diff <= 0 ? 'under' : 'over'}`,
    }),
  },
  ...SIDECARS.map(
    (role): GoalCheck => ({
      label: `peak RSS, ${role} sidecar`,
      target: `<= ${GOAL.rssMB} MB`,
      measure: (v) => {
        const r = v.rss[role];
        if (r === null) return { text: 'n/a', met: null, by: '-' };
        return {
          text: `${fixed(r, 1)} MB`,
          met: r <= GOAL.rssMB,
          by: `${fixed(Math.abs(r - GOAL.rssMB), 1)} MB ${r <= GOAL.rssMB ? 'under' : 'over'}`,
        };
      },
    }),
  ),
];

const yesNo = (met: boolean | null) => (met === null ? 'n/a' : met ? 'met' : 'MISSED');

/** Saved metric names from before the engines were split: `meshport-2hop` was the TypeScript engine. */
function renamedMetric(name: string): string {
  return name.replace(/\bmeshport-2hop(?= )/g, LEGACY_TARGET);
}

interface ThreadGroup {
  name: string;
  t: ThreadCounts;
}

function sumThreads(name: string, pid: number, ts: ThreadCounts[]): ThreadGroup {
  const t: ThreadCounts = { pid, tid: -1, cpuMs: 0, syscalls: 0, contextSwitches: 0 };
  for (const x of ts) {
    t.cpuMs += x.cpuMs;
    t.syscalls += x.syscalls;
    t.contextSwitches += x.contextSwitches;
  }
  return { name, t };
}

/** A Node process's threads as the report groups them: its main (JS) thread, its busiest other one, the rest. */
function threadGroups(pid: number, threads: ThreadCounts[]): ThreadGroup[] {
  const own = threads.filter((t) => t.pid === pid);
  const sum = (name: string, ts: ThreadCounts[]) => sumThreads(name, pid, ts);
  const main = own.filter((t) => t.tid === pid);
  const others = own.filter((t) => t.tid !== pid).sort((a, b) => b.cpuMs - a.cpuMs);
  return [
    sum('main thread (JS)', main),
    ...(others.length > 0 ? [sum('busiest other thread (the engine loop)', others.slice(0, 1))] : []),
    ...(others.length > 1 ? [sum(`the other ${others.length - 1} threads`, others.slice(1))] : []),
  ];
}

function perfTables(protocol: BenchProtocol, all: PerfCase[]): ReportTable[] {
  const per = (x: number, c: PerfCase) => x / Math.max(1, c.answers);
  const threadRows = (cases: PerfCase[]) =>
    cases.flatMap((c) =>
      c.procs.flatMap((proc) => {
        const own = c.result.threads.filter((t) => t.pid === proc.pid);
        // haproxy's threads are alike (each runs the same loop): one line for all of them.
        const groups = isHaproxy(c.target)
          ? [sumThreads(`all ${own.length} threads`, proc.pid, own)]
          : threadGroups(proc.pid, c.result.threads);
        return groups.map((g) => [
          c.target,
          proc.role,
          g.name,
          fixed(per(g.t.cpuMs * 1000, c), 2),
          fixed(per(g.t.syscalls, c), 2),
          fixed(per(g.t.contextSwitches, c), 3),
        ]);
      }),
    );
  const cases = all.filter((c) => c.shape === 'throughput');
  if (cases.length === 0) return [];
  const headers = ['case', 'process', 'thread', 'CPU us/req', 'syscalls/req', 'switches/req'];
  const align: Align[] = ['l', 'l', 'l', 'r', 'r', 'r'];
  const out: ReportTable[] = [
    {
      title:
        `Where the time goes, ${P(protocol)} 8x16, per answer (MESHPORT_BENCH_PERF: \`perf stat --per-thread\` over one more ${fixed(cases[0].seconds, 1)} s window ` +
        'per case and shape after the measurements; CPU = task-clock, syscalls = raw_syscalls:sys_enter, switches = context-switches; a thread that did not run is left out):',
      headers,
      rows: threadRows(cases),
      align,
    },
  ];
  const latency = all.filter((c) => c.shape === 'latency');
  if (latency.length > 0) {
    out.push({
      title: `The same at 1x1, ${P(protocol)} (one request at a time: every hop sleeps between requests and is woken for each):`,
      headers,
      rows: threadRows(latency),
      align,
    });
  }
  const handshakes = all.filter((c) => c.shape === 'handshake');
  if (handshakes.length > 0) {
    out.push({
      title:
        `Under the handshake load, ${P(protocol)}, per connection (a full TLS 1.3 handshake with client certificate, one call, ` +
        `close; ${fixed(handshakes[0].seconds, 1)} s under \`perf stat --per-thread\`; the process behind the second hop's TLS listener):`,
      headers: ['case', 'process', 'thread', 'CPU us/conn', 'syscalls/conn', 'switches/conn'],
      rows: threadRows(handshakes),
      align,
    });
  }
  // The recorded windows: the goal case at 8x16 (both routers), the mTLS one, its provider under the handshake load.
  for (const rec of [...cases, ...handshakes].filter((c) => c.result.byDso.length > 0)) {
    const top = rec.result.bySymbol.slice(0, 20);
    const what =
      rec.shape === 'handshake'
        ? `the provider router of ${rec.target} under the handshake load, ${P(protocol)}`
        : `both routers of ${rec.target}, ${P(protocol)} 8x16`;
    out.push({
      title:
        `Self time of ${what}, by shared object and by symbol (\`perf record -F 1999\`, no call graphs; ` +
        `${rec.result.samples || 'samples'}; shares of all samples of ${rec.procs.length === 1 ? 'the process' : 'the two processes'}, idle not sampled; symbols over 0.5%. Without a PMU in ` +
        'this VM perf samples on a timer, so kernel time spent with interrupts off is charged where they are enabled again: ' +
        'finish_task_switch and _raw_spin_unlock_irqrestore stand for the scheduler and wake-ups around them):',
      headers: ['shared object / symbol', 'self'],
      rows: [
        ...rec.result.byDso.map((d) => [`${d.name} (all of it)`, percent(d.share)]),
        ...top.map((d) => [d.name, percent(d.share)]),
      ],
      align: ['l', 'r'],
    });
  }
  return out;
}

/** A case's perf counts for its results row: per answer, over all its processes and threads. */
function perfFigures(c: PerfCase | undefined): Record<string, Figure> {
  if (!c) return {};
  const per = (x: number) => round(x / Math.max(1, c.answers), 3);
  const total = (k: 'cpuMs' | 'syscalls' | 'contextSwitches') => c.result.threads.reduce((a, t) => a + t[k], 0);
  const out: Record<string, Figure> = {
    perfCpuUsPerRequest: per(total('cpuMs') * 1000),
    perfSyscallsPerRequest: per(total('syscalls')),
    perfContextSwitchesPerRequest: per(total('contextSwitches')),
  };
  if (!isHaproxy(c.target)) {
    for (const proc of c.procs) {
      const g = threadGroups(proc.pid, c.result.threads);
      out[`${proc.role}MainThreadCpuUsPerRequest`] = per(g[0].t.cpuMs * 1000);
      if (g[1]) out[`${proc.role}LoopThreadCpuUsPerRequest`] = per(g[1].t.cpuMs * 1000);
      out[`${proc.role}SyscallsPerRequest`] = per(g.reduce((a, x) => a + x.t.syscalls, 0));
    }
  }
  if (c.result.byDso.length > 0)
    out.perfSelfByDso = c.result.byDso.map((d) => `${d.name} ${percent(d.share)}`).join('; ');
  return out;
}

/** A case's perf counts at 1x1 for its results row: per answer, all its processes. */
function perfLatencyFigures(c: PerfCase | undefined): Record<string, Figure> {
  if (!c) return {};
  const per = (x: number) => round(x / Math.max(1, c.answers), 3);
  const total = (k: 'cpuMs' | 'syscalls' | 'contextSwitches') => c.result.threads.reduce((a, t) => a + t[k], 0);
  return {
    perfLatencyCpuUsPerRequest: per(total('cpuMs') * 1000),
    perfLatencySyscallsPerRequest: per(total('syscalls')),
    perfLatencyContextSwitchesPerRequest: per(total('contextSwitches')),
  };
}

/** A TLS case's perf counts under the handshake load for its results row: per connection. */
function perfHandshakeFigures(c: PerfCase | undefined): Record<string, Figure> {
  if (!c) return {};
  const per = (x: number) => round(x / Math.max(1, c.answers), 3);
  const total = (k: 'cpuMs' | 'syscalls' | 'contextSwitches') => c.result.threads.reduce((a, t) => a + t[k], 0);
  const out: Record<string, Figure> = {
    perfCpuUsPerHandshake: per(total('cpuMs') * 1000),
    perfSyscallsPerHandshake: per(total('syscalls')),
  };
  if (c.result.byDso.length > 0)
    out.perfHandshakeSelfByDso = c.result.byDso.map((d) => `${d.name} ${percent(d.share)}`).join('; ');
  return out;
}

/** What a run is set to do, decided before anything starts: the settings, the peers found here, the cases. */
interface ForwardPlan {
  options: SuiteOptions;
  log: (line: string) => void;
  profileDir: string | undefined;
  perfDir: string | undefined;
  haproxyVersion: string;
  bodies: Record<BenchProtocol, { frame: Buffer; bodyBytes: number }>;
  /** Why the sockmap case cannot run here; null when it can. */
  noSockmap: string | null;
  /** The TLS cases left out of this run, and why (no openssl; an engine that does not speak mTLS yet). */
  leftOut: Map<Target, string>;
  targets: Target[];
}

async function planRun(given: SuiteOptions): Promise<ForwardPlan> {
  const options = given.quick ? { ...given, durationSeconds: Math.min(given.durationSeconds, QUICK_DURATION) } : given;
  const log = (l: string) => options.log(`forward: ${l}`);
  const profileDir = process.env.MESHPORT_BENCH_PROFILE ? path.resolve(process.env.MESHPORT_BENCH_PROFILE) : undefined;
  let perfDir = process.env.MESHPORT_BENCH_PERF ? path.resolve(process.env.MESHPORT_BENCH_PERF) : undefined;
  const noPerf = perfDir ? perfUnavailable() : null;
  if (noPerf) {
    log(`MESHPORT_BENCH_PERF: ${noPerf}; going on without it`);
    perfDir = undefined;
  }
  const version = await haproxyVersion();
  const bodies = Object.fromEntries(PROTOCOLS.map((p) => [p, requestTemplate(p)])) as ForwardPlan['bodies'];
  // Cases a run may skip (e.g. to record one part of the page in less time); the issue-15 goal case and its peers stay.
  const skip = new Set((process.env.MESHPORT_BENCH_FORWARD_SKIP ?? '').split(',').filter((x) => x.length > 0));
  const unknown = [...skip].filter(
    (x) => !(ALL_TARGETS as readonly string[]).includes(x) || REQUIRED.includes(x as Target),
  );
  if (unknown.length > 0)
    throw new Error(
      `MESHPORT_BENCH_FORWARD_SKIP: cannot skip ${unknown.join(', ')}; cases that can be: ${ALL_TARGETS.filter((t) => !REQUIRED.includes(t)).join(', ')}`,
    );
  const leftOut = new Map<Target, string>();
  for (const t of skip) leftOut.set(t as Target, 'skipped (MESHPORT_BENCH_FORWARD_SKIP)');
  const noSockmap = skip.has('meshport-2hop+sockmap') ? 'skipped (MESHPORT_BENCH_FORWARD_SKIP)' : sockmapUnavailable();
  if (noSockmap) log(`meshport-2hop+sockmap left out: ${noSockmap}`);
  // Issue 19's baseline cases run on the build `--baseline` names (scripts/baseline.sh makes one).
  const noBaseline = (t: Target) => isObs(t) && OBS_CASES[t].kind === 'baseline' && !options.baseline;
  for (const t of ALL_TARGETS.filter((x) => noBaseline(x) && !skip.has(x)))
    leftOut.set(
      t,
      'needs `--baseline DIR`, a build of the commit before issue 19 (packages/bench/scripts/baseline.sh)',
    );
  const targets: Target[] = ALL_TARGETS.filter(
    (t) => !skip.has(t) && !noBaseline(t) && (t !== 'meshport-2hop+sockmap' || noSockmap === null),
  );
  return { options, log, profileDir, perfDir, haproxyVersion: version, bodies, noSockmap, leftOut, targets };
}

/** The cases every run measures: the issue-15 goals are judged on them. */
const REQUIRED: Target[] = ['direct', 'haproxy-2hop', GOAL_TARGET];

/**
 * Whether an mTLS case can be measured: its pair carries a few calls, both routers' /stats count a TLS handshake
 * (an engine that ignores RouterOptions.security would carry them in plaintext), and a TLS client with the consumer's
 * certificate gets an answer from the provider router. Null when it can, else why not.
 */
async function probeMtls(rig: Rig, t: MeshTarget): Promise<string | null> {
  let pair: Pair | undefined;
  try {
    pair = await startPair(rig.echo.ready.port, MESH[t].engine, undefined, rig.tls!.pki);
    const port = pair.consumer.ready.outbound!;
    const calls = await runJob(
      rig,
      { port, procs: [], loadgen: rig.loadgen },
      { port, protocol: 'bolt', connections: 1, depth: 1, warmupMs: 0, durationMs: 100 },
    );
    if (calls.result.errors > 0 || calls.result.completed === 0)
      return `calls through its routers failed: ${calls.result.firstError ?? 'no answer within 100 ms'}`;
    const c = await tlsCounters(pair.consumer.ready.admin!);
    const p = await tlsCounters(pair.provider.ready.admin!);
    if (c.outbound === 0 || p.inbound === 0)
      return (
        `the ${MESH[t].engine} engine carried the calls without a TLS handshake (its /stats: consumer outbound ${c.outbound}, ` +
        `provider inbound ${p.inbound}${p.failures + c.failures > 0 ? `, failures ${JSON.stringify({ ...c.failureReasons, ...p.failureReasons })}` : ''}): ` +
        'RouterOptions.security not implemented there yet?'
      );
    const hsPort = pair.provider.ready.inbound!;
    const { pki, handshaker } = rig.tls!;
    const hs = await runJob<HandshakeResult>(
      rig,
      { port: hsPort, procs: [], loadgen: handshaker },
      {
        handshake: true,
        port: hsPort,
        protocol: 'bolt',
        concurrency: 1,
        warmupMs: 0,
        durationMs: 100,
        cert: pki.consumer.certPem,
        key: pki.consumer.keyPem,
        ca: pki.pki.caPem,
        identity: PROVIDER_ID,
      },
    );
    if (hs.result.errors > 0 || hs.result.completed === 0)
      return `a TLS client with the consumer's certificate got no answer from its provider router: ${hs.result.firstError ?? 'none within 100 ms'}`;
    return null;
  } catch (err) {
    return (err as Error).message.split('\n')[0];
  } finally {
    if (pair) await Promise.all([stopChild(pair.consumer.child), stopChild(pair.provider.child)]);
  }
}

/**
 * Whether an engine writes access log lines and spans at all: a pair with both on for every call carries a few calls,
 * and both routers' files must have something. Null when it does, else why not. An engine that passes and then writes
 * nothing, or far from its sampling, during the run fails the run (forward/observability's readWritten).
 */
async function probeTelemetry(rig: Rig, engine: Engine): Promise<string | null> {
  let pair: Pair | undefined;
  const files = (role: Sidecar) => ({
    access: path.join(rig.obs.dir, `probe-${engine}-${role}.access.jsonl`),
    span: path.join(rig.obs.dir, `probe-${engine}-${role}.span.jsonl`),
  });
  try {
    pair = await startPair(rig.echo.ready.port, engine, undefined, undefined, (role) => ({
      options: { telemetry: { accessLog: { everyN: 1, errors: true, slowMs: 0 }, tracing: { everyN: 1 } } },
      telemetryFiles: files(role),
    }));
    const port = pair.consumer.ready.outbound!;
    const calls = await runJob(
      rig,
      { port, procs: [], loadgen: rig.loadgen },
      { port, protocol: 'bolt', connections: 1, depth: 1, warmupMs: 0, durationMs: 100 },
    );
    if (calls.result.errors > 0 || calls.result.completed === 0)
      return `calls through its routers failed: ${calls.result.firstError ?? 'no answer within 100 ms'}`;
    await new Promise((r) => setTimeout(r, 350));
    const silent = SIDECARS.flatMap((role) =>
      (['access', 'span'] as const).flatMap((kind) => {
        try {
          return countWritten(files(role)[kind], kind).items > 0 ? [] : [`${role} ${kind}`];
        } catch {
          return [`${role} ${kind}`];
        }
      }),
    );
    return silent.length === 0
      ? null
      : `the ${engine} engine wrote nothing with access logs and tracing on for every call (${silent.join(', ')} empty after ${int(calls.result.completed)} calls): RouterOptions.telemetry not implemented there yet?`;
  } catch (err) {
    return (err as Error).message.split('\n')[0];
  } finally {
    if (pair) await Promise.all([stopChild(pair.consumer.child), stopChild(pair.provider.child)]);
    for (const role of SIDECARS) for (const f of Object.values(files(role))) rmSync(f, { force: true });
  }
}

/** Which engines write telemetry here; drops the access log and tracing cases of one that does not (with why). */
async function prepareTelemetry(plan: ForwardPlan, rig: Rig): Promise<void> {
  const writing = plan.targets.filter((t) => isObs(t) && OBS_CASES[t].kind !== 'baseline');
  for (const engine of new Set(writing.map((t) => MESH[t as MeshTarget].engine))) {
    plan.log(`checking that the ${engine} engine writes access logs and spans`);
    const why = await probeTelemetry(rig, engine);
    if (!why) continue;
    for (const t of writing.filter((x) => MESH[x as MeshTarget].engine === engine)) {
      plan.leftOut.set(t, why);
      plan.targets = plan.targets.filter((x) => x !== t);
      plan.log(`${t} left out: ${why}`);
    }
  }
}

/** The TLS cases' certificates and handshake load generator, and which mTLS cases work here; drops the others. */
async function prepareTls(plan: ForwardPlan, rig: Rig): Promise<void> {
  const drop = (t: Target, why: string) => {
    plan.leftOut.set(t, why);
    plan.targets = plan.targets.filter((x) => x !== t);
    plan.log(`${t} left out: ${why}`);
  };
  if (!plan.targets.includes(TLS_PEER))
    for (const t of plan.targets.filter(isTls)) drop(t, `its peer ${TLS_PEER} is not measured in this run`);
  const tlsTargets = plan.targets.filter(isTls);
  if (tlsTargets.length === 0) return;
  let pki: BenchPki;
  try {
    pki = makeBenchPki();
  } catch (err) {
    const why = `no test certificates (makeTestPki: ${(err as Error).message.split('\n')[0]})`;
    for (const t of tlsTargets) drop(t, why);
    return;
  }
  // Removed at the end of the run, or by forward/children's exit hook on an error or a signal.
  const tracked = trackTempDir(pki.pki.dir);
  rig.tls = {
    pki: {
      ...pki,
      cleanup: () => {
        pki.cleanup();
        tracked.release();
      },
    },
    handshaker: undefined as never,
  };
  rig.tls.handshaker = await startRunner<{ ready: string; pid: number }>('handshake-process.js', {
    readyVia: 'ipc',
    serialization: 'advanced',
  });
  for (const t of tlsTargets.filter(isMesh)) {
    plan.log(`checking that ${t} speaks mutual TLS`);
    const why = await probeMtls(rig, t);
    if (why) drop(t, why);
  }
}

/** Starts the rig (echo server, load generators, the sockmap cgroup), runs every protocol, and stops it all again. */
async function measureProtocols(plan: ForwardPlan): Promise<Map<BenchProtocol, ProtocolRun>> {
  const { options, log } = plan;
  log('starting the echo server and the load generator');
  let rig: Rig | undefined;
  const runs = new Map<BenchProtocol, ProtocolRun>();
  let obsTracked: { release(): void } | undefined;
  // An interrupted run still stops its children (by pid, in the exit hook of forward/children), haproxy's dir, and
  // the sockmap cgroup (its own exit hook, which runs after the children's).
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`forward: ${signal}, stopping\n`);
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const echo = await startRunner<{ ready: string; pid: number; port: number }>('echo-process.js', {
      readyVia: 'stdout',
    });
    // Issue 19's cases write their files here (each protocol's removed at its end, the dir at the run's).
    const obsDir = mkdtempSync(path.join(os.tmpdir(), 'meshport-bench-telemetry-'));
    obsTracked = trackTempDir(obsDir);
    rig = { echo, loadgen: undefined as never, obs: { dir: obsDir, baseline: options.baseline } };
    rig.loadgen = await startRunner<{ ready: string; pid: number }>('loadgen-process.js', {
      readyVia: 'ipc',
      serialization: 'advanced',
    });
    await prepareTls(plan, rig);
    await prepareTelemetry(plan, rig);
    if (plan.noSockmap === null) {
      log("making the sockmap case's cgroup (sockops + sk_msg attached) and its load generator");
      const cgroup = SockmapCgroup.create();
      rig.sockmap = { cgroup, loadgen: undefined as never };
      rig.sockmap.loadgen = await startRunner<{ ready: string; pid: number }>('loadgen-process.js', {
        readyVia: 'ipc',
        serialization: 'advanced',
        ...cgroup.join(),
      });
    }
    let done = 0;
    const total = PROTOCOLS.length * protocolSteps(plan.targets, options);
    const step = () => options.progress(++done, total);
    for (const protocol of PROTOCOLS)
      runs.set(protocol, await runProtocol(rig, protocol, plan.targets, options, plan.profileDir, plan.perfDir, step));
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (rig?.sockmap?.loadgen) await stopChild(rig.sockmap.loadgen.child);
    if (rig?.sockmap) await rig.sockmap.cgroup.remove();
    if (rig?.tls?.handshaker) await stopChild(rig.tls.handshaker.child);
    rig?.tls?.pki.cleanup();
    if (rig?.loadgen) await stopChild(rig.loadgen.child);
    if (rig?.echo) await stopChild(rig.echo.child);
    if (rig?.obs) rmSync(rig.obs.dir, { recursive: true, force: true });
    obsTracked?.release();
  }
  const left = forwardCgroupLeftovers();
  if (left.length > 0) throw new Error(`forward suite left behind: ${left.join(', ')}`);
  return runs;
}

/** The run's figures per case, each meshport case set against haproxy-2hop and direct of its protocol. */
interface Outcome {
  rows: Row[];
  meshTargets: MeshTarget[];
  find(p: BenchProtocol, t: Target): Row | undefined;
  vsOf(p: BenchProtocol, t: MeshTarget): Versus;
}

/** Rows of every case; a single wrong answer anywhere fails the run, since its figures would mean nothing. */
function judge(plan: ForwardPlan, runs: Map<BenchProtocol, ProtocolRun>): Outcome {
  const rows: Row[] = PROTOCOLS.flatMap((protocol) =>
    plan.targets.map((t) => makeRow(protocol, t, runs.get(protocol)!)),
  );
  const bad = rows.filter((r) => r.errors > 0);
  if (bad.length > 0) {
    throw new Error(
      `forward: wrong answers: ${bad.map((r) => `${r.protocol}/${r.target}: ${r.errors} (${r.firstError})`).join('; ')}`,
    );
  }
  const find = (p: BenchProtocol, t: Target) => rows.find((r) => r.protocol === p && r.target === t);
  const meshTargets = plan.targets.filter(isMesh);
  const vs = new Map<string, Versus>(); // `${protocol}/${target}`
  for (const p of PROTOCOLS)
    for (const t of meshTargets) vs.set(`${p}/${t}`, versus(find(p, t)!, find(p, peerOf(t))!, find(p, 'direct')!));
  return { rows, meshTargets, find, vsOf: (p, t) => vs.get(`${p}/${t}`)! };
}

/** The `--json` rows: every figure of a case, the goal flags on the native engine's. */
function resultRows(plan: ForwardPlan, runs: Map<BenchProtocol, ProtocolRun>, outcome: Outcome): ResultRow[] {
  const { bodies } = plan;
  return outcome.rows.map((r) => {
    const extra: Record<string, Figure> = {};
    if (isMesh(r.target)) {
      const v = outcome.vsOf(r.protocol, r.target);
      Object.assign(extra, {
        engine: MESH[r.target].engine,
        sockmap: MESH[r.target].sockmap,
        mtls: MESH[r.target].mtls,
        peer: v.peer,
        rpsRatioVsHaproxy: round(v.rpsRatio, 3),
        addedP50us: round(v.addedP50, 1),
        haproxyAddedP50us: round(v.haproxyAddedP50, 1),
        p50DiffVsHaproxyUs: round(v.p50Diff, 1),
        cpuPerReqRatioVsHaproxy: round(v.cpuRatio, 3),
      });
      if (r.target === GOAL_TARGET) {
        Object.assign(extra, {
          cpuGoalMet: v.cpuRatio <= GOAL.cpuRatio,
          rpsGoalMet: v.rpsRatio >= GOAL.rpsRatio,
          p50GoalMet: v.addedP50 <= v.haproxyAddedP50,
          rssGoalMet: SIDECARS.every((s) => v.rss[s] !== null && v.rss[s]! <= GOAL.rssMB),
        });
      }
      if (r.target === MTLS_GOAL_TARGET) {
        Object.assign(extra, {
          mtlsCpuGoalMet: v.cpuRatio <= MTLS_GOAL.cpuRatio,
          handshakeGoalMet: v.hsRatio !== null && v.hsRatio >= MTLS_GOAL.handshakeRatio,
        });
      }
      if (v.hsRatio !== null)
        Object.assign(extra, {
          handshakeRatioVsPeer: round(v.hsRatio, 3),
          handshakeCpuRatioVsPeer: round(v.hsCpuRatio!, 3),
        });
      Object.assign(extra, obsResultFigures(comparisons(PROTOCOLS, outcome.find), r.protocol, r.target));
      if (MESH[r.target].sockmap)
        Object.assign(extra, {
          skMsgRedirectedPerRequest: round(r.redirectedPerReq, 2),
          skMsgRedirectMisses: r.redirectMisses,
        });
    }
    if (r.hs)
      Object.assign(extra, {
        handshakesPerSecond: Math.round(r.hs.rate),
        handshakeSpread: round(r.hs.spread, 3),
        handshakeSamples: r.hs.samples.map((x) => Math.round(x)),
        handshakes: r.hs.completed,
        handshakeP50us: round(r.hs.p50, 1),
        handshakeP99us: round(r.hs.p99, 1),
        serverCpuUsPerHandshake: round(r.hs.serverCpuPerHsUs, 1),
        serverUserUsPerHandshake: round(r.hs.serverUserPerHsUs, 1),
        benchCpuUsPerHandshake: round(r.hs.benchCpuPerHsUs, 1),
      });
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
      ...(Object.fromEntries(
        r.procs.flatMap((p) => [
          [`${p.role}CpuSeconds`, round(p.cpuSeconds, 2)],
          [`${p.role}CpuUsPerRequest`, round(p.cpuPerReqUs, 2)],
          [`${p.role}UserUsPerRequest`, round(p.userPerReqUs, 2)],
          [`${p.role}PeakRssMB`, p.peakRssMB === null ? null : round(p.peakRssMB, 1)],
        ]),
      ) as Record<string, Figure>),
      benchCpuUsPerRequest: round(r.benchCpuPerReqUs, 2),
      ...perfFigures(runs.get(r.protocol)!.perf.find((c) => c.target === r.target && c.shape === 'throughput')),
      ...perfLatencyFigures(runs.get(r.protocol)!.perf.find((c) => c.target === r.target && c.shape === 'latency')),
      ...perfHandshakeFigures(runs.get(r.protocol)!.perf.find((c) => c.target === r.target && c.shape === 'handshake')),
      ...extra,
    };
  });
}

/** The main table: one line per protocol and case. */
function figureTable(outcome: Outcome): ReportTable {
  const { rows, find } = outcome;
  const mb = (x: number | null) => (x === null ? 'n/a' : fixed(x, 1));
  const perProc = (r: Row, f: (p: ProcFigures) => string) => (r.procs.length === 0 ? '-' : r.procs.map(f).join(' + '));
  const headers = [
    'case',
    'req/s 8x16',
    'spread',
    'x haproxy',
    'p50 us 1x1',
    'added p50 us',
    'p99 us 1x1',
    'p50 us 8x16',
    'CPU us/req (usr)',
    'per sidecar us/req',
    'peak RSS MB',
  ];
  const align: Align[] = ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'];
  const cells = rows.map((r) => {
    // The mTLS cases against haproxy-2hop-tls; haproxy-2hop-tls itself against haproxy-2hop.
    const h = find(r.protocol, isMesh(r.target) ? peerOf(r.target) : 'haproxy-2hop')!;
    const d = find(r.protocol, 'direct')!;
    return [
      `${P(r.protocol)}: ${r.target}`,
      int(r.rps),
      percent(r.rpsSpread),
      `${fixed(roundRatio(r.rpsSamples, h.rpsSamples).ratio, 2)}x`,
      fixed(r.p50, 1),
      r.target === 'direct' ? '-' : fixed(r.p50 - d.p50, 1),
      fixed(r.p99, 1),
      fixed(r.loadP50, 0),
      r.cpuPerReqUs === null || r.cpu === null
        ? '-'
        : `${fixed(r.cpuPerReqUs, 2)} (usr ${fixed((r.cpuPerReqUs * r.cpu.user) / Math.max(1e-9, r.cpu.user + r.cpu.system), 2)})`,
      isMesh(r.target) ? perProc(r, (p) => fixed(p.cpuPerReqUs, 2)) : '-',
      perProc(r, (p) => mb(p.peakRssMB)),
    ];
  });
  return { headers, align, rows: cells };
}

/** The goals, judged on the native engine, with the other meshport cases of the run beside it for reference. */
function goalTable(outcome: Outcome): ReportTable {
  const others = outcome.meshTargets.filter((t) => t !== GOAL_TARGET && !MESH[t].mtls && !isObs(t));
  const headers = ['goal', 'target', GOAL_TARGET, 'met', 'by', ...others];
  const align: Align[] = ['l', 'r', 'r', 'l', 'r', ...others.map((): Align => 'r')];
  const rows = PROTOCOLS.flatMap((p) =>
    GOALS.map((g) => {
      const m = g.measure(outcome.vsOf(p, GOAL_TARGET));
      return [
        `${P(p)}: ${g.label}`,
        g.target,
        m.text,
        yesNo(m.met),
        m.by,
        ...others.map((t) => {
          const o = g.measure(outcome.vsOf(p, t));
          return `${o.text}${o.met === false ? ' (no)' : ''}`;
        }),
      ];
    }),
  );
  return { headers, align, rows };
}

/** One goal of mutual TLS (issue 18): how an mTLS case measures on it against haproxy-2hop-tls. */
interface MtlsGoalCheck {
  label: string;
  target: string;
  measure(v: Versus): { text: string; met: boolean | null; by: string };
}

const ratioCheck = (value: number | null, goal: number, atMost: boolean) => {
  if (value === null || !Number.isFinite(value)) return { text: 'n/a', met: null, by: '-' };
  const met = atMost ? value <= goal : value >= goal;
  const margin = Math.abs(value / goal - 1);
  return {
    text: `${fixed(value, 2)}x`,
    met,
    by: `${percent(margin)} ${(value <= goal) === atMost ? (atMost ? 'under' : 'over') : atMost ? 'over' : 'under'}`,
  };
};

const MTLS_GOALS: MtlsGoalCheck[] = [
  {
    label: `CPU per request with mTLS, both sidecars / ${TLS_PEER} (8x16)`,
    target: `<= ${fixed(MTLS_GOAL.cpuRatio, 1)}x`,
    measure: (v) => ratioCheck(v.cpuRatio, MTLS_GOAL.cpuRatio, true),
  },
  {
    label: `new connections with a full handshake per second / ${TLS_PEER}`,
    target: `>= ${fixed(MTLS_GOAL.handshakeRatio, 1)}x`,
    measure: (v) => ratioCheck(v.hsRatio, MTLS_GOAL.handshakeRatio, false),
  },
];

/** The mTLS goals, judged on meshport-2hop-mtls, with the TypeScript engine's mTLS case beside it. */
function mtlsGoalTable(plan: ForwardPlan, outcome: Outcome): ReportTable {
  const others = outcome.meshTargets.filter((t) => MESH[t].mtls && t !== MTLS_GOAL_TARGET);
  const measured = outcome.meshTargets.includes(MTLS_GOAL_TARGET);
  const headers = ['goal', 'target', MTLS_GOAL_TARGET, 'met', 'by', ...others];
  const align: Align[] = ['l', 'r', 'r', 'l', 'r', ...others.map((): Align => 'r')];
  const rows = PROTOCOLS.flatMap((p) =>
    MTLS_GOALS.map((g) => {
      const m = measured ? g.measure(outcome.vsOf(p, MTLS_GOAL_TARGET)) : { text: 'not measured', met: null, by: '-' };
      return [
        `${P(p)}: ${g.label}`,
        g.target,
        m.text,
        yesNo(m.met),
        m.by,
        ...others.map((t) => {
          const o = g.measure(outcome.vsOf(p, t));
          return `${o.text}${o.met === false ? ' (no)' : ''}`;
        }),
      ];
    }),
  );
  return {
    title: `Goals of mutual TLS (issue 18), judged on ${MTLS_GOAL_TARGET}${measured ? '' : ` (not measured in this run: ${plan.leftOut.get(MTLS_GOAL_TARGET)})`} against ${TLS_PEER} of the same run:`,
    headers,
    align,
    rows,
  };
}

/** The TLS cases side by side: requests, what TLS adds to each case's plaintext twin, and handshakes. */
function mtlsTable(outcome: Outcome): ReportTable {
  const { rows, find } = outcome;
  const x = (a: number | null | undefined, b: number | null | undefined) =>
    a === null || a === undefined || b === null || b === undefined || !(b > 0) ? '-' : `${fixed(a / b, 2)}x`;
  const headers = [
    'case',
    'req/s 8x16',
    'x peer',
    'CPU us/req',
    'x peer',
    'TLS adds us/req',
    'added p50 us 1x1',
    'x peer',
    'handshakes/s',
    'spread',
    'x peer',
    'server CPU us/handshake',
    'x peer',
    'connect to answer p50 us',
  ];
  const align: Align[] = ['l', ...headers.slice(1).map((): Align => 'r')];
  const cells = rows
    .filter((r) => isTls(r.target))
    .map((r) => {
      const peer = r.target === TLS_PEER ? undefined : find(r.protocol, TLS_PEER);
      const twin = twinOf(r.target);
      const t = twin ? find(r.protocol, twin) : undefined;
      const d = find(r.protocol, 'direct')!;
      const added = (row: Row | undefined) => (row ? row.p50 - d.p50 : null);
      const v = isMesh(r.target) ? outcome.vsOf(r.protocol, r.target) : undefined;
      return [
        `${P(r.protocol)}: ${r.target}`,
        int(r.rps),
        v ? `${fixed(v.rpsRatio, 2)}x` : '-',
        r.cpuPerReqUs === null ? '-' : fixed(r.cpuPerReqUs, 2),
        peer ? x(r.cpuPerReqUs, peer.cpuPerReqUs) : '-',
        t && r.cpuPerReqUs !== null && t.cpuPerReqUs !== null
          ? `${r.cpuPerReqUs >= t.cpuPerReqUs ? '+' : ''}${fixed(r.cpuPerReqUs - t.cpuPerReqUs, 2)}`
          : '-',
        fixed(added(r)!, 1),
        peer ? x(added(r), added(peer)) : '-',
        r.hs ? int(r.hs.rate) : '-',
        r.hs ? percent(r.hs.spread) : '-',
        v?.hsRatio != null ? `${fixed(v.hsRatio, 2)}x` : '-',
        r.hs ? fixed(r.hs.serverCpuPerHsUs, 1) : '-',
        v?.hsCpuRatio != null ? `${fixed(v.hsCpuRatio, 2)}x` : '-',
        r.hs ? fixed(r.hs.p50, 0) : '-',
      ];
    });
  return {
    title:
      `Mutual TLS between the two hops (issue 18): each case against ${TLS_PEER} ("x peer", same rounds), and what TLS ` +
      'adds to the CPU per request of its plaintext twin (haproxy-2hop, meshport-2hop-native, meshport-2hop-js):',
    headers,
    align,
    rows: cells,
  };
}

/** What the mTLS tables do not say: how the TLS cases and the handshake load are made, what was negotiated. */
function mtlsNotes(plan: ForwardPlan, runs: Map<BenchProtocol, ProtocolRun>, outcome: Outcome): string[] {
  const { vsOf, meshTargets } = outcome;
  const mtlsTargets = meshTargets.filter((t) => MESH[t].mtls);
  const missed = mtlsTargets.includes(MTLS_GOAL_TARGET)
    ? PROTOCOLS.flatMap((p) => MTLS_GOALS.map((g) => g.measure(vsOf(p, MTLS_GOAL_TARGET)).met)).filter(
        (m) => m === false,
      ).length
    : null;
  const negotiated = [
    ...new Set(
      PROTOCOLS.flatMap((p) =>
        [...runs.get(p)!.handshakes].map(([t, h]) => `${t}: ${h.protocolVersion ?? '?'} ${h.cipher ?? '?'}`),
      ),
    ),
  ].join('; ');
  const resumed = PROTOCOLS.reduce(
    (a, p) => a + [...runs.get(p)!.handshakes.values()].reduce((b, h) => b + h.resumed, 0),
    0,
  );
  const counted = PROTOCOLS.flatMap((p) =>
    [...runs.get(p)!.tlsStats].map(([t, c]) =>
      typeof c === 'string'
        ? `${P(p)} ${t}: could not read /stats (${c})`
        : `${P(p)} ${t}: consumer ${int(c.consumer.outbound)} outbound, provider ${int(c.provider.inbound)} inbound` +
          (c.consumer.failures + c.provider.failures > 0
            ? `, failures ${Object.entries({ ...c.consumer.failureReasons, ...c.provider.failureReasons })
                .map(([k, n]) => `${k} ${int(n)}`)
                .join(', ')}`
            : ', no failure'),
    ),
  );
  return [
    missed === null
      ? `Goals (issue 18): not judged, ${MTLS_GOAL_TARGET} was not measured (${plan.leftOut.get(MTLS_GOAL_TARGET)}).`
      : `Goals (issue 18) judged on ${MTLS_GOAL_TARGET} against ${TLS_PEER} of the same run: ${missed === 0 ? 'all met' : `${missed} of ${PROTOCOLS.length * MTLS_GOALS.length} missed`}.`,
    ...[...plan.leftOut].map(([t, why]) => `${t}: not measured in this run: ${why}.`),
    `${TLS_PEER}: a second haproxy (one process, the same threads as haproxy-2hop), its first hop originating TLS to its second ` +
      '(`server ... ssl crt client.pem ca-file ca.pem verify required ssl-min-ver TLSv1.3 no-ssl-reuse`), the second terminating it ' +
      '(`bind ... ssl crt server.pem ca-file ca.pem verify required ssl-min-ver TLSv1.3`); load generator and echo server in plaintext. ' +
      "haproxy verifies the peer's chain only: it has no check of a URI SAN, where meshport also checks the identity against the endpoint's.",
    'meshport-2hop-mtls(-js): the pair of meshport-2hop-native (-js) with RouterOptions.security on both routers: strict mode, the dev CA ' +
      "as trust bundle, a policy with a rule per service allowing the consumer's identity (default deny), and the provider's identity " +
      "on the consumer's endpoint. Certificates: one CA and two ECDSA P-256 leaves (`spiffe://cluster.local/ns/bench/sa/loadgen` and " +
      "`.../sa/echo`) made by the test kit's makeTestPki with the openssl command; haproxy presents the same two.",
    `Handshakes: runs/handshake-process, ${HANDSHAKE_CONCURRENCY} connections in the making at once, each a TLS 1.3 connect straight to ` +
      "the second hop's TLS listener (the provider router's inbound listener; haproxy's second frontend) with the consumer's certificate, " +
      "the server's chain and URI SAN verified, one call, closed; no session offered back, so every one is a full handshake " +
      `(sessions resumed: ${resumed}). handshakes/s: median of the samples (taken in the same rounds as the requests); server CPU = the ` +
      'process behind that listener (provider router; haproxy) over the timed windows / connections answered. haproxy also opens a TCP ' +
      'connection to the echo server per connection, the provider router sends the call over its pooled one. Negotiated: ' +
      `${negotiated || 'nothing'}.`,
    `Counted by the routers' /stats (meshport_tls_handshakes_total) at the end of each protocol's run: ${counted.join('; ') || 'no mTLS case'}.`,
    'x peer: the median of per-round ratios for req/s and handshakes/s, the ratio of the totals over all windows for CPU; ' +
      "added p50 = p50 at 1x1 minus direct's. TLS adds = CPU per request minus the plaintext twin's of the same run.",
  ];
}

/** What the tables do not say: the verdict, what was measured and how, on which machine. */
function reportNotes(plan: ForwardPlan, runs: Map<BenchProtocol, ProtocolRun>, outcome: Outcome): string[] {
  const { options, bodies, noSockmap } = plan;
  const { rows, meshTargets, vsOf } = outcome;
  const missed = PROTOCOLS.flatMap((p) => GOALS.map((g) => g.measure(vsOf(p, GOAL_TARGET)).met)).filter(
    (m) => m === false,
  ).length;
  const anyRun = runs.get('bolt')!;
  const cpuLine = PROTOCOLS.map(
    (p) =>
      `${P(p)} ${meshTargets.map((t) => `${t} ${fixed(vsOf(p, t).cpuRatio, 2)}x${MESH[t].mtls ? ` (of ${TLS_PEER}'s)` : ''}`).join(', ')}`,
  ).join('; ');
  const sockmapRows = rows.filter((r) => isMesh(r.target) && MESH[r.target].sockmap);
  return [
    `Goals (issue 15) judged on ${GOAL_TARGET} against haproxy-2hop of the same run: ${missed === 0 ? 'all met' : `${missed} of ${PROTOCOLS.length * GOALS.length} missed`}; "by" is the margin (for a ratio, how far above or below the goal in percent of it).`,
    `Measured: meshport at ${provenance()}; the native engine from ${addonProvenance()}; default RouterOptions but the engine (as built by \`tsc --build\` just before).`,
    `Machine: ${os.cpus().length} logical CPUs shared by every process of the run: load generator, echo server, and the proxies ` +
      `(haproxy ${plan.haproxyVersion}: one process, ${anyRun.haproxyThreads ?? '?'} threads, its default on this machine; meshport: two Node processes per case, ` +
      `on the native engine one loop thread each beside Node's own threads (${anyRun.nativeThreads ?? '?'} threads in all per process), on the js engine the event loop). ` +
      'Every process competes for those CPUs, so req/s follows the CPU each spends per request (CPU us/req; usr = its user-space part) ' +
      'and how the kernel schedules them; the spread between samples is wide on a small VM, the CPU per request much less so.',
    `Requests: Bolt v1 SofaRequest by sofa-bolt-node (${bodies.bolt.bodyBytes}-byte content, ${bodies.bolt.frame.length}-byte frame), ` +
      `Dubbo hessian2 request by dubbo-remoting (${bodies.dubbo.bodyBytes}-byte body, ${bodies.dubbo.frame.length}-byte frame); the echo server ` +
      "(runners/echo-process, FrameSplitter + decodeFrame) answers each with a success response of the same id carrying the request's body, " +
      "one write per read; the load generator (runners/loadgen-process, a process of its own) checks every answer's id, status and length.",
    'Shapes: 8x16 = 8 connections with 16 requests in flight on each (a new one leaves when an answer comes back), req/s; 1x1 = one ' +
      "connection, one request at a time, p50/p99 over every request of the timed windows (hrtime from write to answer); added p50 = p50 1x1 minus direct's.",
    'haproxy-2hop: one haproxy, two `mode tcp` frontend/backend pairs chained on 127.0.0.1 (a connection per client connection on each hop). ' +
      'meshport-2hop-*: consumer-side router (outbound listener) -> provider-side router (inbound listener), each `runners/router-process` ' +
      'made by createRouter with `engine` native or js and otherwise default settings (pino at warn, stats, admin on); each multiplexes all callers ' +
      'onto one upstream connection with ids rewritten. meshport-2hop-js is the case named `meshport-2hop` in results saved before the native engine ' +
      '(`--compare` reads those names as meshport-2hop-js).',
    noSockmap === null
      ? 'meshport-2hop+sockmap: the native pair, with a load generator and a consumer router of its own started in a cgroup this suite makes ' +
        "(runners/join-cgroup preloaded, so their sockets are made in it) with the socket package's sockops + sk_msg programs attached, not pinned " +
        "(no connect hook: the app dials the sidecar's port itself); sockops puts the loopback sockets of the cgroup in the SOCKHASH and sk_msg moves " +
        "the app's writes to the sidecar's socket and back without the TCP stack. The consumer -> provider and provider -> echo legs are outside the " +
        `cgroup and take TCP as in the other cases. sk_msg redirects per request: ${sockmapRows.map((r) => `${P(r.protocol)} ${fixed(r.redirectedPerReq, 2)} (${int(r.redirectMisses)} misses)`).join(', ')}. ` +
        'The cgroup and the programs are removed at the end, also on an error or a signal.'
      : `meshport-2hop+sockmap: not measured in this run (${noSockmap}).`,
    `req/s is the median of ${options.rounds} samples of ${fixed(options.durationSeconds / options.rounds, 2)} s per case and shape, taken ` +
      'round-robin across targets (order rotated each round) after a warm-up, each sample on fresh client connections after ' +
      `${options.quick ? QUICK_SAMPLE_WARMUP_MS : SAMPLE_WARMUP_MS} ms untimed; spread = (max - min) / median. Latency percentiles pool the samples of all rounds.`,
    'CPU: user + system seconds of the proxy processes (/proc/<pid>/stat, all threads) over the timed 8x16 windows ' +
      `(${fixed(options.durationSeconds, 1)} s in all); CPU us/req = that / answers in those windows; per sidecar = consumer + provider. CPU per request / haproxy-2hop's: ${cpuLine}. ` +
      "peak RSS: VmHWM of /proc/<pid>/status of each proxy process at the end of the protocol's run (meshport: consumer + provider).",
    `${TLS_PEER}, meshport-2hop-mtls(-js): mutual TLS 1.3 between the two hops (issue 18); their "x haproxy" is against ${TLS_PEER}, ` +
      `and ${TLS_PEER}'s own against haproxy-2hop. Their handshakes and goals: the section on mutual TLS (${MTLS_SECTION}).`,
  ];
}

/** MESHPORT_BENCH_PROFILE: where the time of the js engine's routers went, per protocol, for each case profiled. */
function profileSections(runs: Map<BenchProtocol, ProtocolRun>, which: (t: MeshTarget) => boolean): ReportSection[] {
  return PROTOCOLS.flatMap((protocol) => {
    const r = runs.get(protocol)!;
    return PROFILED.filter((t) => which(t) && r.profiles.some((x) => x.target === t)).map((t) => ({
      lines: profilesMarkdown(
        `Profile of both routers of ${t}, ${P(protocol)} 8x16 (MESHPORT_BENCH_PROFILE; node:inspector, 100 us sampling, after the measurements; ` +
          `${int(r.profiledRps.get(t) ?? 0)} req/s with the profilers on)`,
        r.profiles.filter((x) => x.target === t),
        10,
      ),
    }));
  });
}

/** What `--compare` watches: headline ratios first (the table of last runs shows the first three), the native engine against haproxy. */
function metricsOf(outcome: Outcome): Metric[] {
  const { find, vsOf } = outcome;
  // Issue 19's cases have their ratios to their twins (obsMetrics), not these.
  const meshTargets = outcome.meshTargets.filter((t) => !MESH[t].mtls && !isObs(t));
  const mtlsTargets = outcome.meshTargets.filter((t) => MESH[t].mtls);
  const tlsPeerMeasured = PROTOCOLS.every((p) => find(p, TLS_PEER) !== undefined);
  const ratioMetric = (
    p: BenchProtocol,
    name: string,
    a: number[],
    b: number[],
    peer: string,
    better: Metric['better'],
  ): Metric => {
    const r = roundRatio(a, b);
    return {
      name: `${P(p)}: ${name}`,
      value: round(r.ratio, 3),
      unit: 'x',
      better,
      spread: round(r.spread, 3),
      rounds: r.rounds,
      peer,
    };
  };
  const rpsVsHaproxy = (p: BenchProtocol, t: MeshTarget) =>
    ratioMetric(
      p,
      `${t} / haproxy-2hop req/s (8x16)`,
      find(p, t)!.rpsSamples,
      find(p, 'haproxy-2hop')!.rpsSamples,
      'haproxy-2hop',
      'higher',
    );
  const cpuVsHaproxy = (p: BenchProtocol, t: MeshTarget): Metric => ({
    // Over all timed windows together: one figure, so it is compared with the single-round tolerance.
    name: `${P(p)}: ${t} / haproxy-2hop CPU per request`,
    value: round(vsOf(p, t).cpuRatio, 3),
    unit: 'x',
    better: 'lower',
    spread: 0,
    rounds: 1,
    peer: 'haproxy-2hop',
  });
  const mtlsMetrics = (p: BenchProtocol, t: MeshTarget): Metric[] => {
    const m = find(p, t)!;
    const h = find(p, TLS_PEER)!;
    const v = vsOf(p, t);
    return [
      {
        name: `${P(p)}: ${t} / ${TLS_PEER} CPU per request`,
        value: round(v.cpuRatio, 3),
        unit: 'x',
        better: 'lower',
        spread: 0,
        rounds: 1,
        peer: TLS_PEER,
      },
      ...(m.hs && h.hs
        ? [
            ratioMetric(p, `${t} / ${TLS_PEER} handshakes/s`, m.hs.samples, h.hs.samples, TLS_PEER, 'higher'),
            {
              name: `${P(p)}: ${t} / ${TLS_PEER} CPU per handshake`,
              value: round(m.hs.serverCpuPerHsUs / h.hs.serverCpuPerHsUs, 3),
              unit: 'x',
              better: 'lower' as const,
              spread: 0,
              rounds: 1,
              peer: TLS_PEER,
            },
          ]
        : []),
      ratioMetric(p, `${t} / ${TLS_PEER} req/s (8x16)`, m.rpsSamples, h.rpsSamples, TLS_PEER, 'higher'),
      ratioMetric(p, `${t} / ${TLS_PEER} p50 (1x1)`, m.p50ByRound, h.p50ByRound, TLS_PEER, 'lower'),
      ...(m.hs
        ? [
            {
              name: `${P(p)}: ${t} handshakes/s`,
              value: Math.round(m.hs.rate),
              unit: 'conn/s',
              better: 'higher' as const,
              spread: round(m.hs.spread, 3),
              rounds: m.hs.samples.length,
            },
          ]
        : []),
    ];
  };
  return [
    ...PROTOCOLS.map((p) => rpsVsHaproxy(p, GOAL_TARGET)),
    ...PROTOCOLS.map((p) => cpuVsHaproxy(p, GOAL_TARGET)),
    ...obsMetrics(comparisons(PROTOCOLS, find)),
    ...(tlsPeerMeasured
      ? [
          ...PROTOCOLS.flatMap((p) => mtlsTargets.flatMap((t) => mtlsMetrics(p, t))),
          ...PROTOCOLS.map((p) =>
            ratioMetric(
              p,
              `${TLS_PEER} / haproxy-2hop req/s (8x16)`,
              find(p, TLS_PEER)!.rpsSamples,
              find(p, 'haproxy-2hop')!.rpsSamples,
              'haproxy-2hop',
              'higher',
            ),
          ),
          ...PROTOCOLS.flatMap((p): Metric[] => {
            const hs = find(p, TLS_PEER)!.hs;
            return hs
              ? [
                  {
                    name: `${P(p)}: ${TLS_PEER} handshakes/s`,
                    value: Math.round(hs.rate),
                    unit: 'conn/s',
                    better: 'higher',
                    spread: round(hs.spread, 3),
                    rounds: hs.samples.length,
                  },
                ]
              : [];
          }),
        ]
      : []),
    ...PROTOCOLS.flatMap((p) => {
      const d = find(p, 'direct')!;
      const h = find(p, 'haproxy-2hop')!;
      return [
        ...meshTargets.flatMap((t) => {
          const m = find(p, t)!;
          return [
            ...(t === GOAL_TARGET ? [] : [rpsVsHaproxy(p, t), cpuVsHaproxy(p, t)]),
            ratioMetric(p, `${t} / direct req/s (8x16)`, m.rpsSamples, d.rpsSamples, 'direct', 'higher'),
            ratioMetric(p, `${t} / haproxy-2hop p50 (1x1)`, m.p50ByRound, h.p50ByRound, 'haproxy-2hop', 'lower'),
          ];
        }),
        ratioMetric(p, 'haproxy-2hop / direct req/s (8x16)', h.rpsSamples, d.rpsSamples, 'direct', 'higher'),
      ];
    }),
    ...PROTOCOLS.flatMap((p) =>
      meshTargets.flatMap((t): Metric[] => {
        const m = find(p, t)!;
        return [
          {
            name: `${P(p)}: ${t} req/s (8x16)`,
            value: Math.round(m.rps),
            unit: 'req/s',
            better: 'higher',
            spread: round(spread(m.rpsSamples), 3),
            rounds: m.rpsSamples.length,
          },
          {
            name: `${P(p)}: ${t} p50 (1x1)`,
            value: round(m.p50, 1),
            unit: 'us',
            better: 'lower',
            spread: round(spread(m.p50ByRound), 3),
            rounds: m.p50ByRound.length,
          },
          ...m.procs
            .filter((x) => x.peakRssMB !== null && t === GOAL_TARGET)
            .map(
              (x): Metric => ({
                name: `${P(p)}: ${t} ${x.role} peak RSS`,
                value: round(x.peakRssMB!, 1),
                unit: 'MB',
                better: 'lower',
                spread: 0,
                rounds: 1,
              }),
            ),
        ];
      }),
    ),
  ];
}

function processesOf(rows: Row[]): ProcessUsage[] {
  const roleName: Record<string, string> = {
    haproxy: 'haproxy (both hops)',
    consumer: 'meshport consumer router',
    provider: 'meshport provider router',
  };
  return rows.flatMap((r) =>
    r.procs.map((p) => ({
      scope: `${P(r.protocol)}: ${r.target} (8x16 windows)`,
      process: roleName[p.role] ?? p.role,
      cpuSeconds: round(p.cpuSeconds, 2),
      peakRssMB: p.peakRssMB === null ? null : round(p.peakRssMB, 1),
    })),
  );
}

function chartsOf(rows: Row[]): SuiteCharts {
  const label = (r: Row) => `${P(r.protocol)}: ${r.target}`;
  return {
    bars: {
      title: 'Requests/s, 8 connections x 16 in flight (whisker: spread of the rounds)',
      unit: 'req/s',
      bars: rows.map((r) => ({ label: label(r), value: r.rps, spread: r.rpsSpread })),
    },
    lines: {
      title: 'Latency, 1 connection x 1 in flight',
      unit: 'us',
      x: ['p50', 'p90', 'p99'],
      series: rows.map((r) => ({ label: label(r), values: [r.p50, r.p90, r.p99] })),
    },
  };
}

/** Issue 19's section: the costs against their goals, what was written, how it was measured, perf's where-the-time-goes. */
function obsSections(plan: ForwardPlan, runs: Map<BenchProtocol, ProtocolRun>, outcome: Outcome): ReportSection[] {
  const measured = plan.targets.filter(isObs);
  const leftOut = [...plan.leftOut]
    .filter(([t]) => isObs(t))
    .map(([t, why]) => `${t}: not measured in this run: ${why}.`);
  if (measured.length === 0)
    return [{ notes: ['The observability cases (issue 19) were not measured in this run.', ...leftOut] }];
  const list = comparisons(PROTOCOLS, outcome.find);
  const written = new Map(PROTOCOLS.flatMap((p) => [...runs.get(p)!.written]));
  const perService = PROTOCOLS.flatMap((p) =>
    [...runs.get(p)!.perService].map(([t, has]) => `${P(p)} ${t} ${has ? 'yes' : 'no'}`),
  );
  const baseline = plan.options.baseline;
  return [
    ...obsTables(list, written),
    {
      notes: [
        obsVerdict(list),
        ...leftOut,
        `Cases: the plain pairs (meshport-2hop-native, -js) with, on both routers, access logs at 1% (RouterOptions.telemetry.accessLog ` +
          `{everyN: 100, errors: true, slowMs: 1000}) or tracing of every call (telemetry.tracing {everyN: 1}); the requests carry no trace ` +
          "context, so each sidecar starts a trace of its own per call. The lines go to runners/router-process's onTelemetry sink, the " +
          "sidecar's own file writer (@meshport/sidecar's RotatingFile: one asynchronous write per batch; spans wrapped as one OTLP " +
          'ExportTraceServiceRequest per batch and line, as its trace file does), a file per router on a local disk (ext4), not rotated; ' +
          'the files are counted at the end of each protocol and removed.',
        baseline
          ? `Metrics (always on, so measured against the build before them): meshport-2hop-baseline(-js) are the plain pairs on ${baselineProvenance(baseline)}, ` +
            `loaded by runners/router-process through MESHPORT_BENCH_ROUTER in the same rounds as today's. Per-service families on the consumer's /stats: ${perService.join(', ')}.`
          : "Metrics: not measured in this run (`--baseline DIR` runs the build before issue 19 beside today's).",
        "x: CPU per request over all 8x16 windows of the two routers together / the other case's (what the goal is judged on); x by round: " +
          'the median of the per-round ratios of CPU per request, and their spread ((max - min) / median), for how far a ratio moves between rounds; req/s and p50 the median of per-round ' +
          "ratios; + us = p50 1x1 minus the other case's. Each ratio is of two cases of the same rounds, so a busy spell of the machine touches both.",
      ],
    },
    ...PROTOCOLS.flatMap((p) =>
      perfTables(
        p,
        runs.get(p)!.perf.filter((c) => isObs(c.target) || c.target === GOAL_TARGET),
      ).filter((t) => !t.title?.startsWith('The same at 1x1')),
    ),
    ...profileSections(runs, isObs),
  ];
}

/** The commit a `--baseline` build is of (read-only git). */
function baselineProvenance(dir: string): string {
  try {
    const head = execFileSync('git', ['--no-optional-locks', '-C', dir, 'log', '-1', '--format=%h (%cI)'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    return `commit ${head}, built at ${dir}`;
  } catch {
    return `the build at ${dir}`;
  }
}

async function run(given: SuiteOptions): Promise<SuiteReport> {
  const plan = await planRun(given);
  const runs = await measureProtocols(plan);
  const outcome = judge(plan, runs);
  const main: ReportSection[] = [
    figureTable(outcome),
    goalTable(outcome),
    { notes: reportNotes(plan, runs, outcome) },
    ...profileSections(runs, (t) => !isObs(t)),
    ...PROTOCOLS.flatMap((p) =>
      perfTables(
        p,
        runs.get(p)!.perf.filter((c) => c.target !== MTLS_GOAL_TARGET && c.target !== TLS_PEER),
      ),
    ),
  ];
  const obs = obsSections(plan, runs, outcome);
  const mtls: ReportSection[] = plan.targets.includes(TLS_PEER)
    ? [
        mtlsTable(outcome),
        mtlsGoalTable(plan, outcome),
        { notes: mtlsNotes(plan, runs, outcome) },
        ...PROTOCOLS.flatMap((p) =>
          perfTables(
            p,
            runs.get(p)!.perf.filter((c) => isTls(c.target)),
          ),
        ),
      ]
    : [
        {
          notes: [
            `The mutual TLS cases were not measured in this run: ${[...plan.leftOut.values()][0] ?? 'left out'}.`,
          ],
        },
      ];
  const text = renderReport([...main, ...mtls, ...obs]).text;
  const { markdown } = renderReport(main);
  const parts: DocsPart[] = [
    {
      section: MTLS_SECTION,
      heading: '### Mutual TLS between sidecars against haproxy with TLS (issue 18)',
      markdown: renderReport(mtls).markdown,
    },
    {
      section: OBS_SECTION,
      heading: '### Observability costs (issue 19)',
      markdown: renderReport(obs).markdown,
    },
  ];
  return {
    parts,
    suite: 'forward',
    results: resultRows(plan, runs, outcome),
    metrics: metricsOf(outcome),
    processes: processesOf(outcome.rows),
    charts: chartsOf(outcome.rows),
    text,
    markdown,
  };
}

/** The README's forward row, from a saved results line: the native engine's goals against haproxy-2hop. */
function glance(results: ResultRow[]): { figures: string; goal: string } | null {
  const row = (p: BenchProtocol, t: Target) => results.find((r) => r.protocol === p && r.target === t);
  const natives = PROTOCOLS.map((p) => row(p, GOAL_TARGET));
  if (natives.some((r) => r === undefined)) return null; // saved before the engines were split
  const n = (r: ResultRow | undefined, k: string) => (typeof r?.[k] === 'number' ? (r[k] as number) : Number.NaN);
  const list = (k: string, f: (x: number) => string) =>
    natives.map((r, i) => `${f(n(r, k))} (${P(PROTOCOLS[i])})`).join(', ');
  const rss = natives.flatMap((r) => [n(r, 'consumerPeakRssMB'), n(r, 'providerPeakRssMB')]);
  const js = PROTOCOLS.map((p) => row(p, 'meshport-2hop-js')).filter((r) => r !== undefined);
  const figures =
    `native engine: ${list('rpsRatioVsHaproxy', (x) => `${fixed(x, 2)}x`)} haproxy's req/s; CPU per request ${list('cpuPerReqRatioVsHaproxy', (x) => `${fixed(x, 2)}x`)} haproxy's; ` +
    `p50 ${list('p50DiffVsHaproxyUs', (x) => `${x >= 0 ? '+' : ''}${fixed(x, 1)} us`)} against haproxy's; peak RSS ${fixed(Math.min(...rss), 0)}-${fixed(Math.max(...rss), 0)} MB per sidecar` +
    (js.length > 0
      ? ` (TypeScript engine: ${js.map((r) => `${fixed(n(r, 'rpsRatioVsHaproxy'), 2)}x`).join(', ')} req/s)`
      : '');
  const flags: [string, string][] = [
    ['rpsGoalMet', 'req/s'],
    ['cpuGoalMet', 'CPU'],
    ['p50GoalMet', 'p50'],
    ['rssGoalMet', 'RSS'],
  ];
  const missed = natives.flatMap((r, i) =>
    flags.filter(([k]) => r![k] !== true).map(([, name]) => `${P(PROTOCOLS[i])} ${name}`),
  );
  const goal =
    `req/s >= ${fixed(GOAL.rpsRatio, 1)}x, CPU <= ${fixed(GOAL.cpuRatio, 1)}x, p50 <= haproxy, RSS <= ${GOAL.rssMB} MB: ` +
    (missed.length === 0
      ? 'all met'
      : `${flags.length * natives.length - missed.length} of ${flags.length * natives.length} met (missed: ${missed.join(', ')})`);
  return { figures, goal };
}

export const forwardSuite: Suite = {
  name: 'forward',
  summary:
    'two proxy hops on loopback: direct vs haproxy (tcp; tls) vs meshport routers (native, js, native + sockmap; mtls native, js), Bolt and Dubbo, req/s, p50/p99, CPU, RSS, handshakes/s; what access logs, tracing and (--baseline) metrics cost',
  renamedMetric,
  glance,
  run,
};
