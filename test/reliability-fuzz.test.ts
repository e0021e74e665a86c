// Reliability: fuzzing every parser of meshport that faces the network (issue 8, item 6) — Bolt and Dubbo as the
// router's caller side reads them, the ZooKeeper facade's jute framing and request rewriting, the RESP codec of the
// Redis facade, and the SOFA mesh HTTP API.
//
// Two campaigns per parser:
// - in process, at the parser's entry point, in a worker thread per parser (a hang is cut off by a watchdog, memory is
//   capped): 10^5 cases at CI size, 10^7 in long mode (MESHPORT_LONG=1); FUZZ_CASES overrides. Every input that ever
//   crashed one of them is kept under test/fixtures/fuzz-crashers/<parser>/ and replayed first, every run.
// - on the wire, against the real server (router with an echo provider, facades with real ZooKeeper and redis-server):
//   mutated inputs, each on a fresh connection, while a well-behaved client keeps being answered correctly.
//
// FUZZ_SEED (decimal or 0x-hex) picks the run; a failure prints the seed, the case and a replay command.

import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import zookeeper from 'node-zookeeper-client';
import pino from 'pino';
import { FrameSplitter, decodeFrame } from '@meshport/protocol';
import { MemoryRegistry, MemoryRegistryStore, RewriteOnlyTakeover } from '@meshport/registry-core';
import { RedisFacade } from '@meshport/registry-redis';
import { SofaMeshApiFacade } from '@meshport/registry-sofa';
import { ZooKeeperFacade } from '@meshport/registry-zookeeper';
import { MemoryRouteTable, createRouter } from '@meshport/router';
import {
  CRASHERS_DIR,
  Rng,
  TARGETS,
  caseInput,
  chunkify,
  fuzzSeedFromEnv,
  mixSeed,
  mutate,
  readHexDir,
  runCampaign,
  seedsOf,
  type CampaignOutcome,
  type Target,
} from './support/fuzz';
import { LONG, recordSuite, scale, type Figure } from './support/reliability';
import {
  boltRequest,
  connectZooKeeper,
  dubboCall,
  echoResponse,
  pidAlive,
  RespConnection,
  type RunningRedis,
  type RunningZooKeeper,
  startRedis,
  startZooKeeper,
} from '@meshport/testkit';

const SEED = fuzzSeedFromEnv();
const CASES = process.env.FUZZ_CASES ? Number(process.env.FUZZ_CASES) : scale(100_000, 10_000_000);
const WIRE_CASES = process.env.FUZZ_WIRE_CASES ? Number(process.env.FUZZ_WIRE_CASES) : scale(2_000, 100_000);
/** The good client is checked every this many bad connections. */
const GOOD_EVERY = 25;
/** On the wire, the client sends FIN once the server has said nothing for this long. */
const QUIET_MS = 100;
const MIB = 1024 * 1024;
const REPLAY = `FUZZ_SEED=0x${SEED.toString(16)} FUZZ_CASES=${CASES} npx mocha --no-config --timeout 0 test/dist/reliability-fuzz.test.js`;

const ECHO = 'com.example.EchoService:1.0';
const GREETER = 'org.example.Greeter';

/** Writes a crashing input where the suite replays it on every later run (fixed or not, it stays a regression case). */
function keepCrasher(target: Target, hex: string, why: string): string {
  const dir = path.join(CRASHERS_DIR, target);
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `seed-${SEED.toString(16)}-${hex.slice(0, 16) || 'empty'}-${hex.length / 2}.hex`);
  writeFileSync(
    file,
    `# ${why.split('\n')[0]}\n# found with FUZZ_SEED=0x${SEED.toString(16)}\n${hex.match(/.{1,64}/g)?.join('\n') ?? ''}\n`,
  );
  return file;
}

// ---------------------------------------------------------------------------------------------------------------
// On the wire.

interface WireResult {
  /** The server closed the connection after our FIN (with or without an answer). */
  closed: boolean;
  /** Bytes the server answered. */
  reply: Buffer;
  /** The server reset the connection. */
  reset: boolean;
}

