// @meshport/registry-zookeeper: the upstream ZooKeeper registry adapter for the sofa-rpc-node and Dubbo layouts.

export { ZooKeeperRegistry, ZOOKEEPER_REGISTRY_DEFAULTS } from './zookeeper';
export type { ZooKeeperRegistryOptions, ZooKeeperLayout } from './zookeeper';
