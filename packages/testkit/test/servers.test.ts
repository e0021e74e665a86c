// The real-server harness later registry suites rely on: ZooKeeper (standalone and a 3-node ensemble) and Redis,
// each started and stopped here, checked with real clients.

import { strict as assert } from 'node:assert';
import type net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import zookeeper from 'node-zookeeper-client';
import {
  connectZooKeeper,
  fourLetterWord,
  pidAlive,
  portRefuses,
  RespConnection,
  type RunningRedis,
  type RunningZooKeeper,
  type RunningZooKeeperEnsemble,
  startRedis,
  startZooKeeper,
  startZooKeeperEnsemble,
} from '../src/index';

const connectZk = (connectString: string) => connectZooKeeper(connectString);

const zk = {
  create: (c: zookeeper.Client, p: string, data: string, mode: number) =>
    new Promise<string>((resolve, reject) =>
      c.create(p, Buffer.from(data), mode, (e, r) => (e ? reject(e) : resolve(r))),
    ),
  get: (c: zookeeper.Client, p: string) =>
    new Promise<{ data: string; stat: zookeeper.Stat }>((resolve, reject) =>
      c.getData(p, (e, d, stat) => (e ? reject(e) : resolve({ data: d.toString('utf8'), stat }))),
    ),
};

/** Retries `fn` until it succeeds (a client riding out a server outage). */
async function eventually<T>(fn: () => Promise<T>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await sleep(200);
    }
  }
}

async function assertGone(port: number, pid: number) {
  assert.equal(await portRefuses(port), true, `port ${port} still accepts connections`);
  assert.equal(pidAlive(pid), false, `pid ${pid} still alive`);
}

describe('testkit: real ZooKeeper', function () {
  this.timeout(60_000);
  let server: RunningZooKeeper;
  let client: zookeeper.Client | undefined;

  before(async () => {
    server = await startZooKeeper();
  });
  after(async () => {
    client?.close();
    await server?.stop();
  });

  it('answers ruok/srvr on loopback and serves a real client (ephemeral node)', async () => {
    assert.equal(server.host, '127.0.0.1');
    assert.equal(server.connectString, `127.0.0.1:${server.port}`);
    assert.equal(await fourLetterWord(server.port, 'ruok'), 'imok');
    assert.match(await fourLetterWord(server.port, 'srvr'), /Mode: standalone/);
    client = await connectZk(server.connectString);
    await zk.create(client, '/eph', 'hello', zookeeper.CreateMode.EPHEMERAL);
    const { data, stat } = await zk.get(client, '/eph');
    assert.equal(data, 'hello');
    assert.deepEqual(stat.ephemeralOwner, client.getSessionId());
  });

  it('restart() keeps a persistent node, same port, and the client reconnects', async () => {
    await zk.create(client!, '/kept', 'durable', zookeeper.CreateMode.PERSISTENT);
    const oldPid = server.pid;
    const disconnected = new Promise<void>((r) => client!.once('disconnected', () => r()));
    const reconnected = disconnected.then(() => new Promise<void>((r) => client!.once('connected', () => r())));
    await server.restart();
    assert.notEqual(server.pid, oldPid);
    assert.equal(pidAlive(oldPid), false);
    // node-zookeeper-client has no timeout on the ConnectResponse: if it reconnected while the JVM was still starting
    // (port open, no answer yet) it would wait forever. A client that has not reconnected 5 s after the server serves
    // gets its socket closed, which makes it try again: that is the client's known gap, not the harness's.
    const nudge = setTimeout(
      () => (client as unknown as { connectionManager: { socket?: net.Socket } }).connectionManager.socket?.destroy(),
      5_000,
    );
    await Promise.all([disconnected, reconnected]).finally(() => clearTimeout(nudge));
    assert.equal((await zk.get(client!, '/kept')).data, 'durable');
  });

  it('after stop(), the port refuses connections and the JVM is gone', async () => {
    client!.close();
    client = undefined;
    const { port, pid } = server;
    await server.stop();
    await assertGone(port, pid);
  });
});

