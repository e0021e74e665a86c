// Worker-thread side of the protocol fuzz suite: runs one campaign or one memory probe in an isolate of its own,
// so the test can stop a hung codec (Worker#terminate interrupts even a tight loop), cap its heap, and measure
// memory without other tests' allocations mixed in.

import { randomBytes } from 'node:crypto';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { strict as assert } from 'node:assert';
import { parentPort, workerData } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  FrameSplitter,
  ProtocolError,
  decodeFrame,
  detectProtocol,
  encodeBoltHeartbeat,
  encodeDubboHeartbeat,
  setRequestId,
} from '../../src/index';
import {
  type Campaign,
  type CampaignResult,
  FuzzFailure,
  Rng,
  type Seed,
  buildBolt,
  buildCorpus,
  buildDubbo,
  checkCase,
  checkProtocolError,
  describeError,
  encodeHeaderMap,
  h2String,
  mixSeed,
  refDecode,
  runCampaign,
  shrink,
} from './fuzz-engine';

export type WorkerTask =
  | { task: 'campaign'; campaign: Campaign; seed: number; cases: number; progress: SharedArrayBuffer }
  | { task: 'seeds'; seed: number }
  | { task: 'set-request-id'; seed: number }
  | { task: 'cap-boundary' }
  | { task: 'claim-over-cap' }
  | { task: 'claim-under-cap'; splitters: number }
  | { task: 'interner'; names: number; nameBytes: number };

export type WorkerReply =
  | { type: 'campaign'; result: CampaignResult }
  | { type: 'probe'; problems: string[]; data: Record<string, number> }
  | { type: 'error'; message: string };

const MIB = 1024 * 1024;

type Probe = { problems: string[]; data: Record<string, number> };

/** Each seed decodes to what its builder meant, splits whole / byte by byte / twice, and takes a new id. */
function checkSeed(s: Seed, seed: number): void {
  assert.equal(detectProtocol(s.bytes), s.proto);
  if (s.expectError) {
    assert.throws(
      () => decodeFrame(s.bytes),
      (e: unknown) => e instanceof ProtocolError && e.code === s.expectError,
    );
    return;
  }
  const h = decodeFrame(s.bytes);
  assert.equal(h.frameLength, s.bytes.length, 'frameLength');
  for (const [k, want] of Object.entries(s.expect))
    assert.deepEqual((h as unknown as Record<string, unknown>)[k], want, k);
  // The reference decoder agrees with the builder too: the fuzz oracle is anchored to intent, not to the codec.
  const ref = refDecode(s.bytes);
  assert.ok(ref.ok, `reference decoder rejects it: ${JSON.stringify(!ref.ok && ref.error)}`);
  for (const [k, want] of Object.entries(s.expect)) {
    assert.deepEqual((ref.h as unknown as Record<string, unknown>)[k], want, `reference ${k}`);
  }
  for (const [chunks, frames] of [
    [[s.bytes], 1],
    [[...s.bytes].map((b) => Buffer.from([b])), 1],
    [[Buffer.concat([s.bytes, s.bytes])], 2],
  ] as const) {
    const got: Buffer[] = [];
    const sp = new FrameSplitter((f) => got.push(Buffer.from(f)));
    for (const c of chunks) sp.write(c);
    sp.end();
    assert.equal(got.length, frames, 'frames split');
    for (const f of got) assert.ok(f.equals(s.bytes), 'split frame bytes');
  }
  // Every property of the fuzz loop holds on the intact seed, under several chunkings, caps and ids.
  for (let i = 0; i < 8; i++) checkCase(s.bytes, new Rng(mixSeed(seed, i)));
  const copy = Buffer.from(s.bytes);
  setRequestId(copy, 0x1234);
  const h2 = decodeFrame(copy);
  assert.equal(String(h2.requestId), '4660', 'new id');
  assert.equal(h2.service, h.service, 'service after setRequestId');
}

function checkSeeds(seed: number): Probe {
  const problems: string[] = [];
  const corpus = buildCorpus(seed);
  if (corpus.bolt.length < 50 || corpus.dubbo.length < 30) {
    problems.push(`seed corpus too small: ${corpus.bolt.length} Bolt, ${corpus.dubbo.length} Dubbo`);
  }
  const v2 = (b: Buffer) => b[0] === 2;
  const versions = new Set(
    corpus.bolt.map((s) => `${s.bytes[0]}/${v2(s.bytes) ? s.bytes[1] : 0}/${v2(s.bytes) ? s.bytes[11] & 1 : 0}`),
  );
  for (const v of ['1/0/0', '2/1/0', '2/1/1', '2/2/0', '2/2/1']) {
    if (!versions.has(v)) problems.push(`no Bolt seed of proto/ver1/switch ${v}`);
  }
  for (const s of [...corpus.bolt, ...corpus.dubbo]) {
    try {
      checkSeed(s, seed);
    } catch (e) {
      const why = e instanceof FuzzFailure ? e.message : describeError(e);
      problems.push(`${s.proto} seed "${s.note}" (${s.bytes.toString('hex').slice(0, 160)}): ${why}`);
    }
  }
  return { problems, data: { bolt: corpus.bolt.length, dubbo: corpus.dubbo.length } };
}

