// The Redis adapter against a real redis-server: the shared conformance suite (with a restart that loses every key,
// healed by the adapters writing their providers again), the exact Dubbo 2.7 Redis layout, and expired fields.

import { strict as assert } from 'node:assert';
import { Redis } from 'ioredis';
import { describeRegistryConformance, formatProviderUrl } from '@meshport/registry-core';
import { RedisRegistry } from '../src/index';
import { connected, eventually, restartOutage, type RunningRedis, startRedis } from '@meshport/testkit';

const DUBBO_SERVICE = 'org.apache.dubbo.demo.DemoService:2.0';
const DUBBO_URL =
  'dubbo://127.0.0.1:20880/org.apache.dubbo.demo.DemoService?anyhost=true&application=demo-provider&deprecated=false' +
  '&dubbo=2.0.2&dynamic=true&generic=false&interface=org.apache.dubbo.demo.DemoService&methods=sayHello%2CsayHelloAsync' +
  '&pid=4243&release=2.7.23&revision=2.0&side=provider&timestamp=1700000000001&version=2.0';
const OTHER_URL =
  'dubbo://127.0.0.2:20880/org.apache.dubbo.demo.DemoService?interface=org.apache.dubbo.demo.DemoService&version=2.0';
const KEY = '/dubbo/org.apache.dubbo.demo.DemoService/providers';

/** A raw client, as a Dubbo SDK or an operator would look at the registry. */
async function rawClient(url: string): Promise<Redis> {
  const client = new Redis(url, { lazyConnect: true, retryStrategy: () => null });
  client.on('error', () => {});
  await client.connect();
  return client;
}

describe('@meshport/registry-redis against a real redis-server', function () {
  this.timeout(60_000);
  let server: RunningRedis;
  const quiet = { warn: () => {} };

  before(async () => {
    server = await startRedis();
  });
  after(async () => {
    await server?.stop();
  });

  let run = 0;
  describeRegistryConformance('RedisRegistry (two adapters on one server)', async () => {
    // A root per pair, so one test's leftovers are not the next one's providers.
    const root = `/conformance-${++run}`;
    const a = new RedisRegistry({ url: server.url, root, logger: quiet });
    const b = new RedisRegistry({ url: server.url, root, logger: quiet });
    await Promise.all([connected(a), connected(b)]);
    return {
      a,
      b,
      // Saving is off, so the restarted server is empty: only a's re-publish on reconnect brings the providers back,
      // and b must push nothing empty meanwhile.
      outage: restartOutage(server, [a, b]),
      settleMs: 500,
      cleanup: async () => {},
    };
  });

  it('after a restart that lost every key, the providers are written back', async () => {
    const adapter = new RedisRegistry({ url: server.url, root: '/restart', logger: quiet });
    try {
      await adapter.publish(DUBBO_SERVICE, DUBBO_URL);
      await server.restart();
      const raw = await eventually('the restarted server', async () => rawClient(server.url));
      try {
        const key = '/restart/org.apache.dubbo.demo.DemoService/providers';
        await eventually('the re-published field', async () =>
          (await raw.hgetall(key))[DUBBO_URL] ? true : undefined,
        );
      } finally {
        raw.disconnect();
      }
    } finally {
      await adapter.close();
    }
  });

  it('writes the provider hash field and PUBLISHes register exactly as Dubbo 2.7 does', async () => {
    const adapter = new RedisRegistry({ url: server.url, logger: quiet });
    const raw = await rawClient(server.url);
    const listener = await rawClient(server.url);
    const messages: [string, string, string][] = [];
    try {
      listener.on('pmessage', (pattern: string, channel: string, message: string) =>
        messages.push([pattern, channel, message]),
      );
      await listener.psubscribe('/dubbo/org.apache.dubbo.demo.DemoService/*');
      const before = Date.now();
      await adapter.publish(DUBBO_SERVICE, DUBBO_URL);
      const hash = await raw.hgetall(KEY);
      assert.deepEqual(Object.keys(hash), [DUBBO_URL], 'the field is the full URL');
      const expiry = Number(hash[DUBBO_URL]);
      assert.ok(
        expiry >= before + 60_000 && expiry <= Date.now() + 60_000,
        `the value is now + 60000 ms: ${hash[DUBBO_URL]}`,
      );
      await eventually('the register message', async () => (messages.length > 0 ? true : undefined), 5_000);
      assert.deepEqual(messages[0], ['/dubbo/org.apache.dubbo.demo.DemoService/*', KEY, 'register']);

      await adapter.unpublish(DUBBO_SERVICE, DUBBO_URL);
      assert.deepEqual(await raw.hgetall(KEY), {});
      await eventually(
        'the unregister message',
        async () => (messages.some((m) => m[2] === 'unregister') ? true : undefined),
        5_000,
      );
      assert.deepEqual(messages.at(-1), ['/dubbo/org.apache.dubbo.demo.DemoService/*', KEY, 'unregister']);
    } finally {
      await adapter.close();
      raw.disconnect();
      listener.disconnect();
    }
  });

  it('ignores a field whose expiry has passed, and drops a field when its expiry passes', async () => {
    const adapter = new RedisRegistry({ url: server.url, root: '/expired', logger: quiet });
    const raw = await rawClient(server.url);
    const key = '/expired/org.apache.dubbo.demo.DemoService/providers';
    const pushes: string[][] = [];
    try {
      // An SDK that died long ago, never swept.
      await raw.hset(key, OTHER_URL, String(Date.now() - 1_000));
      await adapter.subscribe(DUBBO_SERVICE, (urls) => pushes.push(urls.map(formatProviderUrl)));
      assert.deepEqual(pushes, [[]]);

      // A live SDK registers; the dead one is still ignored.
      await raw.hset(key, DUBBO_URL, String(Date.now() + 60_000));
      await raw.publish(key, 'register');
      await eventually('the live provider', async () => (pushes.at(-1)?.length === 1 ? true : undefined));
      assert.deepEqual(pushes.at(-1), [DUBBO_URL]);

      // A provider that stops renewing leaves the list once its expiry passes, without any message.
      await raw.hset(key, OTHER_URL, String(Date.now() + 800));
      await raw.publish(key, 'register');
      await eventually('both providers', async () => (pushes.at(-1)?.length === 2 ? true : undefined));
      await eventually(
        'the expired provider to leave',
        async () => (pushes.at(-1)?.length === 1 ? true : undefined),
        5_000,
      );
      assert.deepEqual(pushes.at(-1), [DUBBO_URL]);
    } finally {
      await adapter.close();
      raw.disconnect();
    }
  });
});
