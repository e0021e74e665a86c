// The Redis facade against a real redis-server, with Dubbo-behaving RedisRegistry adapters as the app: provider
// addresses taken over both ways, the PUBLISH path, redis-cli, pipelines, pub/sub, bad clients and an upstream restart.

import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { formatProviderUrl, rewriteEndpoint, RecordingTakeover } from '@meshport/registry-core';
import { encodeCommand, RedisFacade, RedisRegistry, RespParser, type RespValue } from '../src/index';
import {
  connected,
  eventually,
  freePort,
  RespConnection,
  RespError,
  type RunningRedis,
  startRedis,
  tcpExchange,
} from '@meshport/testkit';

const run = promisify(execFile);

const IFACE = 'org.apache.dubbo.demo.DemoService';
const SERVICE = `${IFACE}:2.0`;
const KEY = `/dubbo/${IFACE}/providers`;
const APP_URL =
  `dubbo://192.168.7.7:20880/${IFACE}?anyhost=true&application=demo-provider&deprecated=false` +
  `&dubbo=2.0.2&dynamic=true&generic=false&interface=${IFACE}&methods=sayHello%2CsayHelloAsync` +
  '&pid=4243&release=2.7.23&revision=2.0&side=provider&timestamp=1700000000001&version=2.0';
const INBOUND = { host: '10.0.0.9', port: 12220 };
const OUTBOUND = { host: '127.0.0.1', port: 12221 };

const at = (url: string, where: { host: string; port: number }) => rewriteEndpoint(url, where);

async function rawClient(port: number): Promise<Redis> {
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, retryStrategy: () => null });
  client.on('error', () => {});
  await client.connect();
  return client;
}

