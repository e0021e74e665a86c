// A sofa-rpc-node provider app in a process of its own, so a test can kill it the way a crash does (SIGKILL: no
// unregistering, its ZooKeeper session left to expire). Usage: node provider-app.js PROTOCOL INTERFACE REGISTRY NAME
// Prints one JSON line {"port": N} once published, then serves until killed. REGISTRY `none`: a server with no
// registry of its own (the test registers it, e.g. in Dubbo's Redis layout).

import { server as sofaServer } from 'sofa-rpc-node';
import { protocolOption, quietLogger, startProviderApp, type Protocol } from './sdk-apps';

const [protocol, iface, registry, name] = process.argv.slice(2) as [Protocol, string, string, string];

async function serverOnly(): Promise<{ port: number }> {
  const server = new sofaServer.RpcServer({ logger: quietLogger, port: 0, appName: name, ...protocolOption(protocol) });
  server.addService(
    { interfaceName: iface, version: '1.0' },
    {
      async echo(text: string) {
        return `${name}: ${text}`;
      },
    },
  );
  await server.start();
  return { port: server.publishPort };
}

void (registry === 'none' ? serverOnly() : startProviderApp(protocol, iface, registry, name)).then(({ port }) => {
  process.stdout.write(`${JSON.stringify({ port })}\n`);
});
