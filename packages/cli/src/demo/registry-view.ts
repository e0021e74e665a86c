// A direct look into a ZooKeeper (the real one, or a pod's facade) with node-zookeeper-client, the way an operator
// checks what is registered: the provider URLs under /sofa-rpc/<interface>/providers.

// node-zookeeper-client ships no types; the few calls used here.
interface ZkClient {
  once(event: 'connected', listener: () => void): void;
  connect(): void;
  close(): void;
  getChildren(
    path: string,
    watcher: undefined,
    callback: (err: (Error & { code?: number }) | null, children: string[]) => void,
  ): void;
}
interface ZkModule {
  createClient(
    connectString: string,
    options: { sessionTimeout: number; spinDelay: number; retries: number },
  ): ZkClient;
  Exception: { NO_NODE: number };
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const zookeeper = require('node-zookeeper-client') as ZkModule;

export interface ProviderEntry {
  /** The node name decoded: the provider URL as registered. */
  url: string;
  host: string;
  port: number;
}

/** Reads the providers of each interface through one short session at `connectString`. */
export async function readProviders(
  connectString: string,
  interfaces: string[],
  timeoutMs = 10_000,
): Promise<Map<string, ProviderEntry[]>> {
  const client = zookeeper.createClient(connectString, { sessionTimeout: 10_000, spinDelay: 100, retries: 0 });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`could not connect to ZooKeeper at ${connectString}`)),
        timeoutMs,
      );
      client.once('connected', () => {
        clearTimeout(timer);
        resolve();
      });
      client.connect();
    });
    const result = new Map<string, ProviderEntry[]>();
    for (const iface of interfaces) {
      const names = await new Promise<string[]>((resolve, reject) =>
        client.getChildren(`/sofa-rpc/${iface}/providers`, undefined, (err, children) => {
          if (err && err.code === zookeeper.Exception.NO_NODE) resolve([]);
          else if (err) reject(err);
          else resolve(children);
        }),
      );
      result.set(iface, names.map(parseEntry));
    }
    return result;
  } finally {
    client.close();
  }
}

function parseEntry(name: string): ProviderEntry {
  let url = name;
  try {
    url = decodeURIComponent(name.replace(/\+/g, ' '));
  } catch {
    // shown as stored
  }
  const m = /^[a-z]+:\/\/([^:/?]+):(\d+)/i.exec(url);
  return { url, host: m?.[1] ?? '?', port: m ? Number(m[2]) : 0 };
}
