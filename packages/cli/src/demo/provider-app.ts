// The demo's provider app, in a process of its own as in its own pod: sofa-rpc-node serving
// com.example.EchoService over Bolt and com.example.GreetService over Dubbo, publishing through the ZooKeeper address
// it is given (the provider pod's facade). Usage: node provider-app.js REGISTRY_HOST:PORT
// Prints one JSON line {"bolt": PORT, "dubbo": PORT} once both are published; on SIGTERM/SIGINT it unpublishes,
// closes and exits 0.

import { registry as sofaRegistry, server as sofaServer } from 'sofa-rpc-node';
import dubboProtocol from 'dubbo-remoting';
import boltProtocol from 'sofa-bolt-node';
import { quietCluster, quietLogger } from './quiet';

export const ECHO_SERVICE = 'com.example.EchoService';
export const GREET_SERVICE = 'com.example.GreetService';

async function main(registryAddress: string): Promise<void> {
  const registry = new sofaRegistry.ZookeeperRegistry({
    logger: quietLogger,
    address: registryAddress,
    cluster: quietCluster(),
  });
  const server = (protocol: unknown) =>
    // The protocol is always explicit, Bolt too: sofa-rpc-node keeps the last one given in module-wide defaults.
    new sofaServer.RpcServer({
      logger: quietLogger,
      port: 0,
      appName: 'demo-provider',
      registry,
      publishAddress: '127.0.0.1',
      protocol,
    });
  const bolt = server(boltProtocol);
  bolt.addService(
    { interfaceName: ECHO_SERVICE, version: '1.0' },
    {
      async echo(text: string) {
        return `echo: ${text}`;
      },
    },
  );
  const dubbo = server(dubboProtocol);
  dubbo.addService(
    { interfaceName: GREET_SERVICE, version: '1.0' },
    {
      async greet(name: string) {
        return `hello, ${name}`;
      },
    },
  );
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await Promise.allSettled([bolt.close(), dubbo.close()]);
    await registry.close().catch(() => {});
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop()).on('SIGINT', () => void stop());
  await Promise.all([bolt.start(), dubbo.start()]);
  await Promise.all([bolt.publish(), dubbo.publish()]);
  process.stdout.write(`${JSON.stringify({ bolt: bolt.publishPort, dubbo: dubbo.publishPort })}\n`);
}

if (require.main === module) {
  const address = process.argv[2];
  if (!address) {
    process.stderr.write('usage: provider-app.js REGISTRY_HOST:PORT\n');
    process.exit(2);
  }
  main(address).catch((err: Error) => {
    process.stderr.write(`provider app: ${err.stack ?? err.message}\n`);
    process.exit(1);
  });
}
