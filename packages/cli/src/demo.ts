// `meshport demo`: real SOFA RPC (Bolt) and Dubbo calls from the npm SDKs through two meshport routers, watched
// through `meshport tap`. (The registry takeover that fills the routes comes with the sidecar; here they are set.)

import { MemoryRouteTable, Router } from '@meshport/router';
import { client as sofaClient, server as sofaServer } from 'sofa-rpc-node';
import dubboProtocol from 'dubbo-remoting';
import boltProtocol from 'sofa-bolt-node';
import { Style } from './format';
import type { Io } from './io';
import { startTap } from './tap';

const quietLogger = { info() {}, warn() {}, error() {}, debug() {} };
const SERVICE = 'com.example.EchoService';

/**
 * Per protocol: a provider behind its sidecar's inbound listener, a consumer calling its own sidecar's outbound
 * listener, and a tap between the consumer and its sidecar printing every frame. Calls: successes, one the provider
 * rejects, one for a service nobody provides. Then what the consumer's sidecar saw.
 */
export async function runDemo(io: Io, colour: boolean): Promise<number> {
  const s = new Style(colour);
  const say = (text: string) => io.stdout.write(`\n${s.bold(text)}\n`);
  process.env.MESHPORT_LOG_LEVEL ??= 'warn';
  for (const protocol of [{ name: 'SOFA RPC over Bolt', impl: boltProtocol }, { name: 'Dubbo', impl: dubboProtocol }]) {
    say(`== ${protocol.name}: consumer -> [tap] -> meshport outbound -> meshport inbound -> provider`);
    // Always explicit, Bolt too: sofa-rpc-node's RpcClient writes a given protocol into its module-wide defaults.
    const withProtocol = { protocol: protocol.impl };
    const provider = new sofaServer.RpcServer({ logger: quietLogger, port: 0, appName: 'demo-provider', ...withProtocol });
    provider.addService(
      { interfaceName: SERVICE, version: '1.0' },
      {
        async echo(text: string) {
          return `echo: ${text}`;
        },
        async fail() {
          throw new Error('the provider refused this call');
        },
      },
    );
    await provider.start();
    // Bolt names the service `interface:version`; Dubbo routes on the same key built from path and version.
    const key = `${SERVICE}:1.0`;
    const providerSidecar = new Router({
      routeTable: new MemoryRouteTable().setInbound(key, { host: '127.0.0.1', port: provider.publishPort }),
      outbound: false,
      admin: false,
    });
    await providerSidecar.start();
    const consumerSidecar = new Router({
      routeTable: new MemoryRouteTable().setOutbound(key, {
        endpoints: [{ host: '127.0.0.1', port: providerSidecar.address('inbound').port }],
      }),
      inbound: false,
    });
    await consumerSidecar.start();
    const tap = await startTap(
      { listen: { host: '127.0.0.1', port: 0 }, upstream: { host: '127.0.0.1', port: consumerSidecar.address('outbound').port }, colour },
      io,
    );
    const rpc = new sofaClient.RpcClient({ logger: quietLogger, ...withProtocol });
    try {
      // retryFaultInterval: the SDK's address-retry loop sleeps this long between rounds even after close; its 30 s
      // default would keep the demo process alive for 30 s after the demo is over.
      const consume = (interfaceName: string) =>
        rpc.createConsumer({ interfaceName, version: '1.0', serverHost: `127.0.0.1:${tap.address.port}`, retryFaultInterval: 200 });
      const consumer = consume(SERVICE);
      await consumer.ready();
      for (const text of ['hello meshport', 'second call']) {
        const reply = await consumer.invoke('echo', [text], { responseTimeout: 3000 });
        io.stdout.write(`${s.green('consumer got:')} ${JSON.stringify(reply)}\n`);
      }
      await expectError(() => consumer.invoke('fail', [], { responseTimeout: 3000 }), 'the provider rejects a call', io, s);
      const missing = consume('com.example.MissingService');
      await missing.ready();
      await expectError(() => missing.invoke('anything', [], { responseTimeout: 3000 }), 'no route for a service', io, s);
      // Let the tap print the last response before the connections close.
      await new Promise((resolve) => setTimeout(resolve, 50));
      await summarize(consumerSidecar, io, s);
    } finally {
      await rpc.close();
      await tap.close();
      await consumerSidecar.drain(0);
      await providerSidecar.drain(0);
      await provider.close();
    }
  }
  say('Decode any frame yourself: npx meshport decode --hex <hex>   (see README)');
  return 0;
}

async function expectError(call: () => Promise<unknown>, what: string, io: Io, s: Style): Promise<void> {
  try {
    await call();
    io.stdout.write(`${s.red(`expected an error (${what}), got a result`)}\n`);
  } catch (err) {
    io.stdout.write(`${s.yellow(`consumer got an error, as expected (${what}):`)} ${(err as Error).message.split('\n')[0]}\n`);
  }
}

/** What the consumer's sidecar reports on its admin port: its routes and its request counters. */
async function summarize(router: Router, io: Io, s: Style): Promise<void> {
  const admin = `http://127.0.0.1:${router.address('admin').port}`;
  const routes = (await (await fetch(`${admin}/routes`)).json()) as {
    clusters: { name: string; endpoints: { address: string; healthy: boolean }[] }[];
  };
  for (const c of routes.clusters) {
    const endpoints = c.endpoints.map((e) => `${e.address}${e.healthy ? '' : ' (ejected)'}`).join(', ');
    io.stdout.write(`${s.dim('consumer sidecar route:')} ${c.name} -> ${endpoints}\n`);
  }
  const stats = await (await fetch(`${admin}/stats`)).text();
  const lines = stats.split('\n').filter((l) => l.startsWith('meshport_responses_total{'));
  for (const l of lines) io.stdout.write(`${s.dim('consumer sidecar /stats:')} ${l}\n`);
}
