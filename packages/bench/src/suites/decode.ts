// Suite `decode`: header decode frames/s of meshport next to the peers' own decoders, on frames the peers encoded.

import { FrameSplitter, decodeFrame, type BoltFrameHeader, type DubboFrameHeader } from '@meshport/protocol';
import * as dubboPeer from 'dubbo-remoting/lib/protocol';
import { DecoderV2 } from 'hessian.js';
import * as boltPeer from 'sofa-bolt-node/lib/protocol';
import { type Align, fixed, int, percent } from '../format';
import { renderReport } from '../render';
import { type Measurement, type Workload, heapMeasurementMethod, measureAll } from '../measure';
import { roundRatio } from '../stats';
import type { Figure, Metric, ProcessUsage, ResultRow, Suite, SuiteOptions, SuiteReport } from '../suite';

/** Body (Bolt content, Dubbo body) size the fixtures are fitted to. */
export const TARGET_BODY = 256;
/** Distinct frames cycled through (a power of two); ~390 KB of Bolt frames, so the set stays in cache as socket data would. */
const RING = 1024;
const MASK = RING - 1;
/** Chunk size of the streaming case, as a socket read might deliver. */
const CHUNK = 64 * 1024;

export const BOLT_SERVICE = 'com.alipay.meshport.bench.EchoService:1.0';
export const DUBBO_INTERFACE = 'org.apache.dubbo.meshport.bench.EchoService';
export const DUBBO_VERSION = '1.0.0';
const METHOD = 'echo';

const GOAL_BOLT_RATIO = 20;
const GOAL_DUBBO_RATIO = 5;
const GOAL_BOLT_RATE = 5_000_000;

const ARG_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

export function argText(n: number): string {
  return ARG_ALPHABET.repeat(Math.ceil(n / ARG_ALPHABET.length) + 1).slice(0, n);
}

/** A SofaRequest for `echo(String)` as sofa-bolt-node encodes it: Bolt v1, hessian2, header map `service` only. */
export function boltRequest(id: number, arg: string): Buffer {
  return boltPeer.requestEncode(
    id,
    {
      serverSignature: BOLT_SERVICE,
      methodName: METHOD,
      args: [{ $class: 'java.lang.String', $: arg }],
      timeout: 3000,
    },
    { protocolType: 'bolt', codecType: 'hessian2', boltVersion: 1 },
  );
}

/** A Dubbo hessian2 request for `echo(String)` as dubbo-remoting encodes it. */
export function dubboRequest(id: number, arg: string): Buffer {
  // Copied: the encoder's output may share memory with its next output.
  return Buffer.from(
    dubboPeer.requestEncode(
      id,
      { serverSignature: `${DUBBO_INTERFACE}:${DUBBO_VERSION}`, methodName: METHOD, args: [arg], group: '' },
      { codecType: 'hessian2' },
    ),
  );
}

// Body lengths read straight from the wire layout (PROTOCOLS.md), not through the code under test.
export const boltContentLength = (f: Buffer) => f.readInt32BE(18); // v1 request: contentLen at 18-21
export const dubboBodyLength = (f: Buffer) => f.readInt32BE(12);

/** The shortest argument whose frame has a body of exactly `target` bytes (else the first one above it). */
export function fitArgument(make: (arg: string) => Buffer, bodyLength: (f: Buffer) => number, target: number): string {
  let above: string | undefined;
  for (let n = 0; n <= 4 * target; n++) {
    const len = bodyLength(make(argText(n)));
    if (len === target) return argText(n);
    if (len > target && above === undefined) above = argText(n);
  }
  if (above === undefined) throw new Error(`no argument gives a ${target}-byte body`);
  return above;
}

interface Fixtures {
  bolt: Buffer[];
  dubbo: Buffer[];
  boltArg: string;
  dubboArg: string;
  /** Concatenated Bolt frames cut into CHUNK-byte pieces. */
  chunks: Buffer[];
  streamBytes: number;
}

