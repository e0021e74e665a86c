// The error table of the registry side: stable codes that adapters, facades and the sidecar match on.

import { MeshportError } from '@meshport/protocol';

/**
 * Every code @meshport/registry-core can raise, documented in docs/errors.md (kept in step by
 * test/errors-doc.test.ts). Codes are never renamed or reused once released.
 */
export const REGISTRY_ERROR_CODES = {
  MESHPORT_REGISTRY_BAD_URL: 'a provider URL is not `[scheme://]host:port[/path][?params]` with a port of 0-65535',
  MESHPORT_REGISTRY_BAD_NODE_NAME:
    'a registry node name is not valid percent-encoding (URLEncoder or encodeURIComponent)',
  MESHPORT_REGISTRY_FILE_INVALID: 'the file registry cannot be read or is not `{ "services": { key: [url, ...] } }`',
  MESHPORT_REGISTRY_CLOSED: 'a registry adapter was used after close()',
  MESHPORT_REGISTRY_BAD_RESP:
    'a Redis client or server sent bytes that are not RESP, or a length over the configured maximum',
  MESHPORT_REGISTRY_FACADE_NOT_STARTED: 'a registry facade was asked for its address before start() resolved',
  MESHPORT_REGISTRY_FACADE_NOT_SERVING:
    'a registry facade was asked for its address before start() resolved or after close(), or started after close()',
  MESHPORT_REGISTRY_SOFA_BAD_SERVER:
    'a SOFA Registry session server entry (configured, or in a discovery answer) is not `host:port[?weight=n]`; it is skipped',
  MESHPORT_REGISTRY_SOFA_NO_SERVER:
    'the SOFA Registry client has no session server to connect to: none configured and discovery named none',
  MESHPORT_REGISTRY_SOFA_DISCOVERY_FAILED:
    'a SOFA Registry session discovery query got no server list: an answer other than HTTP 200, or no answer within connectTimeoutMs',
  MESHPORT_REGISTRY_SOFA_CONNECT_TIMEOUT:
    'a TCP connect to a SOFA Registry session server took longer than connectTimeoutMs',
  MESHPORT_REGISTRY_SOFA_DISCONNECTED:
    'a request to a SOFA Registry session server lost its connection (or the client was closed) before the answer came',
  MESHPORT_REGISTRY_SOFA_TIMEOUT: 'a SOFA Registry session server did not answer a request within requestTimeoutMs',
  MESHPORT_REGISTRY_SOFA_BOLT_STATUS:
    'a SOFA Registry session server answered a request with a Bolt status other than SUCCESS (in `boltStatus`)',
  MESHPORT_REGISTRY_SOFA_BAD_BODY:
    'a SOFA Registry body is not the Hessian 2.0 instance its class name promises (another class, a field of the wrong type, cut short, another codec)',
  MESHPORT_REGISTRY_SOFA_MESH_API_REFUSED:
    'the SOFA mesh API facade refused an HTTP request (unknown path, not POST, a body that is not the JSON the API takes); `status` is the HTTP status answered',
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
