// The error table of the sidecar daemon: configuration, plugin loading, TLS identity files and the development CA.

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
  MESHPORT_TLS_FILE_UNREADABLE:
    'a TLS file (tls.certFile, tls.keyFile, tls.trustBundleFile) is missing or cannot be read; the message names the file',
  MESHPORT_TLS_BAD_PEM:
    'a TLS file holds no PEM certificate (certFile, trustBundleFile) or private key (keyFile) that can be parsed; the message names the file',
  MESHPORT_TLS_CERT_EXPIRED: "this sidecar's certificate has expired; the message names the file and the date it ended",
  MESHPORT_TLS_CERT_NOT_YET_VALID:
    "this sidecar's certificate starts in the future (a clock behind, or a certificate issued ahead); the message names the file and the date",
  MESHPORT_TLS_UNTRUSTED:
    "this sidecar's certificate does not chain to a CA of the trust bundle (another CA, a missing intermediate, an expired CA); the message names both files",
  MESHPORT_TLS_NO_IDENTITY:
    "this sidecar's certificate has no spiffe:// URI in its subjectAltName, or more than one; the message names the file",
  MESHPORT_TLS_KEY_MISMATCH:
    "the key file's private key is not the one of the certificate; the message names both files",
  MESHPORT_CA_EXISTS:
    'meshport ca init found a CA (ca.pem or ca-key.pem) in the directory and left it as it was; remove it first to start over',
  MESHPORT_CA_INVALID:
    'the development CA directory lacks a readable ca.pem or ca-key.pem, they do not belong together, or the CA has expired',
  MESHPORT_CA_BAD_IDENTITY:
    "an identity to issue is not a spiffe:// URI with a workload path (spiffe://TD/ns/NS/sa/APP) in the CA's trust domain, or a trust domain is malformed",
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
