// The error table of the registry side: stable codes that adapters, facades and the sidecar match on.

import { MeshportError } from '@meshport/protocol';

/**
 * Every code @meshport/registry-core can raise, documented in docs/errors.md (kept in step by
 * test/errors-doc.test.ts). Codes are never renamed or reused once released.
 */
export const REGISTRY_ERROR_CODES = {
  MESHPORT_REGISTRY_BAD_URL: 'a provider URL is not `[scheme://]host:port[/path][?params]` with a port of 0-65535',
  MESHPORT_REGISTRY_BAD_NODE_NAME: 'a registry node name is not valid percent-encoding (URLEncoder or encodeURIComponent)',
  MESHPORT_REGISTRY_FILE_INVALID: 'the file registry cannot be read or is not `{ "services": { key: [url, ...] } }`',
  MESHPORT_REGISTRY_CLOSED: 'a registry adapter was used after close()',
  MESHPORT_REGISTRY_BAD_RESP: 'a Redis client or server sent bytes that are not RESP, or a length over the configured maximum',
  MESHPORT_REGISTRY_FACADE_NOT_STARTED: 'a registry facade was asked for its address before start() resolved',
  MESHPORT_REGISTRY_FACADE_NOT_SERVING: 'a registry facade was asked for its address before start() resolved or after close(), or started after close()',
} as const;

export type RegistryErrorCode = keyof typeof REGISTRY_ERROR_CODES;

/** A registry-side failure; `code` is one of REGISTRY_ERROR_CODES. */
export class RegistryError extends MeshportError {
  declare readonly code: RegistryErrorCode;

  constructor(code: RegistryErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message);
    if (options?.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }
}
