// @meshport/router: the data plane.

export { Router } from './router';
export { ROUTER_DEFAULTS } from './router-setup';
export type { RouterOptions } from './router-setup';
export type { ListenAddress } from './listener-admission';
export { routeKey } from './route-key';
export { NativeRouter, nativeRouterUnavailable } from './native-router';
export { createRouter, defaultEngine, ENGINE_ENV } from './create';
export type { RouterHandle, EngineName, ClusterState } from './handle';
export { MemoryRouteTable, endpointKey } from './route-table';
export type { RouteTable, RouteChange, Endpoint, ClusterSpec, LbPolicy, MethodRouter } from './route-table';
export { Cluster, OUTLIER_DEFAULTS, CLUSTER_LIMIT_DEFAULTS } from './cluster';
export type { OutlierOptions, ClusterLimits } from './cluster';
export { failureStatus } from './responses';
export type { Failure } from './responses';
export { ROUTER_ERROR_CODES, RouterError } from './errors';
export type { RouterErrorCode } from './errors';
export { authorize, identityMatches, trustDomainOf } from './security';
export type { AuthzPolicy, HandshakeFailure, RouterSecurity, TlsMaterial, TlsMode } from './security';
export { ACCESS_LOG_DEFAULTS, TRACE_DEFAULTS, LABEL_CAP_DEFAULTS, FOLDED_LABEL, NO_SERVICE_LABEL } from './telemetry';
export type { AccessLogSampling, TraceSampling, LabelCaps, RouterTelemetry, TelemetrySink } from './telemetry';
export { fnv1a64, deriveSpanIds, sampled } from './trace-ids';
export type { ServicesPage, ServiceMethodTotals } from './stats';
