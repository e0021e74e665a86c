// The ZooKeeper facade's rewrites on bytes alone, no socket and no ZooKeeper: the frames are built and read back with
// node-zookeeper-client's own jute records (the encoder a real app's client uses), not with the facade's writer.

import { strict as assert } from 'node:assert';
import jute, { type Record as JuteRecord, type RecordClass } from 'node-zookeeper-client/lib/jute';
import { RewriteOnlyTakeover, parseProviderUrl, type ProviderUrl, type Takeover } from '@meshport/registry-core';
import {
  childrenChangedNotification,
  hideChildren,
  listReadOf,
  rewriteCreateReply,
  rewriteNotification,
  rewriteOwnNodeDelete,
  rewriteOwnNodePath,
  rewriteProviderCreate,
  rewriteProviderList,
  rewriteSetWatches,
  type ListRead,
  type OwnNode,
  type OwnNodes,
} from '../src/facade-rewrite';

const OP = jute.OP_CODES;
const { RequestHeader, ReplyHeader, CreateRequest, CreateResponse, DeleteRequest, ExistsRequest, GetDataRequest } =
  jute.protocol;
const { GetChildren2Request, GetChildren2Response, SetWatches, WatcherEvent } = jute.protocol;
/** create2 (ZooKeeper 3.5+) is newer than node-zookeeper-client's OP_CODES. */
const CREATE2 = 15;
const CREATE_MODE = { persistent: 0, ephemeral: 1, ephemeralSequential: 3 } as const;

const INBOUND = { host: '10.0.0.1', port: 12220 };
const OUTBOUND = { host: '127.0.0.1', port: 12201 };
const IFACE = 'com.nodejs.test.TestService';
const PROVIDERS = `/sofa-rpc/${IFACE}/providers`;
/** What sofa-rpc-node 2.x publishes (its ZooKeeper registry names the node encodeURIComponent(url)). */
const SOFA_URL =
  'bolt://192.168.1.20:12200?startTime=1700000000000&pid=4242&uniqueId=&dynamic=true&appName=demo&timeout=3000' +
  `&serialization=hessian2&weight=100&accepts=100000&language=nodejs&rpcVer=50400&protocol=&interface=${IFACE}&version=1.0&group=SOFA`;
const DUBBO_IFACE = 'org.apache.dubbo.demo.DemoService';
const DUBBO_PROVIDERS = `/dubbo/${DUBBO_IFACE}/providers`;
/** A Dubbo provider URL whose node name differs between URLEncoder and encodeURIComponent (the parentheses). */
const dubboUrl = (host: string, port: number) =>
  `dubbo://${host}:${port}/${DUBBO_IFACE}?anyhost=true&application=demo-provider&interface=${DUBBO_IFACE}` +
  '&methods=sayHello%2CsayHelloAsync&owner=ops(team)&side=provider';
/** The node name java.net.URLEncoder.encode(dubboUrl(host, port), "UTF-8") gives (printed by a JDK 17). */
const dubboJavaName = (host: string, port: number) =>
  `dubbo%3A%2F%2F${host}%3A${port}%2Forg.apache.dubbo.demo.DemoService%3Fanyhost%3Dtrue%26application%3Ddemo-provider` +
  '%26interface%3Dorg.apache.dubbo.demo.DemoService%26methods%3DsayHello%252CsayHelloAsync%26owner%3Dops%28team%29' +
  '%26side%3Dprovider';

const takeover = new RewriteOnlyTakeover(INBOUND, OUTBOUND);
const ZXID = Buffer.from('0000000100000abc', 'hex');

/** `len | records...` as a ZooKeeper client or server writes a packet. */
function packet(...records: JuteRecord[]): Buffer {
  const out = Buffer.alloc(4 + records.reduce((n, r) => n + r.byteLength(), 0));
  out.writeInt32BE(out.length - 4, 0);
  let at = 4;
  for (const record of records) at += record.serialize(out, at);
  return out;
}

const request = (xid: number, type: number, body: JuteRecord) => packet(new RequestHeader(xid, type), body);
const reply = (xid: number, err: number, body?: JuteRecord) =>
  body ? packet(new ReplyHeader(xid, ZXID, err), body) : packet(new ReplyHeader(xid, ZXID, err));

