// @meshport/registry-redis: the upstream Redis registry adapter for the Apache Dubbo 2.7 Redis registry layout.

export { RedisRegistry, REDIS_REGISTRY_DEFAULTS } from './redis';
export type { RedisRegistryOptions } from './redis';
