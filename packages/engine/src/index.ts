export { loadEngineAddon, ENGINE_ADDON_PATH_ENV, type EngineAddon } from './native';
export {
  NativeEngine,
  nativeEngineUnavailable,
  type EngineAllow,
  type EngineCluster,
  type EngineClusterCounters,
  type EngineClusterState,
  type EngineCounters,
  type EngineEndpoint,
  type EngineHandshakeFailure,
  type EngineListener,
  type EngineMethodCounters,
  type EngineLogEvent,
  type EngineRoutes,
  type EngineSecurity,
  type EngineSettings,
  type EngineTelemetry,
  type EngineTelemetrySink,
} from './engine';
export { ENGINE_ERROR_CODES, EngineError, type EngineErrorCode } from './errors';