/** Reads a packet back as a header and a body of `cls`, checking the length prefix and that nothing is left over. */
function read(frame: Buffer, headerClass: RecordClass, cls: RecordClass): { header: JuteRecord; body: JuteRecord } {
  assert.equal(frame.readInt32BE(0), frame.length - 4, 'the length prefix counts the packet');
  const header = new headerClass();
  let at = 4 + header.deserialize(frame, 4);
  const body = new cls();
  at += body.deserialize(frame, at);
  assert.equal(at, frame.length, 'the packet is exactly its header and body');
  return { header, body };
}

const readRequest = (frame: Buffer, cls: RecordClass) => read(frame, RequestHeader, cls);
const readReply = (frame: Buffer, cls: RecordClass) => read(frame, ReplyHeader, cls);

function acl(): JuteRecord[] {
  return [new jute.data.ACL(31, new jute.data.Id('world', 'anyone'))];
}

function ownNodes(...nodes: OwnNode[]): OwnNodes {
  return {
    byAppPath: new Map(nodes.map((n) => [n.appPath, n])),
    byUpstreamPath: new Map(nodes.map((n) => [n.upstreamPath, n])),
  };
}

const NONE = ownNodes();

/** The app's node for SOFA_URL as the facade maps it after a create. */
function sofaOwnNode(): OwnNode {
  const created = rewriteProviderCreate(
    request(
      1,
      OP.CREATE,
      new CreateRequest(`${PROVIDERS}/${encodeURIComponent(SOFA_URL)}`, Buffer.alloc(0), acl(), CREATE_MODE.ephemeral),
    ),
    OP.CREATE,
    takeover,
  );
  assert.ok(created && 'node' in created);
  return created.node;
}

/** Parameters as name=value in order, the way an SDK reads them back. */
function paramsOf(url: ProviderUrl | string): string[] {
  const parsed = typeof url === 'string' ? parseProviderUrl(url) : url;
  return parsed.params.map((p) => `${p.name}=${p.value ?? ''}`);
}

