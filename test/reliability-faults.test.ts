// Reliability under faults (issue 8), measured end to end through real sidecars:
//
// Suite 1 (`faults-resets`): Bolt requests, each with a unique body, go app -> consumer sidecar (outbound) -> toxic
// proxy (50 +/- 20 ms latency, connection resets) -> provider sidecar (inbound) -> an echo provider that answers
// with the request's own body. Every request must get exactly one answer: a success whose body is its own (else it
// was misrouted), or a protocol error response; none may be left without one, and none answered twice.
//
// Suite 1, kernel variant (`faults-kernel-loss`): the same checks with the hop between the two sidecars crossing a
// veth pair between two network namespaces with 1% kernel packet loss each way (applyLinkFaults), CI-sized; skipped
// without root outside CI, failed without it under CI=true.
//
// Suite 4 (`sidecar-restart`): the consumer-side sidecar runs as `meshport sidecar --config` (a child process) and is
// stopped mid-load (SIGTERM: drain; and SIGKILL), then started again on the same ports. The app reconnects; no request
// is answered twice, each request in flight at the stop gets an answer or its connection's close (and never both),
// and calls succeed again within a stated time.
//
// CI size: 10^5 requests for suite 1 (MESHPORT_LONG=1: 10^6), 3*10^4 per restart variant for suite 4 (long: 3*10^5).

import { strict as assert } from 'node:assert';
import net from 'node:net';
import { once } from 'node:events';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FrameSplitter, decodeFrame, encodeBoltHeartbeatAck, encodeDubboHeartbeatAck } from '@meshport/protocol';
import { recordSuite, scale } from './support/reliability';
import {
  boltRequest,
  dubboCall,
  echoResponse,
  freePorts,
  makeTestPki,
  skipOrFail,
  type TestPki,
} from '@meshport/testkit';
import { BIN, counterValue } from './support/wire';
import { startSidecar, stopSidecars } from './support/sidecars';
import { startToxicProxy, type ToxicProxy } from './support/toxics';
import { run, spawnInNetns } from '@meshport/hijack';
import {
  applyLinkFaults,
  createNetnsPair,
  deleteNetnsWithPrefix,
  hostLinkFaultLeftovers,
  linkFaultProblem,
  netnsWithPrefix,
  removeLinkFaults,
  type NetnsPair,
} from './support/netem';

const IFACE = 'com.example.FaultEcho';
const SERVICE = `${IFACE}:1.0`;

// --- wire helpers -----------------------------------------------------------------------------------------------

/** A Dubbo two-way hessian2 request calling `echo` whose one argument is `body`, in Dubbo group `group`. */
function dubboEchoRequest(id: number, iface: string, version: string, body: Buffer, group?: string): Buffer {
  return dubboCall(id, iface, version, 'echo', body.toString('latin1'), group);
}

/**
 * Suite 1 sends its requests to two identities of one interface, alternating (even indexes to the first): Bolt
 * versions 1.0 and 2.0, Dubbo groups g1 and g2 at 1.0. Each has a provider of its own, which counts a request of
 * the other identity as misrouted.
 */
const IDENTITY_KEYS: Record<'bolt' | 'dubbo', [string, string]> = {
  bolt: [`${IFACE}:1.0`, `${IFACE}:2.0`],
  dubbo: [`g1/${IFACE}:1.0`, `g2/${IFACE}:1.0`],
};
const IDENTITY_URL_PARAMS: Record<'bolt' | 'dubbo', [string, string]> = {
  bolt: ['version=1.0', 'version=2.0'],
  dubbo: ['version=1.0&group=g1', 'version=1.0&group=g2'],
};

const bodyOf = (index: number) => Buffer.from(`req:${index}`);
/** The request index a body names (`req:<n>` anywhere in it, the last one), or -1. */
function indexOfBody(b: Buffer): number {
  const at = b.lastIndexOf('req:');
  if (at < 0) return -1;
  let n = 0;
  let k = at + 4;
  for (; k < b.length && b[k] >= 0x30 && b[k] <= 0x39; k++) n = n * 10 + (b[k] - 0x30);
  return k === at + 4 ? -1 : n;
}

// --- the echo provider ------------------------------------------------------------------------------------------

interface EchoProvider {
  port: number;
  /** How many times each request (by index) reached the provider. */
  seen: Uint8Array;
  /** Requests of another identity than the one it serves (`serves`), which reached it all the same. */
  foreign: number;
  close(): Promise<void>;
}

/**
 * `fault` makes a broken provider, only to prove the checks catch what they claim: `swap` answers every 10th request
 * with the previous request's body, `double` answers every 10th request twice.
 */
