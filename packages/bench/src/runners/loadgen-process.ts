// The forward suite's load generator, in a process of its own (child_process.fork, serialization 'advanced').
//
// The parent sends a Job; this process opens `connections` connections to the target, keeps `depth` requests in
// flight on each (a new request leaves as soon as an answer comes back), and after `warmupMs` counts the answers of
// the next `durationMs`, with a hrtime sample per request. It posts {"mark": "start"} and {"mark": "end"} at the edges
// of the timed window (the parent reads the proxies' CPU time then), stops sending, waits for the answers still due,
// closes, and posts the Result.
//
// Request ids: slot s of a connection carries ids s, s + depth, s + 2 depth, ...; a slot's frame buffer is rewritten
// only once its previous request has been answered, i.e. written out: no copy per request.

import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { FrameSplitter } from '@meshport/protocol';
import { type BenchProtocol, okResponseId, requestTemplate, responseBytes, writeId } from '../forward/wire';
import { serveJobs } from './serve-jobs';

export interface Job {
  port: number;
  protocol: BenchProtocol;
  connections: number;
  depth: number;
  warmupMs: number;
  durationMs: number;
}

export interface Result {
  /** Answers in the timed window. */
  completed: number;
  /** Length of the timed window. */
  elapsedNs: number;
  /** Wrong answers: not a success, unknown id, or wrong length. Any makes the run invalid. */
  errors: number;
  firstError: string | null;
  /** Microseconds from write to answer, for every answer of the timed window. */
  latenciesUs: Float64Array;
}

const MAX_ID = 0x40000000;
const MAX_SAMPLES = 4_000_000;

const templates = new Map<BenchProtocol, { frame: Buffer; bodyBytes: number }>();
function template(protocol: BenchProtocol) {
  let t = templates.get(protocol);
  if (t === undefined) {
    t = requestTemplate(protocol);
    templates.set(protocol, t);
  }
  return t;
}

function runJob(job: Job): Promise<Result> {
  const { frame: proto, bodyBytes } = template(job.protocol);
  const expectLength = responseBytes(job.protocol, bodyBytes);
  const protocol = job.protocol;
  const depth = job.depth;
  const samples = new Float64Array(Math.min(MAX_SAMPLES, Math.max(1024, Math.ceil(job.durationMs * 400))));
  let nSamples = 0;
  let phase: 'warmup' | 'timed' | 'draining' = 'warmup';
  let completed = 0;
  let errors = 0;
  let firstError: string | null = null;
  let outstanding = 0;
  let t0 = 0n;
  let t1 = 0n;
  let finish: () => void = () => {};
  const done = new Promise<void>((resolve) => (finish = resolve));

  const fail = (what: string) => {
    errors++;
    firstError ??= what;
  };

  const sockets: net.Socket[] = [];
  const open = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port: job.port });
      socket.setNoDelay(true);
      sockets.push(socket);
      const frames: Buffer[] = [];
      const expected = new Int32Array(depth).fill(-1);
      const sentAt = new Array<bigint>(depth).fill(0n);
      for (let s = 0; s < depth; s++) frames.push(Buffer.from(proto));
      const send = (slot: number, id: number) => {
        writeId(protocol, frames[slot], id);
        expected[slot] = id;
        sentAt[slot] = process.hrtime.bigint();
        outstanding++;
        socket.write(frames[slot]);
      };
      const splitter = new FrameSplitter((frame) => {
        const now = process.hrtime.bigint();
        const id = okResponseId(protocol, frame);
        const slot = id < 0 ? -1 : id % depth;
        if (slot < 0 || expected[slot] !== id) {
          fail(id < 0 ? `not a success response: ${frame.subarray(0, 24).toString('hex')}` : `unexpected id ${id}`);
          return;
        }
        if (frame.length !== expectLength) fail(`answer of ${frame.length} bytes, expected ${expectLength}`);
        expected[slot] = -1;
        outstanding--;
        if (phase === 'timed') {
          completed++;
          if (nSamples < samples.length) samples[nSamples++] = Number(now - sentAt[slot]) / 1000;
        }
        if (phase !== 'draining') {
          const next = id + depth;
          send(slot, next >= MAX_ID ? slot : next);
        } else if (outstanding === 0) {
          finish();
        }
      });
      socket.on('data', (chunk: Buffer) => {
        // The requests this read sets off leave in one writev.
        socket.cork();
        try {
          splitter.write(chunk);
        } catch (err) {
          fail(`bad frame from the target: ${(err as Error).message}`);
          socket.destroy();
        }
        socket.uncork();
      });
      socket.on('error', (err) => {
        fail(`socket error: ${err.message}`);
        reject(err);
      });
      socket.on('close', () => {
        if (phase !== 'draining') {
          fail('the target closed a connection');
          finish();
        }
      });
      socket.on('connect', () => {
        socket.cork();
        for (let s = 0; s < depth; s++) send(s, s);
        socket.uncork();
        resolve();
      });
    });

  return (async () => {
    await Promise.all(Array.from({ length: job.connections }, open));
    await sleep(job.warmupMs);
    phase = 'timed';
    t0 = process.hrtime.bigint();
    process.send!({ mark: 'start' });
    await sleep(job.durationMs);
    t1 = process.hrtime.bigint();
    phase = 'draining';
    process.send!({ mark: 'end' });
    if (outstanding > 0) {
      const timer = setTimeout(() => {
        fail(`${outstanding} requests unanswered 5 s after the window`);
        finish();
      }, 5000);
      await done;
      clearTimeout(timer);
    }
    for (const s of sockets) s.destroy();
    return {
      completed,
      elapsedNs: Number(t1 - t0),
      errors,
      firstError,
      latenciesUs: samples.slice(0, nSamples),
    };
  })();
}

serveJobs('loadgen', runJob);
