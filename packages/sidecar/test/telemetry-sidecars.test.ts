// Access logs and spans from two real sidecars on loopback (a consumer pod and a provider pod over a real ZooKeeper),
// as an operator sees them: the files and the collector stand-in get one line and one span per call and pod, with
// the trace ids the SOFA headers give; the frames reach the app unchanged; a reload turns the access log on, changes
// its sampling and turns it off while calls go on over one connection; a collector that is down costs nothing but
// the spans. Runs on the engine MESHPORT_ENGINE names (js or native).

import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { FrameSplitter, decodeFrame } from '@meshport/protocol';
import {
  zkCreateEphemeral,
  zkMkdirp,
  ACCESS_LOG_KEYS,
  expectedSofaSpanIds,
  boltRequestWith,
  connectZooKeeper,
  eventually,
  freePort,
  startEchoProvider,
  startOtlpCollector,
  startZooKeeper,
  type CollectedSpan,
  type EchoProvider,
  type OtlpCollector,
  type RunningZooKeeper,
} from '@meshport/testkit';
import { loadConfig } from '../src/config';
import { Sidecar } from '../src/sidecar';

type ZkClient = Awaited<ReturnType<typeof connectZooKeeper>>;

const SERVICE = 'com.example.Echo:1.0';
/** A SOFA trace id as sofa-tracer makes them (IP hex, milliseconds, sequence, pid): 30 hex digits. */
const SOFA_TRACE_ID = '0a0fe88717650458001231001abcde';
interface Pod {
  sidecar: Sidecar;
  dir: string;
  file: string;
}

function podYaml(registry: string, telemetry: string): string {
  return [
    'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
    'admin: "127.0.0.1:0"',
    'registries:',
    `  - ${registry}`,
    telemetry,
    '',
  ].join('\n');
}

async function startPod(yaml: string): Promise<Pod> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-telemetry-pod-'));
  const file = path.join(dir, 'meshport.yaml');
  writeFileSync(file, yaml);
  const sidecar = new Sidecar(await loadConfig(file), { logger: pino({ level: 'silent' }) });
  await sidecar.start();
  return { sidecar, dir, file };
}

/** The trace headers a Java SOFA client puts in a Bolt request's header map. */
function sofaHeaders(sofaTraceId: string, rpcId = '0.1', method = 'echo'): Record<string, string> {
  return {
    service: SERVICE,
    sofa_head_method_name: method,
    'rpc_trace_context.sofaTraceId': sofaTraceId,
    'rpc_trace_context.sofaRpcId': rpcId,
  };
}

