// @meshport/router: the data plane.

export { Router, ROUTER_DEFAULTS, routeKey } from './router';
export type { RouterOptions, ListenAddress } from './router';
export { NativeRouter, nativeRouterUnavailable } from './native-router';
export { createRouter, defaultEngine, ENGINE_ENV } from './create';
export type { RouterHandle, EngineName, ClusterState } from './handle';
export { MemoryRouteTable, endpointKey } from './route-table';
export type { RouteTable, RouteChange, Endpoint, ClusterSpec, LbPolicy, MethodRouter } from './route-table';
export { Cluster, OUTLIER_DEFAULTS, CLUSTER_LIMIT_DEFAULTS } from './cluster';
export type { OutlierOptions, ClusterLimits } from './cluster';
export { failureStatus } from './responses';
export type { Failure } from './responses';
