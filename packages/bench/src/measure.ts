// The measuring harness every suite shares: warm-up, interleaved timed samples, median, heap allocated per frame.

import * as v8 from 'node:v8';
import { median } from './stats';

/**
 * One thing to measure. `run(calls)` does `calls` units of work and returns a number derived from every result, which
 * the harness folds into a sink that is printed at the end: no result can be dropped as dead code.
 */
export interface Workload {
  /** Stable identifier, used as `name` in the JSON results. */
  name: string;
  /** Human label for tables. */
  label: string;
  /** Frames one call handles (1 for a single-frame decode, the whole stream for a streaming pass). */
  framesPerCall: number;
  /** Bytes one call handles. */
  bytesPerCall: number;
  run(calls: number): number;
}

export interface Measurement {
  /** Median of the samples. */
  framesPerSec: number;
  nsPerFrame: number;
  /** 10^6 bytes per second, at the median rate. */
  mbPerSec: number;
  /** Every sample's frames per second, in the order taken. */
  samples: number[];
  /** (max - min) / median of the samples. */
  spread: number;
  /** V8 heap bytes allocated per frame, or null when it could not be measured. */
  heapBytesPerFrame: number | null;
  /** CPU seconds (user + system, the whole process) spent in this workload's timed samples. */
  cpuSeconds: number;
}

export interface MeasureOptions {
  /** Timed seconds per workload, split over `rounds` samples. */
  seconds: number;
  rounds: number;
  /** Untimed seconds per workload before the first sample. */
  warmupSeconds: number;
  log: (line: string) => void;
  /** Steps done of all steps (warm-ups, samples, allocation runs). */
  progress?: (done: number, total: number) => void;
}

/** Everything every workload returned, xor-folded; reported so that the work stays observable. */
let sink = 0;
export function sinkValue(): number {
  return sink;
}

const BATCH_NS = 2_000_000n; // one timed batch lasts about 2 ms: hrtime calls cost nothing next to it

/** Calls per batch such that one batch takes about BATCH_NS. */
function calibrate(w: Workload): number {
  let calls = 1;
  for (;;) {
    const t0 = process.hrtime.bigint();
    sink ^= w.run(calls);
    const dt = process.hrtime.bigint() - t0;
    if (dt >= BATCH_NS / 2n || calls >= 1 << 30) {
      const scaled = Math.round((calls * Number(BATCH_NS)) / Math.max(1, Number(dt)));
      return Math.max(1, scaled);
    }
    calls *= 2;
  }
}

/** Runs batches for at least `seconds`; returns frames per second. */
function sample(w: Workload, batch: number, seconds: number): number {
  const budget = BigInt(Math.round(seconds * 1e9));
  let calls = 0;
  const t0 = process.hrtime.bigint();
  let dt = 0n;
  do {
    sink ^= w.run(batch);
    calls += batch;
    dt = process.hrtime.bigint() - t0;
  } while (dt < budget);
  return (calls * w.framesPerCall * 1e9) / Number(dt);
}

/** Allocation is measured with v8.GCProfiler, which needs no flag: Node >= 19.6 has it. */
export function heapMeasurementMethod(): string | null {
  return typeof v8.GCProfiler === 'function'
    ? 'used V8 heap after minus before, plus what every GC in between freed (v8.GCProfiler); ArrayBuffer backing stores (external memory) are not counted'
    : null;
}

/**
 * V8 heap bytes allocated per frame over about `seconds` of work: heap used after minus before, plus whatever each GC
 * in between freed (from v8.GCProfiler's before/after figures), so collections during the run do not hide anything.
 */
function heapPerFrame(w: Workload, batch: number, batchesNeeded: number): number | null {
  if (typeof v8.GCProfiler !== 'function') return null;
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) gc();
  const profiler = new v8.GCProfiler();
  profiler.start();
  const before = v8.getHeapStatistics().used_heap_size;
  for (let i = 0; i < batchesNeeded; i++) sink ^= w.run(batch);
  const after = v8.getHeapStatistics().used_heap_size;
  const profile = profiler.stop();
  let freed = 0;
  for (const s of profile.statistics) {
    freed += s.beforeGC.heapStatistics.usedHeapSize - s.afterGC.heapStatistics.usedHeapSize;
  }
  const frames = batch * batchesNeeded * w.framesPerCall;
  return Math.max(0, (after - before + freed) / frames);
}

/**
 * Warms every workload up, then takes `rounds` samples of each in turn (round-robin, so a drift of the machine's
 * speed touches every workload alike), and reports the median. Then measures allocation per frame.
 */
export function measureAll(workloads: Workload[], opts: MeasureOptions): Map<string, Measurement> {
  const batches = new Map<string, number>();
  const steps = workloads.length * (opts.rounds + 2);
  let done = 0;
  const step = () => opts.progress?.(++done, steps);
  for (const w of workloads) {
    opts.log(`warming up ${w.label}`);
    let batch = calibrate(w);
    const t0 = process.hrtime.bigint();
    const warmNs = BigInt(Math.round(opts.warmupSeconds * 1e9));
    while (process.hrtime.bigint() - t0 < warmNs) sink ^= w.run(batch);
    batch = calibrate(w); // again, now that the code is optimized
    batches.set(w.name, batch);
    step();
  }
  const samples = new Map<string, number[]>(workloads.map((w) => [w.name, []]));
  const cpu = new Map<string, number>(workloads.map((w) => [w.name, 0]));
  const per = opts.seconds / opts.rounds;
  for (let r = 0; r < opts.rounds; r++) {
    opts.log(`round ${r + 1}/${opts.rounds}`);
    for (const w of workloads) {
      const c0 = process.cpuUsage();
      samples.get(w.name)!.push(sample(w, batches.get(w.name)!, per));
      const c = process.cpuUsage(c0);
      cpu.set(w.name, cpu.get(w.name)! + (c.user + c.system) / 1e6);
      step();
    }
  }
  const out = new Map<string, Measurement>();
  for (const w of workloads) {
    const xs = samples.get(w.name)!;
    const fps = median(xs);
    const batch = batches.get(w.name)!;
    // About 0.25 s of work, but at least one batch.
    const batchFrames = batch * w.framesPerCall;
    const batchesNeeded = Math.max(1, Math.round((fps * 0.25) / batchFrames));
    opts.log(`heap allocation of ${w.label}`);
    out.set(w.name, {
      framesPerSec: fps,
      nsPerFrame: 1e9 / fps,
      mbPerSec: (fps * (w.bytesPerCall / w.framesPerCall)) / 1e6,
      samples: xs,
      spread: (Math.max(...xs) - Math.min(...xs)) / fps,
      heapBytesPerFrame: heapPerFrame(w, batch, batchesNeeded),
      cpuSeconds: cpu.get(w.name)!,
    });
    step();
  }
  return out;
}
