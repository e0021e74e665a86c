// The ZooKeeper facade against a real ZooKeeper: provider rewriting both ways, watches, the app's own session, request
// order under pipelining, the stock Java zkCli, hostile input, and an upstream restart.

import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import net from 'node:net';
import zookeeper from 'node-zookeeper-client';
import {
  decodeNodeName,
  encodeNodeName,
  formatProviderUrl,
  parseProviderUrl,
  RecordingTakeover,
} from '@meshport/registry-core';
import { ZooKeeperFacade, ZOOKEEPER_FACADE_DEFAULTS } from '../src/index';
import { connectZooKeeper, eventually, type RunningZooKeeper, startZooKeeper } from '@meshport/testkit';

const IFACE = 'com.nodejs.test.TestService';
const PROVIDERS = `/sofa-rpc/${IFACE}/providers`;
const SOFA_NODE_URL =
  'bolt://192.168.1.20:12200?startTime=1700000000000&pid=4242&uniqueId=&dynamic=true&appName=demo&timeout=3000' +
  `&serialization=hessian2&weight=100&accepts=100000&language=nodejs&rpcVer=50400&protocol=&interface=${IFACE}&version=1.0&group=SOFA`;
const REMOTE_URL = `bolt://10.9.9.9:12200?interface=${IFACE}&version=1.0&weight=100&appName=remote`;
const INBOUND = { host: '10.0.0.1', port: 12220 };
const OUTBOUND = { host: '127.0.0.1', port: 12201 };
const ZK_CLI = process.env.MESHPORT_ZKCLI ?? '/usr/share/zookeeper/bin/zkCli.sh';

/** The sofa-rpc-node URL of another app process: every app's provider lands at the one inbound address upstream. */
function appUrlOfPid(pid: number): string {
  return SOFA_NODE_URL.replace('pid=4242', `pid=${pid}`);
}

function withEndpoint(url: string, to: { host: string; port: number }): string {
  return formatProviderUrl({ ...parseProviderUrl(url), host: to.host, port: to.port });
}

const connect = (connectString: string, options: zookeeper.ClientOptions = {}) =>
  connectZooKeeper(connectString, { sessionTimeout: 8_000, ...options });

function call<T>(start: (cb: (err: Error | null, value: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => start((err, value) => (err ? reject(err) : resolve(value))));
}

const mkdirp = (c: zookeeper.Client, path: string) =>
  call<string>((cb) => c.mkdirp(path, null, zookeeper.CreateMode.PERSISTENT, cb));
const create = (c: zookeeper.Client, path: string, mode = zookeeper.CreateMode.EPHEMERAL, data: Buffer | null = null) =>
  call<string>((cb) => c.create(path, data, mode, cb));
const children = (c: zookeeper.Client, path: string, watcher?: (e: zookeeper.WatcherEvent) => void) =>
  call<string[]>((cb) => c.getChildren(path, watcher, cb));
const exists = (c: zookeeper.Client, path: string, watcher?: (e: zookeeper.WatcherEvent) => void) =>
  call<zookeeper.Stat | null>((cb) => c.exists(path, watcher, cb));
const remove = (c: zookeeper.Client, path: string) => call<void>((cb) => c.remove(path, -1, (e) => cb(e, undefined)));
const getData = (c: zookeeper.Client, path: string) => call<Buffer>((cb) => c.getData(path, cb));

function closeClient(client: zookeeper.Client): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 2_000);
    client.once('disconnected', () => {
      clearTimeout(timer);
      resolve();
    });
    client.close();
  });
}

/** Counts the times a client lost its connection: a reply out of order or a closed socket both show here. */
function disconnections(client: zookeeper.Client): { count: number } {
  const seen = { count: 0 };
  client.on('disconnected', () => seen.count++);
  return seen;
}

/** Resolves once the server closes the socket after `payload` (or rejects if it stays open). */
function sendAndExpectClose(port: number, payload: Buffer, timeoutMs = 5_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('the facade kept the connection open'));
    }, timeoutMs);
    socket.on('connect', () => socket.write(payload));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.resume();
  });
}

