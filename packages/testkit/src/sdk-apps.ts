// Real sofa-rpc-node apps, as a pod runs them: a provider serving `echo`, a consumer finding providers through a
// registry, a provider in a process of its own (killed like a crash), and how to close them without hanging.

import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { client as sofaClient, registry as sofaRegistry, server as sofaServer } from 'sofa-rpc-node';
import dubboProtocol from 'dubbo-remoting';
import boltProtocol from 'sofa-bolt-node';

/** An SDK logger that says nothing: the suites look at what the apps do, not at what they log. */
export const quietLogger = { info() {}, warn() {}, error() {}, debug() {} };

export type Protocol = 'bolt' | 'dubbo';

/**
 * Always explicit, Bolt too: sofa-rpc-node's RpcClient writes a given protocol into its module-wide default options
 * (a shallow copy), so after one Dubbo client every later client "without a protocol" speaks Dubbo.
 */
export function protocolOption(protocol: Protocol): { protocol: unknown } {
  return { protocol: protocol === 'dubbo' ? dubboProtocol : boltProtocol };
}

/** A sofa-rpc-node provider app serving `iface` v1.0 (`echo`, `whoami`), publishing through `registryAddress`. */
export async function startProviderApp(protocol: Protocol, iface: string, registryAddress: string, name = 'provider') {
  const registry = new sofaRegistry.ZookeeperRegistry({
    logger: quietLogger,
    address: registryAddress,
    cluster: ownCluster(),
  });
  const server = new sofaServer.RpcServer({
    logger: quietLogger,
    port: 0,
    appName: name,
    registry,
    publishAddress: '127.0.0.1',
    ...protocolOption(protocol),
  });
  server.addService(
    { interfaceName: iface, version: '1.0' },
    {
      async echo(text: string) {
        return `${name}: ${text}`;
      },
    },
  );
  await server.start();
  await server.publish();
  return { server, registry, port: server.publishPort };
}

/** How long a sofa-rpc-node consumer may take to get its first provider list. */
export const CONSUMER_READY_MS = 30_000;

/** `promise`, or an error naming `what` after `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

type ClusterGenerator = (clientClass: { name: string }, options?: Record<string, unknown>) => unknown;
let ownClusters = 0;

/**
 * sofa-rpc-node's ZookeeperRegistry runs on cluster-client's single mode, which keeps one client per process under a
 * name without the address: a second registry in the process, whatever its address, gets the first one's connection
 * (checked: a registry at an address nothing listens on is ready at once). An app has one registry; the tests make
 * many in one process, and one left behind (to a stopped pod's facade, or its session expired) would answer every
 * later app's subscribe with CONNECTION_LOSS. So each registry gets cluster clients of its own, under unique names
 * (the `cluster` option reaches zookeeper-cluster-client too).
 */
export function ownCluster(): ClusterGenerator {
  const sdkRequire = createRequire(require.resolve('sofa-rpc-node'));
  const cluster = sdkRequire('cluster-client') as ClusterGenerator;
  const n = ++ownClusters;
  return (clientClass, options = {}) =>
    cluster(clientClass, { ...options, name: `${String(options.name ?? clientClass.name)}#${n}` });
}

/** A sofa-rpc-node consumer app of `iface` v1.0 that finds providers through `registryAddress`. */
export async function startConsumerApp(protocol: Protocol, iface: string, registryAddress: string) {
  const registry = new sofaRegistry.ZookeeperRegistry({
    logger: quietLogger,
    address: registryAddress,
    cluster: ownCluster(),
  });
  const client = new sofaClient.RpcClient({ logger: quietLogger, registry, ...protocolOption(protocol) });
  const consumer = client.createConsumer({ interfaceName: iface, version: '1.0', retryFaultInterval: 200 });
  // sofa-rpc-node's consumer is ready once its registry handed it a list, and never if its first subscribe failed
  // (it does not retry): fail then, instead of waiting for ever.
  await withTimeout(
    consumer.ready(),
    CONSUMER_READY_MS,
    `the ${iface} consumer's first provider list through ${registryAddress}`,
  );
  return { client, registry, consumer };
}

const APP_CLOSE_MS = 10_000;

/**
 * Closes SDK apps' clients and registries in turn, each bounded: sofa-rpc-node's ZooKeeper registry close waits for
 * its client's 'disconnected' event, which never comes when that client has already lost its connection for good.
 * One that does not close in time is named and left behind (its cluster client is its own: it disturbs no later app).
 */
export async function closeApps(apps: { close(): Promise<unknown> }[]): Promise<void> {
  for (const app of apps) {
    const name = (app as object).constructor.name;
    await withTimeout(app.close(), APP_CLOSE_MS, `${name}.close()`).catch((e: Error) =>
      console.log(`      (left behind: ${e.message})`),
    );
  }
}

const providerProcesses = new Set<ChildProcess>();

/**
 * startProviderApp in a process of its own (./provider-app.ts), as in a pod: it can be killed like a crash, and
 * its ZooKeeper client shares nothing with the test process's. Stop it with stopProviderApps() in an `after` hook.
 */
export async function spawnProviderApp(protocol: Protocol, iface: string, registryAddress: string, name = 'provider') {
  const child = spawn(
    process.execPath,
    [path.join(__dirname, 'provider-app.js'), protocol, iface, registryAddress, name],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  providerProcesses.add(child);
  child.on('exit', () => providerProcesses.delete(child));
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0]!);
    });
    child.on('exit', (code) => reject(new Error(`provider app exited with ${code}`)));
  });
  return { child, pid: child.pid!, port: (JSON.parse(line) as { port: number }).port };
}

/** SIGKILLs every provider app spawnProviderApp started that still runs (by its pid only). */
export function stopProviderApps(): void {
  for (const child of providerProcesses) child.kill('SIGKILL');
  providerProcesses.clear();
}
