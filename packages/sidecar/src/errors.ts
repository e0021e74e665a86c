// The error table of the sidecar daemon: configuration and plugin loading.

import { MeshportError } from '@meshport/protocol';

/** Every code @meshport/sidecar raises, documented in docs/errors.md (kept in step by test/errors-doc.test.ts). */
export const SIDECAR_ERROR_CODES = {
  MESHPORT_CONFIG_INVALID:
    'the sidecar config is not valid YAML or a key has a wrong value; the message names the key and the line',
  MESHPORT_PLUGIN_INVALID:
    'a registry plugin named in the config cannot be loaded or does not export createRegistryAdapter',
  MESHPORT_CAPTURE_FAILED:
    'a capture listener of the hijack config could not be opened (a transparent one needs CAP_NET_ADMIN)',
  MESHPORT_ADDRESS_UNAVAILABLE:
    'an address of the config cannot be listened on: in use, given to two listeners, not an address of this host, or a host name that does not resolve; the message names the key and the line',
} as const;

export type SidecarErrorCode = keyof typeof SIDECAR_ERROR_CODES;

/** One mistake of a config or of its start-up check. */
export interface SidecarProblem {
  code: SidecarErrorCode;
  message: string;
}

export class SidecarError extends MeshportError {
  declare readonly code: SidecarErrorCode;

  /**
   * Every mistake found (`file:line: key: what`, each with its code), in the order of the file: a config check or a
   * start-up check reports them all at once. The message is their messages, one a line.
   */
  readonly problems: readonly SidecarProblem[];

  constructor(
    code: SidecarErrorCode,
    message: string,
    options?: { cause?: unknown; problems?: readonly SidecarProblem[] },
  ) {
    super(code, message);
    if (options?.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
    this.problems = options?.problems ?? [{ code, message }];
  }
}
