// Loads build/Release/meshport_socket.node once, for the socket options and the BPF loader alike; when it is absent,
// every call throws NotSupportedError instead of the import crashing, so code that only probes (meshport doctor,
// tests that skip) still runs.

import path from 'node:path';
import { NotSupportedError } from './errors';

/**
 * What the C++ side of socket_ops.cc exports. Arguments are validated again there; fds stay owned by the caller.
 * The same module also carries bpf_loader.cc's entry points, typed where they are used (bpf.ts).
 */
export interface NativeSocketOps {
  getOriginalDst(fd: number): { address: string; port: number; family: 'IPv4' | 'IPv6' };
  createTransparentListener(host: string, port: number, backlog: number, family: 4 | 6): number;
  createMarkedSocket(family: 4 | 6, mark: number): number;
  setMark(fd: number, mark: number): void;
  getMark(fd: number): number;
  probeSocketFeatures(): Record<'originalDst' | 'transparent' | 'mark', { supported: boolean; reason?: string }>;
}

/** The addon as loaded, or why it could not be. */
export type NativeAddon =
  | { loaded: true; ops: NativeSocketOps; path: string }
  | { loaded: false; reason: string; path: string };

/**
 * Overrides where the addon is loaded from. Tests point it at a missing file to exercise the NotSupportedError path;
 * it is read once, at the first call that needs the addon.
 */
export const ADDON_PATH_ENV = 'MESHPORT_SOCKET_ADDON';

export const NOT_BUILT_REASON = 'native addon not built: run scripts/bootstrap.sh';

// dist/src/native.js -> packages/socket/build/Release/meshport_socket.node
const defaultAddonPath = path.resolve(__dirname, '..', '..', 'build', 'Release', 'meshport_socket.node');

let cached: NativeAddon | undefined;

export function loadAddon(addonPath: string = process.env[ADDON_PATH_ENV] || defaultAddonPath): NativeAddon {
  try {
    const ops = require(addonPath) as NativeSocketOps;
    return { loaded: true, ops, path: addonPath };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // A missing file is "not built"; anything else (a missing libbpf.so, an ABI mismatch) says what dlopen said.
    if (code === 'MODULE_NOT_FOUND' || code === 'ENOENT')
      return { loaded: false, reason: NOT_BUILT_REASON, path: addonPath };
    return {
      loaded: false,
      reason: `native addon failed to load from ${addonPath}: ${(err as Error).message}`,
      path: addonPath,
    };
  }
}

export function addon(): NativeAddon {
  cached ??= loadAddon();
  return cached;
}

/** The loaded addon, or a NotSupportedError saying why there is none. */
export function requireOps(): NativeSocketOps {
  const loaded = addon();
  if (!loaded.loaded) throw new NotSupportedError(loaded.reason);
  return loaded.ops;
}
