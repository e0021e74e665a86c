// Real SDKs through two routers: sofa-rpc-node consumer -> consumer-side router -> provider-side router -> provider.

import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { client as sofaClient, server as sofaServer } from 'sofa-rpc-node';
import sofaBolt from 'sofa-bolt-node';
import dubboProtocol from 'dubbo-remoting';
import { quietLogger } from '@meshport/testkit';
import { MemoryRouteTable, createRouter, type RouterHandle } from '../src/index';

const quiet = pino({ level: 'silent' });

const INTERFACE = 'com.example.EchoService';
const VERSION = '1.0';
/** Bolt's `service` header and Dubbo's `interface:version` route key are the same string for this service. */

type RpcServer = InstanceType<typeof sofaServer.RpcServer>;
type RpcClient = InstanceType<typeof sofaClient.RpcClient>;

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

for (const peer of [
  { name: 'SOFA RPC over Bolt', protocol: sofaBolt as unknown, group: '' },
  // sofa-rpc-node's consumers send their group, 'SOFA' unless told otherwise, in every Dubbo call's attachments.
  { name: 'Dubbo (dubbo-remoting)', protocol: dubboProtocol as unknown, group: 'SOFA/' },
]) {
  const SERVICE = `${peer.group}${INTERFACE}:${VERSION}`;
  describe(`router with real SDKs: ${peer.name}`, function () {
    this.timeout(20_000);

    let provider: RpcServer | undefined;
    let providerSide: RouterHandle | undefined;
    let consumerSide: RouterHandle | undefined;
    let rpc: RpcClient | undefined;
    let outboundPort = 0;

    beforeEach(async () => {
      const started = new sofaServer.RpcServer({
        logger: quietLogger,
        port: 0,
        protocol: peer.protocol,
        appName: 'provider',
      });
      provider = started;
      started.addService(
        { interfaceName: INTERFACE, version: VERSION },
        {
          async echo(text: string) {
            return `echo: ${text}`;
          },
          async add(a: number, b: number) {
            return a + b;
          },
          async fail(why: string) {
            throw new Error(`provider says no: ${why}`);
          },
        },
      );
      await started.start();

      const providerRoutes = new MemoryRouteTable().setInbound(SERVICE, {
        host: '127.0.0.1',
        port: started.publishPort,
      });
      providerSide = createRouter({ routeTable: providerRoutes, outbound: false, admin: false, logger: quiet });
      await providerSide.start();
      const consumerRoutes = new MemoryRouteTable().setOutbound(SERVICE, {
        endpoints: [{ host: '127.0.0.1', port: providerSide.address('inbound').port }],
      });
      consumerSide = createRouter({ routeTable: consumerRoutes, inbound: false, admin: false, logger: quiet });
      await consumerSide.start();
      outboundPort = consumerSide.address('outbound').port;

      // connectionOpts is given in full: RpcClient writes `protocol` into a defaults object shared by every client in
      // the process, so a Dubbo client made earlier would otherwise turn a later Bolt client into a Dubbo one.
      // maxIdleTime 0 lets the heartbeat test make the SDK send its heartbeat now instead of after 30 s idle.
      rpc = new sofaClient.RpcClient({
        logger: quietLogger,
        protocol: peer.protocol,
        connectionOpts: { protocol: peer.protocol, noDelay: true, connectTimeout: 3000, maxIdleTime: 0 },
      });
    });

    afterEach(async () => {
      const steps: Promise<unknown>[] = [];
      if (rpc) steps.push(rpc.close());
      if (consumerSide) steps.push(consumerSide.drain(0));
      if (providerSide) steps.push(providerSide.drain(0));
      await Promise.allSettled(steps);
      if (provider) await Promise.allSettled([provider.close()]);
      rpc = undefined;
      consumerSide = undefined;
      providerSide = undefined;
      provider = undefined;
    });

    function consumerOf(interfaceName: string) {
      // retryFaultInterval: the SDK's address-retry loop sleeps this long between rounds, even after close; its 30 s
      // default would hold the test process open for 30 s after the last test.
      return rpc!.createConsumer({
        interfaceName,
        version: VERSION,
        serverHost: `127.0.0.1:${outboundPort}`,
        responseTimeout: 3000,
        retryFaultInterval: 200,
      });
    }

    it('calls succeed with correct results, one by one and 50 at once', async () => {
      const consumer = consumerOf(INTERFACE);
      await consumer.ready();
      assert.equal(await consumer.invoke('echo', ['hello'], { responseTimeout: 3000 }), 'echo: hello');
      assert.equal(await consumer.invoke('add', [40, 2], { responseTimeout: 3000 }), 42);
      const texts = Array.from({ length: 50 }, (_, i) => `call-${i}-${'ü'.repeat(i % 7)}`);
      const results = await Promise.all(texts.map((t) => consumer.invoke('echo', [t], { responseTimeout: 3000 })));
      assert.deepEqual(
        results,
        texts.map((t) => `echo: ${t}`),
      );
      // Both hops forwarded them: one caller connection on each router's listener, no call left in flight.
      assert.equal(consumerSide!.inflight, 0);
      assert.equal(providerSide!.inflight, 0);
    });

    it("a provider's exception comes back to the consumer as an error", async () => {
      const consumer = consumerOf(INTERFACE);
      await consumer.ready();
      await assert.rejects(consumer.invoke('fail', ['because'], { responseTimeout: 3000 }), (err: Error) => {
        assert.match(err.message, /provider says no: because/);
        return true;
      });
      // The connection survives an exception: the next call works.
      assert.equal(await consumer.invoke('echo', ['after'], { responseTimeout: 3000 }), 'echo: after');
    });

    it("a call to a service with no route is rejected with the router's NO_PROCESSOR / SERVICE_NOT_FOUND message", async () => {
      const consumer = consumerOf('com.example.Nobody');
      await consumer.ready();
      await assert.rejects(consumer.invoke('echo', ['x'], { responseTimeout: 3000 }), (err: Error) => {
        assert.match(
          err.message,
          new RegExp(
            `meshport: no route for service ${peer.group}com\\.example\\.Nobody:1\\.0 on the outbound listener`,
          ),
        );
        return true;
      });
      // The router answered it itself, quickly (not a timeout), and the routed service still works on the same port.
      const routed = consumerOf(INTERFACE);
      await routed.ready();
      assert.equal(await routed.invoke('echo', ['still here'], { responseTimeout: 3000 }), 'echo: still here');
    });

    it("the SDK's heartbeat is answered by the consumer-side router within Bolt's 1000 ms", async () => {
      const consumer = consumerOf(INTERFACE);
      await consumer.ready();
      assert.equal(await consumer.invoke('echo', ['warm'], { responseTimeout: 3000 }), 'echo: warm');
      const conn = rpc!.connectionManager.connections.get(`127.0.0.1:${outboundPort}`);
      assert.ok(conn?.isConnected, 'the SDK holds a connection to the outbound port');
      for (let n = 0; n < 3; n++) {
        await sleep(5); // heartbeat() sends only after more than maxIdleTime (0 ms) idle
        const ack = once(conn._decoder, 'heartbeat_ack');
        const sentAt = Date.now();
        conn.heartbeat(); // the SDK's own heartbeat frame (maxIdleTime 0: sent at once)
        const [packet] = (await withTimeout(ack, 1000, 'the heartbeat ack')) as [{ packetId: number | string }];
        assert.ok(Date.now() - sentAt < 1000);
        assert.ok(packet.packetId !== undefined);
      }
      // The connection is still good after them.
      assert.equal(
        await consumer.invoke('echo', ['after heartbeats'], { responseTimeout: 3000 }),
        'echo: after heartbeats',
      );
    });
  });
}
