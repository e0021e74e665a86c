// What an operator's registry package exports so `registries: [{type: <package or path>}]` in the sidecar config can
// load it: one factory, depending on nothing of meshport but this package.

import type { RegistryAdapter } from './adapter';
import type { RegistryLogger } from './file';

/** One `registries` entry of the sidecar config, as the plugin's factory receives it. */
export interface RegistryPluginConfig {
  /** The entry's `name`, unique in the config; use it in log lines. */
  name: string;
  /** The entry's `upstream` string, verbatim (an address, a path, a URL: the plugin decides). */
  upstream: string | undefined;
  /** The entry's `options` mapping, verbatim; the plugin validates it. */
  options: Record<string, unknown>;
  logger: RegistryLogger;
}

/**
 * A registry plugin module: `module.exports = { createRegistryAdapter }` (CommonJS), or the same named export from
 * an ES module. The adapter it returns must pass `describeRegistryConformance` from `@meshport/registry-core/conformance`.
 */
export interface RegistryPlugin {
  createRegistryAdapter(config: RegistryPluginConfig): RegistryAdapter | Promise<RegistryAdapter>;
}
