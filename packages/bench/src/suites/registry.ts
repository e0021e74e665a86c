// Suite `registry`: how long a provider's registration in ZooKeeper takes to become a route in a remote sidecar, and
// what the sidecar's memory is with 10k endpoints across 1k services; side by side with a bare ZooKeeper watcher.
//
//   driver (this process)      plays the provider sidecars: creates EPHEMERAL provider nodes in the sofa layout,
//                              /sofa-rpc/<interface>/providers/<encodeURIComponent(url)>, with node-zookeeper-client
//   meshport-sidecar (child)   runners/registry-sidecar-process: the real Sidecar with a `zookeeper` registry that
//                              subscribes all 1k services; timestamps each endpoint as it appears in its route table
//   bare-watcher (child)       runners/registry-watcher-process: node-zookeeper-client getChildren + watch on the same
//                              1k providers nodes, re-armed on every event: the floor ZooKeeper sets
//   ZooKeeper 3.8 (child)      started here on a free port with a temp data dir, stopped at the end
//
// Both children watch at the same time, so every registration is measured by both, under the same conditions.
// Phases: the providers nodes are made first (persistent, as once-registered services are); the two children start
// and subscribe; 9 endpoints of each service (9k) are created at once (bulk load, timed until each child has all of
// them); then the 10th endpoint of every service (1k) is registered one at a time, in ROUNDS rounds, shuffled, one
// every 5-10 ms: latency = the child's wall-clock time of seeing the endpoint minus the driver's just before create().
//
// MESHPORT_BENCH_PROFILE=DIR also writes a CPU profile of the sidecar child's whole life to DIR/registry-sidecar.cpuprofile
// (the profiler slows it: figures of such a run are not the reference ones).

import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { type Started, startRunner, stopChild } from '../forward/children';
import { type ProfileSummary, profilesMarkdown, readProfile, summarizeProfile } from '../forward/profile';
import { type Align, fixed, int } from '../format';
import { renderReport, type ReportSection } from '../render';
import {
  type MemoryFigures,
  type SeenMessage,
  type WatcherReady,
  type ZkClient,
  connectZooKeeper,
  endpointHost,
  endpointId,
  interfaceName,
  loadZooKeeperClient,
  PROVIDER_PORT,
  providersPath,
  providerUrl,
  serviceKey,
  wallNow,
} from '../registry/common';
import { type BenchZooKeeper, startZooKeeper } from '../registry/zookeeper';
import { cpuTimes, peakRssMB } from '../proc';
import { roundRatio, spread } from '../stats';
import type { Figure, Metric, ProcessUsage, ResultRow, Suite, SuiteOptions, SuiteReport } from '../suite';

/** The full run: 1k services x 10 endpoints, the 1k measured registrations in 4 rounds. Quick: a tenth, 2 rounds. */
const FULL = { services: 1000, rounds: 4 };
const QUICK = { services: 100, rounds: 2 };
type Shape = typeof FULL;
const shapeOf = (options: SuiteOptions): Shape => (options.quick ? QUICK : FULL);
const ENDPOINTS_PER_SERVICE = 10;
/** Endpoints 0..BULK_PER_SERVICE-1 of every service are the bulk load; the rest are measured one by one. */
const BULK_PER_SERVICE = 9;
/** Gap between two measured registrations: uniform in [GAP_MIN_MS, GAP_MAX_MS]. */
const GAP_MIN_MS = 5;
const GAP_MAX_MS = 10;
const ROUND_PAUSE_MS = 500;
/** Creates in flight at once during the bulk load. */
const BULK_WINDOW = 1000;

/** Goals of the issue: p99 registration -> routed at most 50 ms; sidecar RSS at most 80 MB with 10k endpoints. */
const GOAL_P99_MS = 50;
const GOAL_RSS_MB = 80;

const MB = 1024 * 1024;

type Who = 'sidecar' | 'watcher';
const WHO: Who[] = ['sidecar', 'watcher'];
const LABEL: Record<Who, string> = { sidecar: 'meshport-sidecar', watcher: 'bare-watcher' };

interface Child {
  started: Started<WatcherReady>;
  /** endpoint id -> wall-clock ms the child saw it (first time). */
  seen: Map<string, number>;
  /** Subscribed, no endpoints yet, after two forced full GCs. */
  memoryIdleGc?: MemoryFigures;
  memoryAfterBulk?: MemoryFigures;
  memoryAfterAll?: MemoryFigures;
  /** The same after two forced full GCs: what the process holds on to. */
  memoryAfterGc?: MemoryFigures;
}