describe('ZooKeeper facade rewrites (frames only)', () => {
  describe('a provider node the app creates', () => {
    it('goes upstream at the sidecar inbound host:port with every other parameter, the data, ACL and mode kept', () => {
      const appPath = `${PROVIDERS}/${encodeURIComponent(SOFA_URL)}`;
      const data = Buffer.from('app data');
      const frame = request(7, OP.CREATE, new CreateRequest(appPath, data, acl(), CREATE_MODE.ephemeral));
      const created = rewriteProviderCreate(frame, OP.CREATE, takeover);
      assert.ok(created && 'frame' in created, 'a provider create is rewritten');

      const { header, body } = readRequest(created.frame, CreateRequest);
      assert.equal(header.xid, 7);
      assert.equal(header.type, OP.CREATE);
      const path = body.path as string;
      assert.ok(path.startsWith(`${PROVIDERS}/`), path);
      const name = path.slice(PROVIDERS.length + 1);
      assert.equal(name, encodeURIComponent(decodeURIComponent(name)), 'spelled the way sofa-rpc-node spells names');
      const published = parseProviderUrl(decodeURIComponent(name));
      assert.deepEqual([published.scheme, published.host, published.port], ['bolt', INBOUND.host, INBOUND.port]);
      assert.deepEqual(paramsOf(published), paramsOf(SOFA_URL));
      assert.deepEqual(body.data, data);
      assert.deepEqual(
        (body.acl as JuteRecord[]).map((a) => [a.perms, (a.id as JuteRecord).scheme]),
        [[31, 'world']],
      );
      assert.equal(body.flags, CREATE_MODE.ephemeral);
      assert.deepEqual(
        { appPath: created.node.appPath, upstreamPath: created.node.upstreamPath, ephemeral: created.node.ephemeral },
        { appPath, upstreamPath: path, ephemeral: true },
      );
    });

    it('keeps the Java URLEncoder spelling of a Dubbo provider node, so Dubbo consumers read it as their own', () => {
      const appPath = `${DUBBO_PROVIDERS}/${dubboJavaName('192.168.1.30', 20880)}`;
      const frame = request(3, OP.CREATE, new CreateRequest(appPath, Buffer.alloc(0), acl(), CREATE_MODE.ephemeral));
      const created = rewriteProviderCreate(frame, OP.CREATE, takeover);
      assert.ok(created && 'frame' in created);
      const name = (readRequest(created.frame, CreateRequest).body.path as string).slice(DUBBO_PROVIDERS.length + 1);
      assert.equal(name, dubboJavaName(INBOUND.host, INBOUND.port));
      assert.equal(decodeURIComponent(name), dubboUrl(INBOUND.host, INBOUND.port), "the URL's own %2C is kept");
    });

    it('a persistent node stays persistent and is not marked ephemeral', () => {
      const frame = request(
        1,
        OP.CREATE,
        new CreateRequest(
          `${PROVIDERS}/${encodeURIComponent(SOFA_URL)}`,
          Buffer.alloc(0),
          acl(),
          CREATE_MODE.persistent,
        ),
      );
      const created = rewriteProviderCreate(frame, OP.CREATE, takeover);
      assert.ok(created && 'frame' in created);
      assert.equal(readRequest(created.frame, CreateRequest).body.flags, CREATE_MODE.persistent);
      assert.equal(created.node.ephemeral, false);
    });

    it('passes through creates that are no provider node: elsewhere, sequential, or named by no provider URL', () => {
      const elsewhere = request(
        1,
        OP.CREATE,
        new CreateRequest(`/sofa-rpc/${IFACE}/consumers/${encodeURIComponent(SOFA_URL)}`, null, acl(), 1),
      );
      assert.equal(rewriteProviderCreate(elsewhere, OP.CREATE, takeover), undefined);
      const sequential = request(
        1,
        OP.CREATE,
        new CreateRequest(`${PROVIDERS}/${encodeURIComponent(SOFA_URL)}`, null, acl(), CREATE_MODE.ephemeralSequential),
      );
      assert.equal(rewriteProviderCreate(sequential, OP.CREATE, takeover), undefined);
      const notUrl = request(1, OP.CREATE, new CreateRequest(`${PROVIDERS}/lock-0001`, null, acl(), 1));
      const refused = rewriteProviderCreate(notUrl, OP.CREATE, takeover);
      assert.ok(refused && 'unreadable' in refused, 'a name that is no provider URL is reported, not rewritten');
      assert.equal(refused.path, `${PROVIDERS}/lock-0001`);
    });

    it('a takeover that throws leaves the create as the app sent it', () => {
      const failing: Pick<Takeover, 'providerPublished'> = {
        providerPublished: () => {
          throw new Error('no inbound listener');
        },
      };
      const frame = request(
        1,
        OP.CREATE,
        new CreateRequest(`${PROVIDERS}/${encodeURIComponent(SOFA_URL)}`, null, acl(), 1),
      );
      const result = rewriteProviderCreate(frame, OP.CREATE, failing);
      assert.ok(result && 'unreadable' in result);
      assert.match(String(result.unreadable), /no inbound listener/);
    });

    it("ZooKeeper's answer names the path the app asked for, with the Stat of create2 kept", () => {
      const node = sofaOwnNode();
      const created = rewriteCreateReply(reply(1, 0, new CreateResponse(node.upstreamPath)), OP.CREATE, node);
      assert.ok(created);
      const { header, body } = readReply(created, CreateResponse);
      assert.deepEqual([header.xid, header.zxid, header.err], [1, ZXID, 0]);
      assert.equal(body.path, node.appPath);

      const stat = new jute.data.Stat();
      stat.version = 4;
      stat.ephemeralOwner = Buffer.from('00000000000000aa', 'hex');
      const frame2 = packet(new ReplyHeader(2, ZXID, 0), new CreateResponse(node.upstreamPath), stat);
      const created2 = rewriteCreateReply(frame2, CREATE2, node);
      assert.ok(created2);
      const header2 = new ReplyHeader();
      let at = 4 + header2.deserialize(created2, 4);
      const path = new CreateResponse();
      at += path.deserialize(created2, at);
      const stat2 = new jute.data.Stat();
      at += stat2.deserialize(created2, at);
      assert.equal(at, created2.length);
      assert.equal(path.path, node.appPath);
      assert.deepEqual([stat2.version, stat2.ephemeralOwner], [4, stat.ephemeralOwner]);
    });
  });

  describe("the app's own node afterwards", () => {
    it('a delete, an exists and a getData on it go to the upstream node; the watch flag and version stay', () => {
      const node = sofaOwnNode();
      const own = ownNodes(node);
      const deleted = rewriteOwnNodeDelete(request(5, OP.DELETE, new DeleteRequest(node.appPath, 3)), own);
      assert.ok(deleted);
      assert.equal(deleted.node, node);
      const del = readRequest(deleted.frame, DeleteRequest);
      assert.deepEqual(
        [del.header.xid, del.header.type, del.body.path, del.body.version],
        [5, OP.DELETE, node.upstreamPath, 3],
      );

      const exists = rewriteOwnNodePath(request(6, OP.EXISTS, new ExistsRequest(node.appPath, true)), OP.EXISTS, own);
      assert.ok(exists);
      assert.deepEqual(
        [readRequest(exists, ExistsRequest).body.path, readRequest(exists, ExistsRequest).body.watch],
        [node.upstreamPath, true],
      );
      const data = rewriteOwnNodePath(
        request(8, OP.GET_DATA, new GetDataRequest(node.appPath, false)),
        OP.GET_DATA,
        own,
      );
      assert.ok(data);
      assert.equal(readRequest(data, GetDataRequest).body.path, node.upstreamPath);
    });

    it("leaves other nodes alone: deleting someone else's provider is not the app withdrawing its own", () => {
      const node = sofaOwnNode();
      const other = `${PROVIDERS}/${encodeURIComponent(SOFA_URL.replace('pid=4242', 'pid=1'))}`;
      assert.equal(
        rewriteOwnNodeDelete(request(5, OP.DELETE, new DeleteRequest(other, -1)), ownNodes(node)),
        undefined,
      );
      assert.equal(rewriteOwnNodeDelete(request(5, OP.DELETE, new DeleteRequest(node.appPath, -1)), NONE), undefined);
      assert.equal(
        rewriteOwnNodePath(request(6, OP.EXISTS, new ExistsRequest(other, true)), OP.EXISTS, ownNodes(node)),
        undefined,
      );
    });

    it('SetWatches on reconnect re-arms its watches on the upstream node and every other watch as it was', () => {
      const node = sofaOwnNode();
      const frame = request(
        -8,
        OP.SET_WATCHES,
        new SetWatches(ZXID, [node.appPath, '/a'], [node.appPath], [PROVIDERS]),
      );
      const out = rewriteSetWatches(frame, ownNodes(node));
      assert.ok(out);
      const { header, body } = readRequest(out, SetWatches);
      assert.equal(header.xid, -8);
      assert.deepEqual(body.relativeZxid, ZXID);
      assert.deepEqual(
        [body.dataWatches, body.existWatches, body.childWatches],
        [[node.upstreamPath, '/a'], [node.upstreamPath], [PROVIDERS]],
      );
      assert.equal(
        rewriteSetWatches(request(-8, OP.SET_WATCHES, new SetWatches(ZXID, ['/a'], [], [PROVIDERS])), ownNodes(node)),
        undefined,
      );
    });

    it('a watch notification about the upstream node reaches the app under its own path', () => {
      const node = sofaOwnNode();
      const frame = packet(new ReplyHeader(-1, Buffer.alloc(8, 0xff), 0), new WatcherEvent(2, 3, node.upstreamPath));
      const out = rewriteNotification(frame, ownNodes(node));
      assert.ok(out);
      const { header, body } = readReply(out, WatcherEvent);
      assert.equal(header.xid, -1);
      assert.deepEqual([body.type, body.state, body.path], [2, 3, node.appPath]);
      const unrelated = packet(new ReplyHeader(-1, Buffer.alloc(8, 0xff), 0), new WatcherEvent(4, 3, PROVIDERS));
      assert.equal(rewriteNotification(unrelated, ownNodes(node)), undefined);
    });
  });

  describe('a provider list the app reads', () => {
    const readOf = (path: string, type = OP.GET_CHILDREN2) => {
      const read = listReadOf(request(9, type, new GetChildren2Request(path, true)), type);
      assert.ok(read && read.kind === 'providers', `${path} is a providers dir`);
      return read as Extract<ListRead, { kind: 'providers' }>;
    };

    it("becomes one local outbound endpoint per service identity, with a real provider's parameters", () => {
      const v1 = [1, 2, 3].map((i) => SOFA_URL.replace('192.168.1.20', `192.168.1.${i}`));
      const v2 = SOFA_URL.replace('192.168.1.20', '192.168.1.9').replace('version=1.0', 'version=2.0');
      const stat = new jute.data.Stat();
      stat.numChildren = 4;
      const frame = reply(9, 0, new GetChildren2Response([...v1, v2].map(encodeURIComponent), stat));
      const list = rewriteProviderList(frame, readOf(PROVIDERS), takeover, NONE);
      assert.ok(list.frame);
      assert.deepEqual(list.unreadable, []);
      const { header, body } = readReply(list.frame, GetChildren2Response);
      assert.deepEqual([header.xid, header.zxid, header.err], [9, ZXID, 0]);
      const shown = (body.children as string[]).map((n) => parseProviderUrl(decodeURIComponent(n)));
      assert.deepEqual(
        shown.map((u) => `${u.host}:${u.port}`),
        [`${OUTBOUND.host}:${OUTBOUND.port}`, `${OUTBOUND.host}:${OUTBOUND.port}`],
      );
      assert.deepEqual(
        shown.map(paramsOf),
        [paramsOf(v1[0]!), paramsOf(v2)],
        "one per version, each with a real provider's parameters",
      );
      assert.equal((body.stat as JuteRecord).numChildren, 4, "the Stat stays ZooKeeper's");
    });

    it('shows the app its own provider under the name it created, after the outbound one', () => {
      const node = sofaOwnNode();
      const upstreamName = node.upstreamPath.slice(PROVIDERS.length + 1);
      const frame = reply(9, 0, new GetChildren2Response([upstreamName], new jute.data.Stat()));
      const list = rewriteProviderList(frame, readOf(PROVIDERS), takeover, ownNodes(node));
      assert.ok(list.frame);
      const children = readReply(list.frame, GetChildren2Response).body.children as string[];
      assert.equal(children.length, 2);
      assert.equal(parseProviderUrl(decodeURIComponent(children[0]!)).host, OUTBOUND.host);
      assert.equal(children[1], node.appPath.slice(PROVIDERS.length + 1));
    });

    it("names what it shows in the style the registry's names use (URLEncoder under /dubbo)", () => {
      const frame = reply(9, 0, new GetChildren2Response([dubboJavaName('192.168.1.30', 20880)], new jute.data.Stat()));
      const list = rewriteProviderList(frame, readOf(DUBBO_PROVIDERS), takeover, NONE);
      assert.ok(list.frame);
      assert.deepEqual(readReply(list.frame, GetChildren2Response).body.children, [
        dubboJavaName(OUTBOUND.host, OUTBOUND.port),
      ]);
    });

    it('a getChildren (version 1) answer is rewritten too', () => {
      // GetChildrenResponse is a bare vector<ustring>; node-zookeeper-client only sends getChildren2, so it is built here.
      const name = Buffer.from(encodeURIComponent(SOFA_URL));
      const body = Buffer.alloc(8 + name.length);
      body.writeInt32BE(1, 0);
      body.writeInt32BE(name.length, 4);
      name.copy(body, 8);
      const header = packet(new ReplyHeader(9, ZXID, 0));
      const frame = Buffer.concat([header, body]);
      frame.writeInt32BE(frame.length - 4, 0);
      const list = rewriteProviderList(frame, readOf(PROVIDERS, OP.GET_CHILDREN), takeover, NONE);
      assert.ok(list.frame);
      const count = list.frame.readInt32BE(20);
      const length = list.frame.readInt32BE(24);
      assert.equal(count, 1);
      assert.equal(28 + length, list.frame.length);
      assert.equal(parseProviderUrl(decodeURIComponent(list.frame.toString('utf8', 28))).port, OUTBOUND.port);
    });

    it('leaves out children that are no provider URL, and passes a list of nothing but those through untouched', () => {
      const mixed = reply(
        9,
        0,
        new GetChildren2Response(['%E0%A4%A', encodeURIComponent(SOFA_URL)], new jute.data.Stat()),
      );
      const list = rewriteProviderList(mixed, readOf(PROVIDERS), takeover, NONE);
      assert.ok(list.frame);
      assert.deepEqual(list.unreadable, ['%E0%A4%A']);
      assert.equal((readReply(list.frame, GetChildren2Response).body.children as string[]).length, 1);

      const junk = reply(9, 0, new GetChildren2Response(['%E0%A4%A', 'x'], new jute.data.Stat()));
      const passed = rewriteProviderList(junk, readOf(PROVIDERS), takeover, NONE);
      assert.equal(passed.frame, undefined, 'a non-empty list never becomes an empty one');
      assert.deepEqual(passed.unreadable, ['%E0%A4%A', 'x']);
    });

    it('an empty answer stays empty (an explicit deletion), and `show` decides what an empty read shows', () => {
      const empty = reply(9, 0, new GetChildren2Response([], new jute.data.Stat()));
      const list = rewriteProviderList(empty, readOf(PROVIDERS), takeover, NONE);
      assert.ok(list.frame);
      assert.deepEqual(readReply(list.frame, GetChildren2Response).body.children, []);
      const held = rewriteProviderList(empty, readOf(PROVIDERS), takeover, NONE, () => ['held']);
      assert.ok(held.frame);
      assert.deepEqual(readReply(held.frame, GetChildren2Response).body.children, ['held']);
    });

    it("a takeover that throws passes ZooKeeper's list through and says so", () => {
      const failing: Pick<Takeover, 'providersRead'> = {
        providersRead: () => {
          throw new Error('route table closed');
        },
      };
      const frame = reply(9, 0, new GetChildren2Response([encodeURIComponent(SOFA_URL)], new jute.data.Stat()));
      const list = rewriteProviderList(frame, readOf(PROVIDERS), failing, NONE);
      assert.equal(list.frame, undefined);
      assert.match(String(list.takeoverError), /route table closed/);
    });

    it('reads of providers dirs under any root are recognised; routers dirs are hidden; other reads are not touched', () => {
      assert.deepEqual(readOf('/chroot/dubbo/group-a/com.x.Y/providers'), {
        kind: 'providers',
        type: OP.GET_CHILDREN2,
        iface: 'com.x.Y',
        path: '/chroot/dubbo/group-a/com.x.Y/providers',
      });
      const routers = listReadOf(
        request(9, OP.GET_CHILDREN2, new GetChildren2Request(`/dubbo/${DUBBO_IFACE}/routers`, true)),
        OP.GET_CHILDREN2,
      );
      assert.deepEqual(routers, { kind: 'routers', type: OP.GET_CHILDREN2 });
      assert.equal(
        listReadOf(
          request(9, OP.GET_CHILDREN2, new GetChildren2Request(`/dubbo/${DUBBO_IFACE}/consumers`, true)),
          OP.GET_CHILDREN2,
        ),
        undefined,
      );
      assert.equal(
        listReadOf(request(9, OP.GET_CHILDREN2, new GetChildren2Request('/providers', true)), OP.GET_CHILDREN2),
        undefined,
      );

      const rule = encodeURIComponent('condition://0.0.0.0/x?rule=host%3D1.2.3.4');
      const hidden = hideChildren(
        reply(9, 0, new GetChildren2Response([rule], new jute.data.Stat())),
        OP.GET_CHILDREN2,
      );
      assert.ok(hidden);
      assert.deepEqual(readReply(hidden, GetChildren2Response).body.children, []);
    });
  });

  it("the notification that ends an empty-list hold is a NodeChildrenChanged the app's client reads", () => {
    const frame = childrenChangedNotification(PROVIDERS);
    const { header, body } = readReply(frame, WatcherEvent);
    assert.deepEqual([header.xid, header.zxid, header.err], [-1, Buffer.alloc(8, 0xff), 0]);
    // ZooKeeper's Watcher.Event: EventType.NodeChildrenChanged (4), KeeperState.SyncConnected (3).
    assert.deepEqual([body.type, body.state, body.path], [4, 3, PROVIDERS]);
  });
});
