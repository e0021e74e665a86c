// @meshport/registry-redis: the upstream Redis registry adapter for the Apache Dubbo 2.7 Redis registry layout, and
// the Redis facade that takes over the provider addresses an app's Dubbo Redis registry publishes and reads.

export { RedisRegistry, REDIS_REGISTRY_DEFAULTS } from './redis';
export type { RedisRegistryOptions } from './redis';
export { RedisFacade, REDIS_FACADE_DEFAULTS, providersKeyInterface } from './facade';
export type { RedisFacadeOptions } from './facade';
export { RespParser, RESP_PARSER_DEFAULTS, encodeCommand, encodeValue, respBulk } from './resp';
export type {
  RespParserOptions,
  RespValue,
  RespLine,
  RespBulk,
  RespAggregate,
  RespInlineCommand,
  RespLineType,
  RespBulkType,
  RespAggregateType,
} from './resp';
