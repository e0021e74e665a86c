// Loads build/Release/meshport_engine.node once. When it cannot load, callers get the reason (the sidecar says it
// at start and runs the TypeScript engine) instead of an import crash.

import path from 'node:path';

/** Overrides where the addon is loaded from (tests point it at a missing file, or at an ASan build). */
export const ENGINE_ADDON_PATH_ENV = 'MESHPORT_ENGINE_ADDON';

// dist/src/native.js -> packages/engine/build/Release/meshport_engine.node
const defaultAddonPath = path.resolve(__dirname, '..', '..', 'build', 'Release', 'meshport_engine.node');

export type EngineAddon =
  | { loaded: true; native: Record<string, unknown>; path: string }
  | { loaded: false; reason: string; path: string };

let cached: EngineAddon | undefined;

export function loadEngineAddon(
  addonPath: string = process.env[ENGINE_ADDON_PATH_ENV] || defaultAddonPath,
): EngineAddon {
  if (cached !== undefined && cached.path === addonPath) return cached;
  try {
    cached = { loaded: true, native: require(addonPath) as Record<string, unknown>, path: addonPath };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason =
      code === 'MODULE_NOT_FOUND' || code === 'ENOENT'
        ? `the native engine is not built (${addonPath}): run scripts/bootstrap.sh`
        : `the native engine failed to load from ${addonPath}: ${(err as Error).message}`;
    cached = { loaded: false, reason, path: addonPath };
  }
  return cached;
}
