// The registry suite's peer: a bare node-zookeeper-client watcher, the floor ZooKeeper itself sets. It does what any
// ZooKeeper subscriber must: getChildren with a watch on each providers node, and on every watch event getChildren
// again (re-arming) and compare with what it knew. Nothing else: no route table, no router, no logging.
//
//   node registry-watcher-process.js '{"connectString": "127.0.0.1:2181", "services": 1000}'
//
// IPC (child_process.fork): sends WatcherReady once every providers node is read and watched, then one SeenMessage per
// event-loop turn with the endpoints that appeared; answers {memory: true}. Exits on SIGTERM or when the parent goes.

import {
  SeenReporter,
  connectZooKeeper,
  endpointId,
  interfaceName,
  loadZooKeeperClient,
  memoryFigures,
  providersPath,
  serveParent,
  wallNow,
  type WatcherReady,
  type ZkClient,
} from '../registry/common';

interface Args {
  connectString: string;
  services: number;
}

/** `bolt://host:port?...&interface=X&version=V...` (node name decoded) -> endpoint id, or undefined. */
function parseNode(name: string): string | undefined {
  let url: string;
  try {
    url = decodeURIComponent(name);
  } catch {
    return undefined;
  }
  const m = /^[a-z0-9]+:\/\/([^:/?]+):(\d+)/i.exec(url);
  if (!m) return undefined;
  const q = url.indexOf('?');
  const params = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
  const iface = params.get('interface');
  if (!iface) return undefined;
  return endpointId(`${iface}:${params.get('version') || '1.0'}`, m[1], Number(m[2]));
}

async function main(): Promise<void> {
  const t0 = wallNow();
  const args = JSON.parse(process.argv[2] ?? '{}') as Args;
  const zk = loadZooKeeperClient();
  const client: ZkClient = await connectZooKeeper(args.connectString);
  const reporter = new SeenReporter();
  serveParent(async () => client.close());

  const known = new Map<string, Set<string>>();

  const read = (path: string): Promise<void> =>
    new Promise((resolve) => {
      client.getChildren(
        path,
        () => void read(path),
        (err, children) => {
          const at = wallNow();
          if (err) {
            // Not expected in the bench (the driver made every providers node first); say so and go on.
            if (err.getCode() !== zk.Exception.NO_NODE) process.stderr.write(`watcher: ${path}: ${err.message}\n`);
            resolve();
            return;
          }
          const before = known.get(path) ?? new Set<string>();
          const now = new Set(children);
          for (const name of now) {
            if (before.has(name)) continue;
            const id = parseNode(name);
            if (id !== undefined) reporter.add(id, at);
          }
          known.set(path, now);
          resolve();
        },
      );
    });

  const paths = Array.from({ length: args.services }, (_, i) => providersPath(interfaceName(i)));
  await Promise.all(paths.map((p) => read(p)));
  const ready: WatcherReady = {
    ready: 'watcher',
    pid: process.pid,
    services: paths.length,
    startupMs: wallNow() - t0,
    memory: memoryFigures(),
  };
  process.send!(ready);
}

main().catch((err: Error) => {
  process.stderr.write(`registry-watcher-process: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
