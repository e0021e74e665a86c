// Tracing end to end: real sofa-rpc-node apps through two sidecars (a consumer pod and a provider pod) over a real
// ZooKeeper, both sidecars exporting spans to the OTLP collector stand-in on loopback. The consumer app's calls carry
// trace context the way the SDK sends it (Bolt: SOFA's rpc_trace_context in the SofaRequest's requestProps, as
// sofa-bolt-node's hessian2 mode writes it; Dubbo: a W3C traceparent attachment). Checked: the provider app receives
// the context unchanged; per call exactly one CLIENT span from the consumer's sidecar and one SERVER span from the
// provider's, in the same trace, the SERVER span the child of the CLIENT span, which is the child of the app's span
// (the ids the specification derives from the headers). Runs on the engine MESHPORT_ENGINE names.

import { strict as assert } from 'node:assert';
import type { EventEmitter } from 'node:events';
import type { Sidecar } from '@meshport/sidecar';
import {
  expectedSofaSpanIds,
  expectedSpanIds,
  closeApps,
  startConsumerApp,
  startOtlpCollector,
  startProviderApp,
  startZooKeeper,
  type CollectedSpan,
  type OtlpCollector,
  type Protocol,
  type RunningZooKeeper,
} from '@meshport/testkit';
import { podConfig, showSidecarLogIfFailed, startSidecar, stopSidecars } from './support/sidecars';

const facade = (sidecar: Sidecar) => {
  const { host, port } = sidecar.address({ facade: 'main' });
  return `${host}:${port}`;
};

