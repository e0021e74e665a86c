// @meshport/registry-sofa: the sofa-rpc mesh HTTP API facade and the SOFA Registry session client.
export {
  SofaMeshApiFacade,
  SOFA_MESH_API_DEFAULTS,
  SOFA_MESH_API_PATHS,
  SOFA_MESH_API_PORT,
  SOFA_MESH_TCP_PORT,
  SOFA_DEFAULT_SERVER_PORT,
  buildMeshProviderUrl,
} from './mesh-api';
export type { SofaMeshApiOptions } from './mesh-api';
export { SofaRegistryClient, SOFA_REGISTRY_CLIENT_DEFAULTS } from './session-client';
export type { SofaRegistryClientOptions } from './session-client';
export { SOFA_REGISTRY_CLASSES, SOFA_REGISTRY_FIELDS } from './session-model';
export type { SofaScope, SofaEventType } from './session-model';
