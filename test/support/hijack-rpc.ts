// The "apps" of the hijack end-to-end suite, each run as its own process inside a network namespace (and cgroup):
//   node hijack-rpc.js server NAME PORT        a sofa-rpc-node Bolt RpcServer (all addresses) serving
//                                              com.example.Echo and com.example.Plain v1.0; prints {"ready":PORT}
//   node hijack-rpc.js call HOST:PORT IFACE TEXT
//                                              one Bolt call of IFACE v1.0 echo(TEXT) to exactly HOST:PORT; prints
//                                              {"ok":true,"result":...} or {"ok":false,"error":...}, then exits
// A script, not a module to import: it dispatches on argv as soon as it loads.

import { client as sofaClient, server as sofaServer } from 'sofa-rpc-node';
import boltProtocol from 'sofa-bolt-node';

const quiet = { info() {}, warn() {}, error() {}, debug() {} };

const HIJACK_RPC_SERVICES = ['com.example.Echo', 'com.example.Plain'] as const;

async function serve(name: string, port: number): Promise<void> {
  // The protocol is always explicit: the SDK keeps the last one given in module-wide defaults.
  const server = new sofaServer.RpcServer({
    logger: quiet,
    port,
    appName: name,
    publishAddress: '127.0.0.1',
    protocol: boltProtocol,
  });
  for (const interfaceName of HIJACK_RPC_SERVICES) {
    server.addService(
      { interfaceName, version: '1.0' },
      {
        async echo(text: string) {
          return `${name}: ${text}`;
        },
      },
    );
  }
  await server.start();
  process.stdout.write(`${JSON.stringify({ ready: port })}\n`);
}

async function call(target: string, interfaceName: string, text: string): Promise<void> {
  const client = new sofaClient.RpcClient({ logger: quiet, protocol: boltProtocol });
  const consumer = client.createConsumer({ interfaceName, version: '1.0', serverHost: target, responseTimeout: 3000 });
  let out: object;
  try {
    await consumer.ready();
    out = { ok: true, result: await consumer.invoke('echo', [text], { responseTimeout: 3000 }) };
  } catch (err) {
    out = { ok: false, error: (err as Error).message };
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(0);
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'server') void serve(args[0]!, Number(args[1]));
else if (mode === 'call') void call(args[0]!, args[1]!, args[2]!);
else {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}