interface Registration {
  id: string;
  node: string;
  sentAt: number;
  ackAt?: number;
  round: number;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

interface Dist {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

function dist(xs: number[]): Dist {
  const s = [...xs].sort((a, b) => a - b);
  return {
    n: s.length,
    p50: quantile(s, 0.5),
    p90: quantile(s, 0.9),
    p99: quantile(s, 0.99),
    max: s.length ? s[s.length - 1] : NaN,
    mean: s.length ? s.reduce((a, b) => a + b, 0) / s.length : NaN,
  };
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** A small seeded PRNG (mulberry32), so every run registers in the same order with the same gaps. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** MESHPORT_BENCH_SIDECAR_FLAGS: extra node flags for the sidecar child only (e.g. V8 heap settings), for A/B runs. */
function sidecarNodeFlags(): string[] {
  return (process.env.MESHPORT_BENCH_SIDECAR_FLAGS ?? '').split(/\s+/).filter(Boolean);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function zkCall<T>(start: (cb: (err: Error | null, value: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => start((err, value) => (err ? reject(err) : resolve(value))));
}

/** Resolves once every id is in every child's `seen` (or rejects after timeoutMs, naming how many are missing). */
async function waitSeen(children: Record<Who, Child>, ids: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const missing = WHO.map((w) => ({ w, n: ids.reduce((a, id) => a + (children[w].seen.has(id) ? 0 : 1), 0) }));
    if (missing.every((m) => m.n === 0)) return;
    if (Date.now() > deadline) {
      throw new Error(
        `registry: not seen within ${timeoutMs} ms: ${missing.map((m) => `${LABEL[m.w]} misses ${m.n} of ${ids.length}`).join(', ')}`,
      );
    }
    await sleep(20);
  }
}

function askMemory(child: Started<WatcherReady>, gc = false): Promise<MemoryFigures> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.child.off('message', on);
      reject(new Error('no answer to a memory request within 10 s'));
    }, 10_000);
    const on = (msg: { memory?: MemoryFigures }) => {
      if (!msg?.memory) return;
      clearTimeout(timer);
      child.child.off('message', on);
      resolve(msg.memory);
    };
    child.child.on('message', on);
    child.child.send({ memory: true, gc });
  });
}

interface RunData {
  zkVersion: string;
  startup: Record<Who, WatcherReady>;
  bulk: { creates: number; sentAt: number; lastAckAt: number; allSeenAt: Record<Who, number> };
  registrations: Registration[];
  children: Record<Who, Child>;
  /** CPU s from the bulk load's start to the end of the measured rounds, and peak RSS, per process (/proc). */
  processes: { who: Who | 'zookeeper'; cpuSeconds: number | null; peakRssMB: number | null }[];
  profile?: { file: string; summary: ProfileSummary };
}

/** CPU seconds so far of both watchers and ZooKeeper (the JVM, all threads). */
function cpuOf(all: Record<Who, Child>, zk: BenchZooKeeper): Record<Who | 'zookeeper', number | null> {
  const secs = (pid: number | undefined) => {
    const c = pid === undefined ? null : cpuTimes(pid);
    return c ? c.user + c.system : null;
  };
  return {
    sidecar: secs(all.sidecar.started.child.pid),
    watcher: secs(all.watcher.started.child.pid),
    zookeeper: secs(zk.pid),
  };
}

/** Peak RSS (VmHWM) of the same three. */
function usageOf(all: Record<Who, Child>, zk: BenchZooKeeper): Record<Who | 'zookeeper', number | null> {
  const peak = (pid: number | undefined) => (pid === undefined ? null : peakRssMB(pid));
  return {
    sidecar: peak(all.sidecar.started.child.pid),
    watcher: peak(all.watcher.started.child.pid),
    zookeeper: peak(zk.pid),
  };
}