/**
 * One bad input on a fresh connection: written in chunks; once the server has been quiet for QUIET_MS (an answer
 * to whatever was whole has come back by then), FIN; then the server must close within `timeoutMs`.
 */
function sendOnFreshConnection(port: number, input: Buffer, rng: Rng, timeoutMs = 10_000): Promise<WireResult> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const got: Buffer[] = [];
    let reset = false;
    let quiet: NodeJS.Timeout | undefined;
    let hang: NodeJS.Timeout | undefined;
    const finish = () => {
      socket.end();
      hang = setTimeout(() => {
        socket.destroy();
        resolve({ closed: false, reply: Buffer.concat(got), reset });
      }, timeoutMs);
    };
    const rearm = () => {
      clearTimeout(quiet);
      quiet = setTimeout(finish, QUIET_MS);
    };
    socket.on('data', (d: Buffer) => {
      got.push(d);
      if (!hang) rearm();
    });
    socket.on('error', () => (reset = true));
    socket.on('close', () => {
      clearTimeout(quiet);
      clearTimeout(hang);
      resolve({ closed: true, reply: Buffer.concat(got), reset });
    });
    socket.once('connect', () => {
      for (const c of chunkify(input, rng)) socket.write(c);
      rearm();
    });
  });
}

interface WireFigures {
  inputs: number;
  closed: number;
  errorReplies: number;
  goodChecks: number;
  hangs: number;
}

/**
 * Sends `count` mutated inputs of `target`'s corpus to `port`, each on its own connection, a few at a time; after
 * every GOOD_EVERY of them `goodCheck` must pass (the well-behaved client is still answered, correctly).
 * `judge` says whether an answer was a protocol error reply (and throws if the answer itself is broken).
 */
async function wireCampaign(
  target: Target,
  port: number,
  count: number,
  judge: (reply: Buffer) => boolean,
  goodCheck: (i: number) => Promise<void>,
  corpus: Buffer[] = seedsOf(target),
): Promise<WireFigures> {
  const figures: WireFigures = { inputs: 0, closed: 0, errorReplies: 0, goodChecks: 0, hangs: 0 };
  const problems: string[] = [];
  const concurrency = 16;
  for (let base = 0; base < count; base += GOOD_EVERY) {
    const batch: Promise<void>[] = [];
    let next = base;
    const end = Math.min(count, base + GOOD_EVERY);
    const lane = async () => {
      while (next < end) {
        const i = next++;
        const rng = new Rng(mixSeed(SEED, 1000 + [...TARGETS].indexOf(target), i));
        const input = rng.int(10) === 0 ? rng.bytes(rng.int(256)) : mutate(rng, corpus);
        const r = await sendOnFreshConnection(port, input, rng);
        figures.inputs++;
        if (!r.closed) {
          figures.hangs++;
          problems.push(`input ${i} (${input.toString('hex').slice(0, 120)}): connection still open 10 s after FIN`);
          continue;
        }
        figures.closed++;
        try {
          if (judge(r.reply)) figures.errorReplies++;
        } catch (e) {
          problems.push(`input ${i} (${input.toString('hex').slice(0, 120)}): ${(e as Error).message}`);
        }
      }
    };
    for (let k = 0; k < concurrency; k++) batch.push(lane());
    await Promise.all(batch);
    await goodCheck(base);
    figures.goodChecks++;
    assert.deepEqual(
      problems,
      [],
      `${target} on the wire (FUZZ_SEED=0x${SEED.toString(16)}):\n${problems.slice(0, 10).join('\n')}`,
    );
  }
  return figures;
}

