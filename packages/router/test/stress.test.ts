// The acceptance run: 100,000 mixed Bolt and Dubbo calls through two hops of routers while upstreams reset at random.

import { strict as assert } from 'node:assert';
import net from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { BoltStatus, DubboStatus, FrameSplitter, decodeFrame, type FrameHeader } from '@meshport/protocol';
import { MemoryRouteTable, createRouter, type RouterHandle } from '../src/index';
import { boltRequest, dubboCall, type EchoProvider, startEchoProvider } from '@meshport/testkit';
import { until } from './helpers/peers';

const quiet = pino({ level: 'silent' });

const TOTAL = 100_000;
const CONNECTIONS = 8;
const WINDOW = 64;
const PROVIDERS = 3;
/** A provider resets its connection on about one request in this many. */
const PROVIDER_RESET_EVERY = 2000;
/** The consumer-side router's connection to a provider-side router is reset about once per this many answers. */
const HOP_RESET_EVERY = 5000;
/** No answer at all for this long fails the run (a lost call would otherwise hang it). */
const STALL_MS = 15_000;
/**
 * Request timeout in both routers, longer than a stall: a loaded machine must not turn slow answers into TIMEOUT
 * errors, and a call a router really lost shows up as lost (the run stops on the stall) before any timeout could mask it.
 */
const CALL_TIMEOUT_MS = 20_000;

const BOLT_SERVICE = 'com.example.EchoService:1.0';
const DUBBO_INTERFACE = 'org.example.Greeter';
const DUBBO_VERSION = '2.0';
const DUBBO_SERVICE = `${DUBBO_INTERFACE}:${DUBBO_VERSION}`;

/** The only statuses a caller may see instead of its echo: what the router answers for a reset or a refused connect. */
const ALLOWED_ERRORS = new Set([
  `bolt:${BoltStatus.CONNECTION_CLOSED}`,
  `bolt:${BoltStatus.ERROR_COMM}`,
  `dubbo:${DubboStatus.CHANNEL_INACTIVE}`,
]);

/** Small seeded PRNG (mulberry32), so a failing run can be replayed with MESHPORT_SEED (or MESHPORT_STRESS_SEED). */
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

/** A Bolt id that is unique among the run's Bolt requests: small and large, negative and positive. */
function boltId(k: number): number {
  switch (k % 4) {
    case 0:
      return -(k + 1);
    case 1:
      return k + 1;
    case 2:
      return 0x7fffffff - k;
    default:
      return -0x80000000 + k;
  }
}

/** A Dubbo id unique among the run's Dubbo requests: below and above 2^32, near 2^63, and negative (a wrapped long). */
function dubboId(k: number): bigint {
  switch (k % 4) {
    case 0:
      return 2n ** 32n + BigInt(k);
    case 1:
      return BigInt(k);
    case 2:
      return 2n ** 63n - 1n - BigInt(k);
    default:
      return -BigInt(k + 1);
  }
}

interface Plan {
  frames: Buffer[];
  /** The body every success answer must carry: the request's own. */
  bodies: Buffer[];
  keys: string[];
  conn: Uint8Array;
  byKey: Map<string, number>;
}

function plan(random: () => number): Plan {
  const frames: Buffer[] = [];
  const bodies: Buffer[] = [];
  const keys: string[] = [];
  const conn = new Uint8Array(TOTAL);
  const byKey = new Map<string, number>();
  let bolts = 0;
  let dubbos = 0;
  for (let i = 0; i < TOTAL; i++) {
    // Mostly short bodies; now and then a longer one so frames straddle socket reads.
    const pad = random() < 0.02 ? 'x'.repeat(200 + Math.floor(random() * 800)) : '';
    const body = `req-${i}-${Math.floor(random() * 0xffffffff).toString(16)}${pad}`;
    let frame: Buffer;
    let key: string;
    if (random() < 0.5) {
      const id = boltId(bolts++);
      frame = boltRequest(id, BOLT_SERVICE, body, CALL_TIMEOUT_MS);
      key = `bolt:${id}`;
    } else {
      const id = dubboId(dubbos++);
      frame = dubboCall(id, DUBBO_INTERFACE, DUBBO_VERSION, 'echo', body);
      key = `dubbo:${id}`;
    }
    const header = decodeFrame(frame);
    assert.equal(`${header.protocol}:${header.requestId}`, key, 'the frame carries the planned id');
    frames.push(frame);
    bodies.push(frame.subarray(header.bodyOffset, header.bodyOffset + header.bodyLength));
    keys.push(key);
    conn[i] = i % CONNECTIONS;
    assert.equal(byKey.has(key), false, `id ${key} is unique`);
    byKey.set(key, i);
  }
  return { frames, bodies, keys, conn, byKey };
}