/** A connection an app keeps to its pod's outbound listener: calls one after the other, answers by request id. */
class AppConnection {
  private readonly socket: net.Socket;
  private readonly waiting = new Map<number, (status: number) => void>();
  private nextId = 1;
  closed = false;

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    const splitter = new FrameSplitter((frame) => {
      const header = decodeFrame(frame);
      this.waiting.get(Number(header.requestId))?.(header.status ?? -1);
      this.waiting.delete(Number(header.requestId));
    });
    this.socket.on('data', (d) => splitter.write(d));
    this.socket.on('close', () => {
      this.closed = true;
    });
    this.socket.on('error', () => {});
  }

  /** One call; resolves with the answer's status. */
  call(headers: Record<string, string>, body = 'hello'): Promise<number> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`call ${id}: no answer within 5 s`)), 5000);
      this.waiting.set(id, (status) => {
        clearTimeout(timer);
        resolve(status);
      });
      this.socket.write(boltRequestWith(id, headers, body));
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/** The access log lines of a file so far (none when it does not exist yet). */
function accessLines(file: string): Record<string, unknown>[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function adminText(pod: Pod, page: string): Promise<string> {
  const { host, port } = pod.sidecar.address('admin');
  return (await fetch(`http://${host}:${port}${page}`)).text();
}

function statValue(stats: string, metric: string, labels: string): number {
  const line = stats.split('\n').find((l) => l.startsWith(`${metric}{`) && l.includes(labels));
  return line ? Number(line.split(/\s+/).at(-1)) : 0;
}

describe(`telemetry of two sidecars (engine ${process.env.MESHPORT_ENGINE ?? 'native'})`, function () {
  this.timeout(60_000);
  let zk: RunningZooKeeper;
  let echo: EchoProvider;
  let collector: OtlpCollector;
  let provider: Pod;
  let consumer: Pod;
  let app: ZkClient | undefined;
  const extra: Pod[] = [];
  const zkEntry = (services = '') =>
    `{ name: zk, type: zookeeper, upstream: "${zk.connectString}", facade: "127.0.0.1:0"${services} }`;
  const consumerYaml = (accessLog: string) =>
    podYaml(
      zkEntry(`, services: ["${SERVICE}"]`),
      `telemetry:\n  tracing: { otlp: "${collector.url}" }\n${accessLog ? `  accessLog: ${accessLog}\n` : ''}`,
    );

  before(async () => {
    zk = await startZooKeeper();
    echo = await startEchoProvider();
    echo.keepFrames = true;
    collector = await startOtlpCollector();
    provider = await startPod(
      podYaml(
        zkEntry(),
        `telemetry:\n  accessLog: { to: access.log, everyN: 1 }\n  tracing: { otlp: "${collector.url}" }\n`,
      ),
    );
    consumer = await startPod(consumerYaml('{ to: access.log, everyN: 1 }'));
    // The provider app publishes through its pod's facade, as sofa-rpc-node does.
    app = await connectZooKeeper(`127.0.0.1:${provider.sidecar.address({ facade: 'zk' }).port}`);
    const url = `bolt://127.0.0.1:${echo.port}/com.example.Echo?interface=com.example.Echo&version=1.0&weight=100`;
    await zkMkdirp(app, '/sofa-rpc/com.example.Echo/providers');
    await zkCreateEphemeral(app, `/sofa-rpc/com.example.Echo/providers/${encodeURIComponent(url)}`);
    await eventually('the consumer pod to route the service', async () =>
      consumer.sidecar.book.snapshot().outbound[SERVICE] ? true : undefined,
    );
  });

  after(async () => {
    app?.close();
    for (const pod of [...extra, consumer, provider]) {
      await pod?.sidecar.stop(0);
      if (pod) rmSync(pod.dir, { recursive: true, force: true });
    }
    await echo?.close();
    await collector?.close();
    await zk?.stop();
  });

  it('one access log line per call in each pod, fields in order, the same trace id; the frame reaches the app unchanged', async () => {
    const conn = new AppConnection(consumer.sidecar.address('outbound').port);
    try {
      const traceId = `${SOFA_TRACE_ID.slice(0, -4)}a001`;
      const headers = sofaHeaders(traceId);
      const frame = boltRequestWith(1, headers, 'hello');
      const before = echo.frames.length;
      assert.equal(await conn.call(headers), 0);
      // What the app got is byte for byte what the consumer app sent: trace headers and all.
      assert.deepEqual(echo.frames[before], frame);
      const ids = expectedSofaSpanIds(traceId, '0.1');
      const outFile = path.join(consumer.dir, 'access.log');
      const inFile = path.join(provider.dir, 'access.log');
      const mine = (l: Record<string, unknown>) => l.traceId === ids.traceId;
      await eventually('a line in each pod', async () =>
        accessLines(outFile).some(mine) && accessLines(inFile).some(mine) ? true : undefined,
      );
      const [out] = accessLines(outFile).filter(mine);
      const [inb] = accessLines(inFile).filter(mine);
      assert.equal(accessLines(outFile).filter(mine).length, 1);
      assert.equal(accessLines(inFile).filter(mine).length, 1);
      for (const line of [out!, inb!]) assert.deepEqual(Object.keys(line), ACCESS_LOG_KEYS);
      const inbound = provider.sidecar.address('inbound');
      assert.deepEqual(
        { ...out, time: undefined, caller: undefined, durationMs: undefined },
        {
          time: undefined,
          direction: 'outbound',
          protocol: 'bolt',
          caller: undefined,
          callerIdentity: null,
          service: SERVICE,
          method: 'echo',
          endpoint: `127.0.0.1:${inbound.port}`,
          status: 'ok',
          durationMs: undefined,
          bytesIn: frame.length,
          bytesOut: 20 + 'hello'.length,
          traceId: ids.traceId,
        },
      );
      assert.match(String(out!.caller), /^127\.0\.0\.1:\d+$/);
      assert.equal(typeof out!.durationMs, 'number');
      assert.match(String(out!.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.equal(inb!.direction, 'inbound');
      assert.equal(inb!.endpoint, `127.0.0.1:${echo.port}`);
      assert.equal(inb!.bytesIn, frame.length);
      assert.equal(inb!.method, 'echo');
      const stats = await adminText(consumer, '/stats');
      assert.ok(statValue(stats, 'meshport_telemetry_exported_total', 'kind="access"') >= 1, stats);
    } finally {
      conn.close();
    }
  });

  it('a span from each sidecar per call: one trace, the inbound span the child of the outbound one', async () => {
    const conn = new AppConnection(consumer.sidecar.address('outbound').port);
    try {
      const traceId = `${SOFA_TRACE_ID.slice(0, -4)}b001`;
      assert.equal(await conn.call(sofaHeaders(traceId, '0.2')), 0);
      const ids = expectedSofaSpanIds(traceId, '0.2');
      const mine = (s: CollectedSpan) => s.traceId === ids.traceId;
      await collector.waitForSpans(2, 10_000, mine);
      await sleep(300); // nothing more comes for this call
      const spans = collector.spans.filter(mine);
      assert.equal(spans.length, 2, JSON.stringify(spans));
      const out = spans.find((s) => s.kind === 3)!;
      const inb = spans.find((s) => s.kind === 2)!;
      assert.ok(out && inb, 'one CLIENT and one SERVER span');
      assert.equal(out.spanId, ids.outbound);
      assert.equal(out.parentSpanId, ids.callerSpan);
      assert.equal(inb.parentSpanId, out.spanId);
      assert.equal(inb.spanId, ids.inbound);
      for (const span of [out, inb]) {
        assert.equal(span.name, `${SERVICE}/echo`);
        assert.deepEqual(span.status, { code: 1 });
        assert.equal(span.attributes['rpc.system'], 'sofarpc');
        assert.equal(span.attributes['rpc.service'], SERVICE);
        assert.equal(span.attributes['rpc.method'], 'echo');
        assert.equal(span.attributes['sofa.trace_id'], traceId);
        assert.equal(span.attributes['sofa.rpc_id'], '0.2');
        assert.deepEqual(span.resource, { 'service.name': 'meshport', 'meshport.node': '127.0.0.1' });
      }
      assert.equal(out.attributes['meshport.direction'], 'outbound');
      assert.equal(inb.attributes['meshport.direction'], 'inbound');
      assert.equal(out.attributes['server.address'], `127.0.0.1:${provider.sidecar.address('inbound').port}`);
      assert.deepEqual(collector.invalid, []);
      const stats = await adminText(provider, '/stats');
      assert.ok(statValue(stats, 'meshport_telemetry_exported_total', 'kind="span"') >= 1, stats);
      assert.equal(statValue(stats, 'meshport_telemetry_dropped_total', 'kind="span"'), 0);
    } finally {
      conn.close();
    }
  });

  it('a reload turns the access log off and on and changes everyN while calls go on over one connection', async () => {
    const outFile = path.join(consumer.dir, 'access.log');
    const conn = new AppConnection(consumer.sidecar.address('outbound').port);
    /** Calls numbered `from`..`to`-1, each with a trace id of its own; all must answer ok. */
    const calls = async (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const status = await conn.call(sofaHeaders(`${SOFA_TRACE_ID.slice(0, -4)}${(0xc000 + i).toString(16)}`));
        assert.equal(status, 0, `call ${i}`);
      }
    };
    const logged = (from: number, to: number) => {
      const wanted = new Set<string>();
      for (let i = from; i < to; i++)
        wanted.add(expectedSofaSpanIds(`${SOFA_TRACE_ID.slice(0, -4)}${(0xc000 + i).toString(16)}`, '0.1').traceId);
      return accessLines(outFile).filter((l) => wanted.has(String(l.traceId))).length;
    };
    const reload = async (accessLog: string) => {
      writeFileSync(consumer.file, consumerYaml(accessLog));
      const result = await consumer.sidecar.reload(consumer.file);
      assert.ok(result.ok, String(result.error));
      assert.equal(result.telemetry, true);
      assert.deepEqual(result.needRestart, []);
    };
    try {
      // Off: a reload without accessLog, while a stream of calls is under way.
      const offCalls = calls(0, 10);
      await reload('');
      await offCalls;
      await sleep(300);
      const beforeOff = logged(0, 10);
      await calls(10, 30);
      // On, every call.
      await reload('{ to: access.log, everyN: 1 }');
      await calls(30, 50);
      // Every third call.
      await reload('{ to: access.log, everyN: 3, slowMs: 0 }');
      await calls(50, 80);
      await reload('');
      await sleep(300);
      const afterOffLines = accessLines(outFile).length;
      await calls(80, 100);
      await eventually('the lines of the calls made with the log on', async () =>
        logged(30, 50) === 20 ? true : undefined,
      ).catch((error: Error) => {
        const phases = [logged(0, 10), logged(10, 30), logged(30, 50), logged(50, 80), logged(80, 100)];
        throw new Error(`${error.message}: lines by phase ${phases.join(', ')}; ${readFileSync(outFile, 'utf8')}`);
      });
      assert.ok(beforeOff <= 10);
      assert.equal(logged(10, 30), 0, 'lines written while the access log was off');
      const third = logged(50, 80);
      assert.ok(third >= 9 && third <= 11, `${third} lines of 30 calls with everyN 3`);
      await sleep(300);
      assert.equal(logged(80, 100), 0, 'lines written after the access log was turned off again');
      assert.equal(accessLines(outFile).length, afterOffLines);
      assert.equal(conn.closed, false, 'the reloads dropped the connection');
      const config = JSON.parse(await adminText(consumer, '/config')) as { telemetry: Record<string, unknown> };
      assert.equal(config.telemetry.accessLog, null);
      assert.deepEqual(config.telemetry.tracing, { otlp: collector.url, everyN: 1 });
    } finally {
      conn.close();
    }
  });

  it('a collector that is down: calls go on, the spans are dropped and counted', async () => {
    const port = await freePort();
    const pod = await startPod(
      podYaml(
        `{ name: zk, type: zookeeper, upstream: "${zk.connectString}", services: ["${SERVICE}"] }`,
        `telemetry:\n  tracing: { otlp: "http://127.0.0.1:${port}" }\n`,
      ),
    );
    extra.push(pod);
    await eventually('the pod to route the service', async () =>
      pod.sidecar.book.snapshot().outbound[SERVICE] ? true : undefined,
    );
    const conn = new AppConnection(pod.sidecar.address('outbound').port);
    try {
      for (let i = 0; i < 20; i++) assert.equal(await conn.call(sofaHeaders(`${SOFA_TRACE_ID.slice(0, -4)}d0${i}`)), 0);
      await eventually('the spans counted dropped', async () => {
        const stats = await adminText(pod, '/stats');
        return statValue(stats, 'meshport_telemetry_dropped_total', 'kind="span"') >= 20 ? true : undefined;
      });
      const stats = await adminText(pod, '/stats');
      assert.equal(statValue(stats, 'meshport_telemetry_exported_total', 'kind="span"'), 0);
      assert.equal(await conn.call(sofaHeaders(`${SOFA_TRACE_ID.slice(0, -4)}d100`)), 0);
      assert.equal(conn.closed, false);
    } finally {
      conn.close();
    }
  });
});