function zkCli(port: number, ...command: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(ZK_CLI, ['-server', `127.0.0.1:${port}`, ...command], { timeout: 40_000 }, (error, stdout, stderr) => {
      if (error?.killed) reject(new Error(`zkCli ${command.join(' ')} timed out:\n${stdout}\n${stderr}`));
      else resolve(`${stdout}\n${stderr}`);
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Raw jute, for a client that splits its packets anywhere.

function frame(body: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeInt32BE(body.length);
  return Buffer.concat([len, body]);
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

function ustring(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  return Buffer.concat([int32(bytes.length), bytes]);
}

/** protocolVersion 0, lastZxidSeen 0, timeOut, sessionId 0 (new), a 16-byte empty password; no readOnly byte. */
function connectRequest(timeoutMs: number): Buffer {
  return frame(
    Buffer.concat([int32(0), Buffer.alloc(8), int32(timeoutMs), Buffer.alloc(8), int32(16), Buffer.alloc(16)]),
  );
}

function pathRequest(xid: number, type: number, path: string, watch: boolean): Buffer {
  return frame(Buffer.concat([int32(xid), int32(type), ustring(path), Buffer.from([watch ? 1 : 0])]));
}

/** Collects whole reply frames from a raw socket. */
class RawReplies {
  private buffered = Buffer.alloc(0);
  private readonly frames: Buffer[] = [];
  private waiter: (() => void) | undefined;

  constructor(socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      while (this.buffered.length >= 4 && this.buffered.length >= 4 + this.buffered.readInt32BE(0)) {
        const end = 4 + this.buffered.readInt32BE(0);
        this.frames.push(this.buffered.subarray(4, end));
        this.buffered = this.buffered.subarray(end);
      }
      this.waiter?.();
    });
  }

  async next(n: number): Promise<Buffer[]> {
    const deadline = Date.now() + 5_000;
    while (this.frames.length < n) {
      if (Date.now() > deadline) assert.fail(`timed out waiting for ${n} replies`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return this.frames.splice(0, n);
  }
}

/** The children of a GetChildren(2) reply body (after xid, zxid, err). */
function childrenOf(reply: Buffer): string[] {
  const names: string[] = [];
  let at = 16;
  const count = reply.readInt32BE(at);
  at += 4;
  for (let i = 0; i < count; i++) {
    const len = reply.readInt32BE(at);
    names.push(reply.toString('utf8', at + 4, at + 4 + len));
    at += 4 + len;
  }
  return names;
}

describe('@meshport/registry-zookeeper ZooKeeperFacade against a real ZooKeeper', function () {
  this.timeout(60_000);
  let server: RunningZooKeeper;
  let takeover: RecordingTakeover;
  let facade: ZooKeeperFacade;
  let facadeAddress: string;
  let direct: zookeeper.Client;
  const clients: zookeeper.Client[] = [];
  const warnings: string[] = [];

  /** A client of the app, pointed at the facade. */
  async function appClient(options: zookeeper.ClientOptions = {}): Promise<zookeeper.Client> {
    const client = await connect(facadeAddress, options);
    clients.push(client);
    return client;
  }

  before(async () => {
    server = await startZooKeeper();
    takeover = new RecordingTakeover(INBOUND, OUTBOUND);
    facade = new ZooKeeperFacade({
      // A dead first server: the facade moves on to the next one of the ensemble.
      upstream: `127.0.0.1:1,${server.connectString}`,
      takeover,
      logger: { warn: (_detail, message) => warnings.push(message) },
    });
    await facade.start();
    facadeAddress = `${facade.address().host}:${facade.address().port}`;
    direct = await connect(server.connectString);
  });

  after(async () => {
    await Promise.all(clients.map(closeClient));
    if (direct) await closeClient(direct);
    await facade?.close();
    await server?.stop();
  });

  it("publishes the app's provider at the inbound address and shows it the outbound address, and its own node", async () => {
    const app = await appClient();
    const appPath = `${PROVIDERS}/${encodeURIComponent(SOFA_NODE_URL)}`;
    await mkdirp(app, PROVIDERS);
    assert.equal(await create(app, appPath), appPath, "the app's create returns its own path");
    assert.deepEqual(takeover.published, [SOFA_NODE_URL]);

    const upstreamName = encodeURIComponent(withEndpoint(SOFA_NODE_URL, INBOUND));
    assert.deepEqual(await children(direct, PROVIDERS), [upstreamName]);
    const upstreamUrl = parseProviderUrl(decodeNodeName(upstreamName));
    assert.deepEqual(upstreamUrl.params, parseProviderUrl(SOFA_NODE_URL).params, 'every parameter kept, in order');

    // The app sees the outbound address, and its own node under its own name: sofa-rpc-node's publish() waits for it.
    assert.deepEqual(await children(app, PROVIDERS), [
      encodeURIComponent(withEndpoint(SOFA_NODE_URL, OUTBOUND)),
      appPath.slice(PROVIDERS.length + 1),
    ]);
    assert.deepEqual(takeover.reads.at(-1), { iface: IFACE, real: [withEndpoint(SOFA_NODE_URL, INBOUND)] });
    const other = await appClient();
    assert.deepEqual(
      await children(other, PROVIDERS),
      [encodeURIComponent(withEndpoint(SOFA_NODE_URL, OUTBOUND))],
      'another app sees only the outbound address',
    );

    // Its own node, by its own path: read and watched through the mapping.
    assert.ok(await exists(app, appPath));
    assert.equal((await getData(app, appPath))?.length ?? 0, 0);
    await remove(app, appPath);
    assert.deepEqual(takeover.withdrawn, [SOFA_NODE_URL]);
    assert.deepEqual(await children(direct, PROVIDERS), []);
    assert.equal(await exists(app, appPath), null);
  });

  it('keeps the Java (URLEncoder) node name style of a Dubbo provider', async () => {
    const app = await appClient();
    const iface = 'com.foo.BarService';
    const dir = `/dubbo/${iface}/providers`;
    const url = `dubbo://192.168.1.21:20880/${iface}?anyhost=true&application=demo app&interface=${iface}&methods=sayHello&tag=x~y(1)&side=provider`;
    const appPath = `${dir}/${encodeNodeName(url, 'java')}`;
    assert.ok(appPath.includes('+') && appPath.includes('%7E'), 'the fixture really is Java-style');
    await mkdirp(app, dir);
    assert.equal(await create(app, appPath), appPath);
    assert.deepEqual(await children(direct, dir), [encodeNodeName(withEndpoint(url, INBOUND), 'java')]);
    assert.deepEqual(await children(app, dir), [
      encodeNodeName(withEndpoint(url, OUTBOUND), 'java'),
      appPath.slice(dir.length + 1),
    ]);
    await remove(app, appPath);
    assert.deepEqual(await children(direct, dir), []);
  });

  it("delivers watches: a provider added elsewhere fires the app's child watch, and the re-read is rewritten", async () => {
    const app = await appClient();
    const iface = 'com.nodejs.test.WatchedService';
    const dir = `/sofa-rpc/${iface}/providers`;
    await mkdirp(direct, dir);
    let fired: zookeeper.WatcherEvent | undefined;
    assert.deepEqual(await children(app, dir, (e) => (fired = e)), [], 'an empty provider dir reads as empty');
    const remote = REMOTE_URL.replace(IFACE, iface);
    await create(direct, `${dir}/${encodeURIComponent(remote)}`);
    const event = await eventually('the child watch to fire', async () => fired);
    assert.equal(event.getPath(), dir);
    assert.deepEqual(await children(app, dir), [encodeURIComponent(withEndpoint(remote, OUTBOUND))]);
  });

  it('holds a provider list that goes empty for emptyHoldMs: a delete-then-create is never seen, a real deletion is', async () => {
    const app = await appClient();
    const iface = 'com.nodejs.test.HeldService';
    const dir = `/sofa-rpc/${iface}/providers`;
    const remote = `${dir}/${encodeURIComponent(REMOTE_URL.replace(IFACE, iface))}`;
    const shown = [encodeURIComponent(withEndpoint(REMOTE_URL.replace(IFACE, iface), OUTBOUND))];
    await mkdirp(direct, dir);
    await create(direct, remote);
    assert.deepEqual(await children(app, dir), shown);

    // Re-registration as sofa-rpc-node does it: the app reading in between still sees the provider.
    await remove(direct, remote);
    assert.deepEqual(await children(app, dir), shown, 'held over the gap');
    await create(direct, remote);
    assert.deepEqual(await children(app, dir), shown);

    // A real deletion: held at first, then a child-changed notification, and the re-read is empty.
    await remove(direct, remote);
    let fired: zookeeper.WatcherEvent | undefined;
    assert.deepEqual(await children(app, dir, (e) => (fired = e)), shown, 'held at first');
    const event = await eventually('the notification at the end of the hold', async () => fired, 5_000);
    assert.equal(event.getPath(), dir);
    assert.deepEqual(await children(app, dir), [], 'empty once the hold is over');
  });

  it("maps a notification about the app's own node back to the app's path", async () => {
    const app = await appClient();
    const url = appUrlOfPid(22);
    const appPath = `${PROVIDERS}/${encodeURIComponent(url)}`;
    await mkdirp(app, PROVIDERS);
    await create(app, appPath);
    let fired: zookeeper.WatcherEvent | undefined;
    assert.ok(await exists(app, appPath, (e) => (fired = e)));
    // An operator deletes the upstream node.
    await remove(direct, `${PROVIDERS}/${encodeURIComponent(withEndpoint(url, INBOUND))}`);
    const event = await eventually('the exists watch to fire', async () => fired);
    assert.equal(event.getPath(), appPath);
  });

  it("leaves the session the app's own: closing the app client removes its ephemeral provider upstream", async () => {
    const app = await connect(facadeAddress);
    const url = appUrlOfPid(23);
    await mkdirp(app, PROVIDERS);
    await create(app, `${PROVIDERS}/${encodeURIComponent(url)}`);
    const upstreamName = encodeURIComponent(withEndpoint(url, INBOUND));
    assert.ok((await children(direct, PROVIDERS)).includes(upstreamName));
    const stat = await exists(direct, `${PROVIDERS}/${upstreamName}`);
    assert.deepEqual(stat!.ephemeralOwner, app.getSessionId(), "the node belongs to the app's session");
    await closeClient(app);
    await eventually('the ephemeral node to go', async () =>
      (await children(direct, PROVIDERS)).includes(upstreamName) ? undefined : true,
    );
    await eventually('the sidecar to be told', async () => (takeover.withdrawn.includes(url) ? true : undefined));
  });

  it('answers 500 pipelined requests in order, rewritten replies among them, without a disconnect', async () => {
    const app = await appClient();
    const lost = disconnections(app);
    const remote = `/sofa-rpc/${IFACE}.Pipelined/providers`;
    await mkdirp(direct, remote);
    await create(direct, `${remote}/${encodeURIComponent(REMOTE_URL)}`);
    await mkdirp(app, '/pipeline');
    const requests: Promise<unknown>[] = [];
    for (let i = 0; i < 500; i++) {
      switch (i % 5) {
        case 0:
          requests.push(create(app, `/pipeline/n${i}`, zookeeper.CreateMode.PERSISTENT, Buffer.from(String(i))));
          break;
        case 1:
          requests.push(exists(app, `/pipeline/n${i - 1}`));
          break;
        case 2:
          requests.push(getData(app, `/pipeline/n${i - 2}`));
          break;
        case 3:
          requests.push(children(app, remote));
          break;
        default:
          requests.push(create(app, `${PROVIDERS}/${encodeURIComponent(appUrlOfPid(10_000 + i))}`));
      }
    }
    const results = await Promise.all(requests);
    for (let i = 0; i < 500; i++) {
      if (i % 5 === 1) assert.ok(results[i], `exists #${i}`);
      if (i % 5 === 2) assert.equal(String(results[i]), String(i - 2));
      if (i % 5 === 3) assert.deepEqual(results[i], [encodeURIComponent(withEndpoint(REMOTE_URL, OUTBOUND))]);
    }
    assert.equal(lost.count, 0);
  });

  it('splits packets wherever they are cut: byte by byte, and a pipelined batch split at every boundary', async () => {
    const iface = 'com.nodejs.test.SplitService';
    const dir = `/sofa-rpc/${iface}/providers`;
    const remote = REMOTE_URL.replace(IFACE, iface);
    await mkdirp(direct, dir);
    await create(direct, `${dir}/${encodeURIComponent(remote)}`);
    const shown = [encodeURIComponent(withEndpoint(remote, OUTBOUND))];

    const socket = net.connect({ host: '127.0.0.1', port: facade.address().port });
    socket.setNoDelay(true);
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    const replies = new RawReplies(socket);
    let closed = false;
    socket.on('close', () => (closed = true));
    try {
      for (const byte of connectRequest(8_000)) {
        socket.write(Buffer.from([byte]));
        await new Promise((resolve) => setImmediate(resolve));
      }
      const [connectResponse] = await replies.next(1);
      assert.ok(connectResponse!.readInt32BE(4) > 0, 'a session with a timeout');

      let xid = 1;
      const batchOf = (first: number) =>
        Buffer.concat([
          pathRequest(first, 12, dir, false),
          pathRequest(first + 1, 3, '/', false),
          pathRequest(first + 2, 8, dir, false),
        ]);
      const size = batchOf(1).length;
      for (let cut = 1; cut < size; cut++) {
        const batch = batchOf(xid);
        socket.write(batch.subarray(0, cut));
        await new Promise((resolve) => setImmediate(resolve));
        socket.write(batch.subarray(cut));
        const [children2, stat, children1] = await replies.next(3);
        assert.deepEqual(
          [children2!, stat!, children1!].map((r) => r.readInt32BE(0)),
          [xid, xid + 1, xid + 2],
          `cut at ${cut}`,
        );
        assert.deepEqual(
          [children2!, stat!, children1!].map((r) => r.readInt32BE(12)),
          [0, 0, 0],
        );
        assert.deepEqual(childrenOf(children2!), shown);
        assert.deepEqual(childrenOf(children1!), shown);
        xid += 3;
      }
      assert.equal(closed, false);
    } finally {
      socket.destroy();
    }
  });

  it('serves the stock Java client (zkCli)', async function () {
    this.timeout(120_000);
    const port = facade.address().port;
    const created = await zkCli(port, 'create', '/zkcli-x', 'hello');
    assert.match(created, /Created \/zkcli-x/);
    assert.match(await zkCli(port, 'get', '/zkcli-x'), /^hello$/m);
    const iface = 'com.nodejs.test.CliService';
    const dir = `/sofa-rpc/${iface}/providers`;
    const remote = REMOTE_URL.replace(IFACE, iface);
    await mkdirp(direct, dir);
    await create(direct, `${dir}/${encodeURIComponent(remote)}`);
    const listed = await zkCli(port, 'ls', dir);
    assert.ok(listed.includes(`[${encodeURIComponent(withEndpoint(remote, OUTBOUND))}]`), listed);
  });

  it('disconnects an app that sends a 2 GiB length or garbage, and no other client', async () => {
    const app = await appClient();
    const lost = disconnections(app);
    await mkdirp(app, '/bad-input');
    const port = facade.address().port;
    const before = warnings.length;
    await sendAndExpectClose(port, Buffer.from([0x7f, 0xff, 0xff, 0xff, 1, 2, 3]));
    await sendAndExpectClose(port, Buffer.from([0x80, 0x00, 0x00, 0x00]));
    await sendAndExpectClose(port, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await sendAndExpectClose(port, Buffer.from([0, 0, 0, 3, 0x61, 0x62, 0x63]));
    assert.ok(warnings.length >= before + 4, 'each refusal is logged');

    // Within a session: a packet above maxPacketBytes closes that connection before its body is read.
    const raw = net.connect({ host: '127.0.0.1', port });
    const replies = new RawReplies(raw);
    const rawClosed = new Promise<void>((resolve) => raw.on('close', () => resolve()));
    raw.on('error', () => {});
    raw.write(connectRequest(8_000));
    await replies.next(1);
    raw.write(Buffer.concat([int32(ZOOKEEPER_FACADE_DEFAULTS.maxPacketBytes + 1), int32(1), int32(5)]));
    await rawClosed;

    assert.equal(await create(app, '/bad-input/ok', zookeeper.CreateMode.PERSISTENT), '/bad-input/ok');
    assert.equal(lost.count, 0, 'the other client was not touched');
  });

  it('closes the app connection when ZooKeeper goes, and the app resumes its session through the facade', async function () {
    this.timeout(90_000);
    const app = await appClient({ sessionTimeout: 10_000 });
    const sessionId = app.getSessionId().toString('hex');
    const url = appUrlOfPid(24);
    const appPath = `${PROVIDERS}/${encodeURIComponent(url)}`;
    const upstreamPath = `${PROVIDERS}/${encodeURIComponent(withEndpoint(url, INBOUND))}`;
    await mkdirp(app, PROVIDERS);
    await create(app, appPath);
    // A watch on its own node, which the client re-arms by the app's path (SetWatches) after reconnecting.
    let fired: zookeeper.WatcherEvent | undefined;
    assert.ok(await exists(app, appPath, (e) => (fired = e)));
    let disconnected = false;
    app.once('disconnected', () => (disconnected = true));
    const reconnected = new Promise<void>((resolve) => app.on('connected', () => disconnected && resolve()));
    await server.restart();
    assert.ok(disconnected, 'the app saw its connection close when ZooKeeper stopped');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      reconnected,
      new Promise(
        (_, reject) => (timer = setTimeout(() => reject(new Error('the app did not reconnect within 30 s')), 30_000)),
      ),
    ]);
    clearTimeout(timer);
    assert.equal(app.getSessionId().toString('hex'), sessionId, 'the same session');
    // A new direct client: the old one may sit in node-zookeeper-client's wait for a server that accepted it while
    // starting (the trap the facade's handshake timeout gets the app out of).
    const check = await connect(server.connectString);
    clients.push(check);
    assert.ok(await exists(check, upstreamPath), 'the ephemeral node survived');
    // The facade still knows the node as the app's: deleting it by the app's path deletes the upstream node.
    await remove(app, appPath);
    const event = await eventually('the re-armed watch to fire', async () => fired);
    assert.equal(event.getPath(), appPath);
    assert.equal(await exists(check, upstreamPath), null);
  });
});
