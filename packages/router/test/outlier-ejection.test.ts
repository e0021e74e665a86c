// What docs/router.md promises of outlier ejection, on the engine MESHPORT_ENGINE picks: each ejection of an endpoint
// lasts baseEjectionMs times the number of times it was ejected, and at most 10% of a cluster (but always one
// endpoint) is ejected at once, however many endpoints fail.

import { strict as assert } from 'node:assert';
import { BoltStatus } from '@meshport/protocol';
import { MemoryRouteTable, type ClusterState, type RouterHandle } from '../src/index';
import { useRouterKit } from './helpers/kit';
import { boltRequest, type EchoProvider } from '@meshport/testkit';
import { until, type FrameClient } from './helpers/peers';

const SVC = 'com.example.EchoService:1.0';
const local = (port: number) => ({ host: '127.0.0.1', port });

async function ask(client: FrameClient, id: number): Promise<number | undefined> {
  client.send(boltRequest(id, SVC, `r${id}`));
  await until(() => client.answers.some((a) => a.header.requestId === id), `an answer for id ${id}`);
  return client.answers.find((a) => a.header.requestId === id)!.header.status;
}

async function endpoints(router: RouterHandle): Promise<ClusterState['endpoints']> {
  return (await router.describeRoutes()).find((c) => c.name === SVC)!.endpoints;
}

describe('router: outlier ejection', function () {
  this.timeout(30_000);
  const kit = useRouterKit();

  it('an endpoint ejected again stays out longer: the n-th ejection lasts n x baseEjectionMs', async () => {
    const base = 1000;
    const bad = await kit.echo();
    const good = await kit.echo();
    bad.behave = () => 'reset';
    const router = await kit.router(
      new MemoryRouteTable().setOutbound(SVC, { endpoints: [local(bad.port), local(good.port)] }),
      {
        outlier: { baseEjectionMs: base },
      },
    );
    const client = await kit.connect(router.address('outbound').port);
    const badKey = `127.0.0.1:${bad.port}`;
    const badEndpoint = async () => (await endpoints(router)).find((e) => e.address === badKey)!;
    let id = 0;
    /** Asks until `bad` is ejected for the n-th time; round-robin alternates, so its 5th failure in a row takes 10. */
    const failUntilEjected = async (n: number) => {
      for (let i = 0; i < 10; i++) await ask(client, ++id);
      const e = await badEndpoint();
      assert.equal(e.ejections, n, JSON.stringify(e));
      assert.equal(e.healthy, false);
      return e.ejectedForMs;
    };
    const first = await failUntilEjected(1);
    assert.ok(first > 0 && first <= base, `first ejection: ${first} ms left of ${base}`);
    // Still out well before its end, back by it.
    const firstSeen = bad.seen.length;
    for (let i = 0; i < 4; i++) assert.equal(await ask(client, ++id), BoltStatus.SUCCESS);
    assert.equal(bad.seen.length, firstSeen, 'no traffic to an ejected endpoint');
    await until(async () => (await badEndpoint()).healthy, 'the first ejection to end', 2 * base);
    const second = await failUntilEjected(2);
    // Read moments after the ejection: more left than the whole first one lasted.
    assert.ok(second > base && second <= 2 * base, `second ejection: ${second} ms left, against ${base} for the first`);
    const secondSeen = bad.seen.length;
    const start = Date.now();
    await until(async () => (await badEndpoint()).healthy, 'the second ejection to end', 4 * base);
    const lasted = Date.now() - start;
    // It also outlasts the first in time: at least base (its first ms went by before `start`, not a whole base).
    assert.ok(
      lasted >= second - 50 && lasted > base,
      `the second ejection ended ${lasted} ms after it was read as ${second} ms left`,
    );
    assert.equal(bad.seen.length, secondSeen, 'no traffic to it while ejected');
  });

  describe('at most 10% of a cluster ejected at once, but always one endpoint', () => {
    /**
     * A cluster of `size` endpoints of which `failing` reset every request, asked round-robin until each failing one
     * has failed far more than 5 times in a row; returns the endpoints as /routes shows them.
     */
    async function failMany(
      size: number,
      failing: number,
    ): Promise<{ states: ClusterState['endpoints']; servers: EchoProvider[] }> {
      const servers: EchoProvider[] = [];
      for (let i = 0; i < size; i++) servers.push(await kit.echo());
      for (const s of servers.slice(0, failing)) s.behave = () => 'reset';
      const routes = new MemoryRouteTable().setOutbound(SVC, { endpoints: servers.map((s) => local(s.port)) });
      // Ejections far longer than the test: none ends and makes room for another.
      const router = await kit.router(routes, { outlier: { baseEjectionMs: 120_000 } });
      const client = await kit.connect(router.address('outbound').port);
      for (let id = 1; id <= size * 8; id++) await ask(client, id);
      return { states: await endpoints(router), servers };
    }

    const cases = [
      // 10% of 25 is 2.5: "at most 10%" leaves 2.
      { size: 25, failing: 20, ejected: 2 },
      { size: 20, failing: 20, ejected: 2 },
      // 10% of 9 is 0.9: still one.
      { size: 9, failing: 6, ejected: 1 },
    ];
    for (const { size, failing, ejected } of cases) {
      it(`${size} endpoints, ${failing} failing: exactly ${ejected} ejected; the other failing ones stay in`, async () => {
        const { states, servers } = await failMany(size, failing);
        const out = states.filter((e) => !e.healthy);
        assert.equal(out.length, ejected, JSON.stringify(out));
        const failingKeys = new Set(servers.slice(0, failing).map((s) => `127.0.0.1:${s.port}`));
        assert.ok(
          out.every((e) => failingKeys.has(e.address)),
          'only failing endpoints are ejected',
        );
        // The failing endpoints left in: past the threshold, kept in by the cap alone.
        const kept = states.filter((e) => e.healthy && failingKeys.has(e.address));
        assert.equal(kept.length, failing - ejected);
        assert.ok(
          kept.every((e) => e.consecutiveFailures >= 5),
          JSON.stringify(kept),
        );
      });
    }
  });
});
