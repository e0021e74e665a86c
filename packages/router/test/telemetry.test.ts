// What a router tells about the calls it carries, on the engine MESHPORT_ENGINE names (both engines are held to this
// suite): the per-service metrics on `/stats` and `/services`, access log lines and spans. Two routers on loopback as
// two sidecars, the consumer's outbound listener taking the app's calls and the provider's inbound listener in front
// of an echo app, with frames as the SDKs encode them (sofa-bolt-node, dubbo-remoting) or as Java SOFA clients write
// their header maps. Expected ids are computed here from the specification, not by the router's code.

import { strict as assert } from 'node:assert';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { BoltStatus, decodeFrame, encodeBoltErrorResponse } from '@meshport/protocol';
import { ACCESS_LOG_KEYS, echoResponse, makeTestPki, specFnv, type EchoProvider, type Json } from '@meshport/testkit';
import * as boltPeer from 'sofa-bolt-node/lib/protocol';
import * as dubboPeer from 'dubbo-remoting/lib/protocol';
import {
  MemoryRouteTable,
  defaultEngine,
  type RouterHandle,
  type RouterOptions,
  type RouterTelemetry,
} from '../src/index';
import { useRouterKit } from './helpers/kit';
import { FrameClient, boltRequestFrame, closedPort, until } from './helpers/peers';
import { parseMetrics, type Sample } from './helpers/metrics';
import { securityOf } from './helpers/security-peers';

const SVC = 'com.example.EchoService:1.0';
const DSVC = 'org.example.Greeter:2.0';
const NOBODY = 'com.example.Nobody:1.0';
const LATENCY_BUCKETS = 17;
const SPAN_KEYS = ['traceId', 'spanId', 'parentSpanId', 'name', 'kind', 'startTimeUnixNano', 'endTimeUnixNano'];

/** Whether a trace id is in the sample of one in `everyN` (its low 64 bits, unsigned, a multiple of everyN). */
const inSample = (traceId: string, everyN: number) => BigInt(`0x${traceId.slice(16)}`) % BigInt(everyN) === 0n;

/** A Bolt request as a Java SOFA client writes one: the method and any trace context in the header map. */
function javaBolt(id: number, method: string, headers: Record<string, string> = {}, service = SVC, timeoutMs = 3000) {
  return boltRequestFrame({
    id,
    service,
    headers: { sofa_head_method_name: method, ...headers },
    body: `body of ${id}`,
    timeoutMs,
  });
}

/** A SofaRequest as sofa-bolt-node writes it in hessian2 mode: header `service` only; method and props in the body. */
function nodeBolt(id: number, method: string, requestProps?: Record<string, string>): Buffer {
  return boltPeer.requestEncode(
    id,
    {
      serverSignature: SVC,
      methodName: method,
      args: [{ $class: 'java.lang.String', $: `arg ${id}` }],
      timeout: 3000,
      requestProps,
    },
    { protocolType: 'bolt', codecType: 'hessian2', boltVersion: 1 },
  );
}

/** A Dubbo call as dubbo-remoting writes it; requestProps become attachments. */
function dubbo(id: number, method: string, requestProps?: Record<string, string>): Buffer {
  // Copied: the encoder's output may share memory with its next one.
  return Buffer.from(
    dubboPeer.requestEncode(
      id,
      { serverSignature: DSVC, methodName: method, args: [`arg ${id}`], group: '', requestProps },
      { codecType: 'hessian2' },
    ),
  );
}

/** A frame with its request id bytes zeroed: what must reach the provider unchanged (the routers rewrite ids). */
function withoutId(frame: Buffer): Buffer {
  const copy = Buffer.from(frame);
  if (copy[0] === 0xda) copy.fill(0, 4, 12);
  else copy.fill(0, copy[0] === 2 ? 6 : 5, copy[0] === 2 ? 10 : 9);
  return copy;
}

/** What one router handed its telemetry sink, line by line, parsed. */
class Sink {
  readonly access: Json[] = [];
  readonly spans: Json[] = [];
  readonly raw: { kind: string; lines: string }[] = [];
  readonly write = (kind: 'access' | 'span', lines: string) => {
    this.raw.push({ kind, lines });
    assert.ok(lines.endsWith('\n'), 'whole lines');
    for (const line of lines.split('\n').slice(0, -1))
      (kind === 'access' ? this.access : this.spans).push(JSON.parse(line));
  };
}

async function metrics(router: RouterHandle): Promise<Sample[]> {
  return parseMetrics(await router.stats.registry.metrics());
}

