// @meshport/sidecar: the daemon behind `meshport sidecar --config meshport.yaml`.

export { Sidecar } from './sidecar';
export type { SidecarOptions } from './sidecar';
export { loadConfig, parseConfig, configSource, isLoopback, SIDECAR_DEFAULTS, BUILTIN_REGISTRY_TYPES } from './config';
export type {
  SidecarConfig,
  RegistryConfig,
  HostPort,
  ConfigSource,
  TlsConfig,
  AuthzConfig,
  TelemetryConfig,
  AccessLogConfig,
  TracingConfig,
} from './config';
export { TelemetryOutput, routerTelemetryOf, TELEMETRY_FLUSH_MS } from './telemetry/output';
export type { TelemetryCounters, TelemetryKind } from './telemetry/output';
export { OtlpExporter, OTLP_DEFAULTS, exportRequest, exportRequestLine, tracesUrl } from './telemetry/otlp';
export { lineCount } from './telemetry/writer';
export { RotatingFile } from './telemetry/rotating-file';
export { MESHPORT_ID, RouteBook, SidecarTakeover } from './routes';
export { CaptureListener, CAPTURE_DEFAULTS } from './capture';
export type { CaptureListenerOptions, CaptureCounters } from './capture';
export { startRegistries, loadPlugin, RegistrySet } from './registries';
export type { RunningRegistry, RegistryWiring, ReportingTakeover } from './registries';
export { SIDECAR_ERROR_CODES, SidecarError } from './errors';
export { preflight } from './preflight';
export { SIDECAR_V8_SETTINGS, applySidecarV8Settings } from './v8-settings';
export type { SidecarErrorCode, SidecarProblem } from './errors';
export {
  checkTlsFiles,
  DEV_CA_DEFAULTS,
  initCa,
  issueCertificate,
  loadTlsMaterial,
  parseSpiffeId,
  readCa,
  spiffeIdsOf,
  TLS_CHECK_DEFAULTS,
  TLS_WATCH_DEFAULTS,
  watchTlsMaterial,
} from './identity';
export type {
  DevCa,
  InitCaOptions,
  IssueCertificateOptions,
  IssuedCertificate,
  TlsCheck,
  TlsCheckName,
  TlsFiles,
  TlsFilesReport,
  TlsWatch,
  TlsWatchOptions,
} from './identity';
