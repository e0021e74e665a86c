// What docs/router.md promises of a cluster's limits, on the engine MESHPORT_ENGINE picks: requests past
// maxPendingRequests are shed as busy and counted, and a request that never left is tried on connectRetries more
// endpoints, no more, before its caller hears why.

import { strict as assert } from 'node:assert';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { BoltStatus, DubboStatus } from '@meshport/protocol';
import { MemoryRouteTable, type RouterHandle } from '../src/index';
import { useRouterKit } from './helpers/kit';
import { boltRequest, dubboCall } from '@meshport/testkit';
import { closedPort, echoedText, until, type FrameClient } from './helpers/peers';

const BOLT_SVC = 'com.example.EchoService:1.0';
const DUBBO_IFACE = 'org.example.Greeter';
const DUBBO_SVC = `${DUBBO_IFACE}:2.0`;
const local = (port: number) => ({ host: '127.0.0.1', port });

function answerFor(client: FrameClient, id: number | string) {
  const found = client.answers.filter((a) => String(a.header.requestId) === String(id));
  assert.equal(found.length, 1, `answers for id ${id}: ${found.length}`);
  return found[0];
}

/** meshport_responses_total for one cluster and outcome, as /stats shows it. */
async function responses(router: RouterHandle, cluster: string, outcome: string): Promise<number> {
  const metric = await router.stats.registry.getSingleMetric('meshport_responses_total')!.get();
  return metric.values.find((v) => v.labels.cluster === cluster && v.labels.outcome === outcome)?.value ?? 0;
}