/** Bolt/Dubbo answers from the router: whole, decodable frames; true when one is an error status. */
function judgeFrames(reply: Buffer): boolean {
  let error = false;
  const splitter = new FrameSplitter((f) => {
    const h = decodeFrame(f);
    if (
      h.kind === 'response' &&
      ((h.protocol === 'bolt' && h.status !== 0) || (h.protocol === 'dubbo' && h.status !== 20))
    )
      error = true;
  });
  splitter.write(reply);
  if (splitter.buffered !== 0)
    throw new Error(`the router's answer ends in a partial frame: ${reply.toString('hex').slice(-80)}`);
  return error;
}

/** A provider that echoes every request it can decode, and never dies of one it cannot. */
async function startEcho(): Promise<{ port: number; requests: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const state = { port: 0, requests: 0, close: async () => {} };
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const splitter = new FrameSplitter((frame) => {
      const header = decodeFrame(frame);
      if (header.kind !== 'request') return;
      state.requests++;
      socket.write(echoResponse(Buffer.from(frame), header));
    });
    socket.on('data', (c: Buffer) => {
      try {
        splitter.write(c);
      } catch {
        // The router forwards only frames it decoded; anything else would show as a missing answer, not a crash here.
        socket.destroy();
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  state.port = (server.address() as net.AddressInfo).port;
  state.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  };
  return state;
}

/** One well-behaved connection that sends requests and waits for the matching answer. */
class GoodFrameClient {
  private readonly answers = new Map<string, Buffer>();
  private waiting: (() => void) | undefined;
  closed = false;
  private constructor(private readonly socket: net.Socket) {
    const splitter = new FrameSplitter((f) => {
      const h = decodeFrame(f);
      this.answers.set(String(h.requestId), Buffer.from(f));
      this.waiting?.();
    });
    socket.on('data', (c: Buffer) => splitter.write(c));
    socket.on('close', () => {
      this.closed = true;
      this.waiting?.();
    });
    socket.on('error', () => {});
  }
  static async connect(port: number): Promise<GoodFrameClient> {
    const s = net.connect({ host: '127.0.0.1', port });
    await once(s, 'connect');
    return new GoodFrameClient(s);
  }
  async call(id: number, frame: Buffer, ms = 5000): Promise<Buffer> {
    this.socket.write(frame);
    const deadline = Date.now() + ms;
    while (!this.answers.has(String(id))) {
      assert.ok(!this.closed, `the good client's connection was closed while waiting for answer ${id}`);
      assert.ok(Date.now() < deadline, `no answer to the good client's request ${id} in ${ms} ms`);
      await new Promise<void>((r) => {
        this.waiting = r;
        setTimeout(r, 50);
      });
    }
    const a = this.answers.get(String(id))!;
    this.answers.delete(String(id));
    return a;
  }
  close(): void {
    this.socket.destroy();
  }
}

// ---------------------------------------------------------------------------------------------------------------

describe('reliability: fuzzing every parser that faces the network', function () {
  this.timeout(LONG ? 0 : 600_000);
  const outcomes = new Map<Target, Promise<CampaignOutcome>>();
  const figures: Figure[] = [];
  const crashers = new Map<Target, { name: string; hex: string }[]>();
  let started = 0;

  before(() => {
    started = Date.now(); // here, not at load: mocha loads every file before the first test runs
    console.log(
      `      FUZZ_SEED=0x${SEED.toString(16)}, ${CASES} cases per parser in process, ${WIRE_CASES} per server on the wire${LONG ? ' (long mode)' : ''}`,
    );
    for (const t of TARGETS) {
      const replay = readHexDir(path.join(CRASHERS_DIR, t)).map((f) => ({
        name: f.name,
        hex: f.bytes.toString('hex'),
      }));
      crashers.set(t, replay);
      // All five start at once; on two CPUs they share the cores (each is one thread).
      outcomes.set(t, runCampaign({ target: t, seed: SEED, cases: CASES, replay }));
    }
  });

  after(async () => {
    // Never leave a worker running, whichever tests were selected.
    await Promise.all(outcomes.values());
    figures.push({ name: 'suite wall time (s)', value: Math.round((Date.now() - started) / 100) / 10 });
    recordSuite({
      id: 'fuzz',
      title: 'Fuzzing every parser that faces the network',
      figures,
      notes: [
        `Seed 0x${SEED.toString(16)} (FUZZ_SEED). In process, per parser: about 1 case in 10 is random bytes (up to 2 KiB), the rest a seed ` +
          'input with 1-4 stacked mutations: bit flips, interesting bytes, inserts, deletes, 1/2/4-byte length fields set to ' +
          '0, 1, -1, 2^31-1, -2^31, 2^16-1 or the input size +-1, decimal lengths in text (RESP, Content-Length) set to extremes, ' +
          'splices of two seeds, truncation, duplicated ranges; then fed in random chunks (whole, cut at random, or byte by byte).',
        "Seeds: Bolt and Dubbo, the wire fixtures of protocol/test/fixtures and pipelines of them, through the router's caller " +
          'connection (no route: every request is answered by the router itself); ZooKeeper, a ConnectRequest followed by the ' +
          'requests the facade rewrites (create/create2/createTTL of provider nodes, delete, getChildren(2), exists, getData, ' +
          "setData, SetWatches, ping, closeSession) through the facade's real connection object with a stand-in ZooKeeper that " +
          'answers each; RESP, Dubbo-registry and redis-cli commands (request mode) and RESP2/RESP3 replies (reply mode), each ' +
          "parsed chunked and whole and compared; mesh API, raw HTTP/1.1 requests as sofa-rpc's MeshApiClient sends them, " +
          "through node:http and the facade's handler.",
        'A crash is an exception out of the parser other than its clean refusal (a ProtocolError answered and the connection ' +
          'closed, a RegistryError to onError, an HTTP 4xx), a broken property (answers that are not whole frames, RESP raw ' +
          'bytes that are not the input, chunking changing the result, a 500), an exception escaping asynchronously, no ' +
          'progress for 15 s (hang), or the worker passing its 384 MiB heap.',
        'On the wire: mutated inputs of the same corpora (1 in 10 random), 16 connections at a time, each on a fresh connection ' +
          `that the client half-closes once the server has been quiet for ${QUIET_MS} ms, and the server must then close within 10 s; every ${GOOD_EVERY} inputs a client connected from the start must get a correct answer.`,
        "ZooKeeper has no error reply for a malformed packet: the facade's clean refusal is closing the connection, so its " +
          '"protocol error replies" are 0 by design.',
        'In process the ZooKeeper facade runs with a 64 KiB packet cap (the splitter allocates a claimed packet up to the cap ' +
          'once the length is checked; at 1 MiB the campaign spends its time collecting those); on the wire it runs the default.',
        'The codecs themselves are fuzzed against a reference decoder by protocol/test/fuzz.test.ts; this suite fuzzes them ' +
          "where the router reads a caller's bytes.",
        'Crashing inputs are kept in test/fixtures/fuzz-crashers/<parser>/ and replayed (8 chunkings each) before every campaign.',
      ],
    });
  });

  for (const target of TARGETS) {
    const label: Record<Target, string> = {
      bolt: "Bolt v1/v2 through the router's caller connection",
      dubbo: "Dubbo through the router's caller connection",
      zookeeper: "the ZooKeeper facade's jute framing and request rewriting",
      resp: 'the RESP codec of the Redis facade (request and reply mode)',
      'mesh-api': "the SOFA mesh HTTP API (node:http + the facade's handler)",
    };
    it(`${label[target]}: ${CASES.toLocaleString('en-US')} mutated and random inputs, 0 crashes, 0 hangs, bounded memory, the kept crashers replayed`, async () => {
      const o = await outcomes.get(target)!;
      if (o.kind !== 'done') {
        const { input } = caseInput(SEED, target, o.caseIndex, seedsOf(target));
        const phase = ['setup', 'replaying kept crashers', 'campaign', 'done'][o.phase] ?? String(o.phase);
        const hex = o.phase === 2 ? input.toString('hex') : '';
        const kept = o.phase === 2 ? ` (kept as ${keepCrasher(target, hex, `${o.kind}: ${o.error}`)})` : '';
        figures.push({
          name: `${target}: ${o.kind === 'hang' ? 'hangs' : 'crashes'}`,
          value: 1,
          goal: '0',
          met: false,
        });
        assert.fail(
          `${target} campaign ${o.kind === 'hang' ? 'hung' : o.kind === 'crash' ? 'crashed its worker' : 'could not run'} ` +
            `(${o.error}) in ${phase}, case ${o.caseIndex}${kept}\n    input: ${hex}\n    replay: ${REPLAY}`,
        );
      }
      const r = o.result;
      const rate = r.cases / Math.max(r.elapsedMs / 1000, 0.001);
      console.log(
        `      ${target}: ${r.cases} cases in ${(r.elapsedMs / 1000).toFixed(1)} s (${Math.round(rate)}/s), ${r.random} random, ` +
          `${r.refused} refused cleanly, ${r.accepted} accepted frames/values/answers, ${r.replayed} kept crashers replayed, ` +
          `slowest case ${r.slowestCaseMs} ms, heap ${(r.heapGrowthBytes / MIB).toFixed(1)} MiB`,
      );
      const crashes = r.findings.length;
      figures.push(
        { name: `${target}: cases run`, value: r.cases },
        { name: `${target}: crashes`, value: crashes, goal: '0', met: crashes === 0 },
        { name: `${target}: hangs`, value: 0, goal: '0', met: true },
        { name: `${target}: cases/s`, value: Math.round(rate) },
        { name: `${target}: refused cleanly`, value: r.refused },
      );
      if (crashes > 0) {
        const kept = r.findings.filter((f) => f.index >= 0).map((f) => keepCrasher(target, f.inputHex, f.error));
        const list = r.findings.map(
          (f) =>
            `  ${f.fixture ? `fixture ${f.fixture}` : `case ${f.index}`}: ${f.error}\n    input: ${f.inputHex.slice(0, 400)}`,
        );
        assert.fail(
          `${crashes} crash${crashes === 1 ? '' : 'es'} in ${target} (replay: ${REPLAY}; kept: ${kept.join(', ') || 'fixtures already'}):\n${list.join('\n')}`,
        );
      }
      assert.equal(r.cases, CASES);
      assert.equal(r.replayed, crashers.get(target)!.length, 'every kept crasher was replayed');
      // The inputs reach both outcomes: a generator that only makes garbage (or only valid input) would pass blind.
      if (r.cases >= 10_000) {
        assert.ok(r.refused > 0.05 * r.cases, `only ${r.refused} inputs were refused`);
        assert.ok(r.accepted > 0.05 * r.cases, `only ${r.accepted} frames/values/answers got through`);
      }
      assert.ok(r.slowestCaseMs < 2_000, `one case took ${r.slowestCaseMs} ms`);
      assert.ok(
        r.heapGrowthBytes < 64 * MIB,
        `heap grew by ${(r.heapGrowthBytes / MIB).toFixed(1)} MiB over the campaign`,
      );
    });
  }

  describe('on the wire, against the running servers', () => {
    const quiet = pino({ level: 'silent' });
    const wireFigures = (name: string, f: WireFigures) =>
      figures.push(
        { name: `${name} on the wire: bad inputs`, value: f.inputs },
        {
          name: `${name} on the wire: closed cleanly`,
          value: f.closed,
          goal: `${f.inputs}`,
          met: f.closed === f.inputs,
        },
        { name: `${name} on the wire: protocol error replies`, value: f.errorReplies },
        { name: `${name} on the wire: good-client checks passed`, value: f.goodChecks },
      );

    before(async () => {
      // The in-process campaigns finish first: the wire campaigns measure nothing useful on CPUs they share.
      await Promise.all(outcomes.values());
    });

    it(`router (Bolt and Dubbo, outbound listener, routed to an echo provider): ${WIRE_CASES} bad inputs each closed or answered with an error, a good client answered throughout`, async () => {
      const echo = await startEcho();
      const routes = new MemoryRouteTable()
        .setOutbound(ECHO, { endpoints: [{ host: '127.0.0.1', port: echo.port }] })
        .setOutbound(`${GREETER}:2.0`, { endpoints: [{ host: '127.0.0.1', port: echo.port }] });
      const router = createRouter({ routeTable: routes, inbound: false, admin: false, logger: quiet });
      await router.start();
      const port = router.address('outbound').port;
      const good = await GoodFrameClient.connect(port);
      try {
        const corpus = [
          ...seedsOf('bolt'),
          ...seedsOf('dubbo'),
          boltRequest(1, ECHO, 'x'),
          dubboCall(2, GREETER, '2.0', 'hi', 'y'),
        ];
        let id = 1_000_000;
        const f = await wireCampaign(
          'bolt',
          port,
          WIRE_CASES,
          judgeFrames,
          async () => {
            const bid = id++;
            const bolt = await good.call(bid, boltRequest(bid, ECHO, `good-bolt-${bid}`));
            assert.ok(
              bolt.toString('latin1').endsWith(`good-bolt-${bid}`),
              "the good Bolt call got someone else's answer",
            );
            assert.equal(decodeFrame(bolt).status, 0);
            const did = id++;
            const dubbo = await good.call(did, dubboCall(did, GREETER, '2.0', 'hi', `good-dubbo-${did}`));
            assert.ok(
              dubbo.toString('latin1').includes(`good-dubbo-${did}`),
              "the good Dubbo call got someone else's answer",
            );
            assert.equal(decodeFrame(dubbo).status, 20);
          },
          corpus,
        );
        wireFigures('router', f);
        assert.ok(f.errorReplies > 0, 'no bad input got a protocol error reply');
        assert.ok(echo.requests > 0, 'no fuzzed request was routed at all');
      } finally {
        good.close();
        await router.drain(0);
        await echo.close();
      }
    });

    describe('ZooKeeper facade in front of a real ZooKeeper', () => {
      let zk: RunningZooKeeper;
      let facade: ZooKeeperFacade;
      before(async () => {
        zk = await startZooKeeper();
        facade = new ZooKeeperFacade({
          upstream: zk.connectString,
          takeover: new RewriteOnlyTakeover({ host: '10.0.0.9', port: 12201 }, { host: '127.0.0.1', port: 12220 }),
          logger: { warn: () => {} },
        });
        await facade.start();
      });
      after(async () => {
        await facade?.close();
        await zk?.stop();
      });

      it(`${WIRE_CASES} bad inputs each closed, ZooKeeper and the facade up, a node-zookeeper-client session answered throughout`, async () => {
        const client = await connectZooKeeper(`127.0.0.1:${facade.address().port}`, { sessionTimeout: 20_000 });
        const call = <T>(f: (cb: (e: Error | null, v?: T) => void) => void) =>
          new Promise<T>((resolve, reject) => f((e, v) => (e ? reject(e) : resolve(v as T))));
        let lost = false;
        client.on('disconnected', () => (lost = true));
        try {
          await call<string>((cb) =>
            client.create('/fuzz-good', Buffer.from('v0'), zookeeper.CreateMode.PERSISTENT, cb as never),
          );
          const f = await wireCampaign(
            'zookeeper',
            facade.address().port,
            WIRE_CASES,
            () => false,
            async (i) => {
              assert.ok(!lost, 'the good ZooKeeper session lost its connection');
              const value = Buffer.from(`v${i}`);
              await call((cb) => client.setData('/fuzz-good', value, -1, cb as never));
              const data = await call<Buffer>((cb) => client.getData('/fuzz-good', cb as never));
              assert.equal(data.toString(), value.toString(), 'the good session read back something else');
              assert.ok(pidAlive(zk.pid), 'ZooKeeper died');
            },
          );
          wireFigures('zookeeper facade', f);
        } finally {
          client.close();
        }
      });
    });

    describe('Redis facade in front of a real redis-server', () => {
      let redis: RunningRedis;
      let facade: RedisFacade;
      before(async () => {
        redis = await startRedis();
        facade = new RedisFacade({
          upstream: { host: '127.0.0.1', port: redis.port },
          takeover: new RewriteOnlyTakeover({ host: '10.0.0.9', port: 20881 }, { host: '127.0.0.1', port: 20880 }),
          logger: { warn: () => {} },
        });
        await facade.start();
      });
      after(async () => {
        await facade?.close();
        await redis?.stop();
      });

      it(`${WIRE_CASES} bad inputs each closed or answered with an error, redis-server up, a RESP client answered throughout`, async () => {
        const good = await RespConnection.connect(facade.address().port);
        try {
          const f = await wireCampaign(
            'resp',
            facade.address().port,
            WIRE_CASES,
            (reply) => reply.includes('-ERR') || reply.includes('Protocol error'),
            async (i) => {
              assert.equal(await good.call('SET', 'fuzz-good', `v${i}`), 'OK');
              assert.equal(await good.call('GET', 'fuzz-good'), `v${i}`);
              assert.ok(pidAlive(redis.pid), 'redis-server died');
            },
            respSeedsRequests(),
          );
          wireFigures('redis facade', f);
          assert.ok(f.errorReplies > 0, 'no bad input got an error reply');
        } finally {
          good.close();
        }
      });
    });

    it(`SOFA mesh HTTP API: ${WIRE_CASES} bad requests each closed or answered 4xx (never 500), a keep-alive client answered throughout`, async () => {
      const facade = new SofaMeshApiFacade({
        via: new MemoryRegistry(new MemoryRegistryStore()),
        takeover: new RewriteOnlyTakeover({ host: '10.0.0.7', port: 12201 }, { host: '127.0.0.1', port: 12220 }),
        listen: { host: '127.0.0.1', port: 0 },
        logger: { warn: () => {} },
      });
      await facade.start();
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const sockets = new Set<net.Socket>();
      const post = (p: string, body: object) =>
        new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
          const req = http.request(
            {
              host: '127.0.0.1',
              port: facade.address().port,
              method: 'POST',
              path: p,
              agent,
              headers: { 'Content-Type': 'text/plain' },
            },
            (res) => {
              sockets.add(res.socket);
              const chunks: Buffer[] = [];
              res.on('data', (c: Buffer) => chunks.push(c));
              res.on('end', () =>
                resolve({
                  status: res.statusCode!,
                  body: JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>,
                }),
              );
            },
          );
          req.on('error', reject);
          req.end(JSON.stringify(body));
        });
      try {
        assert.equal((await post('/configs/application', { appName: 'good-app' })).status, 200);
        const f = await wireCampaign(
          'mesh-api',
          facade.address().port,
          WIRE_CASES,
          (reply) => {
            const statuses = [...reply.toString('latin1').matchAll(/^HTTP\/1\.1 (\d{3}) /gm)].map((m) => Number(m[1]));
            if (statuses.includes(500)) throw new Error(`answered 500: ${reply.toString('latin1').slice(0, 300)}`);
            return statuses.some((s) => s >= 400);
          },
          async (i) => {
            const r = await post('/services/subscribe', { serviceName: `com.example.Good${i % 3}:1.0` });
            assert.equal(r.status, 200);
            assert.equal(r.body.success, true);
          },
        );
        wireFigures('mesh API', f);
        assert.equal(sockets.size, 1, "the good client's keep-alive connection was closed under it");
        assert.ok(f.errorReplies > 0, 'no bad request got a 4xx');
      } finally {
        agent.destroy();
        await facade.close();
      }
    });
  });
});

function respSeedsRequests(): Buffer[] {
  // Requests only: a reply-shaped input is just a bad request to the facade, which the mutations reach anyway.
  return seedsOf('resp').filter((b) => b[0] === 0x2a || /^[A-Z]/.test(b.toString('latin1', 0, 1)));
}