function makeFixtures(): Fixtures {
  const boltArg = fitArgument((a) => boltRequest(1, a), boltContentLength, TARGET_BODY);
  const dubboArg = fitArgument((a) => dubboRequest(1, a), dubboBodyLength, TARGET_BODY);
  const bolt: Buffer[] = [];
  const dubbo: Buffer[] = [];
  for (let i = 0; i < RING; i++) {
    const id = 0x1000 + i * 7919; // distinct, and every byte of the id varies
    bolt.push(boltRequest(id, boltArg));
    dubbo.push(dubboRequest(id, dubboArg));
  }
  const stream = Buffer.concat(bolt);
  const chunks: Buffer[] = [];
  for (let off = 0; off < stream.length; off += CHUNK)
    chunks.push(stream.subarray(off, Math.min(off + CHUNK, stream.length)));
  return { bolt, dubbo, boltArg, dubboArg, chunks, streamBytes: stream.length };
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`decode suite: fixture check failed: ${what}`);
}

/** Every decoder must read the fixtures correctly before its speed means anything. */
function checkFixtures(fx: Fixtures, boltOptions: boltPeer.BoltDecodeOptions): void {
  for (let i = 0; i < RING; i++) {
    const f = fx.bolt[i];
    const h = decodeFrame(f);
    check(h.protocol === 'bolt' && h.kind === 'request', 'meshport reads a Bolt request');
    check(h.requestId === f.readInt32BE(5) && h.service === BOLT_SERVICE, 'meshport reads Bolt service and id');
    check(h.frameLength === f.length && h.bodyLength === boltContentLength(f), 'meshport measures the Bolt frame');
    const d = fx.dubbo[i];
    const dh = decodeFrame(d);
    check(dh.protocol === 'dubbo' && dh.kind === 'request', 'meshport reads a Dubbo request');
    check(dh.service === DUBBO_INTERFACE && dh.method === METHOD, 'meshport reads Dubbo service and method');
    check(dh.requestId === String(d.readUInt32BE(8)), 'meshport reads the Dubbo id');
  }
  const p = boltPeer.decode(fx.bolt[0], boltOptions);
  check(p.packetType === 'request' && p.packetId === fx.bolt[0].readInt32BE(5), 'sofa-bolt-node reads the id');
  check(p.data?.serverSignature === BOLT_SERVICE && p.data.args[0] === fx.boltArg, 'sofa-bolt-node reads the body');
  const values = hessianReadAll(fx.dubbo[0]);
  check(values.length === 7 && values[1] === DUBBO_INTERFACE && values[5] === fx.dubboArg, 'hessian.js reads the body');
  let frames = 0;
  const splitter = new FrameSplitter((frame) => {
    const h = decodeFrame(frame);
    check(h.requestId === fx.bolt[frames].readInt32BE(5), 'FrameSplitter keeps frame order');
    frames++;
  });
  for (const c of fx.chunks) splitter.write(c);
  check(frames === RING && splitter.buffered === 0, 'FrameSplitter yields every frame of the stream');
}

function hessianReadAll(frame: Buffer): unknown[] {
  const d = new DecoderV2(frame);
  d.position(16);
  const out: unknown[] = [];
  while (d.byteBuffer.position() < frame.length) out.push(d.read());
  return out;
}

// ---- Workloads. Each folds the fields a router needs (id, service) into its return value. ----

function meshportBolt(ring: Buffer[]): Workload['run'] {
  let i = 0;
  return (calls) => {
    let s = 0;
    for (let n = 0; n < calls; n++) {
      const h = decodeFrame(ring[i]) as BoltFrameHeader;
      s ^= h.requestId ^ h.service!.length;
      i = (i + 1) & MASK;
    }
    return s;
  };
}