describe('router: cluster limits', function () {
  this.timeout(20_000);
  const kit = useRouterKit();

  describe('maxPendingRequests', () => {
    it('a burst on a connection still connecting: the first maxPendingRequests wait for it, the rest are shed as busy at once and counted', async () => {
      const app = await kit.holding();
      const routes = new MemoryRouteTable()
        .setOutbound(BOLT_SVC, { endpoints: [local(app.port)] })
        .setOutbound(DUBBO_SVC, { endpoints: [local(app.port)] });
      const router = await kit.router(routes, { limits: { maxPendingRequests: 3 } });
      const client = await kit.connect(router.address('outbound').port);
      // One write: every request is read before the router's first upstream connection can have connected, so all of
      // them find it still connecting. Bolt and Dubbo have a pooled connection each, and each its own pending calls.
      const burst: Buffer[] = [];
      for (let i = 1; i <= 10; i++) burst.push(boltRequest(i, BOLT_SVC, `bolt-${i}`));
      for (let i = 1; i <= 10; i++) burst.push(dubboCall(100 + i, DUBBO_IFACE, '2.0', 'hello', `dubbo-${i}`));
      client.send(Buffer.concat(burst));
      await client.waitFor(14);
      for (let i = 4; i <= 10; i++) {
        const shed = answerFor(client, i);
        assert.equal(shed.header.status, BoltStatus.SERVER_THREADPOOL_BUSY, `bolt ${i}`);
        assert.match(shed.frame.toString('utf8'), /request limit/);
        assert.equal(
          answerFor(client, String(100 + i)).header.status,
          DubboStatus.SERVER_THREADPOOL_EXHAUSTED_ERROR,
          `dubbo ${100 + i}`,
        );
      }
      await until(() => app.held === 6, 'the three pending calls of each protocol at the provider');
      assert.equal(app.seen.length, 6, 'the shed requests never reached the provider');
      assert.equal(await responses(router, BOLT_SVC, 'busy'), 7);
      assert.equal(await responses(router, DUBBO_SVC, 'busy'), 7);
      app.release();
      await client.waitFor(20);
      // The calls let through are the first three of each protocol, answered with their own bodies.
      for (let i = 1; i <= 3; i++) {
        assert.equal(answerFor(client, i).header.status, BoltStatus.SUCCESS);
        assert.equal(echoedText(answerFor(client, i).frame), `bolt-${i}`);
        assert.equal(answerFor(client, String(100 + i)).header.status, DubboStatus.OK);
        assert.equal(echoedText(answerFor(client, String(100 + i)).frame), `dubbo-${i}`);
      }
      // Once connected nothing is pending: a second burst of the same size is all let through.
      const again: Buffer[] = [];
      for (let i = 21; i <= 30; i++) again.push(boltRequest(i, BOLT_SVC, `bolt-${i}`));
      client.send(Buffer.concat(again));
      await until(() => app.held === 10, 'the second burst at the provider');
      app.release();
      await client.waitFor(30);
      for (let i = 21; i <= 30; i++) assert.equal(answerFor(client, i).header.status, BoltStatus.SUCCESS);
      assert.equal(await responses(router, BOLT_SVC, 'busy'), 7);
    });
  });

  describe('connectRetries', () => {
    /** A router logging at warn into `lines`, over `endpoints` refusing endpoints. */
    async function overDeadEndpoints(endpoints: number, connectRetries: number) {
      const lines: { msg: string; endpoint?: string }[] = [];
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line));
          done();
        },
      });
      const ports = [];
      for (let i = 0; i < endpoints; i++) ports.push(await closedPort());
      const routes = new MemoryRouteTable().setOutbound(BOLT_SVC, { endpoints: ports.map(local) });
      const router = await kit.router(routes, { connectRetries, logger: pino({ level: 'warn' }, sink) });
      const client = await kit.connect(router.address('outbound').port);
      return { router, client, lines };
    }

    for (const retries of [0, 2, 4]) {
      it(`connectRetries ${retries}: a call to refusing endpoints is tried on exactly ${retries + 1} of 8, then answered ERROR_COMM`, async () => {
        const { router, client, lines } = await overDeadEndpoints(8, retries);
        client.send(boltRequest(1, BOLT_SVC, 'x'));
        await client.waitFor(1);
        const answer = answerFor(client, 1);
        assert.equal(answer.header.status, BoltStatus.ERROR_COMM);
        // Not "no endpoint accepted": endpoints were left, the retries ran out.
        assert.match(answer.frame.toString('utf8'), /could not connect to com\.example\.EchoService:1\.0/);
        const attempts = () => lines.filter((l) => l.msg === 'upstream connect failed');
        // The native engine's log events come in batches; wait a little past the first for any more.
        await until(
          () => attempts().length >= retries + 1,
          `${retries + 1} connect failures logged (have ${attempts().length})`,
        );
        await sleep(200);
        const tried = attempts().map((l) => l.endpoint);
        assert.equal(tried.length, retries + 1, JSON.stringify(tried));
        assert.equal(new Set(tried).size, retries + 1, 'each attempt on another endpoint');
        // /routes tells the same story: one failure on each endpoint tried, none on the others.
        const endpoints = (await router.describeRoutes()).find((c) => c.name === BOLT_SVC)!.endpoints;
        const failed = endpoints.filter((e) => e.consecutiveFailures > 0);
        assert.deepEqual(failed.map((e) => e.address).sort(), [...tried].sort());
        assert.ok(
          failed.every((e) => e.consecutiveFailures === 1),
          JSON.stringify(failed),
        );
      });
    }

    it('fewer endpoints than connectRetries + 1: each is tried once, then the caller hears that none accepted', async () => {
      const { client, lines } = await overDeadEndpoints(2, 4);
      client.send(boltRequest(1, BOLT_SVC, 'x'));
      await client.waitFor(1);
      const answer = answerFor(client, 1);
      assert.equal(answer.header.status, BoltStatus.ERROR_COMM);
      assert.match(
        answer.frame.toString('utf8'),
        /no endpoint of com\.example\.EchoService:1\.0 accepted a connection/,
      );
      await sleep(200);
      assert.equal(lines.filter((l) => l.msg === 'upstream connect failed').length, 2);
    });

    it('a connect the kernel refuses at once (a broadcast address: nothing is sent) counts as a failure, and the caller hears why', async () => {
      // connect() to 255.255.255.255 fails in the syscall itself (ENETUNREACH, or EACCES with a default route), where a
      // refusing port fails a moment later.
      const routes = new MemoryRouteTable().setOutbound(BOLT_SVC, {
        endpoints: [{ host: '255.255.255.255', port: 9 }],
      });
      const router = await kit.router(routes, { connectRetries: 0, logger: pino({ level: 'silent' }) });
      const client = await kit.connect(router.address('outbound').port);
      client.send(boltRequest(1, BOLT_SVC, 'x'));
      await client.waitFor(1);
      const answer = answerFor(client, 1);
      assert.equal(answer.header.status, BoltStatus.ERROR_COMM);
      assert.match(
        answer.frame.toString('utf8'),
        /could not connect to com\.example\.EchoService:1\.0: .*(unreachable|ENETUNREACH|permission denied|EACCES)/i,
      );
      const [endpoint] = (await router.describeRoutes()).find((c) => c.name === BOLT_SVC)!.endpoints;
      assert.equal(endpoint!.consecutiveFailures, 1);
    });
  });
});