describe('tracing end to end: sofa-rpc-node apps through two sidecars, spans to a collector', function () {
  this.timeout(90_000);
  let zk: RunningZooKeeper;
  let collector: OtlpCollector;
  let providerPod: Sidecar;
  let consumerPod: Sidecar;

  afterEach(function () {
    showSidecarLogIfFailed(this.currentTest);
  });

  before(async () => {
    zk = await startZooKeeper();
    collector = await startOtlpCollector();
    const config = `${podConfig({ type: 'zookeeper', upstream: zk.connectString })}\ntelemetry:\n  tracing: { otlp: "${collector.url}" }\n`;
    providerPod = await startSidecar(config);
    consumerPod = await startSidecar(config);
  });

  after(async () => {
    await stopSidecars();
    await collector?.close();
    await zk?.stop();
  });

  /** The spans of one trace once both sidecars' have come (and a moment after, so a third would be seen too). */
  async function spansOf(traceId: string, count: number): Promise<CollectedSpan[]> {
    const mine = (s: CollectedSpan) => s.traceId === traceId;
    await collector.waitForSpans(count, 15_000, mine);
    await new Promise((resolve) => setTimeout(resolve, 1200));
    return collector.spans.filter(mine);
  }

  const cases: {
    protocol: Protocol;
    requestProps: (i: number) => Record<string, unknown>;
    ids: (i: number) => ReturnType<typeof expectedSpanIds>;
    /** What the provider app must find in its request's requestProps. */
    received: (props: Record<string, unknown>, i: number) => void;
    system: string;
    sofa: boolean;
  }[] = [
    {
      protocol: 'bolt',
      // sofa-tracer's shape: the context as a map under rpc_trace_context, in the SofaRequest body (hessian2 mode).
      requestProps: (i) => ({
        service: 'com.example.trace.BoltEchoService:1.0',
        rpc_trace_context: { sofaTraceId: `0a0fe8871765045800123100${i}beef`, sofaRpcId: `0.${i + 1}` },
      }),
      ids: (i) => expectedSofaSpanIds(`0a0fe8871765045800123100${i}beef`, `0.${i + 1}`),
      received: (props, i) =>
        assert.deepEqual(props.rpc_trace_context, {
          sofaTraceId: `0a0fe8871765045800123100${i}beef`,
          sofaRpcId: `0.${i + 1}`,
        }),
      system: 'sofarpc',
      sofa: true,
    },
    {
      protocol: 'dubbo',
      requestProps: (i) => ({ traceparent: `00-4bf92f3577b34da6a3ce929d0e0e47${i}0-00f067aa0ba902b${i}-01` }),
      ids: (i) => expectedSpanIds(`4bf92f3577b34da6a3ce929d0e0e47${i}0`, `00f067aa0ba902b${i}`),
      received: (props, i) =>
        assert.equal(props.traceparent, `00-4bf92f3577b34da6a3ce929d0e0e47${i}0-00f067aa0ba902b${i}-01`),
      system: 'apache_dubbo',
      sofa: false,
    },
  ];

  for (const c of cases) {
    it(`${c.protocol}: the provider app gets the context unchanged; one CLIENT and one SERVER span per call, parented`, async () => {
      const iface = `com.example.trace.${c.protocol === 'bolt' ? 'Bolt' : 'Dubbo'}EchoService`;
      const service = c.protocol === 'dubbo' ? `SOFA/${iface}:1.0` : `${iface}:1.0`;
      const apps: { close(): Promise<unknown> }[] = [];
      try {
        const provider = await startProviderApp(c.protocol, iface, facade(providerPod));
        apps.push(provider.server, provider.registry);
        const received: Record<string, unknown>[] = [];
        // The SDK's typings (packages/cli/src/types/peers.d.ts) leave out its events and requestProps.
        (provider.server as unknown as EventEmitter).on(
          'request',
          ({ req }: { req: { data: { requestProps?: Record<string, unknown> } } }) =>
            received.push(req.data.requestProps ?? {}),
        );
        const consumer = await startConsumerApp(c.protocol, iface, facade(consumerPod));
        apps.unshift(consumer.registry, consumer.client);
        for (let i = 0; i < 3; i++) {
          const options = { responseTimeout: 3000, requestProps: c.requestProps(i) };
          const answer = await consumer.consumer.invoke('echo', [`call ${i}`], options);
          assert.equal(answer, `provider: call ${i}`);
          c.received(received[i]!, i);
        }
        const providerInbound = providerPod.address('inbound');
        for (let i = 0; i < 3; i++) {
          const ids = c.ids(i);
          const spans = await spansOf(ids.traceId, 2);
          assert.equal(spans.length, 2, `call ${i}: ${JSON.stringify(spans, null, 1)}`);
          const client = spans.find((s) => s.kind === 3);
          const server = spans.find((s) => s.kind === 2);
          assert.ok(client && server, `call ${i}: not one CLIENT and one SERVER span`);
          assert.equal(client.parentSpanId, ids.callerSpan, 'the CLIENT span is the child of the app span');
          assert.equal(client.spanId, ids.outbound);
          assert.equal(server.parentSpanId, client.spanId, 'the SERVER span is the child of the CLIENT span');
          assert.equal(server.spanId, ids.inbound);
          for (const span of [client, server]) {
            assert.equal(span.name, `${service}/echo`);
            assert.deepEqual(span.status, { code: 1 });
            assert.equal(span.attributes['rpc.system'], c.system);
            assert.equal(span.attributes['rpc.service'], service);
            assert.equal(span.attributes['rpc.method'], 'echo');
            assert.equal(span.attributes['meshport.outcome'], 'ok');
            assert.equal('sofa.trace_id' in span.attributes, c.sofa);
            assert.deepEqual(span.resource, { 'service.name': 'meshport', 'meshport.node': '127.0.0.1' });
            assert.ok(BigInt(span.endTimeUnixNano) >= BigInt(span.startTimeUnixNano));
          }
          assert.equal(client.attributes['server.address'], `127.0.0.1:${providerInbound.port}`);
          assert.equal(server.attributes['server.address'], `127.0.0.1:${provider.port}`);
          // The SERVER span lies within the CLIENT span (same host clock).
          assert.ok(BigInt(server.startTimeUnixNano) >= BigInt(client.startTimeUnixNano));
          assert.ok(BigInt(server.endTimeUnixNano) <= BigInt(client.endTimeUnixNano));
        }
        assert.deepEqual(collector.invalid, []);
      } finally {
        await closeApps(apps);
      }
    });
  }
});
