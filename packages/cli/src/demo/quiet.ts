// Quiet SDK logging for the demo's apps. sofa-rpc-node's ZooKeeper registry runs on cluster-client, which logs
// through a console logger of its own (not the `logger` option): "... is closed" lines in the middle of the demo's
// output. The registry's `cluster` option (also handed down to zookeeper-cluster-client) replaces the cluster-client
// generator; this one is the SDK's own, with a silent logger.

import { createRequire } from 'node:module';

export const quietLogger = { info() {}, warn() {}, error() {}, debug() {}, warnOnce() {}, errorOnce() {} };

type ClusterGenerator = (clientClass: unknown, options?: Record<string, unknown>) => unknown;

/** cluster-client as sofa-rpc-node resolves it, with the logger option forced to the quiet one. */
export function quietCluster(): ClusterGenerator {
  const sdkRequire = createRequire(require.resolve('sofa-rpc-node'));
  const cluster = sdkRequire('cluster-client') as ClusterGenerator;
  return (clientClass, options = {}) => cluster(clientClass, { ...options, logger: quietLogger });
}
