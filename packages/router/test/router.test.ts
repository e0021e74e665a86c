// The router end to end on loopback: caller -> outbound -> inbound -> provider, and back.

import { strict as assert } from 'node:assert';
import pino from 'pino';
import { BoltStatus, DubboStatus, decodeFrame, type FrameHeader } from '@meshport/protocol';
import { MemoryRouteTable, createRouter, routeKey, type RouterHandle } from '../src/index';
import { RouteKeys } from '../src/route-key';
import { boltRequest, dubboCall, type EchoProvider, startEchoProvider } from '@meshport/testkit';
import { FrameClient, echoedText } from './helpers/peers';

const quiet = pino({ level: 'silent' });

describe('router: two hops', () => {
  let provider: EchoProvider;
  let consumerSide: RouterHandle;
  let providerSide: RouterHandle;
  let client: FrameClient;

  beforeEach(async () => {
    provider = await startEchoProvider();
    const providerRoutes = new MemoryRouteTable()
      .setInbound('com.example.EchoService:1.0', { host: '127.0.0.1', port: provider.port })
      .setInbound('org.example.Greeter:2.0', { host: '127.0.0.1', port: provider.port });
    providerSide = createRouter({ routeTable: providerRoutes, outbound: false, admin: false, logger: quiet });
    await providerSide.start();
    const inbound = { host: '127.0.0.1', port: providerSide.address('inbound').port };
    const consumerRoutes = new MemoryRouteTable()
      .setOutbound('com.example.EchoService:1.0', { endpoints: [inbound] })
      .setOutbound('org.example.Greeter:2.0', { endpoints: [inbound] });
    consumerSide = createRouter({ routeTable: consumerRoutes, inbound: false, admin: false, logger: quiet });
    await consumerSide.start();
    client = await FrameClient.connect(consumerSide.address('outbound').port);
  });

  afterEach(async () => {
    client.close();
    await consumerSide.drain(0);
    await providerSide.drain(0);
    await provider.close();
  });

  it('forwards Bolt and Dubbo on one port, and every answer carries its caller id and its own body', async () => {
    client.send(boltRequest(7, 'com.example.EchoService:1.0', 'bolt-7'));
    client.send(dubboCall(2n ** 40n, 'org.example.Greeter', '2.0', 'hello', 'dubbo-big'));
    client.send(boltRequest(-5, 'com.example.EchoService:1.0', 'bolt-minus-5'));
    await client.waitFor(3);
    const byId = new Map(client.answers.map((a) => [String(a.header.requestId), a]));
    assert.equal(byId.get('7')?.frame.toString('latin1').endsWith('bolt-7'), true);
    assert.equal(byId.get('-5')?.frame.toString('latin1').endsWith('bolt-minus-5'), true);
    assert.equal(echoedText(byId.get(String(2n ** 40n))!.frame), 'dubbo-big');
    assert.equal(byId.get('7')?.header.status, BoltStatus.SUCCESS);
    assert.equal(byId.get(String(2n ** 40n))?.header.status, DubboStatus.OK);
    assert.equal(provider.seen.length, 3);
  });

  it('answers a service with no route: Bolt NO_PROCESSOR, Dubbo 60 SERVICE_NOT_FOUND, with a message', async () => {
    client.send(boltRequest(1, 'com.example.Nobody:1.0', 'x'));
    client.send(dubboCall(2, 'org.example.Nobody', '1.0', 'm', 'x'));
    await client.waitFor(2);
    const [bolt, dubbo] = [
      client.answers.find((a) => a.header.protocol === 'bolt')!,
      client.answers.find((a) => a.header.protocol === 'dubbo')!,
    ];
    assert.equal(bolt.header.status, BoltStatus.NO_PROCESSOR);
    assert.equal(bolt.header.requestId, 1);
    assert.match(bolt.frame.toString('utf8'), /no route for service com\.example\.Nobody:1\.0/);
    assert.equal(dubbo.header.status, DubboStatus.SERVICE_NOT_FOUND);
    assert.equal(dubbo.header.requestId, '2');
    assert.match(dubbo.frame.toString('utf8'), /no route for service org\.example\.Nobody:1\.0/);
    assert.equal(provider.seen.length, 0);
  });

  it('slows a caller that pipelines a burst instead of shedding it: 4000 at once, default limits, all answered OK', async () => {
    const burst = [];
    for (let i = 0; i < 4000; i++) burst.push(boltRequest(i, 'com.example.EchoService:1.0', `burst-${i}`));
    client.send(Buffer.concat(burst));
    await client.waitFor(4000, 20_000);
    const statuses = new Set(client.answers.map((a) => a.header.status));
    assert.deepEqual([...statuses], [BoltStatus.SUCCESS]);
    assert.equal(new Set(client.answers.map((a) => a.header.requestId)).size, 4000);
  });
});