/**
 * The fuzz loop calls setRequestId only on frames decodeFrame accepted; here, on what a caller might pass by mistake:
 * an empty buffer and every prefix of every seed too short to hold the id. Anything thrown must be a ProtocolError.
 */
function setRequestIdOnNonFrames(seed: number): Probe {
  const corpus = buildCorpus(seed);
  const inputs: Buffer[] = [Buffer.alloc(0)];
  for (const s of [...corpus.bolt, ...corpus.dubbo]) {
    for (let n = 1; n < Math.min(s.bytes.length, 24); n++) inputs.push(s.bytes.subarray(0, n));
  }
  const found = new Map<string, string>();
  for (const input of inputs) {
    const id = input[0] === 0xda ? 5n : 5;
    const attempt = (b: Buffer): string | undefined => {
      try {
        setRequestId(Buffer.from(b), id);
      } catch (e) {
        try {
          checkProtocolError(e, b.length, 'setRequestId');
        } catch (f) {
          if (f instanceof FuzzFailure) return `${f.kind}: ${f.detail.split(': ')[0]}`;
          throw f;
        }
      }
      return undefined;
    };
    const kind = attempt(input);
    if (kind !== undefined && !found.has(kind)) {
      const minimal = shrink(input, (b) => attempt(b) === kind, 500);
      const call = `setRequestId(Buffer.from('${minimal.toString('hex')}', 'hex'), ${String(id)}${typeof id === 'bigint' ? 'n' : ''})`;
      let thrown = '';
      try {
        setRequestId(Buffer.from(minimal), id);
      } catch (e) {
        thrown = describeError(e);
      }
      found.set(kind, `${call} throws ${thrown}`);
    }
  }
  return { problems: [...found.values()], data: { inputs: inputs.length } };
}

/** maxFrameSize is inclusive: a frame of exactly maxFrameSize passes, with one byte less of cap it is refused. */
function capBoundary(): Probe {
  const problems: string[] = [];
  const frames = [
    encodeBoltHeartbeat(3),
    encodeBoltHeartbeat(3, { protocolVersion: 2, ver1: 2, switchFlags: 1 }),
    encodeDubboHeartbeat(3),
  ];
  for (const frame of frames) {
    const label = frame.toString('hex');
    try {
      const got: number[] = [];
      const ok = new FrameSplitter((f) => got.push(f.length), { maxFrameSize: frame.length });
      ok.write(Buffer.concat([frame, frame]));
      ok.end();
      assert.deepEqual(got, [frame.length, frame.length], 'frames at exactly the cap');
      const tight = new FrameSplitter(() => assert.fail('no frame fits'), { maxFrameSize: frame.length - 1 });
      const oversize = (e: unknown) =>
        e instanceof ProtocolError && e.code === 'MESHPORT_FRAME_OVERSIZE' && e.offset === 0;
      assert.throws(() => tight.write(frame), oversize, 'one byte over the cap');
      assert.throws(() => tight.write(frame), oversize, 'the same error again');
    } catch (e) {
      problems.push(`${label}: ${describeError(e)}`);
    }
  }
  return { problems, data: {} };
}

/** A gc() for this isolate: needed to tell retained memory from garbage not yet collected. */
function getGc(): (() => void) | undefined {
  const g = (globalThis as { gc?: () => void }).gc;
  if (typeof g === 'function') return g;
  try {
    v8.setFlagsFromString('--expose-gc');
    return vm.runInNewContext('gc') as () => void;
  } catch {
    return undefined;
  }
}

/** Full GCs with a task in between: V8 releases ArrayBuffer memory a task after the GC that frees it. */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc?.();
    await sleep(10);
  }
}

async function retained(): Promise<{ heap: number; ab: number; rss: number }> {
  await settle();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, ab: m.arrayBuffers, rss: m.rss };
}

