// A sofa-rpc-node provider app in a process of its own, so a test can kill it the way a crash does (SIGKILL: no
// unregistering, its ZooKeeper session left to expire). Usage: node provider-app.js PROTOCOL INTERFACE REGISTRY NAME
// Prints one JSON line {"port": N} once published, then serves until killed.

import { startProviderApp, type Protocol } from './sidecars';

const [protocol, iface, registry, name] = process.argv.slice(2) as [Protocol, string, string, string];
void startProviderApp(protocol, iface, registry, name).then(({ port }) => {
  process.stdout.write(`${JSON.stringify({ port })}\n`);
});