describe('router: Dubbo groups', () => {
  const iface = 'org.example.Grouped';
  let g1: EchoProvider;
  let g2: EchoProvider;
  let router: RouterHandle;
  let client: FrameClient;

  beforeEach(async () => {
    [g1, g2] = await Promise.all([startEchoProvider(), startEchoProvider()]);
    const routes = new MemoryRouteTable()
      .setOutbound(`g1/${iface}:1.0`, { endpoints: [{ host: '127.0.0.1', port: g1.port }] })
      .setOutbound(`g2/${iface}:1.0`, { endpoints: [{ host: '127.0.0.1', port: g2.port }] });
    router = createRouter({ routeTable: routes, inbound: false, admin: false, logger: quiet });
    await router.start();
    client = await FrameClient.connect(router.address('outbound').port);
  });

  afterEach(async () => {
    client.close();
    await router.drain(0);
    await Promise.all([g1.close(), g2.close()]);
  });

  it("sends each call to its own group's endpoints; a group with no route and a call without a group get SERVICE_NOT_FOUND", async () => {
    for (let i = 0; i < 10; i++)
      client.send(dubboCall(i, iface, '1.0', 'hello', `call-${i}`, i % 2 === 0 ? 'g1' : 'g2'));
    client.send(dubboCall(100, iface, '1.0', 'hello', 'no-such-group', 'g3'));
    client.send(dubboCall(101, iface, '1.0', 'hello', 'no-group'));
    await client.waitFor(12);
    const byId = new Map(client.answers.map((a) => [String(a.header.requestId), a]));
    assert.deepEqual(
      g1.seen.map((h) => (h as { group?: string }).group),
      Array(5).fill('g1'),
    );
    assert.deepEqual(
      g2.seen.map((h) => (h as { group?: string }).group),
      Array(5).fill('g2'),
    );
    for (let i = 0; i < 10; i++) assert.equal(echoedText(byId.get(String(i))!.frame), `call-${i}`);
    assert.equal(byId.get('100')?.header.status, DubboStatus.SERVICE_NOT_FOUND);
    assert.match(byId.get('100')!.frame.toString('utf8'), /no route for service g3\/org\.example\.Grouped:1\.0/);
    assert.equal(byId.get('101')?.header.status, DubboStatus.SERVICE_NOT_FOUND);
  });

  it('answers a call whose attachments cannot be read with BAD_REQUEST, sends it nowhere, and keeps the connection', async () => {
    const good = dubboCall(1, iface, '1.0', 'hello', 'fine', 'g1');
    // The same call with the attachments map cut to a byte no Hessian value starts with.
    const bad = Buffer.from(good);
    const at = bad.lastIndexOf(Buffer.from('H'));
    bad[at] = 0xff;
    client.send(bad);
    client.send(dubboCall(2, iface, '1.0', 'hello', 'after', 'g1'));
    await client.waitFor(2);
    assert.equal(client.answers[0]!.header.status, DubboStatus.BAD_REQUEST);
    assert.match(client.answers[0]!.frame.toString('utf8'), /identity cannot be read from its attachments/);
    assert.equal(client.answers[1]!.header.status, DubboStatus.OK);
    assert.equal(g1.seen.length + g2.seen.length, 1, 'only the good call was forwarded');
    assert.equal(client.closed, false);
  });

  it('refuses a call whose path attachment names another service (a Java provider would serve that one)', async () => {
    const frame = dubboCall(7, iface, '1.0', 'hello', 'spoof', 'g1');
    const at = frame.indexOf(Buffer.from(iface), frame.indexOf(Buffer.from('path')));
    Buffer.from(iface.replace('Grouped', 'Spoofed')).copy(frame, at);
    client.send(frame);
    await client.waitFor(1);
    assert.equal(client.answers[0]!.header.status, DubboStatus.BAD_REQUEST);
    assert.match(client.answers[0]!.frame.toString('utf8'), /the path attachment names "org\.example\.Spoofed"/);
    assert.equal(g1.seen.length + g2.seen.length, 0);
  });
});

describe('routeKey', () => {
  const dubboHeader = (iface: string, version: string) => decodeFrame(dubboCall(1, iface, version, 'hello', 'x'));

  it("is interface:version for Dubbo and the service for Bolt; a router's cached keys stay right past the cache bound", () => {
    const keys = new RouteKeys(100);
    for (const of of [routeKey, (h: FrameHeader) => keys.of(h)]) {
      assert.equal(of(dubboHeader('org.example.A', '1.0')), 'org.example.A:1.0');
      assert.equal(of(dubboHeader('org.example.A', '2.0')), 'org.example.A:2.0');
      assert.equal(of(dubboHeader('org.example.A', '1.0')), 'org.example.A:1.0');
      // More distinct services than the cache holds: it starts over, keys stay right.
      for (let i = 0; i < 1000; i++) assert.equal(of(dubboHeader(`org.example.S${i}`, '1.0')), `org.example.S${i}:1.0`);
      assert.equal(of(dubboHeader('org.example.A', '2.0')), 'org.example.A:2.0');
      assert.equal(of(decodeFrame(boltRequest(1, 'com.example.B:1.0', 'x'))), 'com.example.B:1.0');
    }
    assert.ok(keys.size <= 100, `${keys.size} keys held`);
  });

  it("is cached per router: one router's keys do not fill or clear another's", () => {
    const [one, other] = [new RouteKeys(10), new RouteKeys(10)];
    one.of(dubboHeader('org.example.A', '1.0'));
    for (let i = 0; i < 50; i++) other.of(dubboHeader(`org.example.S${i}`, '1.0'));
    assert.equal(one.size, 1, 'the other router filled its cache past its bound five times over');
    // A hit, not a new entry: the key survived the other cache starting over.
    assert.equal(one.of(dubboHeader('org.example.A', '1.0')), 'org.example.A:1.0');
    assert.equal(one.size, 1);
  });

  it('is group/interface:version for a Dubbo call with a group attachment, as dubboServiceKey builds it from a URL', () => {
    const key = (version: string, group?: string) =>
      routeKey(decodeFrame(dubboCall(1, 'org.example.A', version, 'hello', 'x', group)));
    assert.equal(key('1.0', 'g1'), 'g1/org.example.A:1.0');
    assert.equal(key('1.0', 'g2'), 'g2/org.example.A:1.0');
    assert.equal(key('', 'g1'), 'g1/org.example.A');
    assert.equal(key('1.0', ''), 'org.example.A:1.0');
    assert.equal(key('1.0', 'g1'), 'g1/org.example.A:1.0');
  });
});
