// What the registry suites share: polling for a condition, waiting for an adapter to connect, an outage made of a
// real server restart, and a plain ZooKeeper client to look at a tree as an SDK or an operator would.

import { strict as assert } from 'node:assert';
import { setTimeout as sleep } from 'node:timers/promises';
import zookeeper from 'node-zookeeper-client';

/** What the kit needs of a registry adapter: its connection state (the kit depends on no meshport package). */
export interface HasConnectionState {
  readonly state: string;
}

/** Polls `probe` until it gives a value (errors count as not yet), failing with `what` after the timeout. */
export async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(50);
  }
}

export async function connected(adapter: HasConnectionState): Promise<void> {
  await eventually('the adapter to connect', async () => (adapter.state === 'connected' ? true : undefined));
}

/** The conformance suite's outage: the server restarts, and it is over once every adapter is connected again. */
export function restartOutage(server: { restart(): Promise<void> }, adapters: HasConnectionState[]) {
  return {
    begin: () => server.restart(),
    end: async () => {
      await Promise.all(adapters.map(connected));
    },
  };
}

/** A plain node-zookeeper-client, connected: how the suites look at a tree as an SDK or an operator would. */
export function connectZooKeeper(
  connectString: string,
  options: zookeeper.ClientOptions = {},
): Promise<zookeeper.Client> {
  const client = zookeeper.createClient(connectString, {
    sessionTimeout: 10_000,
    spinDelay: 100,
    retries: 0,
    ...options,
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`could not connect to ${connectString}`)), 10_000);
    client.once('connected', () => {
      clearTimeout(timer);
      resolve(client);
    });
    client.connect();
  });
}

/** Creates `path` and every missing parent as persistent nodes (a provider's category directory). */
export function zkMkdirp(client: zookeeper.Client, path: string): Promise<void> {
  return new Promise((resolve, reject) =>
    client.mkdirp(path, null, zookeeper.CreateMode.PERSISTENT, (error) => (error ? reject(error) : resolve())),
  );
}

/** An empty ephemeral node: how an SDK publishes a provider URL, gone with its session. */
export function zkCreateEphemeral(client: zookeeper.Client, path: string): Promise<void> {
  return new Promise((resolve, reject) =>
    client.create(path, Buffer.alloc(0), zookeeper.CreateMode.EPHEMERAL, (error) =>
      error ? reject(error) : resolve(),
    ),
  );
}