/** The one sample of `name` with exactly these labels (0 when absent). */
function value(samples: Sample[], name: string, labels: Record<string, string>): number {
  const found = samples.filter(
    (s) =>
      s.name === name &&
      Object.keys(s.labels).length === Object.keys(labels).length &&
      Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  assert.ok(found.length <= 1, `one series of ${name} ${JSON.stringify(labels)}`);
  return found[0]?.value ?? 0;
}

function get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

describe(`telemetry: per-service metrics, access logs and spans (engine ${defaultEngine()})`, function () {
  this.timeout(30_000);
  const kit = useRouterKit();

  interface Pair {
    app: EchoProvider;
    provider: RouterHandle;
    consumer: RouterHandle;
    client: FrameClient;
    providerSink: Sink;
    consumerSink: Sink;
    /** Where the consumer's calls went: the provider router's inbound listener. */
    inboundPort: number;
  }

  /**
   * Two sidecars: the provider's inbound listener in front of the echo app (which keeps every frame it receives),
   * and the consumer's outbound listener routing both services there; `client` is the consumer's app.
   */
  async function pair(
    telemetry: RouterTelemetry | undefined,
    options: { consumer?: Partial<RouterOptions>; provider?: Partial<RouterOptions> } = {},
  ): Promise<Pair> {
    const app = await kit.echo();
    app.keepFrames = true;
    const providerSink = new Sink();
    const consumerSink = new Sink();
    const local = { host: '127.0.0.1', port: app.port };
    const provider = await kit.router(new MemoryRouteTable().setInbound(SVC, local).setInbound(DSVC, local), {
      inbound: { port: 0 },
      outbound: false,
      telemetry,
      onTelemetry: providerSink.write,
      ...options.provider,
    });
    assert.equal(provider.engine, defaultEngine(), 'the engine under test, not a fallback');
    const inboundPort = provider.address('inbound').port;
    const remote = { host: '127.0.0.1', port: inboundPort };
    const consumer = await kit.router(
      new MemoryRouteTable().setOutbound(SVC, { endpoints: [remote] }).setOutbound(DSVC, { endpoints: [remote] }),
      { telemetry, onTelemetry: consumerSink.write, ...options.consumer },
    );
    assert.equal(consumer.engine, defaultEngine(), 'the engine under test, not a fallback');
    const client = await kit.connect(consumer.address('outbound').port);
    return { app, provider, consumer, client, providerSink, consumerSink, inboundPort };
  }

  /** Sends frames and waits for all their answers. */
  async function call(client: FrameClient, ...frames: Buffer[]): Promise<void> {
    const before = client.answers.length;
    for (const f of frames) client.send(f);
    await client.waitFor(before + frames.length);
  }

  const answerTo = (client: FrameClient, id: number | string) =>
    client.answers.find((a) => String(a.header.requestId) === String(id));

  describe('per-service metrics', () => {
    it('counts requests, outcomes, latency and callers by service and method on both sides', async () => {
      const p = await pair(undefined);
      let id = 1;
      const frames = [
        ...[1, 2, 3].map(() => javaBolt(id++, 'echo')),
        ...[1, 2].map(() => javaBolt(id++, 'add')),
        ...[1, 2, 3, 4].map(() => dubbo(id++, 'hello')),
      ];
      await call(p.client, ...frames);
      for (const a of p.client.answers) assert.ok(a.header.status === 0 || a.header.status === 20, 'every call ok');

      for (const [router, direction] of [
        [p.consumer, 'outbound'],
        [p.provider, 'inbound'],
      ] as const) {
        const m = await metrics(router);
        for (const [service, method, n] of [
          [SVC, 'echo', 3],
          [SVC, 'add', 2],
          [DSVC, 'hello', 4],
        ] as const) {
          const labels = { direction, service, method };
          assert.equal(value(m, 'meshport_service_requests_total', labels), n, `${direction} ${method} requests`);
          assert.equal(value(m, 'meshport_service_responses_total', { ...labels, outcome: 'ok' }), n);
          assert.equal(value(m, 'meshport_service_request_duration_seconds_count', labels), n);
          assert.equal(value(m, 'meshport_service_request_duration_seconds_bucket', { ...labels, le: '+Inf' }), n);
          // Loopback calls of an echo: all within 10 s, and the buckets are cumulative.
          assert.equal(value(m, 'meshport_service_request_duration_seconds_bucket', { ...labels, le: '10' }), n);
          const sum = value(m, 'meshport_service_request_duration_seconds_sum', labels);
          assert.ok(sum > 0 && sum < n, `latency sum ${sum}`);
        }
        // Plaintext callers are their IP address: the app on the consumer side, the consumer's sidecar on the other.
        assert.equal(
          value(m, 'meshport_service_caller_requests_total', { direction, service: SVC, caller: '127.0.0.1' }),
          5,
        );
        assert.equal(
          value(m, 'meshport_service_caller_requests_total', { direction, service: DSVC, caller: '127.0.0.1' }),
          4,
        );
        const other = direction === 'outbound' ? 'inbound' : 'outbound';
        assert.equal(
          m
            .filter((s) => s.name.startsWith('meshport_service_') && s.labels.direction === other)
            .reduce((n, s) => n + s.value, 0),
          0,
          `nothing counted ${other} on the ${direction} side`,
        );
        // The families that were there before stay as they were.
        assert.equal(value(m, 'meshport_requests_total', { listener: direction, cluster: SVC, protocol: 'bolt' }), 5);
      }
    });

    it('counts failures by outcome: no-route (service none), an upstream status, a timeout', async () => {
      const p = await pair(undefined);
      // Straight to the app, so the timeout is this router's own.
      const direct = await kit.router(
        new MemoryRouteTable().setOutbound(SVC, { endpoints: [{ host: '127.0.0.1', port: p.app.port }] }),
      );
      const directClient = await kit.connect(direct.address('outbound').port);
      p.app.behave = (h) => (h.method === 'hang' ? 'drop' : 'answer');
      p.app.respond = (frame, h) =>
        h.method === 'refuse'
          ? encodeBoltErrorResponse({
              requestId: h.requestId as number,
              status: BoltStatus.SERVER_EXCEPTION,
              message: 'no',
            })
          : echoResponse(frame, h);
      await call(p.client, javaBolt(1, 'echo', {}, NOBODY), javaBolt(2, 'echo', {}, NOBODY), javaBolt(3, 'refuse'));
      await call(directClient, javaBolt(4, 'hang', {}, SVC, 200), javaBolt(5, 'echo'));
      assert.equal(answerTo(p.client, 1)!.header.status, BoltStatus.NO_PROCESSOR);
      assert.equal(answerTo(p.client, 3)!.header.status, BoltStatus.SERVER_EXCEPTION);
      assert.equal(answerTo(directClient, 4)!.header.status, BoltStatus.TIMEOUT);

      const m = await metrics(p.consumer);
      const out = (service: string, method: string) => ({ direction: 'outbound', service, method });
      assert.equal(value(m, 'meshport_service_requests_total', out('none', 'echo')), 2);
      assert.equal(value(m, 'meshport_service_responses_total', { ...out('none', 'echo'), outcome: 'no-route' }), 2);
      assert.equal(value(m, 'meshport_service_responses_total', { ...out(SVC, 'refuse'), outcome: 'status-2' }), 1);
      assert.equal(value(m, 'meshport_service_responses_total', { ...out(SVC, 'refuse'), outcome: 'ok' }), 0);
      assert.equal(
        value(m, 'meshport_service_caller_requests_total', {
          direction: 'outbound',
          service: 'none',
          caller: '127.0.0.1',
        }),
        2,
      );
      // The provider's sidecar passed the app's status on as it came.
      const pm = await metrics(p.provider);
      assert.equal(
        value(pm, 'meshport_service_responses_total', {
          direction: 'inbound',
          service: SVC,
          method: 'refuse',
          outcome: 'status-2',
        }),
        1,
      );
      const dm = await metrics(direct);
      assert.equal(value(dm, 'meshport_service_responses_total', { ...out(SVC, 'hang'), outcome: 'timeout' }), 1);
      assert.equal(value(dm, 'meshport_service_request_duration_seconds_count', out(SVC, 'hang')), 1);
      const slowest = value(dm, 'meshport_service_request_duration_seconds_sum', out(SVC, 'hang'));
      assert.ok(slowest >= 0.19 && slowest < 2, `the timed-out call took its timeout (${slowest} s)`);
      assert.equal(
        value(dm, 'meshport_service_request_duration_seconds_bucket', { ...out(SVC, 'hang'), le: '0.1' }),
        0,
      );

      // Per method, the histograms add up to the cluster's (one latency rule for both), and so do the outcomes.
      for (const router of [p.consumer, p.provider, direct]) {
        const all = await metrics(router);
        for (const s of all.filter((x) => x.name === 'meshport_request_duration_seconds_count')) {
          const perMethod = all
            .filter(
              (x) =>
                x.name === 'meshport_service_request_duration_seconds_count' &&
                x.labels.direction === s.labels.listener &&
                x.labels.service === s.labels.cluster,
            )
            .reduce((n, x) => n + x.value, 0);
          assert.equal(perMethod, s.value, `latency count of ${s.labels.listener} ${s.labels.cluster}`);
        }
        for (const s of all.filter((x) => x.name === 'meshport_responses_total')) {
          const perMethod = all
            .filter(
              (x) =>
                x.name === 'meshport_service_responses_total' &&
                x.labels.direction === s.labels.listener &&
                x.labels.service === s.labels.cluster &&
                x.labels.outcome === s.labels.outcome,
            )
            .reduce((n, x) => n + x.value, 0);
          assert.equal(perMethod, s.value, `${s.labels.outcome} of ${s.labels.listener} ${s.labels.cluster}`);
        }
      }
    });

    it('caps methods and callers per service: later ones count as `other`, and the folded counter says how many', async () => {
      const p = await pair(undefined, { consumer: { labelCaps: { methods: 2, callers: 1 } } });
      const second = await kit.connect(p.consumer.address('outbound').port);
      // Another source address of this host: a second caller.
      const fromElsewhere = await FrameClient.connect(p.consumer.address('outbound').port, '127.0.0.2');
      kit.onCleanup(() => fromElsewhere.close());
      await call(p.client, javaBolt(1, 'first'), javaBolt(2, 'second'), javaBolt(3, 'first'));
      await call(second, javaBolt(4, 'third'), javaBolt(5, 'fourth'), javaBolt(6, 'second'));
      await call(fromElsewhere, javaBolt(7, 'third'));
      const m = await metrics(p.consumer);
      const out = (method: string) => ({ direction: 'outbound', service: SVC, method });
      assert.equal(value(m, 'meshport_service_requests_total', out('first')), 2);
      assert.equal(value(m, 'meshport_service_requests_total', out('second')), 2);
      assert.equal(value(m, 'meshport_service_requests_total', out('other')), 3);
      assert.equal(value(m, 'meshport_service_requests_total', out('third')), 0);
      assert.equal(value(m, 'meshport_service_responses_total', { ...out('other'), outcome: 'ok' }), 3);
      assert.equal(value(m, 'meshport_service_request_duration_seconds_count', out('other')), 3);
      assert.equal(value(m, 'meshport_service_labels_folded_total', { direction: 'outbound', label: 'method' }), 3);
      const callers = (caller: string) =>
        value(m, 'meshport_service_caller_requests_total', { direction: 'outbound', service: SVC, caller });
      assert.equal(callers('127.0.0.1'), 6);
      assert.equal(callers('other'), 1);
      assert.equal(callers('127.0.0.2'), 0);
      assert.equal(value(m, 'meshport_service_labels_folded_total', { direction: 'outbound', label: 'caller' }), 1);
      // The provider's sidecar has the default caps: every method its own.
      const pm = await metrics(p.provider);
      assert.equal(
        value(pm, 'meshport_service_requests_total', { direction: 'inbound', service: SVC, method: 'third' }),
        2,
      );
      assert.equal(value(pm, 'meshport_service_labels_folded_total', { direction: 'inbound', label: 'method' }), 0);
    });

    it('reads the method of a sofa-bolt-node (hessian2) call from its SofaRequest body', async () => {
      const p = await pair(undefined);
      await call(p.client, nodeBolt(1, 'echo'), nodeBolt(2, 'echo'), nodeBolt(3, 'greet'));
      for (const [router, direction] of [
        [p.consumer, 'outbound'],
        [p.provider, 'inbound'],
      ] as const) {
        const m = await metrics(router);
        assert.equal(value(m, 'meshport_service_requests_total', { direction, service: SVC, method: 'echo' }), 2);
        assert.equal(value(m, 'meshport_service_requests_total', { direction, service: SVC, method: 'greet' }), 1);
        assert.equal(value(m, 'meshport_service_requests_total', { direction, service: SVC, method: 'unknown' }), 0);
      }
    });

    it('serves /services: the same figures as /stats, as JSON', async () => {
      const p = await pair(undefined, { consumer: { admin: { port: 0 }, labelCaps: { methods: 2 } } });
      await call(p.client, javaBolt(1, 'echo'), javaBolt(2, 'echo'), javaBolt(3, 'add'), javaBolt(4, 'sub'));
      await call(p.client, javaBolt(5, 'echo', {}, NOBODY), dubbo(6, 'hello'));
      const adminPort = p.consumer.address('admin').port;
      const before = Date.now();
      const page = JSON.parse(await get(adminPort, '/services'));
      const samples = parseMetrics(await get(adminPort, '/stats'));
      assert.ok(page.at >= before && page.at <= Date.now(), 'at: when read');
      assert.deepEqual(
        page.buckets,
        [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      );
      const rows = page.services as Json[];
      assert.deepEqual(
        rows.map((r) => `${r.direction} ${r.service} ${r.method}`).sort(),
        [
          `outbound ${DSVC} hello`,
          `outbound ${SVC} add`,
          `outbound ${SVC} echo`,
          `outbound ${SVC} other`,
          'outbound none echo',
        ].sort(),
      );
      for (const r of rows) {
        const labels = { direction: r.direction, service: r.service, method: r.method };
        assert.equal(r.requests, value(samples, 'meshport_service_requests_total', labels));
        for (const [outcome, n] of Object.entries(r.outcomes))
          assert.equal(n, value(samples, 'meshport_service_responses_total', { ...labels, outcome }));
        const outcomes = samples.filter(
          (s) =>
            s.name === 'meshport_service_responses_total' &&
            Object.entries(labels).every(([k, v]) => s.labels[k] === v),
        );
        assert.equal(outcomes.length, Object.keys(r.outcomes).length, 'every outcome on both');
        assert.equal(r.latency.counts.length, LATENCY_BUCKETS);
        assert.equal(r.latency.count, value(samples, 'meshport_service_request_duration_seconds_count', labels));
        assert.equal(
          r.latency.counts.reduce((a: number, b: number) => a + b, 0),
          r.latency.count,
        );
        assert.ok(
          Math.abs(r.latency.sum - value(samples, 'meshport_service_request_duration_seconds_sum', labels)) < 1e-9,
        );
        let cumulative = 0;
        page.buckets.forEach((le: number, i: number) => {
          cumulative += r.latency.counts[i];
          assert.equal(
            cumulative,
            value(samples, 'meshport_service_request_duration_seconds_bucket', { ...labels, le: String(le) }),
          );
        });
      }
      assert.equal(rows.find((r) => r.method === 'echo' && r.service === SVC)!.requests, 2);
      assert.deepEqual(rows.find((r) => r.service === 'none')!.outcomes, { 'no-route': 1 });
      for (const c of page.callers as Json[]) {
        assert.equal(
          c.requests,
          value(samples, 'meshport_service_caller_requests_total', {
            direction: c.direction,
            service: c.service,
            caller: c.caller,
          }),
        );
      }
      assert.equal((page.callers as Json[]).find((c) => c.service === SVC)!.requests, 4);
      assert.deepEqual(page.folded, { outbound: { method: 1, caller: 0 }, inbound: { method: 0, caller: 0 } });
      assert.equal(
        value(samples, 'meshport_service_labels_folded_total', { direction: 'outbound', label: 'method' }),
        1,
      );
    });

    it('counts an mTLS caller by its identity on the inbound side', async () => {
      const pki = makeTestPki({ trustDomain: 'cluster.local' });
      kit.onCleanup(() => pki.cleanup());
      const providerId = 'spiffe://cluster.local/ns/default/sa/echo-provider';
      const consumerId = 'spiffe://cluster.local/ns/default/sa/echo-consumer';
      const app = await kit.echo();
      const sink = new Sink();
      const provider = await kit.router(new MemoryRouteTable().setInbound(SVC, { host: '127.0.0.1', port: app.port }), {
        inbound: { port: 0 },
        outbound: false,
        security: securityOf(pki.issue(providerId), pki.caPem),
        telemetry: { accessLog: { everyN: 1, errors: true, slowMs: 0 }, tracing: { everyN: 1 } },
        onTelemetry: sink.write,
      });
      const endpoint = { host: '127.0.0.1', port: provider.address('inbound').port, identity: providerId };
      const consumer = await kit.router(new MemoryRouteTable().setOutbound(SVC, { endpoints: [endpoint] }), {
        security: securityOf(pki.issue(consumerId), pki.caPem),
      });
      for (const r of [provider, consumer]) assert.equal(r.engine, defaultEngine(), 'the engine under test');
      const client = await kit.connect(consumer.address('outbound').port);
      await call(client, javaBolt(1, 'echo'), javaBolt(2, 'echo'));
      const m = await metrics(provider);
      assert.equal(
        value(m, 'meshport_service_caller_requests_total', { direction: 'inbound', service: SVC, caller: consumerId }),
        2,
      );
      await until(() => sink.access.length === 2 && sink.spans.length === 2, 'two lines and two spans');
      assert.equal(sink.access[0].callerIdentity, consumerId);
      assert.match(sink.access[0].caller, /^127\.0\.0\.1:\d+$/);
      const attr = sink.spans[0].attributes.find((a: Json) => a.key === 'meshport.caller.identity');
      assert.deepEqual(attr?.value, { stringValue: consumerId });
    });
  });

  describe('access log', () => {
    const everyCall = { accessLog: { everyN: 1, errors: true, slowMs: 0 } };

    it('writes every everyN-th call and every error', async () => {
      const p = await pair({ accessLog: { everyN: 10, errors: true, slowMs: 0 } });
      // The 10th call is the first written, not the 1st.
      await call(p.client, ...Array.from({ length: 9 }, (_, i) => javaBolt(1000 + i, 'echo')));
      await sleep(250);
      assert.equal(p.consumerSink.access.length, 0, 'nothing for the first nine calls');
      await call(p.client, javaBolt(1009, 'echo'));
      await until(() => p.consumerSink.access.length === 1, 'the tenth call’s line');
      p.consumerSink.access.length = 0;
      p.providerSink.access.length = 0;
      for (let batch = 0; batch < 10; batch++) {
        await call(p.client, ...Array.from({ length: 10 }, (_, i) => javaBolt(batch * 10 + i + 1, 'echo')));
      }
      await until(() => p.consumerSink.access.length >= 10 && p.providerSink.access.length >= 10, 'ten lines each');
      // 5 refused calls: counted 111-115, none a multiple of 10, each written as an error.
      const batchesBefore = p.consumerSink.raw.length;
      await call(p.client, ...[1, 2, 3, 4, 5].map((i) => javaBolt(200 + i, 'echo', {}, NOBODY)));
      await until(() => p.consumerSink.access.length >= 15, 'the error lines');
      await sleep(250);
      assert.equal(p.consumerSink.access.length, 15);
      assert.equal(p.consumerSink.access.filter((l) => l.status === 'ok').length, 10);
      assert.equal(p.consumerSink.access.filter((l) => l.status === 'no-route').length, 5);
      assert.equal(p.providerSink.access.length, 10, 'the provider side counts its own calls');
      assert.ok(p.providerSink.access.every((l) => l.direction === 'inbound'));
      // Lines are handed over in batches (every 100 ms), not one call each: the five errors of one burst come in one
      // (or two, when the timer fires between them).
      const errorBatches = p.consumerSink.raw.length - batchesBefore;
      assert.ok(errorBatches >= 1 && errorBatches <= 2, `${errorBatches} batches for 5 lines`);
    });

    it('without errors: true, a failed call is written only when its turn comes', async () => {
      const p = await pair({ accessLog: { everyN: 4, errors: false, slowMs: 0 } });
      await call(p.client, ...[1, 2, 3, 4, 5, 6, 7, 8].map((i) => javaBolt(i, 'echo', {}, NOBODY)));
      await until(() => p.consumerSink.access.length >= 2, 'two lines');
      await sleep(250);
      assert.equal(p.consumerSink.access.length, 2);
    });

    it('writes every call that took slowMs or longer', async () => {
      const p = await pair({ accessLog: { everyN: 1000, errors: true, slowMs: 80 } });
      p.app.behave = (h) => (h.method === 'slow' ? { delayMs: 120 } : 'answer');
      await call(p.client, javaBolt(1, 'echo'), javaBolt(2, 'slow'), javaBolt(3, 'echo'), javaBolt(4, 'slow'));
      await until(() => p.consumerSink.access.length >= 2 && p.providerSink.access.length >= 2, 'the slow calls');
      await sleep(250);
      for (const sink of [p.consumerSink, p.providerSink]) {
        assert.deepEqual(
          sink.access.map((l) => l.method),
          ['slow', 'slow'],
        );
        for (const l of sink.access) assert.ok(l.durationMs >= 80, `${l.durationMs} ms`);
      }
    });

    it('writes each field in order, with the values of the call', async () => {
      const p = await pair(everyCall);
      const since = Date.now();
      const sent = javaBolt(1, 'echo');
      const dubboSent = dubbo(2, 'hello');
      await call(p.client, sent, dubboSent);
      await call(p.client, javaBolt(3, 'echo', {}, NOBODY));
      await until(() => p.consumerSink.access.length === 3 && p.providerSink.access.length === 2, 'the lines');
      const clientAddress = `127.0.0.1:${p.client.socket.localPort}`;
      const lines = p.consumerSink.access;
      for (const l of [...lines, ...p.providerSink.access]) {
        assert.deepEqual(Object.keys(l), ACCESS_LOG_KEYS);
        assert.ok(Date.parse(l.time) >= since - 1 && Date.parse(l.time) <= Date.now(), l.time);
        assert.equal(new Date(Date.parse(l.time)).toISOString(), l.time, 'ISO 8601 UTC with milliseconds');
        assert.equal(typeof l.durationMs, 'number');
        assert.ok(l.durationMs >= 0 && l.durationMs < 2000);
        assert.equal(Math.round(l.durationMs * 1000) / 1000, l.durationMs, 'at most 3 decimals');
        assert.equal(l.traceId, null, 'no context and no tracing: no trace id');
        assert.equal(l.callerIdentity, null);
      }
      const bolt = lines.find((l) => l.protocol === 'bolt' && l.service === SVC)!;
      assert.deepEqual(
        { ...bolt, time: 0, durationMs: 0 },
        {
          time: 0,
          direction: 'outbound',
          protocol: 'bolt',
          caller: clientAddress,
          callerIdentity: null,
          service: SVC,
          method: 'echo',
          endpoint: `127.0.0.1:${p.inboundPort}`,
          status: 'ok',
          durationMs: 0,
          bytesIn: sent.length,
          bytesOut: answerTo(p.client, 1)!.frame.length,
          traceId: null,
        },
      );
      const d = lines.find((l) => l.protocol === 'dubbo')!;
      assert.equal(d.service, DSVC);
      assert.equal(d.method, 'hello');
      assert.equal(d.bytesIn, dubboSent.length);
      assert.equal(d.bytesOut, answerTo(p.client, 2)!.frame.length);
      const refused = lines.find((l) => l.service === 'none')!;
      assert.equal(refused.status, 'no-route');
      assert.equal(refused.method, 'echo');
      assert.equal(refused.endpoint, null, 'the call never left');
      assert.equal(refused.bytesOut, answerTo(p.client, 3)!.frame.length);
      // The provider's side: the consumer's sidecar is its caller, the app its endpoint.
      const inbound = p.providerSink.access.find((l) => l.protocol === 'bolt')!;
      assert.equal(inbound.direction, 'inbound');
      assert.match(inbound.caller, /^127\.0\.0\.1:\d+$/);
      assert.notEqual(inbound.caller, clientAddress);
      assert.equal(inbound.endpoint, `127.0.0.1:${p.app.port}`);
      assert.equal(inbound.bytesIn, sent.length);
      assert.equal(inbound.bytesOut, bolt.bytesOut);
      assert.ok(inbound.durationMs <= bolt.durationMs, 'the inner call is within the outer one');
    });

    it('escapes what JSON must, alike on both engines: quotes, backslashes, control characters as \\u00xx', async () => {
      const p = await pair(everyCall);
      const method = 'say "hi"\\\t\u0001é';
      await call(p.client, javaBolt(1, method));
      await until(() => p.consumerSink.access.length === 1, 'the line');
      assert.equal(p.consumerSink.access[0].method, method, 'the method as sent');
      const raw = p.consumerSink.raw.map((b) => b.lines).join('');
      assert.ok(raw.includes('"method":"say \\"hi\\"\\\\\\u0009\\u0001é",'), raw);
    });

    it('names the endpoint a call last tried when none would take it (unavailable)', async () => {
      const sink = new Sink();
      const dead = await closedPort();
      const router = await kit.router(
        new MemoryRouteTable().setOutbound(SVC, { endpoints: [{ host: '127.0.0.1', port: dead }] }),
        { telemetry: everyCall, onTelemetry: sink.write, connectRetries: 0 },
      );
      assert.equal(router.engine, defaultEngine(), 'the engine under test');
      const client = await kit.connect(router.address('outbound').port);
      await call(client, javaBolt(1, 'echo'));
      await until(() => sink.access.length === 1, 'the line');
      assert.equal(sink.access[0].status, 'unavailable');
      assert.equal(sink.access[0].endpoint, `127.0.0.1:${dead}`);
      const m = await metrics(router);
      assert.equal(
        value(m, 'meshport_service_responses_total', {
          direction: 'outbound',
          service: SVC,
          method: 'echo',
          outcome: 'unavailable',
        }),
        1,
      );
    });

    it('writes a oneway call as ok when sent, with no answer bytes', async () => {
      const p = await pair(everyCall);
      const oneway = javaBolt(1, 'fire');
      oneway[1] = 2; // Bolt type: request, oneway
      p.client.send(oneway);
      await until(() => p.app.seen.length === 1, 'the oneway at the app');
      await until(() => p.consumerSink.access.length === 1, 'its line');
      assert.equal(p.consumerSink.access[0].status, 'ok');
      assert.equal(p.consumerSink.access[0].bytesOut, 0);
      assert.equal(p.consumerSink.access[0].bytesIn, oneway.length);
      assert.equal(p.consumerSink.access[0].method, 'fire');
    });

    it('stops and starts with setTelemetry; no sink, no lines', async () => {
      const p = await pair(undefined);
      await call(p.client, javaBolt(1, 'echo'));
      await sleep(250);
      assert.equal(p.consumerSink.access.length, 0, 'off by default');
      p.consumer.setTelemetry(everyCall);
      await call(p.client, javaBolt(2, 'echo'), javaBolt(3, 'echo'));
      await until(() => p.consumerSink.access.length === 2, 'two lines once on');
      p.consumer.setTelemetry(undefined);
      await call(p.client, javaBolt(4, 'echo'), javaBolt(5, 'echo'));
      await sleep(250);
      assert.equal(p.consumerSink.access.length, 2, 'none once off');
      p.consumer.setTelemetry({ tracing: { everyN: 1 } });
      await call(p.client, javaBolt(6, 'echo'));
      await until(() => p.consumerSink.spans.length === 1, 'a span');
      assert.equal(p.consumerSink.access.length, 2, 'tracing alone writes no access line');
      assert.equal(p.providerSink.access.length + p.providerSink.spans.length, 0, 'the other router was not told');
    });

    it('hands over what is waiting when the router drains', async () => {
      const p = await pair({ accessLog: { everyN: 1, errors: true, slowMs: 0 } });
      await call(p.client, javaBolt(1, 'echo'));
      await p.consumer.drain(0);
      assert.equal(p.consumerSink.access.length, 1, 'the line came out with the drain');
    });
  });

  describe('spans', () => {
    const tracing = { tracing: { everyN: 1 }, accessLog: { everyN: 1, errors: true, slowMs: 0 } };

    /** The outbound and inbound span of the one call, once both routers have handed them over. */
    async function spansOf(p: Pair, count = 1): Promise<{ out: Json[]; in: Json[] }> {
      await until(
        () => p.consumerSink.spans.length >= count && p.providerSink.spans.length >= count,
        `${count} spans each side`,
      );
      await sleep(150);
      return { out: p.consumerSink.spans, in: p.providerSink.spans };
    }

    const attrs = (span: Json) =>
      Object.fromEntries(
        (span.attributes as Json[]).map((a) => [a.key, a.value.stringValue ?? Number(a.value.intValue)]),
      );

    it('joins the SOFA trace of a Java client: same trace, the provider side parented to the consumer side', async () => {
      const p = await pair(tracing);
      const sofaTraceId = '0A0FE8AE1456303133631042';
      const headers = { 'rpc_trace_context.sofaTraceId': sofaTraceId, 'rpc_trace_context.sofaRpcId': '0.1.2' };
      const sent = javaBolt(7, 'echo', headers);
      const since = Date.now();
      await call(p.client, sent);
      const { out, in: inbound } = await spansOf(p);
      assert.equal(out.length, 1);
      assert.equal(inbound.length, 1);
      const traceId = `00000000${sofaTraceId.toLowerCase()}`;
      const consumerParent = specFnv(`${traceId}/0.1.2`);
      const consumerSpan = specFnv(`${traceId}/${consumerParent}/out`);
      const [o, i] = [out[0], inbound[0]];
      assert.deepEqual(Object.keys(o).slice(0, 7), SPAN_KEYS);
      assert.deepEqual(Object.keys(o).slice(7), ['attributes', 'status']);
      assert.equal(o.traceId, traceId);
      assert.equal(i.traceId, traceId);
      assert.equal(o.parentSpanId, consumerParent, 'the caller app’s span, as its SOFA ids name it');
      assert.equal(o.spanId, consumerSpan);
      assert.equal(i.parentSpanId, o.spanId, 'the provider side hangs under the consumer side');
      assert.equal(i.spanId, specFnv(`${traceId}/${consumerParent}/in`));
      assert.equal(o.kind, 3);
      assert.equal(i.kind, 2);
      assert.equal(o.name, `${SVC}/echo`);
      assert.deepEqual(o.status, { code: 1 });
      for (const s of [o, i]) {
        assert.match(s.startTimeUnixNano, /^\d{19}$/);
        const start = BigInt(s.startTimeUnixNano);
        const end = BigInt(s.endTimeUnixNano);
        assert.ok(start <= end);
        assert.ok(start >= BigInt(since - 5) * 1_000_000n && end <= BigInt(Date.now()) * 1_000_000n);
      }
      assert.ok(BigInt(i.startTimeUnixNano) >= BigInt(o.startTimeUnixNano), 'the inner span starts within the outer');
      assert.deepEqual(attrs(o), {
        'rpc.system': 'sofarpc',
        'rpc.service': SVC,
        'rpc.method': 'echo',
        'meshport.direction': 'outbound',
        'meshport.outcome': 'ok',
        'network.peer.address': `127.0.0.1:${p.client.socket.localPort}`,
        'server.address': `127.0.0.1:${p.inboundPort}`,
        'sofa.trace_id': sofaTraceId,
        'sofa.rpc_id': '0.1.2',
        'meshport.bytes_in': sent.length,
        'meshport.bytes_out': answerTo(p.client, 7)!.frame.length,
      });
      assert.deepEqual(
        (o.attributes as Json[]).map((a) => a.key),
        Object.keys(attrs(o)),
        'attributes in the specified order',
      );
      assert.equal(attrs(i)['meshport.direction'], 'inbound');
      assert.equal(attrs(i)['server.address'], `127.0.0.1:${p.app.port}`);
      // The access log names the same trace.
      await until(() => p.consumerSink.access.length === 1, 'the access line');
      assert.equal(p.consumerSink.access[0].traceId, traceId);
      assert.equal(p.providerSink.access[0].traceId, traceId);
      // And the app got the frame as the client wrote it, trace headers and all.
      assert.deepEqual(withoutId(p.app.frames[0]), withoutId(sent));
    });

    it('hashes a SOFA trace id that is not hex, and takes rpcId 0 when none is sent', async () => {
      const p = await pair(tracing);
      const sofaTraceId = 'trace-from-somewhere-else';
      await call(p.client, javaBolt(1, 'echo', { 'rpc_trace_context.sofaTraceId': sofaTraceId }));
      const { out, in: inbound } = await spansOf(p);
      const traceId = specFnv(sofaTraceId) + specFnv(`meshport/${sofaTraceId}`);
      assert.equal(out[0].traceId, traceId);
      assert.equal(out[0].parentSpanId, specFnv(`${traceId}/0`));
      assert.equal(inbound[0].parentSpanId, out[0].spanId);
      assert.equal(attrs(out[0])['sofa.rpc_id'], '0');
    });

    it('reads the trace context sofa-bolt-node puts in the SofaRequest body (requestProps)', async () => {
      const p = await pair(tracing);
      const sofaTraceId = '1e2f3a4b5c';
      const sent = nodeBolt(3, 'echo', {
        'rpc_trace_context.sofaTraceId': sofaTraceId,
        'rpc_trace_context.sofaRpcId': '0.3',
      });
      await call(p.client, sent);
      const { out, in: inbound } = await spansOf(p);
      const traceId = sofaTraceId.padStart(32, '0');
      assert.equal(out[0].traceId, traceId);
      assert.equal(out[0].parentSpanId, specFnv(`${traceId}/0.3`));
      assert.equal(inbound[0].parentSpanId, out[0].spanId);
      assert.equal(out[0].name, `${SVC}/echo`, 'the method from the body');
      assert.deepEqual(withoutId(p.app.frames[0]), withoutId(sent));
    });

    it('follows a W3C traceparent in a Dubbo attachment', async () => {
      const p = await pair(tracing);
      const trace = '0af7651916cd43dd8448eb211c80319c';
      const parent = 'b7ad6b7169203331';
      const sent = dubbo(9, 'hello', { traceparent: `00-${trace}-${parent}-01` });
      await call(p.client, sent);
      const { out, in: inbound } = await spansOf(p);
      const [o, i] = [out[0], inbound[0]];
      assert.equal(o.traceId, trace);
      assert.equal(i.traceId, trace);
      assert.equal(o.parentSpanId, parent);
      assert.equal(o.spanId, specFnv(`${trace}/${parent}/out`));
      assert.equal(i.parentSpanId, o.spanId);
      assert.equal(i.spanId, specFnv(`${trace}/${parent}/in`));
      assert.equal(o.name, `${DSVC}/hello`);
      assert.equal(attrs(o)['rpc.system'], 'apache_dubbo');
      assert.equal(attrs(o)['sofa.trace_id'], undefined, 'no SOFA context, no sofa.* attributes');
      assert.deepEqual(withoutId(p.app.frames[0]), withoutId(sent), 'the attachments reach the app unchanged');
    });

    it('writes no span for a traceparent that says "not sampled", on either side', async () => {
      const p = await pair(tracing);
      const trace = '4bf92f3577b34da6a3ce929d0e0e4736';
      const notSampled = dubbo(1, 'hello', { traceparent: `00-${trace}-00f067aa0ba902b7-00` });
      await call(p.client, notSampled);
      await call(p.client, dubbo(2, 'hello'));
      await until(() => p.consumerSink.access.length === 2 && p.providerSink.access.length === 2, 'the access lines');
      await sleep(250);
      assert.equal(p.consumerSink.spans.length, 1, 'only the call without context');
      assert.equal(p.providerSink.spans.length, 1);
      assert.notEqual(p.consumerSink.spans[0].traceId, trace);
      const line = p.consumerSink.access.find((l) => l.bytesIn === notSampled.length);
      assert.equal(line?.traceId, trace, 'the log still names it');
    });

    it('starts a root span for a call without context (nothing is added to the frame)', async () => {
      const p = await pair(tracing);
      const sent = javaBolt(1, 'echo');
      await call(p.client, sent);
      const { out, in: inbound } = await spansOf(p);
      assert.match(out[0].traceId, /^[0-9a-f]{32}$/);
      assert.match(out[0].spanId, /^[0-9a-f]{16}$/);
      assert.equal('parentSpanId' in out[0], false, 'a root span');
      assert.notEqual(inbound[0].traceId, out[0].traceId, 'no context went along: the provider side starts its own');
      assert.deepEqual(withoutId(p.app.frames[0]), withoutId(sent));
      await until(() => p.consumerSink.access.length === 1, 'the access line');
      assert.equal(p.consumerSink.access[0].traceId, out[0].traceId, 'the log names the trace the sidecar started');
    });

    it('marks a failed call and one that never left', async () => {
      const p = await pair(tracing);
      const headers = { 'rpc_trace_context.sofaTraceId': 'abc', 'rpc_trace_context.sofaRpcId': '0' };
      await call(p.client, javaBolt(1, 'echo', headers, NOBODY));
      await until(() => p.consumerSink.spans.length === 1, 'the span');
      const s = p.consumerSink.spans[0];
      assert.deepEqual(s.status, { code: 2, message: 'no-route' });
      assert.equal(attrs(s)['server.address'], undefined, 'the call never left');
      assert.equal(attrs(s)['rpc.service'], 'none');
      assert.equal(s.name, 'none/echo');
    });

    it('samples one in everyN traces, the same ones on both sides', async () => {
      const p = await pair({ tracing: { everyN: 4 } });
      const ids = Array.from({ length: 40 }, (_, i) => (0x5a17 * (i + 1)).toString(16));
      await call(p.client, ...ids.map((t, i) => javaBolt(i + 1, 'echo', { 'rpc_trace_context.sofaTraceId': t })));
      const expected = ids.map((t) => t.padStart(32, '0')).filter((t) => inSample(t, 4));
      assert.ok(expected.length > 3 && expected.length < 40, `${expected.length} of 40 in the sample`);
      await until(
        () => p.consumerSink.spans.length >= expected.length && p.providerSink.spans.length >= expected.length,
        'the sampled spans',
      );
      await sleep(250);
      const traces = (spans: Json[]) => spans.map((s) => s.traceId as string).sort();
      assert.deepEqual(traces(p.consumerSink.spans), [...expected].sort());
      assert.deepEqual(traces(p.providerSink.spans), [...expected].sort());
    });

    it('forwards every frame byte for byte, whatever telemetry is on', async () => {
      const p = await pair(tracing);
      const frames = [
        javaBolt(1, 'echo', {
          'rpc_trace_context.sofaTraceId': 'ff01',
          'rpc_trace_context.sofaRpcId': '0.9',
          traceparent: 'junk',
        }),
        nodeBolt(2, 'echo', { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }),
        dubbo(3, 'hello', { 'rpc_trace_context.sofaTraceId': 'ff02', 'rpc_trace_context.sofaRpcId': '0.2' }),
        dubbo(4, 'hello', { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00' }),
      ];
      await call(p.client, ...frames);
      assert.equal(p.app.frames.length, frames.length);
      const byBody = (f: Buffer) => withoutId(f).toString('hex');
      assert.deepEqual(p.app.frames.map(byBody).sort(), frames.map(byBody).sort());
      // And the answers come back as the app wrote them, with the caller's ids.
      for (const [i, f] of frames.entries()) {
        const a = answerTo(p.client, decodeFrame(f).requestId)!;
        assert.ok(a, `answer ${i}`);
      }
    });
  });
});