describe('testkit: real ZooKeeper ensemble', function () {
  this.timeout(60_000);
  let ensemble: RunningZooKeeperEnsemble;
  let client: zookeeper.Client | undefined;

  before(async () => {
    ensemble = await startZooKeeperEnsemble(3);
  });
  after(async () => {
    client?.close();
    await ensemble?.stop();
  });

  it('forms a quorum of three on distinct loopback ports', async () => {
    const ports = ensemble.nodes.flatMap((n) => [n.port, n.peerPort, n.electionPort]);
    assert.equal(new Set(ports).size, 9);
    const modes = await Promise.all(ensemble.nodes.map((n) => n.mode()));
    assert.deepEqual(modes.filter((m) => m === 'leader').length, 1, String(modes));
    assert.deepEqual(modes.filter((m) => m === 'follower').length, 2, String(modes));
    assert.equal(ensemble.connectString.split(',').length, 3);
  });

  it('survives stopping one node (the leader): a client still writes and reads', async () => {
    client = await connectZk(ensemble.connectString);
    await zk.create(client, '/before', 'x', zookeeper.CreateMode.PERSISTENT);
    const leader = await ensemble.leader();
    const pid = leader.pid!;
    await leader.stop();
    await assertGone(leader.port, pid);
    await ensemble.waitForQuorum(20_000);
    await eventually(() =>
      zk.create(client!, '/after', 'y', zookeeper.CreateMode.PERSISTENT).catch(async (e) => {
        // A retried create may have gone through before the connection dropped.
        if ((e as zookeeper.Exception).getCode?.() === zookeeper.Exception.NODE_EXISTS) return '/after';
        throw e;
      }),
    );
    assert.equal((await eventually(() => zk.get(client!, '/before'))).data, 'x');
    assert.equal((await zk.get(client!, '/after')).data, 'y');

    await leader.start();
    assert.equal(leader.running, true);
    assert.match((await leader.mode()) ?? '', /^(leader|follower)$/);
  });
});

describe('testkit: real Redis', function () {
  this.timeout(30_000);
  let redis: RunningRedis;
  const conns: RespConnection[] = [];
  const connect = async () => {
    const c = await RespConnection.connect(redis.port);
    conns.push(c);
    return c;
  };

  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    for (const c of conns) c.close();
    await redis?.stop();
  });

  it('SET/GET over raw RESP', async () => {
    assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
    const c = await connect();
    assert.equal(await c.call('SET', 'k', 'v1'), 'OK');
    assert.equal(await c.call('GET', 'k'), 'v1');
    assert.equal(await c.call('GET', 'missing'), null);
    // Persistence is off, as configured.
    assert.deepEqual(await c.call('CONFIG', 'GET', 'save'), ['save', '']);
    assert.deepEqual(await c.call('CONFIG', 'GET', 'appendonly'), ['appendonly', 'no']);
  });

  it('PUBLISH/SUBSCRIBE between two connections', async () => {
    const sub = await connect();
    const pub = await connect();
    assert.deepEqual(await sub.call('SUBSCRIBE', 'chan'), ['subscribe', 'chan', 1]);
    assert.equal(await pub.call('PUBLISH', 'chan', 'hi'), 1);
    assert.deepEqual(await sub.next(), ['message', 'chan', 'hi']);
  });

  it('restart() comes back on the same port (data not persisted)', async () => {
    const oldPid = redis.pid;
    await redis.restart();
    assert.notEqual(redis.pid, oldPid);
    assert.equal(pidAlive(oldPid), false);
    const c = await connect();
    assert.equal(await c.call('PING'), 'PONG');
    assert.equal(await c.call('GET', 'k'), null);
  });

  it('after stop(), the port refuses connections and redis-server is gone', async () => {
    const { port, pid } = redis;
    await redis.stop();
    await assertGone(port, pid);
  });
});