interface Tally {
  answers: Uint32Array;
  answered: number;
  ok: number;
  errors: Map<string, number>;
  unexpectedErrors: string[];
  /** One answer's text per error status, for the printout. */
  samples: Map<string, string>;
  misrouted: string[];
  duplicated: string[];
  unknown: string[];
  lastAnswerAt: number;
}

/** One caller connection that keeps up to WINDOW of its requests in flight and checks every answer as it comes. */
class PipelinedCaller {
  private readonly socket: net.Socket;
  private readonly mine: number[];
  private next = 0;
  private inflight = 0;

  constructor(
    socket: net.Socket,
    private readonly index: number,
    private readonly p: Plan,
    private readonly tally: Tally,
    private readonly onAnswer: () => void,
  ) {
    this.socket = socket;
    this.mine = [];
    for (let i = index; i < TOTAL; i += CONNECTIONS) this.mine.push(i);
    const splitter = new FrameSplitter((frame) => this.check(frame));
    socket.on('data', (chunk: Buffer) => {
      splitter.write(chunk);
      this.fill();
    });
    socket.on('error', () => {});
  }

  static async connect(
    port: number,
    index: number,
    p: Plan,
    tally: Tally,
    onAnswer: () => void,
  ): Promise<PipelinedCaller> {
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    await once(socket, 'connect');
    return new PipelinedCaller(socket, index, p, tally, onAnswer);
  }

  /** Tops the window up, in one write batch. */
  fill(): void {
    if (this.inflight >= WINDOW || this.next >= this.mine.length || this.socket.destroyed) return;
    this.socket.cork();
    while (this.inflight < WINDOW && this.next < this.mine.length) {
      this.socket.write(this.p.frames[this.mine[this.next++]]);
      this.inflight++;
    }
    this.socket.uncork();
  }

  close(): void {
    this.socket.destroy();
  }

  private check(frame: Buffer): void {
    const t = this.tally;
    t.lastAnswerAt = Date.now();
    let header: FrameHeader;
    try {
      header = decodeFrame(frame);
    } catch (err) {
      t.unknown.push(`undecodable answer on connection ${this.index}: ${(err as Error).message}`);
      return;
    }
    const key = `${header.protocol}:${header.requestId}`;
    const i = this.p.byKey.get(key);
    if (header.kind !== 'response' || i === undefined) {
      t.unknown.push(`${header.kind} ${key} on connection ${this.index}`);
      return;
    }
    if (this.p.conn[i] !== this.index) {
      t.misrouted.push(`${key} (sent on connection ${this.p.conn[i]}) answered on connection ${this.index}`);
      return;
    }
    t.answers[i]++;
    if (t.answers[i] > 1) {
      t.duplicated.push(key);
      return;
    }
    t.answered++;
    this.inflight--;
    const ok = header.protocol === 'bolt' ? header.status === BoltStatus.SUCCESS : header.status === DubboStatus.OK;
    if (ok) {
      const body = frame.subarray(header.bodyOffset, header.bodyOffset + header.bodyLength);
      if (body.equals(this.p.bodies[i])) t.ok++;
      else t.misrouted.push(`${key} got body ${JSON.stringify(body.toString('latin1').slice(0, 40))}`);
    } else {
      const what = `${header.protocol}:${header.status}`;
      t.errors.set(what, (t.errors.get(what) ?? 0) + 1);
      if (!t.samples.has(what)) t.samples.set(what, frame.toString('utf8').replace(/[^\x20-\x7e]/g, '.'));
      // The router's own answers say what happened; anything else would be an upstream's answer we never asked for.
      if (!ALLOWED_ERRORS.has(what) || !frame.toString('utf8').includes('meshport:')) {
        t.unexpectedErrors.push(`${key}: status ${what}: ${frame.toString('utf8').replace(/[^\x20-\x7e]/g, '.')}`);
      }
    }
    this.onAnswer();
  }
}