async function startEchoProvider(
  total: number,
  port = 0,
  fault?: 'swap' | 'double',
  serves?: 0 | 1,
): Promise<EchoProvider> {
  const sockets = new Set<net.Socket>();
  const seen = new Uint8Array(total);
  let foreign = 0;
  const server = net.createServer({ noDelay: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let previous: Buffer | undefined;
    const splitter = new FrameSplitter((frame) => {
      const h = decodeFrame(frame);
      if (h.kind === 'heartbeat') {
        s.write(h.protocol === 'dubbo' ? encodeDubboHeartbeatAck(h.requestId) : encodeBoltHeartbeatAck(h.requestId));
        return;
      }
      if (h.kind !== 'request') return;
      const i = indexOfBody(frame.subarray(h.bodyOffset, h.bodyOffset + h.bodyLength));
      if (i >= 0 && i < total && seen[i] < 255) seen[i]++;
      if (serves !== undefined && i % 2 !== serves) foreign++;
      const reply = echoResponse(Buffer.from(frame), h);
      if (fault === 'swap' && i % 10 === 9 && previous !== undefined)
        s.write(Buffer.concat([reply.subarray(0, reply.length - h.bodyLength), previous]));
      else s.write(reply);
      if (fault === 'double' && i % 10 === 9) s.write(reply);
      previous = Buffer.from(frame.subarray(h.bodyOffset, h.bodyOffset + h.bodyLength));
    });
    s.on('data', (c) => {
      try {
        splitter.write(c);
      } catch {
        s.destroy();
      }
    });
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    seen,
    get foreign() {
      return foreign;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

// --- the load generator -----------------------------------------------------------------------------------------

const UNSENT = 0;
const PENDING = 1;
const OK = 2;
const ERROR_RESPONSE = 3;
const CONN_CLOSED = 4;

interface LoadOptions {
  /** @default 'bolt' */
  protocol?: 'bolt' | 'dubbo';
  port: number;
  total: number;
  connections: number;
  /** Requests in flight per connection. */
  window: number;
  /** The Bolt timeout each request carries. */
  timeoutMs: number;
  /** Reconnect a closed connection (every `reconnectMs`) and carry on; otherwise the connection is done. */
  reconnect: boolean;
  reconnectMs?: number;
  /** Alternate the requests between the two identities of IDENTITY_KEYS (suite 1); otherwise all go to SERVICE. */
  twoIdentities?: boolean;
}

/** One app connection: its own request ids, each mapped to the global request index (kept after the answer). */
interface Lane {
  socket: net.Socket | undefined;
  ids: Map<number, number>;
  nextId: number;
  inflight: number;
  dead: boolean;
}

/**
 * Pipelining Bolt clients: every request has a unique index and body; each answer is matched by (connection,
 * request id) and checked against the body sent. The per-request outcome is set once: a second answer for the same
 * request counts as a duplicate, an answer for no request sent on that connection as misrouted, a success whose body
 * is another request's as misrouted.
 */
class LoadGen {
  readonly outcome: Uint8Array;
  readonly sentAt: Float64Array;
  readonly latency: Float64Array;
  /** When each answer came (ms since start), to find the last success before and first after an outage. */
  readonly answeredAt: Float64Array;
  /** The status of each error response. */
  readonly status: Uint16Array;
  next = 0;
  finished = 0;
  duplicates = 0;
  misrouted = 0;
  unknownIds = 0;
  connectionCloses = 0;
  connects = 0;
  readonly statuses = new Map<number, number>();
  readonly t0 = performance.now();
  private readonly lanes: Lane[] = [];
  private paused = false;
  private stopped = false;
  private waiters: (() => void)[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(readonly o: LoadOptions) {
    this.outcome = new Uint8Array(o.total);
    this.sentAt = new Float64Array(o.total);
    this.latency = new Float64Array(o.total);
    this.answeredAt = new Float64Array(o.total);
    this.status = new Uint16Array(o.total);
  }

  start(): void {
    for (let i = 0; i < this.o.connections; i++) {
      const lane: Lane = { socket: undefined, ids: new Map(), nextId: 1, inflight: 0, dead: false };
      this.lanes.push(lane);
      this.connect(lane);
    }
  }

  private connect(lane: Lane): void {
    if (this.stopped) return;
    const s = net.connect({ port: this.o.port, host: '127.0.0.1', noDelay: true });
    let connected = false;
    s.on('connect', () => {
      connected = true;
      this.connects++;
      lane.socket = s;
      this.fill(lane);
    });
    const splitter = new FrameSplitter((frame) => this.onAnswer(lane, frame));
    s.on('data', (c) => splitter.write(c));
    s.on('error', () => {});
    s.on('close', () => {
      if (connected) {
        this.connectionCloses++;
        lane.socket = undefined;
        // The connection's documented error: every request still waiting on it ends here, once.
        for (const [, i] of lane.ids) if (this.outcome[i] === PENDING) this.settle(i, CONN_CLOSED);
        lane.ids.clear();
        lane.inflight = 0;
      }
      if (this.o.reconnect && !this.stopped) {
        const t = setTimeout(() => {
          this.timers.delete(t);
          this.connect(lane);
        }, this.o.reconnectMs ?? 20);
        this.timers.add(t);
      } else lane.dead = true;
      this.wake();
    });
  }

  private fill(lane: Lane): void {
    const s = lane.socket;
    if (!s || this.paused || this.stopped) return;
    s.cork();
    while (lane.inflight < this.o.window && this.next < this.o.total) {
      const i = this.next++;
      const id = lane.nextId++;
      lane.ids.set(id, i);
      lane.inflight++;
      this.outcome[i] = PENDING;
      this.sentAt[i] = performance.now();
      const second = this.o.twoIdentities === true && i % 2 === 1;
      s.write(
        this.o.protocol === 'dubbo'
          ? dubboEchoRequest(id, IFACE, '1.0', bodyOf(i), this.o.twoIdentities ? (second ? 'g2' : 'g1') : undefined)
          : boltRequest(id, second ? IDENTITY_KEYS.bolt[1] : SERVICE, bodyOf(i), this.o.timeoutMs),
      );
    }
    s.uncork();
  }

  private onAnswer(lane: Lane, frame: Buffer): void {
    const h = decodeFrame(frame);
    if (h.kind !== 'response') return;
    const i = lane.ids.get(Number(h.requestId));
    if (i === undefined) {
      this.unknownIds++;
      this.misrouted++;
      return;
    }
    if (this.outcome[i] !== PENDING) {
      this.duplicates++;
      return;
    }
    const status = h.status ?? -1;
    if (status === (h.protocol === 'dubbo' ? 20 : 0)) {
      if (indexOfBody(frame.subarray(h.bodyOffset, h.bodyOffset + h.bodyLength)) !== i) this.misrouted++;
      this.settle(i, OK);
    } else {
      this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1);
      this.status[i] = status;
      this.settle(i, ERROR_RESPONSE);
    }
    lane.inflight--;
    this.fill(lane);
  }

  private settle(i: number, what: number): void {
    this.outcome[i] = what;
    const now = performance.now();
    this.latency[i] = now - this.sentAt[i];
    this.answeredAt[i] = now - this.t0;
    this.finished++;
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves when `check` holds, or after `ms` (returns whether it held). */
  async until(check: () => boolean, ms: number): Promise<boolean> {
    const end = performance.now() + ms;
    while (!check()) {
      const left = end - performance.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return true;
  }

  /** Requests sent and not yet settled. */
  pendingIndexes(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.next; i++) if (this.outcome[i] === PENDING) out.push(i);
    return out;
  }

  count(what: number): number {
    let n = 0;
    for (let i = 0; i < this.o.total; i++) if (this.outcome[i] === what) n++;
    return n;
  }

  /** Latency percentile (ms) over the successes. */
  percentile(p: number): number {
    const xs: number[] = [];
    for (let i = 0; i < this.o.total; i++) if (this.outcome[i] === OK) xs.push(this.latency[i]);
    if (xs.length === 0) return NaN;
    xs.sort((a, b) => a - b);
    return xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    for (const l of this.lanes) l.socket?.destroy();
  }
}

function statusText(m: Map<number, number>, protocol: 'bolt' | 'dubbo' = 'bolt'): string {
  const names: Record<number, string> =
    protocol === 'dubbo'
      ? {
          31: 'SERVER_TIMEOUT',
          35: 'CHANNEL_INACTIVE',
          40: 'BAD_REQUEST',
          60: 'SERVICE_NOT_FOUND',
          100: 'THREADPOOL_EXHAUSTED',
        }
      : { 4: 'BUSY', 5: 'ERROR_COMM', 6: 'NO_PROCESSOR', 7: 'TIMEOUT', 9: 'CODEC', 16: 'CONNECTION_CLOSED' };
  return [...m].map(([s, n]) => `${names[s] ?? `0x${s.toString(16)}`}: ${n}`).join(', ') || 'none';
}

const ms = (x: number) => Math.round(x * 10) / 10;

/** mulberry32: a seeded random source, so the fault pattern (which chunk is reset, each delay) is the same every run. */
function seededRandom(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// --- the checks themselves -------------------------------------------------------------------------------------

describe('reliability: the per-request checks catch a broken provider', function () {
  this.timeout(30000);
  for (const protocol of ['bolt', 'dubbo'] as const) {
    for (const fault of ['swap', 'double'] as const) {
      it(`${protocol}: a provider that ${fault === 'swap' ? 'mixes up answers' : 'answers twice'} is caught`, async () => {
        const provider = await startEchoProvider(1000, 0, fault);
        const load = new LoadGen({
          protocol,
          port: provider.port,
          total: 1000,
          connections: 2,
          window: 16,
          timeoutMs: 5000,
          reconnect: false,
        });
        try {
          load.start();
          assert.ok(await load.until(() => load.finished === 1000, 10000));
          await sleep(50); // the last doubled answers
          if (fault === 'swap') assert.equal(load.misrouted, 100);
          else assert.equal(load.duplicates, 100);
        } finally {
          load.stop();
          await provider.close();
        }
      });
    }
  }
});

// --- suite 1 ----------------------------------------------------------------------------------------------------

/** Suite 1 for one protocol: Bolt at full size (`faults-resets`), Dubbo smaller (`faults-resets-dubbo`). */
/**
 * The provider pod's sidecar: an empty file registry and the inbound route to the provider set directly, which is
 * what a facade records when the app publishes (no facade here).
 */
async function startProviderSidecar(
  dir: string,
  providerPort: number,
  identities?: { protocol: 'bolt' | 'dubbo'; ports: [number, number] },
  mtls?: SidecarMtls,
) {
  writeFileSync(path.join(dir, 'provider.json'), JSON.stringify({ services: {} }));
  const sidecar = await startSidecar(
    [
      'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
      'admin: "127.0.0.1:0"',
      'log: { level: silent }',
      'registries:',
      `  - { name: static, type: file, upstream: "${path.join(dir, 'provider.json')}" }`,
      ...(mtls ? tlsLines(mtls.provider, mtls.pki) : []),
    ].join('\n'),
  );
  if (identities) {
    const [first, second] = IDENTITY_KEYS[identities.protocol];
    sidecar.book.table.setInbound(first, { host: '127.0.0.1', port: identities.ports[0] });
    sidecar.book.table.setInbound(second, { host: '127.0.0.1', port: identities.ports[1] });
  } else sidecar.book.table.setInbound(SERVICE, { host: '127.0.0.1', port: providerPort });
  return sidecar;
}

/**
 * Mutual TLS between the two sidecars (issue 18): each its own certificate from one test CA, the provider strict;
 * the consumer's file registry publishes the provider's identity (`meshport.id`), so the consumer dials it with TLS.
 */
interface SidecarMtls {
  pki: TestPki;
  provider: { identity: string; certFile: string; keyFile: string };
  consumer: { identity: string; certFile: string; keyFile: string };
}

function makeSidecarMtls(): SidecarMtls {
  const pki = makeTestPki({ trustDomain: 'cluster.local' });
  return {
    pki,
    provider: pki.issue('spiffe://cluster.local/ns/default/sa/fault-provider'),
    consumer: pki.issue('spiffe://cluster.local/ns/default/sa/fault-consumer'),
  };
}

function tlsLines(leaf: { certFile: string; keyFile: string }, pki: TestPki): string[] {
  return [
    'tls:',
    '  mode: strict',
    `  certFile: ${leaf.certFile}`,
    `  keyFile: ${leaf.keyFile}`,
    `  trustBundleFile: ${pki.trustBundleFile}`,
  ];
}

/** The consumer pod's sidecar: a file registry routing the service to `port` (the faulty hop), 4 upstream connections. */
async function startConsumerSidecar(
  dir: string,
  protocol: 'bolt' | 'dubbo',
  port: number,
  twoIdentities = false,
  mtls?: SidecarMtls,
) {
  const id = mtls ? `&meshport.id=${encodeURIComponent(mtls.provider.identity)}` : '';
  const services = twoIdentities
    ? Object.fromEntries(
        IDENTITY_KEYS[protocol].map((key, i) => [
          key,
          [`${protocol}://127.0.0.1:${port}?interface=${IFACE}&${IDENTITY_URL_PARAMS[protocol][i]}${id}`],
        ]),
      )
    : { [SERVICE]: [`${protocol}://127.0.0.1:${port}?interface=${IFACE}&version=1.0${id}`] };
  writeFileSync(path.join(dir, 'routes.json'), JSON.stringify({ services }));
  const sidecar = await startSidecar(
    [
      'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
      'admin: "127.0.0.1:0"',
      'log: { level: silent }',
      'router: { connectionsPerEndpoint: 4 }',
      'registries:',
      `  - { name: static, type: file, upstream: "${path.join(dir, 'routes.json')}" }`,
      ...(mtls ? tlsLines(mtls.consumer, mtls.pki) : []),
    ].join('\n'),
  );
  for (const key of twoIdentities ? IDENTITY_KEYS[protocol] : [SERVICE])
    assert.ok(sidecar.book.table.outbound(key), `the consumer sidecar routes ${key}`);
  return sidecar;
}

function suite1(protocol: 'bolt' | 'dubbo', TOTAL: number, id: string, mtls = false): void {
  const withTls = mtls ? ', mutual TLS between the sidecars' : '';
  describe(`reliability: 1% upstream resets and 50 +/- 20 ms latency through two sidecars (suite 1, ${protocol}${withTls})`, function () {
    this.timeout(scale(5 * 60_000, 40 * 60_000));
    let provider: EchoProvider | undefined;
    /** The second identity's provider. */
    let other: EchoProvider | undefined;
    let proxy: ToxicProxy | undefined;
    let load: LoadGen | undefined;
    let dir = '';
    let security: SidecarMtls | undefined;
    before(() => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-faults-'));
      if (mtls) security = makeSidecarMtls();
    });

    after(async () => {
      load?.stop();
      await stopSidecars();
      await proxy?.close();
      await provider?.close();
      await other?.close();
      security?.pki.cleanup();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it(`${TOTAL.toLocaleString('en-US')} ${protocol} requests to two identities: 0 lost, 0 misrouted, exactly one answer each`, async () => {
      provider = await startEchoProvider(TOTAL, 0, undefined, 0);
      other = await startEchoProvider(TOTAL, 0, undefined, 1);
      const providerSidecar = await startProviderSidecar(
        dir,
        provider.port,
        { protocol, ports: [provider.port, other.port] },
        security,
      );
      // Seeded (MESHPORT_FAULTS_SEED to vary it): the proxy draws two numbers per request chunk (reset?, delay), so the
      // same traffic in the same chunks meets the same faults.
      const SEED = Number(process.env.MESHPORT_FAULTS_SEED ?? 31);
      proxy = await startToxicProxy({
        upstream: { host: '127.0.0.1', port: providerSidecar.address('inbound').port },
        random: seededRandom(SEED),
      });
      // Latency on the request path, resets on it too: a reset takes down the pooled connection with every request in
      // flight on it, which the consumer sidecar must answer with CONNECTION_CLOSED, each once.
      proxy.addToxic('latency', { type: 'latency', ms: 50, jitterMs: 20, direction: 'upstream' });
      // Per KiB of requests, not per write: how many requests share one write depends on the engine (the native one
      // writes sooner and smaller), and the fault rate must not. About one reset per 10,000 Bolt requests.
      const RESET_PER_KIB = Number(process.env.MESHPORT_FAULTS_RESET_P ?? 0.00085);
      proxy.addToxic('resets', { type: 'reset', probability: RESET_PER_KIB, per: 'kib', direction: 'upstream' });
      const consumerSidecar = await startConsumerSidecar(dir, protocol, proxy.port, true, security);

      load = new LoadGen({
        protocol,
        twoIdentities: true,
        port: consumerSidecar.address('outbound').port,
        total: TOTAL,
        connections: 8,
        window: 64,
        timeoutMs: 5000,
        reconnect: false,
      });
      const started = performance.now();
      load.start();
      let lastReport = started;
      const done = await load.until(
        () => {
          if (performance.now() - lastReport > 10_000) {
            lastReport = performance.now();
            process.stdout.write(
              `      ${load!.finished.toLocaleString('en-US')} / ${TOTAL.toLocaleString('en-US')} answered\n`,
            );
          }
          return load!.finished === TOTAL;
        },
        scale(4 * 60_000, 35 * 60_000),
      );
      // Whatever is still waiting gets the longest a request can legitimately wait (its 5 s timeout) to settle.
      if (!done) await load.until(() => load!.finished === TOTAL, 6000);
      const wallS = (performance.now() - started) / 1000;

      const ok = load.count(OK);
      const errors = load.count(ERROR_RESPONSE);
      const closed = load.count(CONN_CLOSED);
      const lost = load.count(PENDING) + load.count(UNSENT);
      let providerTwice = 0;
      for (let i = 0; i < TOTAL; i++) if (provider.seen[i] + other.seen[i] > 1) providerTwice++;
      // A request delivered to the other identity's provider: the wrong service answered it.
      const wrongIdentity = provider.foreign + other.foreign;
      // What a reset with requests in flight answers: Bolt CONNECTION_CLOSED, Dubbo 35 CHANNEL_INACTIVE.
      const RESET_STATUS = protocol === 'dubbo' ? 35 : 0x10;
      const resetShare = (load.statuses.get(RESET_STATUS) ?? 0) / TOTAL;
      // With mutual TLS: the handshakes each side counted (every reset connection is a new handshake).
      const tlsFigures: { name: string; value: number }[] = [];
      if (security) {
        const statsOf = async (port: number) => (await fetch(`http://127.0.0.1:${port}/stats`)).text();
        const consumerStats = await statsOf(consumerSidecar.address('admin').port);
        const providerStats = await statsOf(providerSidecar.address('admin').port);
        tlsFigures.push(
          {
            name: 'TLS handshakes (consumer, outbound)',
            value: counterValue(consumerStats, 'meshport_tls_handshakes_total', { direction: 'outbound' }),
          },
          {
            name: 'TLS handshakes (provider, inbound)',
            value: counterValue(providerStats, 'meshport_tls_handshakes_total', { direction: 'inbound' }),
          },
          {
            name: 'TLS handshake failures (both sidecars)',
            value:
              counterValue(consumerStats, 'meshport_tls_handshake_failures_total') +
              counterValue(providerStats, 'meshport_tls_handshake_failures_total'),
          },
        );
      }
      recordSuite({
        id,
        title: `Suite 1: upstream resets and 50 +/- 20 ms latency through two sidecars (${protocol === 'dubbo' ? 'Dubbo' : 'Bolt'}${withTls})`,
        figures: [
          { name: 'requests', value: TOTAL },
          { name: 'successes', value: ok },
          { name: 'error responses', value: errors },
          { name: 'error responses by status', value: statusText(load.statuses, protocol) },
          { name: 'app connections closed under it', value: closed, goal: '0', met: closed === 0 },
          { name: 'requests lost (no answer)', value: lost, goal: '0', met: lost === 0 },
          { name: 'requests misrouted', value: load.misrouted, goal: '0', met: load.misrouted === 0 },
          {
            name: "requests at another identity's provider",
            value: wrongIdentity,
            goal: '0',
            met: wrongIdentity === 0,
          },
          { name: 'requests answered twice', value: load.duplicates, goal: '0', met: load.duplicates === 0 },
          { name: 'requests the provider got twice', value: providerTwice, goal: '0', met: providerTwice === 0 },
          { name: 'upstream connections', value: proxy.stats.connections },
          { name: 'request chunks through the proxy', value: proxy.stats.writes.upstream },
          { name: 'resets injected', value: proxy.stats.resetsInjected },
          { name: 'requests that saw a reset', value: `${(resetShare * 100).toFixed(2)} %` },
          { name: 'latency p50 (ms, successes)', value: ms(load.percentile(50)) },
          { name: 'latency p99 (ms, successes)', value: ms(load.percentile(99)) },
          { name: 'wall time (s)', value: ms(wallS) },
          { name: 'throughput (req/s)', value: Math.round(TOTAL / wallS) },
          ...tlsFigures,
        ],
        notes: [
          ...(security
            ? [
                'Mutual TLS 1.3 on the sidecar-to-sidecar hop (the toxic proxy relays the TLS bytes): each sidecar its own test-CA certificate, the provider strict, the consumer told the provider identity by its file registry (`meshport.id`).',
              ]
            : []),
          `Load: 8 app connections x 64 pipelined ${protocol === 'dubbo' ? 'Dubbo hessian2' : 'Bolt v1'} requests (${protocol === 'dubbo' ? "the router's dubboTimeoutMs" : '5 s timeout'}), each body unique (\`req:<n>\`); an echo provider answers with the body, so a success is checked against the request it answers.`,
          'Path: app -> consumer sidecar outbound (4 pooled connections) -> in-process toxic proxy -> provider sidecar inbound -> echo provider; both sidecars in the test process, loopback only.',
          `Faults on the request direction of the proxy: latency 50 ms +/- 20 ms uniform per chunk (order kept), and a reset (RST both ways) with probability ${RESET_PER_KIB} per KiB of requests (per traffic, not per write, so that the engines' different write batching does not change the fault rate), tuned so about 1% of requests are in flight on a connection when it is reset; random source seeded (${SEED}).`,
          "Per request the outcome is set once: a second answer is a duplicate, an answer to an id not sent on that connection or with another request's body is misrouted; a request with no answer when the run ends is lost.",
          `Identities: requests alternate between two identities of the interface (${IDENTITY_KEYS[protocol].join(' and ')}), each served by a provider of its own behind the same provider sidecar; a provider counts a request of the other identity that reaches it.`,
        ],
      });
      assert.equal(lost, 0, 'every request got an answer');
      assert.equal(load.misrouted, 0, 'no answer went to the wrong request');
      assert.equal(wrongIdentity, 0, "no request reached another identity's provider");
      assert.equal(load.duplicates, 0, 'no request answered twice');
      assert.equal(closed, 0, 'the app connections stayed up: the faults are upstream of the consumer sidecar');
      assert.equal(providerTwice, 0, 'no request reached the provider twice (a request that left is never retried)');
      assert.equal(ok + errors, TOTAL);
      assert.ok(proxy.stats.resetsInjected > 0, 'resets were injected');
      assert.ok(ok >= TOTAL * 0.9, `most requests succeed (${ok})`);
      // Only what the faults explain: the reset status; nothing else is expected at this load.
      for (const status of load.statuses.keys())
        assert.equal(status, RESET_STATUS, `unexpected error status ${statusText(load.statuses, protocol)}`);
      if (security) {
        assert.ok(tlsFigures[0]!.value >= 1, 'the consumer sidecar dialled the provider with TLS');
        assert.ok(tlsFigures[1]!.value >= 1, 'the provider sidecar accepted TLS');
      }
    });
  });
}

suite1('bolt', Number(process.env.MESHPORT_FAULTS_REQUESTS ?? scale(100_000, 1_000_000)), 'faults-resets');
suite1('dubbo', Number(process.env.MESHPORT_FAULTS_DUBBO_REQUESTS ?? scale(20_000, 200_000)), 'faults-resets-dubbo');
// The fault runs with mutual TLS on between the sidecars (issue 18): the same checks, every reset a new handshake.
suite1('bolt', Number(process.env.MESHPORT_FAULTS_MTLS_REQUESTS ?? scale(20_000, 200_000)), 'faults-resets-mtls', true);

// --- suite 1, kernel loss variant ------------------------------------------------------------------------------

/**
 * A byte relay, run inside a namespace (`node -e RELAY listen target`) or in this process (`startRelay`): each
 * accepted connection gets its own connection to `target`, bytes piped both ways, and either end's close or error
 * closes the other (so a lost connection shows as one). An endpoint is `host:port` or a Unix socket path (Unix
 * sockets are not network-namespaced: that is how the host's sidecars reach into the namespaces).
 */
const RELAY = `
const net = require('node:net');
const [listen, target] = process.argv.slice(1);
const ep = (e) => (e.startsWith('/') ? { path: e } : { host: e.slice(0, e.lastIndexOf(':')), port: Number(e.slice(e.lastIndexOf(':') + 1)) });
const srv = net.createServer((a) => {
  const b = net.connect(ep(target));
  a.setNoDelay(true); b.setNoDelay(true);
  a.pipe(b); b.pipe(a);
  const down = () => { a.destroy(); b.destroy(); };
  a.on('error', down); b.on('error', down); a.on('close', down); b.on('close', down);
});
const l = ep(listen);
l.path ? srv.listen(l.path, () => console.log('ready')) : srv.listen(l.port, l.host, () => console.log('ready'));`;

async function startRelay(
  listen: { host: string; port: number } | string,
  target: { host: string; port: number } | string,
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((a) => {
    const b = typeof target === 'string' ? net.connect(target) : net.connect(target.port, target.host);
    for (const s of [a, b]) {
      sockets.add(s);
      s.setNoDelay?.(true);
      s.on('close', () => sockets.delete(s));
    }
    a.pipe(b);
    b.pipe(a);
    const down = () => {
      a.destroy();
      b.destroy();
    };
    for (const s of [a, b]) s.on('error', down).on('close', down);
  });
  if (typeof listen === 'string') server.listen(listen);
  else server.listen(listen.port, listen.host);
  await once(server, 'listening');
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** Tcp RetransSegs and OutSegs of a namespace, from its /proc/net/snmp. */
async function tcpCounters(netns: string): Promise<{ retrans: number; out: number }> {
  const r = await run('cat', ['/proc/net/snmp'], { netns });
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('Tcp:'));
  const names = lines[0].split(/\s+/);
  const values = lines[1].split(/\s+/);
  return { retrans: Number(values[names.indexOf('RetransSegs')]), out: Number(values[names.indexOf('OutSegs')]) };
}

describe('reliability: 1% kernel packet loss on the hop between the two sidecars (suite 1, kernel variant)', function () {
  this.timeout(scale(3 * 60_000, 20 * 60_000));
  const TOTAL = Number(process.env.MESHPORT_FAULTS_KERNEL_REQUESTS ?? scale(20_000, 200_000));
  const LOSS = 1;
  const prefix = `mpfaults-${process.pid}`;
  let provider: EchoProvider | undefined;
  let load: LoadGen | undefined;
  let pair: NetnsPair | undefined;
  const children: ChildProcess[] = [];
  const relays: { close(): Promise<void> }[] = [];
  let dir = '';

  after(async () => {
    load?.stop();
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const r of relays.splice(0)) await r.close().catch(() => {});
    await stopSidecars();
    await provider?.close();
    if (pair) {
      await removeLinkFaults(pair.a, pair.devA).catch(() => {});
      await removeLinkFaults(pair.b, pair.devB).catch(() => {});
      await pair.destroy();
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (typeof process.getuid === 'function' && process.getuid() === 0) {
      await deleteNetnsWithPrefix(prefix);
      assert.deepEqual(await netnsWithPrefix(prefix), [], 'network namespaces left behind');
      assert.deepEqual(await hostLinkFaultLeftovers(), [], 'link faults left on the host');
    }
  });

  it(`${TOTAL.toLocaleString('en-US')} bolt requests across a veth with ${LOSS}% loss each way: 0 lost, 0 misrouted, exactly one answer each`, async function () {
    const problem = await linkFaultProblem();
    if (problem !== undefined) skipOrFail(this, `kernel-loss suite: ${problem}`);
    dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-kfaults-'));
    provider = await startEchoProvider(TOTAL);
    const providerSidecar = await startProviderSidecar(dir, provider.port);

    // The hop: consumer sidecar -> relay (host, TCP -> a.sock) -> relay in A (a.sock -> B's veth address, TCP over the
    // veth) -> relay in B (-> b.sock) -> relay (host, b.sock -> provider sidecar inbound). Only the veth has loss.
    pair = await createNetnsPair(prefix);
    const applied = [
      await applyLinkFaults(pair.a, pair.devA, { lossPercent: LOSS }, { netns: pair.b, dev: pair.devB }),
      await applyLinkFaults(pair.b, pair.devB, { lossPercent: LOSS }, { netns: pair.a, dev: pair.devA }),
    ];
    for (const a of applied)
      assert.ok(a.loss === 'netem' || a.loss === 'iptables statistic', `loss applied (${JSON.stringify(a)})`);
    const aSock = path.join(dir, 'a.sock');
    const bSock = path.join(dir, 'b.sock');
    relays.push(await startRelay(bSock, { host: '127.0.0.1', port: providerSidecar.address('inbound').port }));
    for (const [ns, listen, target] of [
      [pair.b, `${pair.addressB}:9200`, bSock],
      [pair.a, aSock, `${pair.addressB}:9200`],
    ] as const) {
      const child = spawnInNetns(ns, process.execPath, ['-e', RELAY, listen, target], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.push(child);
      let text = '';
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', (c: Buffer) => {
          text += c;
          if (text.includes('ready')) resolve();
        });
        child.stderr!.on('data', (c: Buffer) => (text += c));
        child.once('exit', () => reject(new Error(`relay in ${ns} exited: ${text}`)));
      });
    }
    const entry = await startRelay({ host: '127.0.0.1', port: 0 }, aSock);
    relays.push(entry);
    const consumerSidecar = await startConsumerSidecar(dir, 'bolt', entry.port);

    const before = [await tcpCounters(pair.a), await tcpCounters(pair.b)];
    load = new LoadGen({
      protocol: 'bolt',
      port: consumerSidecar.address('outbound').port,
      total: TOTAL,
      connections: 8,
      window: 64,
      timeoutMs: 5000,
      reconnect: false,
    });
    const started = performance.now();
    load.start();
    const done = await load.until(() => load!.finished === TOTAL, scale(2 * 60_000, 15 * 60_000));
    if (!done) await load.until(() => load!.finished === TOTAL, 6000);
    const wallS = (performance.now() - started) / 1000;
    const afterCounters = [await tcpCounters(pair.a), await tcpCounters(pair.b)];
    const retrans = afterCounters[0].retrans - before[0].retrans + afterCounters[1].retrans - before[1].retrans;
    const segs = afterCounters[0].out - before[0].out + afterCounters[1].out - before[1].out;

    const ok = load.count(OK);
    const errors = load.count(ERROR_RESPONSE);
    const closed = load.count(CONN_CLOSED);
    const lost = load.count(PENDING) + load.count(UNSENT);
    let providerTwice = 0;
    for (let i = 0; i < TOTAL; i++) if (provider.seen[i] > 1) providerTwice++;
    recordSuite({
      id: 'faults-kernel-loss',
      title: `Suite 1, kernel variant: ${LOSS}% packet loss each way on a veth between two namespaces on the sidecar-to-sidecar hop (Bolt)`,
      figures: [
        { name: 'requests', value: TOTAL },
        { name: 'successes', value: ok },
        { name: 'error responses', value: errors },
        { name: 'error responses by status', value: statusText(load.statuses) },
        { name: 'app connections closed under it', value: closed, goal: '0', met: closed === 0 },
        { name: 'requests lost (no answer)', value: lost, goal: '0', met: lost === 0 },
        { name: 'requests misrouted', value: load.misrouted, goal: '0', met: load.misrouted === 0 },
        { name: 'requests answered twice', value: load.duplicates, goal: '0', met: load.duplicates === 0 },
        { name: 'requests the provider got twice', value: providerTwice, goal: '0', met: providerTwice === 0 },
        { name: 'loss applied by', value: applied.map((a) => a.loss).join(', ') },
        { name: 'TCP segments sent across the veth', value: segs },
        {
          name: 'TCP retransmits across the veth',
          value: `${retrans} (${((100 * retrans) / Math.max(1, segs)).toFixed(2)} %)`,
        },
        { name: 'latency p50 (ms, successes)', value: ms(load.percentile(50)) },
        { name: 'latency p99 (ms, successes)', value: ms(load.percentile(99)) },
        { name: 'wall time (s)', value: ms(wallS) },
        { name: 'throughput (req/s)', value: Math.round(TOTAL / wallS) },
      ],
      notes: [
        'Path: app -> consumer sidecar outbound (4 pooled connections) -> relay -> Unix socket -> relay in namespace A -> TCP over a veth pair (198.19.x.0/24) -> relay in namespace B -> Unix socket -> relay -> provider sidecar inbound -> echo provider. Sidecars in the test process.',
        `Kernel loss ${LOSS}% on each veth end's traffic (applyLinkFaults: netem where the kernel has sch_netem, else iptables statistic DROP on the receiving end's ingress, silent to the sender); TCP recovers it, so the sidecars see delay, not errors.`,
      ],
    });
    assert.equal(lost, 0, 'every request got an answer');
    assert.equal(load.misrouted, 0, 'no answer went to the wrong request');
    assert.equal(load.duplicates, 0, 'no request answered twice');
    assert.equal(closed, 0, 'the app connections stayed up');
    assert.equal(providerTwice, 0, 'no request reached the provider twice');
    assert.equal(ok + errors, TOTAL);
    assert.ok(retrans > 0, 'the kernel loss made TCP retransmit');
    assert.ok(ok >= TOTAL * 0.99, `loss alone leaves nearly every request a success (${ok})`);
  });
});

// --- suite 4 ----------------------------------------------------------------------------------------------------

interface Child {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output: () => string;
}

/** `meshport sidecar --config FILE`; resolves once it logs that it is running. */
async function spawnSidecar(config: string): Promise<Child> {
  const child = spawn(process.execPath, [BIN, 'sidecar', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sidecar did not start in 15 s:\n${text}`)), 15000);
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      text += c;
      if (text.includes('meshport sidecar running')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (text += c));
    void exited.then(() => reject(new Error(`sidecar exited before it ran:\n${text}`)));
  });
  return { child, exited, output: () => text };
}

describe('reliability: a sidecar restarted under load (suite 4)', function () {
  this.timeout(scale(3 * 60_000, 20 * 60_000));
  const TOTAL = Number(process.env.MESHPORT_RESTART_REQUESTS ?? scale(30_000, 300_000));
  const DRAIN_TIMEOUT_MS = 3000;
  let dir = '';
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-restart-'));
  });
  const children = new Set<Child>();
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  const results: { signal: string; figures: Record<string, number | string> }[] = [];

  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    for (const c of children) {
      if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
      await c.exited;
    }
    children.clear();
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (results.length === 0) return;
    const figures = results.flatMap(({ signal, figures: f }) =>
      Object.entries(f).map(([name, value]) => {
        const goal =
          name === 'no-route answers from the new sidecar' ||
          name === 'requests answered twice' ||
          name === 'requests lost (no answer, no close)' ||
          name === 'requests misrouted' ||
          name === 'requests the provider got twice'
            ? '0'
            : name.startsWith('first success after restart')
              ? '<= 2000 ms'
              : undefined;
        const met = goal === '0' ? value === 0 : goal !== undefined ? Number(value) <= 2000 : undefined;
        return { name: `${signal}: ${name}`, value, goal, met };
      }),
    );
    recordSuite({
      id: 'sidecar-restart',
      title: 'Suite 4: a sidecar restarted under load',
      figures,
      notes: [
        `Per variant: ${TOTAL.toLocaleString('en-US')} Bolt requests from 4 app connections x 32 pipelined, unique bodies, through \`meshport sidecar --config\` (a child process, file registry) to an echo provider.`,
        'At a third of the load the sidecar gets SIGTERM (it drains and exits) or SIGKILL; a new one is started on the same ports as soon as the old one has exited. The app reconnects every 20 ms.',
        "A request in flight at the stop ends with an answer (success or error response) or with its connection's close, never both; requests are not resent by the app, so each index is sent once.",
        '"first success after restart" is timed from the new process being spawned; "outage" from the last answer before the stop to the first success after it.',
        'No-route answers from the new sidecar: its apps reconnect before its registries have reported; router.startupHoldMs (3 s by default) holds their calls until the route appears, so none gets NO_PROCESSOR (asserted).',
        `SIGTERM exit: the drain ends once every caller connection is idle and closed, well inside router.drainTimeoutMs (${DRAIN_TIMEOUT_MS / 1000} s here; asserted under it). A draining connection reads and drops what the app still sends after the router's FIN, so the app's own FIN is seen.`,
        "The test asserts the first success after restart within twice the new sidecar's own start time (measured in the same run, so a loaded machine slows both); the 2 s goal is checked here, on the recorded figure.",
      ],
    });
  });

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`${signal}: apps reconnect, no request is answered twice, calls succeed again after the restart`, async () => {
      const provider = await startEchoProvider(TOTAL);
      cleanups.push(() => provider.close());
      const [outbound, inbound, admin] = await freePorts(3);
      const routes = path.join(dir, `routes-${signal}.json`);
      writeFileSync(
        routes,
        JSON.stringify({
          services: { [SERVICE]: [`bolt://127.0.0.1:${provider.port}?interface=${IFACE}&version=1.0`] },
        }),
      );
      const config = path.join(dir, `meshport-${signal}.yaml`);
      writeFileSync(
        config,
        [
          `listeners: { outbound: "127.0.0.1:${outbound}", inbound: "127.0.0.1:${inbound}" }`,
          `admin: "127.0.0.1:${admin}"`,
          'log: { level: info }',
          `router: { drainTimeoutMs: ${DRAIN_TIMEOUT_MS} }`,
          'registries:',
          `  - { name: static, type: file, upstream: "${routes}" }`,
        ].join('\n'),
      );
      const first = await spawnSidecar(config);
      children.add(first);

      const load = new LoadGen({
        port: outbound,
        total: TOTAL,
        connections: 4,
        window: 32,
        timeoutMs: 5000,
        reconnect: true,
        reconnectMs: 20,
      });
      cleanups.push(() => load.stop());
      load.start();
      await load.until(() => load.finished >= TOTAL / 3, 60_000);
      const inflightAtStop = load.pendingIndexes();
      const lastBefore = performance.now() - load.t0;
      first.child.kill(signal);
      const stoppedAt = performance.now();
      const exit = await first.exited;
      const exitMs = performance.now() - stoppedAt;
      const okBeforeRestart = load.count(OK);
      const spawnedAt = performance.now();
      const second = await spawnSidecar(config);
      children.add(second);
      const startMs = performance.now() - spawnedAt;
      // The first success of a request sent after the restart began.
      const okAtRestart = load.count(OK);
      await load.until(() => load.count(OK) > okAtRestart, 10_000);
      let firstOkAfter = Infinity;
      for (let i = 0; i < load.next; i++) {
        if (load.outcome[i] === OK && load.answeredAt[i] > spawnedAt - load.t0)
          firstOkAfter = Math.min(firstOkAfter, load.answeredAt[i]);
      }
      const recoveryMs = firstOkAfter - (spawnedAt - load.t0);
      await load.until(() => load.finished === TOTAL, scale(60_000, 600_000));
      await load.until(() => load.finished === TOTAL, 6000);

      const atStop = { ok: 0, error: 0, closed: 0, pending: 0 };
      for (const i of inflightAtStop) {
        const o = load.outcome[i];
        if (o === OK) atStop.ok++;
        else if (o === ERROR_RESPONSE) atStop.error++;
        else if (o === CONN_CLOSED) atStop.closed++;
        else atStop.pending++;
      }
      const lost = load.count(PENDING) + load.count(UNSENT);
      let providerTwice = 0;
      for (let i = 0; i < TOTAL; i++) if (provider.seen[i] > 1) providerTwice++;
      // Error answers by phase: while the old sidecar stopped, and from the new one.
      const stopT = stoppedAt - load.t0;
      const spawnT = spawnedAt - load.t0;
      const during = new Map<number, number>();
      const after = new Map<number, number>();
      let closedAfterStop = 0;
      for (let i = 0; i < load.next; i++) {
        if (load.outcome[i] === CONN_CLOSED && load.sentAt[i] - load.t0 > stopT) closedAfterStop++;
        if (load.outcome[i] !== ERROR_RESPONSE) continue;
        const m = load.answeredAt[i] >= spawnT ? after : during;
        m.set(load.status[i], (m.get(load.status[i]) ?? 0) + 1);
      }
      const noRouteAfterRestart = after.get(0x06) ?? 0;
      results.push({
        signal,
        figures: {
          requests: TOTAL,
          successes: load.count(OK),
          'error responses from the stopping sidecar': statusText(during),
          'error responses from the new sidecar': statusText(after),
          'no-route answers from the new sidecar': noRouteAfterRestart,
          'ended by connection close': load.count(CONN_CLOSED),
          'of those, sent after the signal': closedAfterStop,
          'requests lost (no answer, no close)': lost,
          'requests answered twice': load.duplicates,
          'requests misrouted': load.misrouted,
          'requests the provider got twice': providerTwice,
          'in flight at the stop': inflightAtStop.length,
          'of those: answered ok / error response / connection closed': `${atStop.ok} / ${atStop.error} / ${atStop.closed}`,
          'exit after the signal (ms)': Math.round(exitMs),
          'new sidecar ready (ms after spawn)': Math.round(startMs),
          'first success after restart (ms after spawn)': Math.round(recoveryMs),
          'outage (ms, last answer before stop to first success after)': Math.round(firstOkAfter - lastBefore),
          'app reconnects': load.connects - 4,
          'successes before / after the restart': `${okBeforeRestart} / ${load.count(OK) - okBeforeRestart}`,
        },
      });
      process.stdout.write(`      ${signal}: ${JSON.stringify(results[results.length - 1].figures)}\n`);
      if (signal === 'SIGTERM') assert.equal(exit.code, 0, `drained and exited 0\n${first.output()}`);
      else assert.equal(exit.signal, 'SIGKILL');
      assert.equal(load.duplicates, 0, 'no request answered twice');
      assert.equal(load.misrouted, 0, 'no answer went to the wrong request');
      assert.equal(lost, 0, 'every request ended: an answer or its connection closed');
      assert.equal(providerTwice, 0, 'no request reached the provider twice');
      assert.equal(atStop.pending, 0);
      assert.ok(inflightAtStop.length > 0, 'the stop came with requests in flight');
      if (signal === 'SIGTERM') {
        // Draining: what the sidecar had accepted before the signal is answered, not cut off.
        assert.equal(atStop.closed, 0, `requests in flight at SIGTERM were answered (${JSON.stringify(atStop)})`);
        // The deadline is what the drain would otherwise have waited for; it is the bound (figures: tens of ms).
        assert.ok(
          exitMs < DRAIN_TIMEOUT_MS,
          `the drain ended when its callers were idle, not at its ${DRAIN_TIMEOUT_MS} ms deadline (${Math.round(exitMs)} ms)`,
        );
      }
      assert.equal(noRouteAfterRestart, 0, 'no call got no-route from the new sidecar while its registry loaded');
      // Calls succeed again as soon as the new sidecar runs: within as long again as it took to start (the baseline
      // measured here, as slow as the machine is), which takes in the apps' 20 ms reconnects and the start-up hold
      // releasing held calls once the file registry reported. The figure against the 2 s goal is in the docs.
      assert.ok(
        Number.isFinite(recoveryMs) && recoveryMs <= 2 * startMs,
        `calls succeed within twice the new sidecar's start (${Math.round(startMs)} ms) of the restart (${Math.round(recoveryMs)} ms)`,
      );
      assert.ok(load.count(OK) > okBeforeRestart + TOTAL / 2, 'the rest of the load went through the new sidecar');
    });
  }
});
