// The error table of the sidecar daemon: configuration and plugin loading.

import { MeshportError } from '@meshport/protocol';

/** Every code @meshport/sidecar raises, documented in docs/errors.md (kept in step by test/errors-doc.test.ts). */
export const SIDECAR_ERROR_CODES = {
  MESHPORT_CONFIG_INVALID: 'the sidecar config is not valid YAML or a key has a wrong value; the message names the key and the line',
  MESHPORT_PLUGIN_INVALID: 'a registry plugin named in the config cannot be loaded or does not export createRegistryAdapter',
  MESHPORT_CAPTURE_FAILED: 'a capture listener of the hijack config could not be opened (a transparent one needs CAP_NET_ADMIN)',
} as const;

export type SidecarErrorCode = keyof typeof SIDECAR_ERROR_CODES;

export class SidecarError extends MeshportError {
  declare readonly code: SidecarErrorCode;

  constructor(code: SidecarErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message);
    if (options?.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }
}
