// @meshport/registry-core: the registry contracts, provider URL handling, the memory and file registries, and the
// conformance suite every adapter package runs.

export type {
  ConnectionError,
  ConnectionState,
  ProvidersListener,
  Unsubscribe,
  RegistryAdapter,
  RegistryFacade,
} from './adapter';
export { routeKeyOf, providerDisabled, providersPerIdentity, RewriteOnlyTakeover, RecordingTakeover } from './takeover';
export type { Takeover, HostPort } from './takeover';
export type { RegistryPlugin, RegistryPluginConfig } from './plugin';
export { REGISTRY_ERROR_CODES, RegistryError } from './errors';
export type { RegistryErrorCode } from './errors';
export {
  DEFAULT_PROVIDER_WEIGHT,
  DEFAULT_SOFA_VERSION,
  parseProviderUrl,
  formatProviderUrl,
  providerUrlText,
  rewriteEndpoint,
  getParam,
  withParam,
  providerWeight,
  providerEndpoint,
  sofaServiceKey,
  sofaServiceKeyOf,
  dubboServiceKey,
  dubboServiceKeyOf,
  interfaceOfServiceKey,
  withServiceKey,
  encodeNodeName,
  decodeNodeName,
} from './url';
export type { ProviderUrl, UrlParam, ProviderEndpoint, NodeNameStyle } from './url';
export {
  COMPILE_RULES_DEFAULTS,
  compileRules,
  emptyRuleUrls,
  endpointsFor,
  methodConditionHolds,
  weightAt,
} from './rules';
export type {
  CompiledProvider,
  CompiledRoute,
  CompiledRouter,
  CompileRulesInput,
  CompileRulesOptions,
  MethodCondition,
  MethodValues,
  RouteEndpoint,
  RuleConsumer,
  RuleNote,
  RuleUrls,
  RulesDialect,
  WarmUp,
} from './rules';
export { ProviderLists } from './provider-lists';
export { IntendedPublications } from './intended-publications';
export { ConnectionStateCell, PacedWarning } from './connection-state';
export { waitAtMost } from './wait';
export { MemoryRegistry, MemoryRegistryStore } from './memory';
export { FileRegistry, FILE_REGISTRY_DEFAULTS } from './file';
export type { FileRegistryOptions, RegistryLogger } from './file';
export { describeRegistryConformance } from './conformance';
export type { RegistryAdapterPair } from './conformance';
export { ClientGate, allowList, isLoopbackPeer } from './client-gate';
export type { AllowRemote, ClientGateLogger } from './client-gate';
