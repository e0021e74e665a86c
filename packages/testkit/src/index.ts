// @meshport/testkit: what meshport's test suites share (private, never published). Real ZooKeeper and redis-server
// launchers, an OTLP collector stand-in, hand-made Bolt/Dubbo request frames and a raw echo provider, sofa-rpc-node
// apps, JSON-line children, free ports, registry polling, a RESP client, and the rule for tests that need what a
// machine may lack (skip locally, fail under CI). `sleep` is node's own: `import { setTimeout as sleep } from
// 'node:timers/promises'`.

import './cleanup';

export { makeTestPki, type TestLeaf, type TestLeafOptions, type TestPki } from './certs';
export { echoResponse, startEchoProvider, type EchoBehaviour, type EchoProvider } from './echo-provider';
export { BOLT_SOFA_REQUEST, boltRequest, boltRequestWith, dubboCall, dubboRequest, hessianShort } from './frames';
export { JsonLinesChild, type Json } from './json-child';
export {
  readExport,
  startOtlpCollector,
  type CollectedSpan,
  type CollectorBehaviour,
  type OtlpCollector,
} from './otlp-collector';
export { HOST, freePort, freePorts, isPortTaken, onFreePorts } from './ports';
export { fourLetterWord, pidAlive, portRefuses, tcpExchange } from './probes';
export { PortTakenError, killAllServersSync, stopAllServers, type RestartOptions, type Restartable } from './processes';
export { startRedis, type RedisOptions, type RunningRedis } from './redis';
export {
  connectZooKeeper,
  connected,
  eventually,
  restartOutage,
  zkCreateEphemeral,
  zkMkdirp,
  type HasConnectionState,
} from './registry';
export { RespConnection, RespError, encodeCommand, type RespValue } from './resp';
export {
  CONSUMER_READY_MS,
  closeApps,
  ownCluster,
  protocolOption,
  quietLogger,
  spawnProviderApp,
  startConsumerApp,
  startProviderApp,
  stopProviderApps,
  withTimeout,
  type Protocol,
} from './sdk-apps';
export { skipOrFail, underCi, type Skippable } from './skip';
export {
  JAVA,
  ZOOKEEPER_CLASSPATH,
  startZooKeeper,
  startZooKeeperEnsemble,
  type RunningZooKeeper,
  type RunningZooKeeperEnsemble,
  type RunningZooKeeperNode,
  type ZooKeeperOptions,
} from './zookeeper';
export { ACCESS_LOG_KEYS, expectedSofaSpanIds, expectedSpanIds, specFnv } from './trace-oracle';
