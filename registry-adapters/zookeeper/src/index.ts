// @meshport/registry-zookeeper: the upstream ZooKeeper registry adapter for the sofa-rpc-node and Dubbo layouts, and
// the ZooKeeper facade that proxies the app's own ZooKeeper client.

export { ZooKeeperRegistry, ZOOKEEPER_REGISTRY_DEFAULTS } from './zookeeper';
export type { ZooKeeperRegistryOptions, ZooKeeperLayout } from './zookeeper';
export { ZooKeeperFacade, ZOOKEEPER_FACADE_DEFAULTS } from './facade';
export type { ZooKeeperFacadeOptions } from './facade';
