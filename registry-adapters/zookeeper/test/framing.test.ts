// The ZooKeeper adapter reads its server's replies a frame at a time whatever the chunking (the adapter splits the
// stream itself; node-zookeeper-client's own splitting copied the rest of a read once per frame): a fake server on
// loopback sends the replies and watch events of a subscription in one write, byte by byte, and in 7-byte pieces.

import { strict as assert } from 'node:assert';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { ZooKeeperRegistry } from '../src/index';
import { eventually } from '@meshport/testkit';

const SERVICE = 'com.example.Framed:1.0';
const PROVIDERS = '/sofa-rpc/com.example.Framed/providers';
const URL_A = 'bolt://10.0.0.1:12200?interface=com.example.Framed&version=1.0&weight=100';
const URL_B = 'bolt://10.0.0.2:12200?interface=com.example.Framed&version=1.0&weight=100';
const OP_GET_CHILDREN2 = 12;
const XID_NOTIFICATION = -1;
const XID_PING = -2;
const EVENT_NODE_CHILDREN_CHANGED = 4;
const STATE_SYNC_CONNECTED = 3;

function int(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

function ustring(s: string): Buffer {
  const bytes = Buffer.from(s, 'utf8');
  return Buffer.concat([int(bytes.length), bytes]);
}

function frame(...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([int(body.length), body]);
}

/** len | xid | zxid | err | body */
function reply(xid: number, body: Buffer = Buffer.alloc(0)): Buffer {
  return frame(int(xid), Buffer.alloc(8), int(0), body);
}

function childrenChanged(path: string): Buffer {
  return frame(
    int(XID_NOTIFICATION),
    Buffer.alloc(8, 0xff),
    int(0),
    int(EVENT_NODE_CHILDREN_CHANGED),
    int(STATE_SYNC_CONNECTED),
    ustring(path),
  );
}

function getChildren2Reply(xid: number, names: string[]): Buffer {
  // children vector<ustring>, then a Stat (68 bytes; nothing in it is read by the adapter).
  return reply(xid, Buffer.concat([int(names.length), ...names.map(ustring), Buffer.alloc(68)]));
}

type Chunking = (bytes: Buffer) => Buffer[];
const CHUNKINGS: Record<string, Chunking> = {
  'one write': (bytes) => [bytes],
  'byte by byte': (bytes) => [...bytes].map((b) => Buffer.from([b])),
  '7-byte pieces': (bytes) =>
    Array.from({ length: Math.ceil(bytes.length / 7) }, (_, i) => bytes.subarray(i * 7, i * 7 + 7)),
};

/**
 * Answers the session handshake, pings and getChildren2 on PROVIDERS with `listing()`; every answer goes out with
 * `noise` watch events for paths nobody watches in front of it, cut by `chunking`, one piece per millisecond.
 */
function fakeZooKeeper(chunking: Chunking, listing: () => string[], noise: number) {
  const sockets = new Set<net.Socket>();
  let queue = Promise.resolve();
  const send = (socket: net.Socket, bytes: Buffer) => {
    queue = queue.then(async () => {
      for (const piece of chunking(bytes)) {
        if (socket.destroyed) return;
        socket.write(piece);
        await sleep(chunking === CHUNKINGS['one write'] ? 0 : 1);
      }
    });
  };
  const unwatched = () => Buffer.concat(Array.from({ length: noise }, (_, i) => childrenChanged(`/elsewhere/${i}`)));
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = Buffer.alloc(0);
    let handshaken = false;
    socket.on('data', (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 4 && buffered.length >= 4 + buffered.readInt32BE(0)) {
        const body = buffered.subarray(4, 4 + buffered.readInt32BE(0));
        buffered = buffered.subarray(4 + body.length);
        if (!handshaken) {
          handshaken = true;
          // ConnectResponse: protocolVersion, timeOut, sessionId, passwd
          send(socket, frame(int(0), int(30_000), Buffer.from([0, 0, 0, 0, 0, 0, 0, 7]), int(16), Buffer.alloc(16, 1)));
          continue;
        }
        const xid = body.readInt32BE(0);
        const type = body.readInt32BE(4);
        if (xid === XID_PING) send(socket, reply(XID_PING));
        else if (type === OP_GET_CHILDREN2)
          send(socket, Buffer.concat([unwatched(), getChildren2Reply(xid, listing())]));
        else socket.destroy(); // nothing else is asked in this test
      }
    });
  });
  return {
    server,
    /** The providers changed: a watch event for PROVIDERS, behind the noise. */
    changed: () => {
      for (const socket of sockets) send(socket, Buffer.concat([unwatched(), childrenChanged(PROVIDERS)]));
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

describe('@meshport/registry-zookeeper: replies framed whatever the chunking', function () {
  this.timeout(30_000);

  for (const [name, chunking] of Object.entries(CHUNKINGS)) {
    it(`subscribes and follows a change with the replies sent ${name}`, async () => {
      let names = [encodeURIComponent(URL_A)];
      const zk = fakeZooKeeper(chunking, () => names, name === 'byte by byte' ? 5 : 40);
      await new Promise<void>((resolve) => zk.server.listen(0, '127.0.0.1', resolve));
      const { port } = zk.server.address() as net.AddressInfo;
      const adapter = new ZooKeeperRegistry({ connectString: `127.0.0.1:${port}`, logger: { warn: () => {} } });
      try {
        const seen: string[][] = [];
        await adapter.subscribe(SERVICE, (urls) => seen.push(urls.map((u) => `${u.host}:${u.port}`)));
        await eventually('the first list', async () => (seen.length >= 1 ? true : undefined));
        assert.deepEqual(seen[0], ['10.0.0.1:12200']);
        names = [encodeURIComponent(URL_A), encodeURIComponent(URL_B)];
        zk.changed();
        await eventually('the changed list', async () => (seen.length >= 2 ? true : undefined));
        assert.deepEqual(seen, [['10.0.0.1:12200'], ['10.0.0.1:12200', '10.0.0.2:12200']]);
        assert.equal(adapter.state, 'connected');
      } finally {
        await adapter.close();
        await zk.close();
      }
    });
  }
});