function sofaBoltNode(ring: Buffer[], options: boltPeer.BoltDecodeOptions): Workload['run'] {
  let i = 0;
  return (calls) => {
    let s = 0;
    for (let n = 0; n < calls; n++) {
      const p = boltPeer.decode(ring[i], options);
      s ^= p.packetId ^ p.data!.serverSignature.length;
      i = (i + 1) & MASK;
    }
    return s;
  };
}

/**
 * Dubbo workloads write a fresh request id into the frame before decoding, as a live connection carries: meshport
 * turns the int64 id into a decimal string, and a recurring id would be served from V8's number-to-string cache.
 * Both sides pay the same 4-byte write.
 */
let dubboId = 1;
function nextDubboId(): number {
  dubboId = dubboId === 0x3fffffff ? 1 : dubboId + 1;
  return dubboId;
}

function meshportDubbo(ring: Buffer[]): Workload['run'] {
  let i = 0;
  return (calls) => {
    let s = 0;
    for (let n = 0; n < calls; n++) {
      const f = ring[i];
      f.writeUInt32BE(nextDubboId(), 8);
      const h = decodeFrame(f) as DubboFrameHeader;
      s ^= h.requestId.length ^ h.service!.length;
      i = (i + 1) & MASK;
    }
    return s;
  };
}

/** What a Dubbo proxy without a header-only path does: a full hessian2 decode of the body. */
function hessianFull(ring: Buffer[]): Workload['run'] {
  let i = 0;
  return (calls) => {
    let s = 0;
    for (let n = 0; n < calls; n++) {
      const f = ring[i];
      f.writeUInt32BE(nextDubboId(), 8);
      const d = new DecoderV2(f);
      d.position(16);
      const end = f.length;
      let service: unknown;
      let values = 0;
      while (d.byteBuffer.position() < end) {
        const v = d.read();
        if (values === 1) service = v;
        values++;
      }
      s ^= f.readUInt32BE(8) ^ (service as string).length ^ values;
      i = (i + 1) & MASK;
    }
    return s;
  };
}

function meshportStream(chunks: Buffer[]): Workload['run'] {
  let s = 0;
  const splitter = new FrameSplitter((frame) => {
    const h = decodeFrame(frame) as BoltFrameHeader;
    s ^= h.requestId ^ h.service!.length;
  });
  return (calls) => {
    s = 0;
    for (let n = 0; n < calls; n++) {
      for (let c = 0; c < chunks.length; c++) splitter.write(chunks[c]);
    }
    return s ^ splitter.buffered;
  };
}

// ---- Report ----

const NAMES = {
  boltMeshport: 'bolt/meshport-decodeFrame',
  boltPeer: 'bolt/sofa-bolt-node-decode',
  dubboMeshport: 'dubbo/meshport-decodeFrame',
  dubboPeer: 'dubbo/hessian.js-DecoderV2',
  stream: 'bolt-stream/meshport-FrameSplitter+decodeFrame',
} as const;