/** A TCP relay in front of a provider side: the consumer side's hop connections end here, where the test can reset one. */
interface HopRelay {
  port: number;
  /** The relay's sockets facing the consumer side: resetting one is a network reset of that hop. */
  consumerSockets: Set<net.Socket>;
  close(): void;
}

async function hopRelay(target: number): Promise<HopRelay> {
  const consumerSockets = new Set<net.Socket>();
  const server = net.createServer((down) => {
    const up = net.connect(target, '127.0.0.1');
    consumerSockets.add(down);
    const end = () => {
      consumerSockets.delete(down);
      down.destroy();
      up.destroy();
    };
    down.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    consumerSockets,
    close() {
      for (const s of consumerSockets) s.destroy();
      server.close();
    },
  };
}

describe('router: acceptance stress run', function () {
  this.timeout(120_000);

  let providers: EchoProvider[] = [];
  let providerSides: RouterHandle[] = [];
  let consumerSide: RouterHandle | undefined;
  let callers: PipelinedCaller[] = [];
  let relays: HopRelay[] = [];

  afterEach(async () => {
    // Everything, in order, whatever failed: a failed step must not leave sockets or servers behind.
    for (const c of callers) c.close();
    callers = [];
    const steps: Promise<unknown>[] = [];
    if (consumerSide) steps.push(consumerSide.drain(0));
    for (const r of providerSides) steps.push(r.drain(0));
    await Promise.allSettled(steps);
    await Promise.allSettled(providers.map((p) => p.close()));
    for (const r of relays) r.close();
    relays = [];
    consumerSide = undefined;
    providerSides = [];
    providers = [];
  });

  it(`${TOTAL} mixed Bolt and Dubbo calls from ${CONNECTIONS} connections, ${PROVIDERS} provider sides, random resets: none lost, duplicated or misrouted`, async () => {
    const seed = Number(process.env.MESHPORT_SEED ?? process.env.MESHPORT_STRESS_SEED ?? Date.now() % 0xffffffff);
    assert.ok(Number.isInteger(seed) && seed >= 0, `MESHPORT_SEED must be a non-negative integer, got ${seed}`);
    // Printed before anything can fail or hang, so every run (a timeout too) can be replayed exactly.
    console.log(`      stress seed ${seed} (replay: MESHPORT_SEED=${seed})`);
    const random = prng(seed);
    const p = plan(random);

    let providerResets = 0;
    let providerRequests = 0;
    for (let n = 0; n < PROVIDERS; n++) {
      const provider = await startEchoProvider();
      providers.push(provider);
      provider.behave = () => {
        providerRequests++;
        if (random() * PROVIDER_RESET_EVERY < 1) {
          providerResets++;
          return 'reset';
        }
        return 'answer';
      };
      const routes = new MemoryRouteTable()
        .setInbound(BOLT_SERVICE, { host: '127.0.0.1', port: provider.port })
        .setInbound(DUBBO_SERVICE, { host: '127.0.0.1', port: provider.port });
      const side = createRouter({
        routeTable: routes,
        outbound: false,
        admin: false,
        dubboTimeoutMs: CALL_TIMEOUT_MS,
        logger: quiet,
      });
      providerSides.push(side);
      await side.start();
    }
    // The hop runs through a relay the test owns, so a reset is cut the same way whichever engine the router runs.
    for (const side of providerSides) relays.push(await hopRelay(side.address('inbound').port));
    const endpoints = relays.map((r) => ({ host: '127.0.0.1', port: r.port }));
    const consumerRoutes = new MemoryRouteTable()
      .setOutbound(BOLT_SERVICE, { endpoints })
      .setOutbound(DUBBO_SERVICE, { endpoints, policy: 'least-request' });
    consumerSide = createRouter({
      routeTable: consumerRoutes,
      inbound: false,
      admin: false,
      dubboTimeoutMs: CALL_TIMEOUT_MS,
      logger: quiet,
    });
    await consumerSide.start();
    const outboundPort = consumerSide.address('outbound').port;

    const tally: Tally = {
      answers: new Uint32Array(TOTAL),
      answered: 0,
      ok: 0,
      errors: new Map(),
      unexpectedErrors: [],
      samples: new Map(),
      misrouted: [],
      duplicated: [],
      unknown: [],
      lastAnswerAt: Date.now(),
    };
    let hopResets = 0;
    let nextHopReset = HOP_RESET_EVERY;
    let finished: () => void = () => {};
    const done = new Promise<void>((resolve) => (finished = resolve));
    const router = consumerSide;
    const onAnswer = () => {
      if (tally.answered >= nextHopReset) {
        nextHopReset += Math.floor(HOP_RESET_EVERY * (0.5 + random()));
        // Cut one of the consumer side's connections to a provider side, as a network reset would.
        const live = relays.flatMap((r) => [...r.consumerSockets]);
        if (live.length > 0) {
          live[Math.floor(random() * live.length)].resetAndDestroy();
          hopResets++;
        }
      }
      if (tally.answered % 10_000 === 0) for (const pr of providers) pr.seen.length = 0; // keep memory flat
      if (tally.answered === TOTAL) finished();
    };

    for (let c = 0; c < CONNECTIONS; c++)
      callers.push(await PipelinedCaller.connect(outboundPort, c, p, tally, onAnswer));
    const started = process.hrtime.bigint();
    tally.lastAnswerAt = Date.now();
    for (const c of callers) c.fill();
    let stallTimer: NodeJS.Timeout | undefined;
    const stalled = new Promise<void>((resolve) => {
      const check = () => {
        if (Date.now() - tally.lastAnswerAt > STALL_MS) resolve();
        else stallTimer = setTimeout(check, 250);
      };
      stallTimer = setTimeout(check, 250);
    });
    await Promise.race([done, stalled]);
    clearTimeout(stallTimer);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    // Late duplicates would arrive right after the last answer: give them a moment to show up.
    await sleep(200);

    let lost = 0;
    const lostKeys: string[] = [];
    for (let i = 0; i < TOTAL; i++) {
      if (tally.answers[i] === 0) {
        lost++;
        if (lostKeys.length < 10) lostKeys.push(p.keys[i]);
      }
    }
    const errorCount = [...tally.errors.values()].reduce((a, b) => a + b, 0);
    const errorsByStatus = Object.fromEntries([...tally.errors.entries()].sort());
    const report = {
      seed,
      requests: TOTAL,
      answered: tally.answered,
      ok: tally.ok,
      errors: errorCount,
      errorsByStatus,
      lost,
      duplicated: tally.duplicated.length,
      misrouted: tally.misrouted.length,
      unknownAnswers: tally.unknown.length,
      providerResets,
      hopResets,
      providerRequests,
      seconds: Number(seconds.toFixed(2)),
      requestsPerSecond: Math.round(TOTAL / seconds),
    };
    console.log(`      stress: ${JSON.stringify(report)}`);
    for (const [what, text] of tally.samples)
      console.log(`      e.g. ${what}: ${text.slice(text.indexOf('meshport:'))}`);

    assert.equal(lost, 0, `lost: ${lostKeys.join(', ')}`);
    assert.deepEqual(tally.duplicated.slice(0, 10), [], 'duplicated answers');
    assert.deepEqual(tally.misrouted.slice(0, 10), [], 'misrouted answers');
    assert.deepEqual(tally.unknown.slice(0, 10), [], 'answers for no request of that connection');
    assert.deepEqual(
      tally.unexpectedErrors.slice(0, 10),
      [],
      `${tally.unexpectedErrors.length} error answers other than the router's reset/connect statuses`,
    );
    assert.equal(tally.ok + errorCount, TOTAL);
    assert.ok(providerResets > 0 && hopResets > 0, 'resets happened during the run');
    assert.ok(tally.ok > TOTAL * 0.8, `most calls succeed (${tally.ok})`);
    // Nothing left behind in either hop: every call the routers took is finished (answered or failed, timers cleared).
    const routers = [router, ...providerSides];
    await until(
      () => routers.every((r) => r.inflight === 0),
      `no calls in flight (have ${routers.map((r) => r.inflight).join('/')})`,
      5000,
    );
    // The consumer side's own counters agree: one request and one answer per call, as many failures as the callers saw.
    const metrics = await router.stats.registry.getMetricsAsJSON();
    const total = (name: string, outcome?: (o: string) => boolean) =>
      (metrics.find((m) => m.name === name)?.values ?? [])
        .filter((v) => outcome === undefined || outcome(String(v.labels.outcome)))
        .reduce((n, v) => n + v.value, 0);
    assert.equal(total('meshport_requests_total'), TOTAL);
    assert.equal(total('meshport_responses_total'), TOTAL);
    assert.equal(
      total('meshport_responses_total', (o) => o === 'ok'),
      tally.ok,
    );
  });
});
