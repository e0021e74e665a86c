// The forward suite's handshake load generator (issue 18), in a process of its own (child_process.fork, serialization
// 'advanced'): new connections per second with a full TLS 1.3 handshake.
//
// The parent sends a HandshakeJob; `concurrency` loops each open a TLS connection to the target (a TLS listener of
// the second hop: the provider router's inbound listener, or haproxy's second frontend), present the client
// certificate, verify the server's chain against the CA and its URI SAN against `identity`, send one request, wait for
// its answer and close, then start over on a new connection. No session is ever offered back, so every handshake is
// a full one (ECDHE + both certificates + both CertificateVerify signatures). After `warmupMs` the connections whose
// answer arrives in the next `durationMs` are counted, with the time from connect() to the answer of each; {"mark":
// "start"} and {"mark": "end"} are posted at the edges of that window (the parent reads the server's CPU then).
//
// A connection is closed (FIN, no close_notify) as soon as its answer is in. This side closes first, so the TIME_WAIT
// sockets are the client's; Linux reuses them for new loopback connections (net.ipv4.tcp_tw_reuse, 2 by default).

import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { FrameSplitter } from '@meshport/protocol';
import { type BenchProtocol, okResponseId, requestTemplate, responseBytes, writeId } from '../forward/wire';
import { serveJobs } from './serve-jobs';

export interface HandshakeJob {
  handshake: true;
  port: number;
  protocol: BenchProtocol;
  /** Connections in the making at once. */
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  /** PEM: the client's certificate chain, its key, the CA that issued the server's. */
  cert: string;
  key: string;
  ca: string;
  /** The URI SAN the server's certificate must carry. */
  identity: string;
}

export interface HandshakeResult {
  /** Connections whose answer arrived in the timed window. */
  completed: number;
  elapsedNs: number;
  errors: number;
  firstError: string | null;
  /** Microseconds from connect() to the answer, for every connection counted. */
  latenciesUs: Float64Array;
  /** The TLS version and cipher of the last connection (what was measured). */
  protocolVersion: string | null;
  cipher: string | null;
  /** Connections that resumed a session: 0, or the figure is not about full handshakes. */
  resumed: number;
}

const MAX_SAMPLES = 1_000_000;

/** tls.connect's checkServerIdentity: the server must be `identity` (a URI SAN), as meshport's consumer sidecar checks. */
function checkIdentity(identity: string) {
  return (_host: string, cert: tls.PeerCertificate): Error | undefined => {
    const san = cert.subjectaltname ?? '';
    return san.split(', ').includes(`URI:${identity}`)
      ? undefined
      : new Error(`server certificate has SAN ${JSON.stringify(san)}, not URI:${identity}`);
  };
}

function runJob(job: HandshakeJob): Promise<HandshakeResult> {
  const { frame: proto, bodyBytes } = requestTemplate(job.protocol);
  const expectLength = responseBytes(job.protocol, bodyBytes);
  // Parsed once: tls.connect would parse PEM text on every call, which is work no server-side figure should include.
  const context = tls.createSecureContext({
    cert: job.cert,
    key: job.key,
    ca: job.ca,
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
  });
  new X509Certificate(job.cert); // a bad PEM fails here, before any connection
  const samples = new Float64Array(Math.min(MAX_SAMPLES, Math.max(1024, Math.ceil(job.durationMs * 20))));
  let nSamples = 0;
  let phase: 'warmup' | 'timed' | 'draining' = 'warmup';
  let completed = 0;
  let errors = 0;
  let firstError: string | null = null;
  let resumed = 0;
  let protocolVersion: string | null = null;
  let cipher: string | null = null;
  let t0 = 0n;
  let t1 = 0n;
  let running = 0;
  let finish: () => void = () => {};
  const done = new Promise<void>((resolve) => (finish = resolve));
  const fail = (what: string) => {
    errors++;
    firstError ??= what;
  };

  let nextId = 1;
  const one = (): void => {
    running++;
    const start = process.hrtime.bigint();
    const id = nextId++ & 0x3fffffff;
    let settled = false;
    const socket = tls.connect({
      host: '127.0.0.1',
      port: job.port,
      secureContext: context,
      checkServerIdentity: checkIdentity(job.identity),
      rejectUnauthorized: true,
    });
    socket.setNoDelay(true);
    const settle = (error?: string) => {
      if (settled) return;
      settled = true;
      if (error && phase !== 'draining') fail(error);
      socket.destroy();
      running--;
      if (phase === 'draining') {
        if (running === 0) finish();
      } else {
        one();
      }
    };
    const splitter = new FrameSplitter((frame) => {
      const now = process.hrtime.bigint();
      if (okResponseId(job.protocol, frame) !== id)
        return settle(`not the answer to ${id}: ${frame.subarray(0, 24).toString('hex')}`);
      if (frame.length !== expectLength) return settle(`answer of ${frame.length} bytes, expected ${expectLength}`);
      if (phase === 'timed') {
        completed++;
        if (nSamples < samples.length) samples[nSamples++] = Number(now - start) / 1000;
      }
      settle();
    });
    socket.once('secureConnect', () => {
      if (socket.isSessionReused()) resumed++;
      protocolVersion = socket.getProtocol();
      cipher = socket.getCipher()?.standardName ?? null;
      const frame = Buffer.from(proto);
      writeId(job.protocol, frame, id);
      socket.write(frame);
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        splitter.write(chunk);
      } catch (err) {
        settle(`bad frame from the target: ${(err as Error).message}`);
      }
    });
    socket.on('error', (err) => settle(`connection error: ${err.message}`));
    socket.on('close', () => settle('the target closed the connection before the answer'));
  };

  return (async () => {
    for (let i = 0; i < job.concurrency; i++) one();
    await sleep(job.warmupMs);
    phase = 'timed';
    t0 = process.hrtime.bigint();
    process.send!({ mark: 'start' });
    await sleep(job.durationMs);
    t1 = process.hrtime.bigint();
    phase = 'draining';
    process.send!({ mark: 'end' });
    if (running > 0) {
      const timer = setTimeout(finish, 5000);
      await done;
      clearTimeout(timer);
    }
    return {
      completed,
      elapsedNs: Number(t1 - t0),
      errors,
      firstError,
      latenciesUs: samples.slice(0, nSamples),
      protocolVersion,
      cipher,
      resumed,
    };
  })();
}

serveJobs('handshake', runJob);