/** Fixed headers claiming about 2 GiB, one per Bolt layout and one Dubbo. */
function hugeClaims(): Array<{ name: string; header: Buffer }> {
  const out: Array<{ name: string; header: Buffer }> = [];
  const bolt = (name: string, version: 1 | 2, type: number, cmd: number, ver1?: number, switchFlags?: number) => {
    const frame = buildBolt({ version, ver1, switchFlags, type, cmd, requestId: 1, timeoutOrStatus: 0 }).bytes;
    const v2 = version === 2;
    const fixed = type === 0 ? (v2 ? 22 : 20) : v2 ? 24 : 22;
    const header = Buffer.from(frame.subarray(0, fixed));
    const tail = v2 ? 12 : 10;
    const base = type === 0 ? tail + 2 : tail + 4;
    header.writeInt16BE(0x7fff, base);
    header.writeInt16BE(0x7fff, base + 2);
    header.writeInt32BE(0x7fffffff, base + 4);
    out.push({ name, header });
  };
  bolt('Bolt v1 request', 1, 1, 1);
  bolt('Bolt v1 response', 1, 0, 2);
  bolt('Bolt v2 request', 2, 1, 1, 1, 0);
  bolt('Bolt v2 response', 2, 0, 2, 1, 0);
  bolt('Bolt v2 request with CRC', 2, 1, 1, 2, 1);
  const dubbo = buildDubbo(0xc2, 0, 1n, Buffer.alloc(0), 0x7fffffff);
  out.push({ name: 'Dubbo request', header: dubbo });
  return out;
}

/** A 2 GiB claim must fail as soon as its header is in, with MESHPORT_FRAME_OVERSIZE, and allocate nothing. */
function claimOverCap(): { problems: string[]; data: Record<string, number> } {
  const problems: string[] = [];
  let worstGrowth = 0;
  const heartbeat = encodeBoltHeartbeat(1);
  for (const { name, header } of hugeClaims()) {
    // decodeFrame on the header alone: a truncation, nothing allocated either.
    try {
      decodeFrame(header);
      problems.push(`${name}: decodeFrame accepted a bare header`);
    } catch (e) {
      if (!(e instanceof ProtocolError) || e.code !== 'MESHPORT_FRAME_TRUNCATED' || e.offset !== header.length) {
        problems.push(`${name}: decodeFrame of the bare header: ${describeError(e)}`);
      }
    }
    for (const options of [undefined, { maxFrameSize: 16 * MIB }]) {
      for (const prefix of [Buffer.alloc(0), heartbeat]) {
        for (const bytewise of [false, true]) {
          const stream = Buffer.concat([prefix, header]);
          const label =
            `${name}${prefix.length ? ' after a heartbeat' : ''}${bytewise ? ' byte by byte' : ''}` +
            (options ? ' (cap 16 MiB)' : ' (default cap)');
          const before = process.memoryUsage().arrayBuffers;
          const sp = new FrameSplitter(() => {}, options);
          let thrown: unknown;
          const chunks = bytewise ? [...stream].map((b) => Buffer.from([b])) : [stream];
          let fed = 0;
          for (const c of chunks) {
            try {
              sp.write(c);
            } catch (e) {
              thrown = e;
              break;
            }
            fed += c.length;
          }
          const at = fed; // bytes accepted before the write that threw
          const growth = process.memoryUsage().arrayBuffers - before;
          worstGrowth = Math.max(worstGrowth, growth);
          if (!(thrown instanceof ProtocolError) || thrown.code !== 'MESHPORT_FRAME_OVERSIZE') {
            const got = thrown ? describeError(thrown) : 'nothing';
            problems.push(`${label}: expected MESHPORT_FRAME_OVERSIZE once the header is in, got ${got}`);
            continue;
          }
          if (thrown.offset !== prefix.length) {
            problems.push(`${label}: OVERSIZE names offset ${thrown.offset}, the frame starts at ${prefix.length}`);
          }
          // Thrown by the write that completed the header, not later (bytewise: the last byte was the one refused).
          if (bytewise && at !== stream.length - 1) {
            problems.push(`${label}: OVERSIZE came after ${at} bytes, the header ends at ${stream.length}`);
          }
          if (growth > MIB) problems.push(`${label}: arrayBuffers grew by ${growth} bytes`);
        }
      }
    }
  }
  // A Dubbo heartbeat stays fine after all that: nothing global was disturbed.
  decodeFrame(encodeDubboHeartbeat(1));
  return { problems, data: { worstGrowth } };
}

/**
 * Headers alone, each claiming just under the default cap: the splitter doc says "a header alone never makes the
 * splitter allocate what it claims" and PROTOCOLS.md "never buffer what a header merely claims".
 */
