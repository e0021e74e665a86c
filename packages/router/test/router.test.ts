// The router end to end on loopback: caller -> outbound -> inbound -> provider, and back.

import { strict as assert } from 'node:assert';
import pino from 'pino';
import { BoltStatus, DubboStatus, decodeFrame } from '@meshport/protocol';
import { MemoryRouteTable, Router, routeKey } from '../src/index';
import { FrameClient, boltRequest, dubboRequest, startEchoServer, type EchoServer } from './helpers/peers';

const quiet = pino({ level: 'silent' });

describe('router: two hops', () => {
  let provider: EchoServer;
  let consumerSide: Router;
  let providerSide: Router;
  let client: FrameClient;

  beforeEach(async () => {
    provider = await startEchoServer();
    const providerRoutes = new MemoryRouteTable()
      .setInbound('com.example.EchoService:1.0', { host: '127.0.0.1', port: provider.port })
      .setInbound('org.example.Greeter:2.0', { host: '127.0.0.1', port: provider.port });
    providerSide = new Router({ routeTable: providerRoutes, outbound: false, admin: false, logger: quiet });
    await providerSide.start();
    const inbound = { host: '127.0.0.1', port: providerSide.address('inbound').port };
    const consumerRoutes = new MemoryRouteTable()
      .setOutbound('com.example.EchoService:1.0', { endpoints: [inbound] })
      .setOutbound('org.example.Greeter:2.0', { endpoints: [inbound] });
    consumerSide = new Router({ routeTable: consumerRoutes, inbound: false, admin: false, logger: quiet });
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
    client.send(dubboRequest(2n ** 40n, 'org.example.Greeter', '2.0', 'hello', 'dubbo-big'));
    client.send(boltRequest(-5, 'com.example.EchoService:1.0', 'bolt-minus-5'));
    await client.waitFor(3);
    const byId = new Map(client.answers.map((a) => [String(a.header.requestId), a]));
    assert.equal(byId.get('7')?.frame.toString('latin1').endsWith('bolt-7'), true);
    assert.equal(byId.get('-5')?.frame.toString('latin1').endsWith('bolt-minus-5'), true);
    assert.equal(byId.get(String(2n ** 40n))?.frame.toString('latin1').endsWith('dubbo-big'), true);
    assert.equal(byId.get('7')?.header.status, BoltStatus.SUCCESS);
    assert.equal(byId.get(String(2n ** 40n))?.header.status, DubboStatus.OK);
    assert.equal(provider.seen.length, 3);
  });

  it('answers a service with no route: Bolt NO_PROCESSOR, Dubbo 60 SERVICE_NOT_FOUND, with a message', async () => {
    client.send(boltRequest(1, 'com.example.Nobody:1.0', 'x'));
    client.send(dubboRequest(2, 'org.example.Nobody', '1.0', 'm', 'x'));
    await client.waitFor(2);
    const [bolt, dubbo] = [client.answers.find((a) => a.header.protocol === 'bolt')!, client.answers.find((a) => a.header.protocol === 'dubbo')!];
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

describe('routeKey', () => {
  it('is interface:version for Dubbo, the service for Bolt, and stays right past its cache bound', () => {
    const dubboHeader = (iface: string, version: string) => decodeFrame(dubboRequest(1, iface, version, 'hello', 'x'));
    assert.equal(routeKey(dubboHeader('org.example.A', '1.0')), 'org.example.A:1.0');
    assert.equal(routeKey(dubboHeader('org.example.A', '2.0')), 'org.example.A:2.0');
    assert.equal(routeKey(dubboHeader('org.example.A', '1.0')), 'org.example.A:1.0');
    // More distinct services than the cache holds: it starts over, keys stay right.
    for (let i = 0; i < 10_000; i++) assert.equal(routeKey(dubboHeader(`org.example.S${i}`, '1.0')), `org.example.S${i}:1.0`);
    assert.equal(routeKey(dubboHeader('org.example.A', '2.0')), 'org.example.A:2.0');
    assert.equal(routeKey(decodeFrame(boltRequest(1, 'com.example.B:1.0', 'x'))), 'com.example.B:1.0');
  });
});