async function measure(options: SuiteOptions): Promise<RunData> {
  const shape = shapeOf(options);
  let done = 0;
  const step = () => options.progress(++done, shape.rounds + 3);
  const log = (l: string) => options.log(`registry: ${l}`);
  const profileDir = process.env.MESHPORT_BENCH_PROFILE ? path.resolve(process.env.MESHPORT_BENCH_PROFILE) : undefined;
  let zk: BenchZooKeeper | undefined;
  let client: ZkClient | undefined;
  const children: Partial<Record<Who, Child>> = {};
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`registry: ${signal}, stopping\n`);
    process.exit(130); // the exit hook of forward/children kills ZooKeeper and the children by pid, removes the dir
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    log('starting ZooKeeper');
    zk = await startZooKeeper();
    const zkVersion = /version: (\d+(?:\.\d+)*)/i.exec(await zk.srvr())?.[1] ?? 'unknown';
    log(`ZooKeeper ${zkVersion} on ${zk.connectString} (pid ${zk.pid})`);
    const zkm = loadZooKeeperClient();
    client = await connectZooKeeper(zk.connectString);
    const c = client;

    log(`creating the providers nodes of ${shape.services} services`);
    const ifaces = Array.from({ length: shape.services }, (_, i) => interfaceName(i));
    await Promise.all(
      ifaces.map((iface) =>
        zkCall<string>((cb) => c.mkdirp(providersPath(iface), null, zkm.CreateMode.PERSISTENT, cb)),
      ),
    );

    log('starting the meshport sidecar and the bare watcher');
    const args = [JSON.stringify({ connectString: zk.connectString, services: shape.services })];
    const starts = WHO.map(async (w) => {
      const script = w === 'sidecar' ? 'registry-sidecar-process.js' : 'registry-watcher-process.js';
      const env =
        w === 'sidecar' && profileDir
          ? { ...process.env, MESHPORT_BENCH_PROFILE: path.join(profileDir, 'registry-sidecar.cpuprofile') }
          : process.env;
      if (w === 'sidecar' && profileDir) mkdirSync(profileDir, { recursive: true });
      // --expose-gc only lets the driver ask for a collection before the last memory reading; nothing else calls gc().
      const execArgv = ['--expose-gc', ...(w === 'sidecar' ? sidecarNodeFlags() : [])];
      const started = await startRunner<WatcherReady>(script, {
        args,
        env,
        execArgv,
        readyVia: 'ipc',
        timeoutMs: 60_000,
      });
      const child: Child = { started, seen: new Map() };
      started.child.on('message', (msg: Partial<SeenMessage>) => {
        if (!msg || !Array.isArray(msg.seen)) return;
        for (const [id, at] of msg.seen) if (!child.seen.has(id)) child.seen.set(id, at);
      });
      children[w] = child;
      return started;
    });
    const settled = await Promise.allSettled(starts);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    const all = children as Record<Who, Child>;
    const startup = { sidecar: all.sidecar.started.ready, watcher: all.watcher.started.ready };
    for (const w of WHO) all[w].memoryIdleGc = await askMemory(all[w].started, true);
    step();
    log(`subscribed: sidecar in ${int(startup.sidecar.startupMs)} ms, watcher in ${int(startup.watcher.startupMs)} ms`);

    // Bulk load: endpoints 0..8 of every service, up to BULK_WINDOW creates in flight.
    const bulkNodes: { node: string; id: string }[] = [];
    const startTime = Date.now();
    for (let e = 0; e < BULK_PER_SERVICE; e++) {
      for (let i = 0; i < shape.services; i++) {
        const url = providerUrl(ifaces[i], e, startTime);
        bulkNodes.push({
          node: `${providersPath(ifaces[i])}/${encodeURIComponent(url)}`,
          id: endpointId(serviceKey(i), endpointHost(e), PROVIDER_PORT),
        });
      }
    }
    log(`bulk load: ${int(bulkNodes.length)} provider nodes`);
    const cpuAtBulk = cpuOf(all, zk);
    const bulkSentAt = wallNow();
    let lastAckAt = 0;
    let next = 0;
    const worker = async () => {
      while (next < bulkNodes.length) {
        const { node } = bulkNodes[next++];
        await zkCall<string>((cb) => c.create(node, null, zkm.CreateMode.EPHEMERAL, cb));
        lastAckAt = wallNow();
      }
    };
    await Promise.all(Array.from({ length: BULK_WINDOW }, worker));
    await waitSeen(
      all,
      bulkNodes.map((b) => b.id),
      60_000,
    );
    const allSeenAt = Object.fromEntries(
      WHO.map((w) => [w, Math.max(...bulkNodes.map((b) => all[w].seen.get(b.id)!))]),
    ) as Record<Who, number>;
    step();
    log(
      `bulk load seen: sidecar after ${int(allSeenAt.sidecar - bulkSentAt)} ms, watcher after ${int(allSeenAt.watcher - bulkSentAt)} ms`,
    );
    await sleep(ROUND_PAUSE_MS);
    for (const w of WHO) all[w].memoryAfterBulk = await askMemory(all[w].started);

    // Measured registrations: endpoint 9 of every service, shuffled, one at a time, paced.
    const random = prng(0x5eed);
    const order = Array.from({ length: shape.services }, (_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    const registrations: Registration[] = [];
    const perRound = Math.ceil(shape.services / shape.rounds);
    const e = ENDPOINTS_PER_SERVICE - 1;
    for (let r = 0; r < shape.rounds; r++) {
      const slice = order.slice(r * perRound, (r + 1) * perRound);
      log(`round ${r + 1}/${shape.rounds}: ${slice.length} registrations, one every ${GAP_MIN_MS}-${GAP_MAX_MS} ms`);
      const acks: Promise<unknown>[] = [];
      for (const i of slice) {
        const url = providerUrl(ifaces[i], e, Date.now());
        const reg: Registration = {
          id: endpointId(serviceKey(i), endpointHost(e), PROVIDER_PORT),
          node: `${providersPath(ifaces[i])}/${encodeURIComponent(url)}`,
          sentAt: 0,
          round: r,
        };
        registrations.push(reg);
        reg.sentAt = wallNow();
        acks.push(
          zkCall<string>((cb) => c.create(reg.node, null, zkm.CreateMode.EPHEMERAL, cb)).then(() => {
            reg.ackAt = wallNow();
          }),
        );
        await sleep(GAP_MIN_MS + random() * (GAP_MAX_MS - GAP_MIN_MS));
      }
      await Promise.all(acks);
      await waitSeen(
        all,
        slice.map((i) => endpointId(serviceKey(i), endpointHost(e), PROVIDER_PORT)),
        30_000,
      );
      await sleep(ROUND_PAUSE_MS);
      step();
    }
    const usage = usageOf(all, zk);
    for (const w of WHO) all[w].memoryAfterAll = await askMemory(all[w].started);
    for (const w of WHO) all[w].memoryAfterGc = await askMemory(all[w].started, true);
    log('measured; stopping');

    let profile: RunData['profile'];
    if (profileDir) {
      await stopChild(all.sidecar.started.child, 10_000);
      const file = path.join(profileDir, 'registry-sidecar.cpuprofile');
      try {
        profile = { file, summary: summarizeProfile(readProfile(file), 20) };
      } catch (err) {
        log(`no profile read from ${file}: ${(err as Error).message}`);
      }
    }
    step();
    const cpuAtEnd = cpuOf(all, zk);
    const processes = (['sidecar', 'watcher', 'zookeeper'] as const).map((k) => ({
      who: k,
      cpuSeconds: cpuAtBulk[k] === null || cpuAtEnd[k] === null ? null : cpuAtEnd[k]! - cpuAtBulk[k]!,
      peakRssMB: usage[k],
    }));
    return {
      zkVersion,
      processes,
      startup,
      bulk: { creates: bulkNodes.length, sentAt: bulkSentAt, lastAckAt, allSeenAt },
      registrations,
      children: all,
      profile,
    };
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await Promise.all(WHO.map((w) => (children[w] ? stopChild(children[w]!.started.child) : Promise.resolve())));
    client?.close();
    await zk?.stop();
  }
}