async function claimUnderCap(splitters: number): Promise<{ problems: string[]; data: Record<string, number> }> {
  const claim = 16 * MIB - 1024;
  const header = buildBolt({
    version: 2,
    ver1: 1,
    switchFlags: 0,
    type: 1,
    cmd: 1,
    requestId: 1,
    timeoutOrStatus: 0,
  }).bytes;
  header.writeInt32BE(claim - 24, 20);
  const base = await retained();
  const keep: FrameSplitter[] = [];
  for (let i = 0; i < splitters; i++) {
    const sp = new FrameSplitter(() => {});
    sp.write(header);
    keep.push(sp);
  }
  const after = await retained();
  const growth = after.ab - base.ab;
  const problems: string[] = [];
  const bound = splitters * MIB;
  if (growth > bound) {
    problems.push(
      `${splitters} splitters that were each sent one 24-byte Bolt v2 header claiming ${claim} bytes hold ` +
        `${(growth / MIB).toFixed(1)} MiB of ArrayBuffers (bound ${bound / MIB} MiB): ` +
        'the splitter allocates the claimed frame on the header alone',
    );
  }
  const held = keep.reduce((n, sp) => n + sp.buffered, 0);
  return {
    problems,
    data: { growthBytes: growth, rssGrowthBytes: after.rss - base.rss, bytesSent: splitters * header.length, held },
  };
}

/**
 * Thousands of requests, each naming a different long service: the decoders intern route strings in a cache bounded
 * by entry count. What it retains must stay bounded by something small, not by count x longest name.
 */
async function internerRetention(
  names: number,
  nameBytes: number,
): Promise<{ problems: string[]; data: Record<string, number> }> {
  const problems: string[] = [];
  const data: Record<string, number> = {};
  // Random letters all along each name, so that whatever hash the cache uses, the names spread over its slots.
  const letters = (i: number) => {
    const b = randomBytes(nameBytes);
    for (let k = 0; k < b.length; k++) b[k] = 0x61 + (b[k] % 26);
    return `${i.toString(36)}.${b.toString('latin1', 0, nameBytes - 8)}`;
  };
  const dubbo = (i: number) => {
    const service = letters(i);
    const strings = [h2String('2.0.2'), h2String(service, 'long'), h2String('1.0.0'), h2String('m'), h2String('')];
    const body = Buffer.concat([...strings, Buffer.from([0x48, 0x5a])]);
    return { frame: buildDubbo(0xc2, 0, BigInt(i), body), service };
  };
  const bolt = (i: number) => {
    const service = letters(i);
    const map = encodeHeaderMap([['service', service]]);
    return {
      frame: buildBolt({ version: 1, type: 1, cmd: 1, requestId: i, timeoutOrStatus: 1000, header: map.bytes }).bytes,
      service,
    };
  };
  for (const [proto, make] of [
    ['dubbo', dubbo],
    ['bolt', bolt],
  ] as const) {
    const base = await retained();
    for (let i = 0; i < names; i++) {
      const { frame, service } = make(i);
      const h = decodeFrame(frame);
      if (h.service !== service)
        problems.push(`${proto}: frame ${i} decoded service ${String(h.service).slice(0, 40)}...`);
    }
    const after = await retained();
    const growth = after.heap - base.heap + (after.ab - base.ab);
    data[`${proto}GrowthBytes`] = growth;
    const bound = 16 * MIB;
    if (growth > bound) {
      problems.push(
        `${proto}: after decoding ${names} frames with distinct ${nameBytes}-byte service names, ` +
          `${(growth / MIB).toFixed(1)} MiB stay retained (heap ${((after.heap - base.heap) / MIB).toFixed(1)} MiB + ` +
          `ArrayBuffers ${((after.ab - base.ab) / MIB).toFixed(1)} MiB; bound ${bound / MIB} MiB): ` +
          `the intern cache is bounded by entries (4096), not bytes`,
      );
    }
  }
  return { problems, data };
}

const gc = getGc();
// Every ProtocolError captures a stack; the campaign makes hundreds of thousands. A few frames still show where a
// stray non-ProtocolError came from.
Error.stackTraceLimit = 6;

async function run(task: WorkerTask): Promise<WorkerReply> {
  switch (task.task) {
    case 'campaign':
      return {
        type: 'campaign',
        result: await runCampaign(task.campaign, task.seed, task.cases, new Int32Array(task.progress), settle),
      };
    case 'seeds':
      return { type: 'probe', ...checkSeeds(task.seed) };
    case 'set-request-id':
      return { type: 'probe', ...setRequestIdOnNonFrames(task.seed) };
    case 'cap-boundary':
      return { type: 'probe', ...capBoundary() };
    case 'claim-over-cap':
      return { type: 'probe', ...claimOverCap() };
    case 'claim-under-cap':
      return { type: 'probe', ...(await claimUnderCap(task.splitters)) };
    case 'interner':
      return { type: 'probe', ...(await internerRetention(task.names, task.nameBytes)) };
  }
}

async function main(port: NonNullable<typeof parentPort>): Promise<void> {
  let reply: WorkerReply;
  try {
    if (!gc) throw new Error('no gc() in the worker: cannot measure retained memory');
    reply = await run(workerData as WorkerTask);
  } catch (e) {
    reply = { type: 'error', message: describeError(e) };
  }
  port.postMessage(reply);
}

if (parentPort) void main(parentPort);