interface Goal {
  what: string;
  measured: string;
  target: string;
  met: boolean;
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

function run(options: SuiteOptions): SuiteReport {
  options.log("decode: building fixtures with the peers' encoders");
  const fx = makeFixtures();
  const classCache = Object.assign(new Map<string, unknown>(), { enableCompile: true });
  // What sofa-rpc-node's server hands sofa-bolt-node's decoder (its fastest configuration: compiled class decoders).
  const boltOptions: boltPeer.BoltDecodeOptions = { sentReqs: new Map(), classCache };
  checkFixtures(fx, boltOptions);

  const boltBytes = fx.bolt[0].length;
  const dubboBytes = fx.dubbo[0].length;
  const workloads: Workload[] = [
    {
      name: NAMES.boltMeshport,
      label: '(a) Bolt: meshport decodeFrame',
      framesPerCall: 1,
      bytesPerCall: boltBytes,
      run: meshportBolt(fx.bolt),
    },
    {
      name: NAMES.boltPeer,
      label: '(b) Bolt: sofa-bolt-node protocol.decode',
      framesPerCall: 1,
      bytesPerCall: boltBytes,
      run: sofaBoltNode(fx.bolt, boltOptions),
    },
    {
      name: NAMES.dubboMeshport,
      label: '(c) Dubbo: meshport decodeFrame',
      framesPerCall: 1,
      bytesPerCall: dubboBytes,
      run: meshportDubbo(fx.dubbo),
    },
    {
      name: NAMES.dubboPeer,
      label: '(d) Dubbo: hessian.js DecoderV2 full read',
      framesPerCall: 1,
      bytesPerCall: dubboBytes,
      run: hessianFull(fx.dubbo),
    },
    {
      name: NAMES.stream,
      label: '(e) Bolt stream: FrameSplitter + decodeFrame, 64 KiB chunks',
      framesPerCall: RING,
      bytesPerCall: fx.streamBytes,
      run: meshportStream(fx.chunks),
    },
  ];
  const m = measureAll(workloads, {
    seconds: options.durationSeconds,
    rounds: options.rounds,
    warmupSeconds: Math.min(1, Math.max(0.2, options.durationSeconds / 3)),
    log: (l) => options.log(`decode: ${l}`),
    progress: options.progress,
  });
  const get = (name: string): Measurement => m.get(name)!;

  const boltRatio = get(NAMES.boltMeshport).framesPerSec / get(NAMES.boltPeer).framesPerSec;
  const dubboRatio = get(NAMES.dubboMeshport).framesPerSec / get(NAMES.dubboPeer).framesPerSec;
  const boltRate = get(NAMES.boltMeshport).framesPerSec;
  const streamRate = get(NAMES.stream).framesPerSec;

  const sizes: Record<string, { frame: number; body: number }> = {
    [NAMES.boltMeshport]: { frame: boltBytes, body: boltContentLength(fx.bolt[0]) },
    [NAMES.boltPeer]: { frame: boltBytes, body: boltContentLength(fx.bolt[0]) },
    [NAMES.dubboMeshport]: { frame: dubboBytes, body: dubboBodyLength(fx.dubbo[0]) },
    [NAMES.dubboPeer]: { frame: dubboBytes, body: dubboBodyLength(fx.dubbo[0]) },
    [NAMES.stream]: { frame: boltBytes, body: boltContentLength(fx.bolt[0]) },
  };
  const extra: Record<string, Record<string, Figure>> = {
    [NAMES.boltMeshport]: {
      peer: NAMES.boltPeer,
      ratio: round(boltRatio, 2),
      ratioGoal: GOAL_BOLT_RATIO,
      ratioGoalMet: boltRatio >= GOAL_BOLT_RATIO,
      rateGoal: GOAL_BOLT_RATE,
      rateGoalMet: boltRate >= GOAL_BOLT_RATE,
    },
    [NAMES.dubboMeshport]: {
      peer: NAMES.dubboPeer,
      ratio: round(dubboRatio, 2),
      ratioGoal: GOAL_DUBBO_RATIO,
      ratioGoalMet: dubboRatio >= GOAL_DUBBO_RATIO,
    },
    [NAMES.stream]: { rateGoal: GOAL_BOLT_RATE, rateGoalMet: streamRate >= GOAL_BOLT_RATE },
  };

  const results: ResultRow[] = workloads.map((w) => {
    const r = get(w.name);
    return {
      name: w.name,
      label: w.label,
      frameBytes: sizes[w.name].frame,
      bodyBytes: sizes[w.name].body,
      framesPerSec: Math.round(r.framesPerSec),
      nsPerFrame: round(r.nsPerFrame, 1),
      mbPerSec: round(r.mbPerSec, 1),
      heapBytesPerFrame: r.heapBytesPerFrame === null ? null : Math.round(r.heapBytesPerFrame),
      spread: round(r.spread, 3),
      samples: r.samples.map((x) => Math.round(x)),
      ...extra[w.name],
    };
  });

  const goals: Goal[] = [
    {
      what: 'Bolt: meshport decodeFrame / sofa-bolt-node decode',
      measured: `${fixed(boltRatio, 1)}x`,
      target: `>= ${GOAL_BOLT_RATIO}x`,
      met: boltRatio >= GOAL_BOLT_RATIO,
    },
    {
      what: 'Dubbo: meshport decodeFrame / hessian.js full decode',
      measured: `${fixed(dubboRatio, 1)}x`,
      target: `>= ${GOAL_DUBBO_RATIO}x`,
      met: dubboRatio >= GOAL_DUBBO_RATIO,
    },
    {
      what: 'Bolt frames/s on one core: decodeFrame (a)',
      measured: int(boltRate),
      target: `>= ${int(GOAL_BOLT_RATE)}`,
      met: boltRate >= GOAL_BOLT_RATE,
    },
    {
      what: 'Bolt frames/s on one core: FrameSplitter + decodeFrame (e)',
      measured: int(streamRate),
      target: `>= ${int(GOAL_BOLT_RATE)}`,
      met: streamRate >= GOAL_BOLT_RATE,
    },
  ];

  const figureHeaders = ['case', 'frame B', 'frames/s', 'ns/frame', 'MB/s', 'heap B/frame', 'spread'];
  const figureAlign: Align[] = ['l', 'r', 'r', 'r', 'r', 'r', 'r'];
  const figureRows = workloads.map((w) => {
    const r = get(w.name);
    return [
      w.label,
      String(sizes[w.name].frame),
      int(r.framesPerSec),
      fixed(r.nsPerFrame, 1),
      fixed(r.mbPerSec, 1),
      r.heapBytesPerFrame === null ? 'n/a' : int(r.heapBytesPerFrame),
      percent(r.spread),
    ];
  });
  const goalHeaders = ['goal', 'measured', 'target', 'met'];
  const goalAlign: Align[] = ['l', 'r', 'r', 'l'];
  const goalRows = goals.map((g) => [g.what, g.measured, g.target, g.met ? 'yes' : 'NO']);

  const heapMethod = heapMeasurementMethod();
  const notes = [
    `Fixtures: Bolt v1 request by sofa-bolt-node requestEncode (hessian2, header map \`service\` only), ` +
      `${sizes[NAMES.boltMeshport].body}-byte content, ${boltBytes}-byte frame; Dubbo hessian2 request by dubbo-remoting ` +
      `requestEncode, ${sizes[NAMES.dubboMeshport].body}-byte body, ${dubboBytes}-byte frame; ${RING} frames with distinct ids, cycled.`,
    'meshport reads service + request id from decodeFrame; sofa-bolt-node decodes the whole frame with the options ' +
      "sofa-rpc-node's server gives it (classCache with enableCompile); hessian.js reads every value of the body " +
      '(`new DecoderV2(frame)`, `position(16)`, `read()` to the end).',
    'Dubbo cases write a fresh request id into each frame before decoding (both sides), as a live connection would.',
    `(e) feeds ${fx.chunks.length} chunks of 64 KiB (${int(fx.streamBytes)} bytes, ${RING} frames; frames crossing a chunk ` +
      'boundary are reassembled by the splitter) through one FrameSplitter whose callback runs decodeFrame.',
    `frames/s is the median of ${options.rounds} samples of ${fixed(options.durationSeconds / options.rounds, 2)} s each, ` +
      'taken round-robin across cases after a warm-up; spread = (max - min) / median.',
    heapMethod ? `heap B/frame: ${heapMethod}.` : 'heap B/frame: unavailable (this Node has no v8.GCProfiler).',
  ];

  const { text, markdown } = renderReport([
    { headers: figureHeaders, align: figureAlign, rows: figureRows },
    { headers: goalHeaders, align: goalAlign, rows: goalRows },
    { notes },
  ]);

  // Ratios to the peers round by round: each round samples every case once, back to back.
  const ratio = (name: string, a: string, b: string, peer: string): Metric => {
    const r = roundRatio(get(a).samples, get(b).samples);
    return {
      name,
      value: round(r.ratio, 3),
      unit: 'x',
      better: 'higher',
      spread: round(r.spread, 3),
      rounds: r.rounds,
      peer,
    };
  };
  const rate = (name: string, w: string): Metric => ({
    name,
    value: Math.round(get(w).framesPerSec),
    unit: 'frames/s',
    better: 'higher',
    spread: round(get(w).spread, 3),
    rounds: get(w).samples.length,
  });
  const metrics: Metric[] = [
    ratio('Bolt: meshport decodeFrame / sofa-bolt-node decode', NAMES.boltMeshport, NAMES.boltPeer, 'sofa-bolt-node'),
    ratio('Dubbo: meshport decodeFrame / hessian.js full decode', NAMES.dubboMeshport, NAMES.dubboPeer, 'hessian.js'),
    ratio('Bolt: stream (e) / single-frame decode (a)', NAMES.stream, NAMES.boltMeshport, 'meshport decodeFrame'),
    rate('Bolt decodeFrame (a)', NAMES.boltMeshport),
    rate('Dubbo decodeFrame (c)', NAMES.dubboMeshport),
    rate('Bolt stream (e)', NAMES.stream),
  ];
  // One process runs every case: its CPU per case is what the case's timed samples used, its peak RSS the whole run's.
  const processes: ProcessUsage[] = [
    ...workloads.map((w) => ({
      scope: w.label,
      process: 'bench process (in-process case)',
      cpuSeconds: round(get(w.name).cpuSeconds, 2),
      peakRssMB: null,
    })),
    {
      scope: 'all cases',
      process: 'bench process',
      cpuSeconds: round(process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6, 2),
      peakRssMB: round(process.resourceUsage().maxRSS / 1024, 1),
    },
  ];
  const charts = {
    bars: {
      title: 'Header decode throughput, one core (whisker: spread of the rounds)',
      unit: 'frames/s',
      bars: workloads.map((w) => ({
        label: w.label.replace(/, 64 KiB chunks$/, ''),
        value: get(w.name).framesPerSec,
        spread: get(w.name).spread,
      })),
    },
  };

  return { suite: 'decode', results, metrics, processes, charts, text, markdown };
}

/** The README's glance cells, from a saved results line: meshport's decoders against their peers. */
function glance(results: ResultRow[]): { figures: string; goal: string } | null {
  const bolt = results.find((r) => r.name === 'bolt/meshport-decodeFrame');
  const dubbo = results.find((r) => r.name === 'dubbo/meshport-decodeFrame');
  if (!bolt || !dubbo || typeof bolt.ratio !== 'number' || typeof dubbo.ratio !== 'number') return null;
  const mfps = (r: ResultRow) => fixed(Number(r.framesPerSec) / 1e6, 1);
  return {
    figures:
      `Bolt header decode ${mfps(bolt)} M frames/s, ${fixed(bolt.ratio, 1)}x sofa-bolt-node; ` +
      `Dubbo (the group read from the attachments) ${mfps(dubbo)} M frames/s, ${fixed(dubbo.ratio, 1)}x hessian.js`,
    goal: `${bolt.ratioGoal}x, ${dubbo.ratioGoal}x: ${bolt.ratioGoalMet && dubbo.ratioGoalMet ? 'met' : 'missed'}`,
  };
}

export const decodeSuite: Suite = {
  name: 'decode',
  summary:
    'header-decode frames/s: meshport decodeFrame vs sofa-bolt-node (Bolt) and hessian.js (Dubbo), and a 64 KiB-chunk stream',
  glance,
  run,
};