async function run(options: SuiteOptions): Promise<SuiteReport> {
  const shape = shapeOf(options);
  const data = await measure(options);
  const { registrations, children } = data;

  const lat: Record<Who, number[]> = { sidecar: [], watcher: [] };
  const missing: Record<Who, number> = { sidecar: 0, watcher: 0 };
  const extra: number[] = []; // sidecar minus watcher, per registration
  for (const reg of registrations) {
    const t: Partial<Record<Who, number>> = {};
    for (const w of WHO) {
      const at = children[w].seen.get(reg.id);
      if (at === undefined) missing[w]++;
      else lat[w].push((t[w] = at - reg.sentAt));
    }
    if (t.sidecar !== undefined && t.watcher !== undefined) extra.push(t.sidecar - t.watcher);
  }
  const d: Record<Who, Dist> = { sidecar: dist(lat.sidecar), watcher: dist(lat.watcher) };
  const ack = dist(registrations.filter((r) => r.ackAt !== undefined).map((r) => r.ackAt! - r.sentAt));
  const added = dist(extra);
  const perRoundP99 = (w: Who) =>
    Array.from({ length: shape.rounds }, (_, r) =>
      round(
        dist(
          registrations
            .filter((x) => x.round === r && children[w].seen.has(x.id))
            .map((x) => children[w].seen.get(x.id)! - x.sentAt),
        ).p99,
        2,
      ),
    );
  const bulkMs = (w: Who) => data.bulk.allSeenAt[w] - data.bulk.sentAt;
  const mem = (w: Who) => ({
    idle: data.startup[w].memory,
    idleGc: children[w].memoryIdleGc!,
    bulk: children[w].memoryAfterBulk!,
    all: children[w].memoryAfterAll!,
    gc: children[w].memoryAfterGc!,
  });
  const ratio = d.sidecar.p99 / d.watcher.p99;
  const sidecarMem = mem('sidecar');
  const rssMB = sidecarMem.all.rss / MB;
  const peakMB = sidecarMem.all.maxRss / MB;
  const p99Met = d.sidecar.p99 <= GOAL_P99_MS && missing.sidecar === 0;
  const rssMet = rssMB <= GOAL_RSS_MB;
  const peakMet = peakMB <= GOAL_RSS_MB;

  const results: ResultRow[] = WHO.map((w) => {
    const m = mem(w);
    const row: ResultRow = {
      name: LABEL[w],
      registrations: registrations.length,
      missed: missing[w],
      p50ms: round(d[w].p50, 2),
      p90ms: round(d[w].p90, 2),
      p99ms: round(d[w].p99, 2),
      maxMs: round(d[w].max, 2),
      meanMs: round(d[w].mean, 2),
      p99msPerRound: perRoundP99(w),
      bulkEndpoints: data.bulk.creates,
      bulkAllSeenMs: round(bulkMs(w), 1),
      subscribeMs: round(data.startup[w].startupMs, 1),
      rssIdleMB: round(m.idle.rss / MB, 1),
      rssIdleAfterGcMB: round(m.idleGc.rss / MB, 1),
      heapUsedIdleAfterGcMB: round(m.idleGc.heapUsed / MB, 1),
      rssAfterBulkMB: round(m.bulk.rss / MB, 1),
      rssAfterAllMB: round(m.all.rss / MB, 1),
      peakRssMB: round(m.all.maxRss / MB, 1),
      heapUsedAfterAllMB: round(m.all.heapUsed / MB, 1),
      heapTotalAfterAllMB: round(m.all.heapTotal / MB, 1),
      externalAfterAllMB: round(m.all.external / MB, 1),
      rssAfterGcMB: round(m.gc.rss / MB, 1),
      heapUsedAfterGcMB: round(m.gc.heapUsed / MB, 1),
      heapTotalAfterGcMB: round(m.gc.heapTotal / MB, 1),
      externalAfterGcMB: round(m.gc.external / MB, 1),
    };
    if (w === 'sidecar') {
      Object.assign(row, {
        p99RatioVsBare: round(ratio, 2),
        addedP50ms: round(added.p50, 2),
        addedP99ms: round(added.p99, 2),
        p99GoalMs: GOAL_P99_MS,
        p99GoalMet: p99Met,
        rssGoalMB: GOAL_RSS_MB,
        rssGoalMet: rssMet,
        peakRssGoalMet: peakMet,
      } satisfies Record<string, Figure>);
    }
    return row;
  });
  results.push({
    name: 'zookeeper-create-ack',
    registrations: ack.n,
    p50ms: round(ack.p50, 2),
    p90ms: round(ack.p90, 2),
    p99ms: round(ack.p99, 2),
    maxMs: round(ack.max, 2),
    meanMs: round(ack.mean, 2),
    bulkLastAckMs: round(data.bulk.lastAckAt - data.bulk.sentAt, 1),
    zookeeperVersion: data.zkVersion,
  });

  const endpoints = shape.services * ENDPOINTS_PER_SERVICE;
  const ms = (x: number) => fixed(x, 1);
  const mb = (x: number) => fixed(x / MB, 1);
  const headers = [
    'case',
    'p50 ms',
    'p90 ms',
    'p99 ms',
    'max ms',
    'missed',
    `bulk ${int(data.bulk.creates / 1000)}k ms`,
    'RSS idle MB',
    `RSS ${int(endpoints / 1000)}k MB`,
    'peak RSS MB',
    'heap used MB',
    'after GC: RSS / heap MB',
  ];
  const align: Align[] = ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'];
  const rows = [
    ...WHO.map((w) => {
      const m = mem(w);
      return [
        LABEL[w],
        ms(d[w].p50),
        ms(d[w].p90),
        ms(d[w].p99),
        ms(d[w].max),
        String(missing[w]),
        int(bulkMs(w)),
        mb(m.idle.rss),
        mb(m.all.rss),
        mb(m.all.maxRss),
        mb(m.all.heapUsed),
        `${mb(m.gc.rss)} / ${mb(m.gc.heapUsed)}`,
      ];
    }),
    [
      'ZooKeeper create() ack',
      ms(ack.p50),
      ms(ack.p90),
      ms(ack.p99),
      ms(ack.max),
      '-',
      `${int(data.bulk.lastAckAt - data.bulk.sentAt)} (last ack)`,
      '-',
      '-',
      '-',
      '-',
      '-',
    ],
    [
      'sidecar minus watcher, per registration',
      ms(added.p50),
      ms(added.p90),
      ms(added.p99),
      ms(added.max),
      '-',
      int(bulkMs('sidecar') - bulkMs('watcher')),
      '-',
      '-',
      '-',
      '-',
      '-',
    ],
  ];
  const goalHeaders = ['goal', 'measured', 'target', 'met'];
  const goalAlign: Align[] = ['l', 'r', 'r', 'l'];
  const goalRows = [
    [
      'p99 registration -> routed by the sidecar',
      `${ms(d.sidecar.p99)} ms`,
      `<= ${GOAL_P99_MS} ms`,
      p99Met ? 'yes' : 'NO',
    ],
    [
      `sidecar RSS with ${int(endpoints)} endpoints / ${int(shape.services)} services`,
      `${fixed(rssMB, 1)} MB`,
      `<= ${GOAL_RSS_MB} MB`,
      rssMet ? 'yes' : 'NO',
    ],
    ['sidecar peak RSS over the run', `${fixed(peakMB, 1)} MB`, `<= ${GOAL_RSS_MB} MB`, peakMet ? 'yes' : 'NO'],
    ['p99: meshport-sidecar / bare-watcher', `${fixed(ratio, 2)}x`, '(reported)', '-'],
  ];

  const sm = sidecarMem;
  const wm = mem('watcher');
  const verdict: string[] = [];
  verdict.push(
    `p99 goal ${p99Met ? 'met' : 'missed'}: ${ms(d.sidecar.p99)} ms against ${GOAL_P99_MS} ms` +
      (p99Met
        ? ` (${fixed(GOAL_P99_MS / d.sidecar.p99, 1)}x headroom)`
        : ` (${ms(d.sidecar.p99 - GOAL_P99_MS)} ms over)`) +
      `; the bare watcher's p99 is ${ms(d.watcher.p99)} ms, so meshport's p99 is ${fixed(ratio, 2)}x the floor. ` +
      `Per registration the sidecar saw the endpoint ${ms(added.p50)} ms (p50) / ${ms(added.p99)} ms (p99) after the bare watcher; ` +
      `ZooKeeper itself acknowledged the create() after ${ms(ack.p50)} ms (p50) / ${ms(ack.p99)} ms (p99).` +
      (missing.sidecar > 0 ? ` ${missing.sidecar} registrations were never seen by the sidecar.` : ''),
  );
  verdict.push(
    `RSS goal ${rssMet ? 'met' : 'missed'}: ${fixed(rssMB, 1)} MB with all ${int(endpoints)} endpoints` +
      (rssMet ? '' : ` (${fixed(rssMB - GOAL_RSS_MB, 1)} MB over)`) +
      `, peak ${fixed(peakMB, 1)} MB${peakMet ? '' : ` (${fixed(peakMB - GOAL_RSS_MB, 1)} MB over ${GOAL_RSS_MB})`}. ` +
      `Of that, ${mb(sm.idle.rss)} MB is the sidecar subscribed to ${int(shape.services)} empty services before any endpoint (V8 heap ${mb(sm.idle.heapUsed)} MB used); ` +
      `the ${int(endpoints)} endpoints add ${mb(sm.all.rss - sm.idle.rss)} MB of RSS. What the sidecar holds on to is small: after two forced full GCs its ` +
      `V8 heap holds ${mb(sm.gc.heapUsed)} MB with ${int(endpoints)} endpoints against ${mb(sm.idleGc.heapUsed)} MB with none ` +
      `(${int((sm.gc.heapUsed - sm.idleGc.heapUsed) / (data.bulk.creates + registrations.length))} bytes an endpoint), while its RSS stays at ${mb(sm.gc.rss)} MB ` +
      `(V8 heap committed ${mb(sm.gc.heapTotal)} MB): the growth is heap V8 sized for the garbage the loading made, and memory outside the V8 heap. ` +
      `The bare watcher: ${mb(wm.idle.rss)} MB idle, ${mb(wm.all.rss)} MB with ${int(endpoints)}, peak ${mb(wm.all.maxRss)} MB, ${mb(wm.gc.rss)} MB / ${mb(wm.gc.heapUsed)} MB heap after GC.`,
  );

  const notes = [
    ...(sidecarNodeFlags().length > 0
      ? [
          `The sidecar child ran with extra node flags (MESHPORT_BENCH_SIDECAR_FLAGS): \`${sidecarNodeFlags().join(' ')}\`.`,
        ]
      : []),
    `ZooKeeper ${data.zkVersion}, standalone, started by the suite (tickTime 500, data dir in the OS temp dir, fsync on); ` +
      "the driver, ZooKeeper and the two watchers share the machine's CPUs.",
    `Services ${serviceKey(0)} .. ${serviceKey(shape.services - 1)}, ${ENDPOINTS_PER_SERVICE} endpoints each (127.0.0.1-10:${PROVIDER_PORT}), as ` +
      'sofa-rpc-node writes them: EPHEMERAL nodes `/sofa-rpc/<interface>/providers/<encodeURIComponent(bolt URL)>` (the providers nodes made ' +
      'beforehand, as for services already known to the registry). The driver (this process) plays the provider sidecars with one node-zookeeper-client session.',
    'meshport-sidecar: `runners/registry-sidecar-process`, the real `Sidecar` from @meshport/sidecar (router listeners, admin, pino at warn) with one ' +
      `\`zookeeper\` registry (no facade) whose \`services\` lists the ${int(shape.services)} keys; ` +
      "an endpoint counts as seen when the route table's change listener " +
      "finds it in `outbound(service)` (that listener runs after the router's own). bare-watcher: `runners/registry-watcher-process`, " +
      'node-zookeeper-client getChildren with a watch on each providers node, re-armed on every event, new children decoded to host:port.',
    `Both watch at the same time: every registration is timed by both. Bulk load: endpoints 1-${BULK_PER_SERVICE} of every service ` +
      `(${int(data.bulk.creates)} creates, ${BULK_WINDOW} in flight), timed from the first create() to the last endpoint each child saw. ` +
      `Measured: the ${ENDPOINTS_PER_SERVICE}th endpoint of every service (${registrations.length} registrations), in ${shape.rounds} rounds of ` +
      `${Math.ceil(shape.services / shape.rounds)} in a fixed shuffled order, one create() every ${GAP_MIN_MS}-${GAP_MAX_MS} ms; latency = the child's ` +
      "wall clock (performance.timeOrigin + performance.now()) when it saw the endpoint minus the driver's just before create(). " +
      `Percentiles pool all rounds (p99 by round: sidecar ${perRoundP99('sidecar').join(' / ')} ms, watcher ${perRoundP99('watcher').join(' / ')} ms).`,
    'RSS: process.memoryUsage().rss of the child, asked over IPC after the measured rounds (all endpoints), and at start ' +
      '(subscribed, no endpoints); peak: process.resourceUsage().maxRSS. MB = 2^20 bytes. The goal is judged on the reading without a ' +
      "forced GC (what the process holds in normal running); 'after GC' is a last reading after two gc() calls (children run with --expose-gc, nothing else calls it).",
    `The suite has a fixed shape (${int(shape.services)} services, ${ENDPOINTS_PER_SERVICE} endpoints each, ${int(shape.services)} measured registrations${options.quick ? '; quick mode: the full run has 1k services' : ''}); --duration and --rounds do not apply to it.`,
  ];

  const profile: ReportSection[] = data.profile
    ? [
        {
          lines: profilesMarkdown(
            'Profile of the sidecar child, its whole life (MESHPORT_BENCH_PROFILE; node:inspector, 200 us sampling: the figures above are of a profiled run)',
            [{ role: 'sidecar', summary: data.profile.summary }],
            12,
          ),
        },
      ]
    : [];

  const { text, markdown } = renderReport([
    { headers, align, rows },
    { headers: goalHeaders, align: goalAlign, rows: goalRows },
    { notes: [...verdict, ...notes] },
    ...profile,
  ]);
  const perRoundP50 = (w: Who) =>
    Array.from(
      { length: shape.rounds },
      (_, r) =>
        dist(
          registrations
            .filter((x) => x.round === r && children[w].seen.has(x.id))
            .map((x) => children[w].seen.get(x.id)! - x.sentAt),
        ).p50,
    );
  const rr = (name: string, a: number[], b: number[]): Metric => {
    const r = roundRatio(a, b);
    return {
      name,
      value: round(r.ratio, 3),
      unit: 'x',
      better: 'lower',
      spread: round(r.spread, 3),
      rounds: r.rounds,
      peer: 'bare-watcher',
    };
  };
  const single = (name: string, value: number, unit: string, peer?: string): Metric => ({
    name,
    value: round(value, 3),
    unit,
    better: 'lower',
    spread: 0,
    rounds: 1,
    peer,
  });
  const metrics: Metric[] = [
    rr('p99 registration -> seen: meshport-sidecar / bare-watcher', perRoundP99('sidecar'), perRoundP99('watcher')),
    rr('p50 registration -> seen: meshport-sidecar / bare-watcher', perRoundP50('sidecar'), perRoundP50('watcher')),
    single(
      'bulk load all seen: meshport-sidecar / bare-watcher',
      bulkMs('sidecar') / bulkMs('watcher'),
      'x',
      'bare-watcher',
    ),
    single(
      // The endpoint count is in the name: a quick run (a tenth) is not compared with a full run's memory.
      `RSS with ${int(shape.services * ENDPOINTS_PER_SERVICE)} endpoints: meshport-sidecar / bare-watcher`,
      sidecarMem.all.rss / mem('watcher').all.rss,
      'x',
      'bare-watcher',
    ),
    {
      name: 'meshport-sidecar p99 registration -> routed',
      value: round(d.sidecar.p99, 2),
      unit: 'ms',
      better: 'lower',
      spread: round(spread(perRoundP99('sidecar')), 3),
      rounds: shape.rounds,
    },
    single(`meshport-sidecar RSS with ${int(shape.services * ENDPOINTS_PER_SERVICE)} endpoints`, rssMB, 'MB'),
  ];
  const whoName = {
    sidecar: 'meshport sidecar',
    watcher: 'bare node-zookeeper-client watcher',
    zookeeper: 'ZooKeeper (JVM)',
  };
  const processes: ProcessUsage[] = data.processes.map((p) => ({
    scope: 'bulk load + measured rounds',
    process: whoName[p.who],
    cpuSeconds: p.cpuSeconds === null ? null : round(p.cpuSeconds, 2),
    peakRssMB: p.peakRssMB === null ? null : round(p.peakRssMB, 1),
  }));
  const charts = {
    bars: {
      title: `Bulk load: endpoints seen per second (${int(data.bulk.creates)} at once)`,
      unit: 'endpoints/s',
      bars: WHO.map((w) => ({ label: LABEL[w], value: (data.bulk.creates * 1000) / bulkMs(w) })),
    },
    lines: {
      title: 'Registration -> seen, one at a time',
      unit: 'ms',
      x: ['p50', 'p90', 'p99', 'max'],
      log: true,
      series: [
        ...WHO.map((w) => ({ label: LABEL[w], values: [d[w].p50, d[w].p90, d[w].p99, d[w].max] })),
        { label: 'ZooKeeper create() ack', values: [ack.p50, ack.p90, ack.p99, ack.max] },
      ],
    },
  };
  return { suite: 'registry', results, metrics, processes, charts, text, markdown };
}

