// The sidecar's half of mutual TLS: the config's `tls` and `authz` turned into the router's RouterSecurity, the
// certificate files loaded at start and watched for rotation, and what `/config` shows of them (never key material).

import { X509Certificate } from 'node:crypto';
import type { AuthzPolicy, RouterSecurity, TlsMaterial } from '@meshport/router';
import { trustDomainOf } from '@meshport/router';
import type { AuthzConfig, TlsConfig } from './config';
import type { SidecarError } from './errors';
import * as identity from './identity';
import type { TlsFiles } from './identity';

export type { TlsFiles };

/** The files of a `tls` block whose mode is not off (parseConfig requires all three then). */
export function tlsFilesOf(tls: TlsConfig): TlsFiles | undefined {
  if (tls.mode === 'off' || !tls.certFile || !tls.keyFile || !tls.trustBundleFile) return undefined;
  return { certFile: tls.certFile, keyFile: tls.keyFile, trustBundleFile: tls.trustBundleFile };
}

/**
 * Reads and checks the files: a missing, unreadable, expired or untrusted certificate, one without an identity, or a
 * key that is not its key is a SidecarError naming the file (the identity module's MESHPORT_TLS_* codes).
 */
export function loadTlsMaterial(files: TlsFiles): TlsMaterial {
  return identity.loadTlsMaterial(files);
}

/** Calls `onChange` with the new material when the files change and check well, `onError` when they do not. */
export function watchTlsMaterial(
  files: TlsFiles,
  initial: TlsMaterial | undefined,
  onChange: (material: TlsMaterial) => void,
  onError: (error: SidecarError) => void,
): { close(): void } {
  return identity.watchTlsMaterial(files, onChange, onError, { initial });
}

/** The authorization policy of the config, in `trustDomain` (the config's, else that of this sidecar's identity). */
export function policyOf(tls: TlsConfig, authz: AuthzConfig, material: TlsMaterial): AuthzPolicy {
  return {
    default: authz.default,
    trustDomain: tls.trustDomain ?? trustDomainOf(material.identity) ?? '',
    services: authz.services,
  };
}

export function securityOf(tls: TlsConfig, authz: AuthzConfig, material: TlsMaterial): RouterSecurity {
  return { mode: tls.mode, material, policy: policyOf(tls, authz, material) };
}

/** When the leaf certificate of `material` stops being valid (ISO 8601), or undefined when it cannot be read. */
export function certificateExpiry(material: TlsMaterial): string | undefined {
  try {
    return new Date(new X509Certificate(material.certChain).validTo).toISOString();
  } catch {
    return undefined;
  }
}

/** What `/config` shows of security: the mode, who this sidecar is, whom it trusts, the policy; no key material. */
export function describeSecurity(
  tls: TlsConfig,
  authz: AuthzConfig,
  material: TlsMaterial | undefined,
): Record<string, unknown> {
  const { certFile, keyFile, trustBundleFile } = tls;
  return {
    tls: {
      mode: tls.mode,
      ...(certFile ? { certFile, keyFile, trustBundleFile } : {}),
      ...(material
        ? {
            identity: material.identity,
            trustDomain: tls.trustDomain ?? trustDomainOf(material.identity),
            certificateExpires: certificateExpiry(material),
          }
        : tls.trustDomain
          ? { trustDomain: tls.trustDomain }
          : {}),
    },
    authz: material ? policyOf(tls, authz, material) : { ...authz, trustDomain: tls.trustDomain ?? null },
  };
}