describe('@meshport/registry-redis RedisFacade against a real redis-server', function () {
  this.timeout(60_000);
  let server: RunningRedis;
  let facade: RedisFacade;
  let takeover: RecordingTakeover;
  const warnings: { detail: object; message: string }[] = [];
  const logger = { warn: (detail: object, message: string) => warnings.push({ detail, message }) };
  const quiet = { warn: () => {} };
  let facadeUrl: string;
  let redis: Redis;
  const apps: RedisRegistry[] = [];

  /** A Dubbo-behaving registry client that only knows the facade. */
  function app(): RedisRegistry {
    const registry = new RedisRegistry({ url: facadeUrl, logger: quiet });
    apps.push(registry);
    return registry;
  }

  before(async () => {
    server = await startRedis();
    takeover = new RecordingTakeover(INBOUND, OUTBOUND);
    facade = new RedisFacade({ upstream: `127.0.0.1:${server.port}`, takeover, logger });
    assert.throws(() => facade.address(), { code: 'MESHPORT_REGISTRY_FACADE_NOT_STARTED' });
    await facade.start();
    facadeUrl = `redis://127.0.0.1:${facade.address().port}`;
    redis = await rawClient(server.port);
  });
  after(async () => {
    await Promise.all(apps.map((a) => a.close()));
    redis?.disconnect();
    await facade?.close();
    await server?.stop();
  });

  it('publishes the app provider at the inbound address and shows subscribers one provider at the outbound address', async () => {
    const provider = app();
    await provider.publish(SERVICE, APP_URL);
    const inbound = at(APP_URL, INBOUND);
    // Every parameter kept, byte for byte; only host:port differs.
    assert.equal(inbound, APP_URL.replace('192.168.7.7:20880', '10.0.0.9:12220'));
    const hash = await redis.hgetall(KEY);
    assert.deepEqual(Object.keys(hash), [inbound]);
    assert.ok(Number(hash[inbound]) > Date.now() + 50_000, 'the expiry the app wrote is kept');
    assert.ok(takeover.published.includes(APP_URL));

    const consumer = app();
    const pushes: string[][] = [];
    await consumer.subscribe(SERVICE, (urls) => pushes.push(urls.map(formatProviderUrl)));
    await eventually('the first push', async () => (pushes.length > 0 ? true : undefined));
    assert.deepEqual(pushes.at(-1), [at(APP_URL, OUTBOUND)]);
    assert.deepEqual(takeover.reads.at(-1), { iface: IFACE, real: [inbound] });

    // Unpublish: gone upstream, announced, and the consumer's list empties.
    await provider.unpublish(SERVICE, APP_URL);
    assert.deepEqual(await redis.hgetall(KEY), {});
    assert.ok(takeover.withdrawn.includes(APP_URL));
    await eventually('the empty list', async () => (pushes.at(-1)?.length === 0 ? true : undefined));
  });

  it('a provider written straight into Redis reaches a subscriber through the PUBLISH path, rewritten', async () => {
    const iface = 'org.apache.dubbo.demo.GreetingService';
    const key = `/dubbo/${iface}/providers`;
    const real = `dubbo://10.20.30.40:20881/${iface}?interface=${iface}&side=provider&weight=50`;
    const consumer = app();
    const pushes: string[][] = [];
    await consumer.subscribe(iface, (urls) => pushes.push(urls.map(formatProviderUrl)));
    await eventually('the first push', async () => (pushes.length > 0 ? true : undefined));
    assert.deepEqual(pushes.at(-1), []);

    // Another Dubbo SDK registers directly; a long-dead one was never swept.
    await redis.hset(key, `dubbo://10.9.9.9:20880/${iface}?interface=${iface}`, String(Date.now() - 5_000));
    await redis.hset(key, real, String(Date.now() + 60_000));
    await redis.publish(key, 'register');
    await eventually('the rewritten provider', async () => (pushes.at(-1)?.length === 1 ? true : undefined));
    assert.deepEqual(pushes.at(-1), [at(real, OUTBOUND)]);
    // The expired field is not shown to the sidecar either.
    assert.deepEqual(takeover.reads.at(-1), { iface, real: [real] });
  });

  it('works for redis-cli: PING, HSET, HGETALL, HKEYS, KEYS, and inline commands', async () => {
    const port = String(facade.address().port);
    const cli = async (...args: string[]) => (await run('redis-cli', ['-p', port, ...args])).stdout.trim();
    const iface = 'com.example.CliService';
    const key = `/dubbo/${iface}/providers`;
    const url = `dubbo://172.16.0.5:20880/${iface}?interface=${iface}&version=1.0`;
    const expiry = String(Date.now() + 60_000);

    assert.equal(await cli('PING'), 'PONG');
    assert.equal(await cli('HSET', key, url, expiry), '1');
    assert.deepEqual(await redis.hgetall(key), { [at(url, INBOUND)]: expiry });
    assert.deepEqual((await cli('HGETALL', key)).split('\n'), [at(url, OUTBOUND), expiry]);
    assert.equal(await cli('HKEYS', key), at(url, OUTBOUND));
    assert.equal(await cli('HVALS', key), expiry);
    assert.equal(await cli('KEYS', `/dubbo/${iface}/*`), key);
    // Not a providers key: untouched.
    assert.equal(await cli('HSET', '/dubbo/x/consumers', url, '1'), '1');
    assert.deepEqual(await redis.hkeys('/dubbo/x/consumers'), [url]);

    // A field that is no URL is written as it came, with a warning, and the connection lives on.
    const before = warnings.length;
    assert.equal(await cli('HSET', key, 'not a url', expiry), '1');
    assert.ok(warnings.length > before);
    assert.ok('not a url' in (await redis.hgetall(key)));
    // ... and the app does not see it.
    assert.deepEqual((await cli('HGETALL', key)).split('\n'), [at(url, OUTBOUND), expiry]);

    // Telnet style.
    const inline = await tcpExchange(facade.address().port, `PING\r\nHGETALL ${key}\r\n`, {
      until: (t) => t.split('\r\n').length >= 7,
    });
    assert.equal(
      inline,
      `+PONG\r\n*2\r\n$${Buffer.byteLength(at(url, OUTBOUND))}\r\n${at(url, OUTBOUND)}\r\n$13\r\n${expiry}\r\n`,
    );
  });

  it('answers 1000 pipelined commands in order, rewriting those that need it', async () => {
    await redis.del('pipe:counter');
    const client = await rawClient(facade.address().port);
    try {
      const pipeline = client.pipeline();
      for (let i = 0; i < 1000; i++) {
        if (i % 4 === 0) pipeline.incr('pipe:counter');
        else if (i % 4 === 1) pipeline.echo(`echo-${i}`);
        else if (i % 4 === 2) pipeline.hgetall('/dubbo/com.example.CliService/providers');
        else pipeline.hset('/dubbo/com.example.PipeService/providers', `dubbo://1.2.3.4:${i}/p?interface=p`, '1');
      }
      const results = await pipeline.exec();
      assert.equal(results!.length, 1000);
      const url = at(
        'dubbo://172.16.0.5:20880/com.example.CliService?interface=com.example.CliService&version=1.0',
        OUTBOUND,
      );
      results!.forEach(([error, value], i) => {
        assert.equal(error, null, `command ${i}`);
        if (i % 4 === 0) assert.equal(value, i / 4 + 1, `command ${i}`);
        else if (i % 4 === 1) assert.equal(value, `echo-${i}`);
        else if (i % 4 === 2) assert.deepEqual(Object.keys(value as object), [url]);
        else assert.equal(value, i === 3 ? 1 : 0, 'every HSET landed on the one inbound field');
      });
      // The first pipelined HSET created the field; the rest only renewed it.
      assert.deepEqual(await redis.hkeys('/dubbo/com.example.PipeService/providers'), [
        at('dubbo://1.2.3.4:3/p?interface=p', INBOUND),
      ]);
    } finally {
      client.disconnect();
    }
  });

  it('keeps replies in step around pub/sub: messages, PING, and an HGETALL after PUNSUBSCRIBE', async () => {
    const conn = await RespConnection.connect(facade.address().port);
    try {
      const key = '/dubbo/com.example.CliService/providers';
      assert.deepEqual(await conn.call('PSUBSCRIBE', '/dubbo/com.example.CliService/*', '/other/*'), [
        'psubscribe',
        '/dubbo/com.example.CliService/*',
        1,
      ]);
      assert.deepEqual(await conn.next(), ['psubscribe', '/other/*', 2]);
      await redis.publish(key, 'register');
      assert.deepEqual(await conn.next(), ['pmessage', '/dubbo/com.example.CliService/*', key, 'register']);
      assert.deepEqual(await conn.call('PING'), ['pong', '']);
      // One reply per pattern held, in an order Redis chooses; the count falls to 0.
      const first = (await conn.call('PUNSUBSCRIBE')) as [string, string, number];
      const second = (await conn.next()) as [string, string, number];
      assert.deepEqual([first[1], second[1]].sort(), ['/dubbo/com.example.CliService/*', '/other/*']);
      assert.deepEqual([first[2], second[2]], [1, 0]);
      const hash = (await conn.call('HGETALL', key)) as string[];
      assert.equal(
        hash[0],
        at('dubbo://172.16.0.5:20880/com.example.CliService?interface=com.example.CliService&version=1.0', OUTBOUND),
      );
    } finally {
      conn.close();
    }
  });

  it('rewrites an HGETALL answered inside EXEC', async () => {
    const client = await rawClient(facade.address().port);
    try {
      const results = await client.multi().ping().hgetall('/dubbo/com.example.CliService/providers').exec();
      const url = at(
        'dubbo://172.16.0.5:20880/com.example.CliService?interface=com.example.CliService&version=1.0',
        OUTBOUND,
      );
      assert.equal(results![0]![1], 'PONG');
      assert.deepEqual(Object.keys(results![1]![1] as object), [url]);
    } finally {
      client.disconnect();
    }
  });

  it('follows RESP3: HELLO 3, a subscription answered by a push, an HGETALL map rewritten', async () => {
    const key = '/dubbo/com.example.CliService/providers';
    const replies: RespValue[] = [];
    const socket = net.connect({ host: '127.0.0.1', port: facade.address().port });
    const parser = new RespParser({
      mode: 'reply',
      onValue: (v) => replies.push(v as RespValue),
      onError: (e) => assert.fail(e),
    });
    socket.on('data', (d: Buffer) => parser.write(d));
    try {
      socket.write(
        Buffer.concat([
          encodeCommand(['HELLO', '3']),
          encodeCommand(['SUBSCRIBE', 'resp3-channel']),
          encodeCommand(['HGETALL', key]),
          encodeCommand(['PING']),
        ]),
      );
      await eventually('four replies', async () => (replies.length >= 4 ? true : undefined), 5_000);
      assert.equal(replies[0]!.type, '%');
      assert.equal(replies[1]!.type, '>');
      const map = replies[2]!;
      assert.equal(map.type, '%');
      const items = (map as { items: { data: Buffer }[] }).items.map((i) => i.data.toString());
      assert.equal(
        items[0],
        at('dubbo://172.16.0.5:20880/com.example.CliService?interface=com.example.CliService&version=1.0', OUTBOUND),
      );
      assert.equal(items.length, 2);
      assert.deepEqual(replies[3], { type: '+', text: 'PONG' });
    } finally {
      socket.destroy();
    }
  });

  it('answers garbage and a 2 GiB bulk claim as Redis does and closes only that connection', async () => {
    const bystander = await RespConnection.connect(facade.address().port);
    try {
      const payloads = [
        '*1\r\n$4\r\nPING\r\n*1\r\n!garbage\r\n',
        '*abc\r\n',
        `*2\r\n$3\r\nSET\r\n$${2 * 1024 ** 3}\r\n${'x'.repeat(4096)}`,
      ];
      for (const payload of payloads) {
        const direct = await tcpExchange(server.port, payload);
        const viaFacade = await tcpExchange(facade.address().port, payload);
        assert.match(viaFacade, /-ERR Protocol error: /);
        assert.equal(viaFacade, direct, `same answer as Redis for ${JSON.stringify(payload.slice(0, 30))}`);
      }
      assert.equal(await bystander.call('PING'), 'PONG');
    } finally {
      bystander.close();
    }
  });

  it('an error reply passes through untouched', async () => {
    const conn = await RespConnection.connect(facade.address().port);
    try {
      await redis.set('/dubbo/com.example.Str/providers', 'x');
      await assert.rejects(
        conn.call('HGETALL', '/dubbo/com.example.Str/providers'),
        (e: unknown) => e instanceof RespError && /^WRONGTYPE/.test(e.message),
      );
      assert.equal(await conn.call('PING'), 'PONG');
    } finally {
      conn.close();
    }
  });

  it('closes the app connection when Redis goes away; the app reconnects and its provider is back', async () => {
    const provider = app();
    await provider.publish(SERVICE, APP_URL);
    await connected(provider);
    const conn = await RespConnection.connect(facade.address().port);
    assert.equal(await conn.call('PING'), 'PONG');
    await server.restart();
    await assert.rejects(conn.next(5_000), /connection closed/);
    const fresh = await eventually('the restarted server', async () => rawClient(server.port));
    try {
      await eventually('the provider written again', async () =>
        (await fresh.hgetall(KEY))[at(APP_URL, INBOUND)] ? true : undefined,
      );
      await connected(provider);
    } finally {
      fresh.disconnect();
    }
    redis.disconnect();
    redis = await rawClient(server.port);
  });

  it('refuses to listen twice on a taken port, and close() is idempotent', async () => {
    const port = await freePort();
    const a = new RedisFacade({
      listen: { port },
      upstream: { host: '127.0.0.1', port: server.port },
      takeover,
      logger,
    });
    const b = new RedisFacade({
      listen: { port },
      upstream: { host: '127.0.0.1', port: server.port },
      takeover,
      logger,
    });
    await a.start();
    try {
      await assert.rejects(b.start(), /EADDRINUSE/);
      assert.equal(a.address().port, port);
    } finally {
      await a.close();
      await a.close();
      await b.close();
    }
  });
});