/** The README's glance cells, from a saved results line. */
function glance(results: ResultRow[]): { figures: string; goal: string } | null {
  const sidecar = results.find((r) => r.name === 'meshport-sidecar');
  if (!sidecar || typeof sidecar.p99ms !== 'number' || typeof sidecar.rssAfterAllMB !== 'number') return null;
  const endpoints = Number(sidecar.bulkEndpoints) + Number(sidecar.registrations);
  const p99Goal = Number(sidecar.p99GoalMs);
  const rssGoal = Number(sidecar.rssGoalMB);
  const rssOver = sidecar.rssAfterAllMB - rssGoal;
  return {
    figures:
      `registration -> routed p99 ${fixed(sidecar.p99ms, 1)} ms, ${fixed(Number(sidecar.p99RatioVsBare), 2)}x a bare ZooKeeper watcher; ` +
      `RSS ${fixed(sidecar.rssAfterAllMB, 1)} MB with ${int(endpoints)} endpoints`,
    goal:
      `p99 <= ${p99Goal} ms ${sidecar.p99GoalMet ? 'met' : 'missed'}; ` +
      `RSS <= ${rssGoal} MB ${rssOver <= 0 ? 'met' : `missed by ${fixed(rssOver, 1)} MB`}`,
  };
}

export const registrySuite: Suite = {
  name: 'registry',
  summary:
    'ZooKeeper registration -> route in a sidecar, 10k endpoints / 1k services: p50-p99 vs a bare watcher, sidecar RSS',
  glance,
  run,
};
