// The sidecar's half of mutual TLS: the config's `tls` and `authz` turned into the router's RouterSecurity, the
// certificate files loaded at start and watched for rotation, and what `/config` shows of them (never key material).

import { X509Certificate } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { AuthzPolicy, RouterSecurity, TlsMaterial } from '@meshport/router';
import { trustDomainOf } from '@meshport/router';
import type { AuthzConfig, TlsConfig } from './config';
import { SidecarError } from './errors';

/** The identity module's API (packages/sidecar/src/identity), loaded when it is there. */
interface IdentityApi {
  loadTlsMaterial(files: TlsFiles): TlsMaterial | Promise<TlsMaterial>;
  watchTlsMaterial(
    files: TlsFiles,
    onChange: (material: TlsMaterial) => void,
    onError: (error: Error) => void,
  ): { close(): void };
}

const identity: IdentityApi = (() => {
  try {
    const api = require('./identity') as Partial<IdentityApi>;
    if (typeof api.loadTlsMaterial === 'function' && typeof api.watchTlsMaterial === 'function')
      return api as IdentityApi;
  } catch {}
  return { loadTlsMaterial: readMaterial, watchTlsMaterial: pollMaterial };
})();

/** Until the identity module lands: the files read, the leaf's spiffe:// URI SAN as the identity. */
function readMaterial(files: TlsFiles): TlsMaterial {
  const read = (file: string) => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      throw new SidecarError('MESHPORT_CONFIG_INVALID', `${file}: cannot read: ${(err as Error).message}`, {
        cause: err,
      });
    }
  };
  const certChain = read(files.certFile);
  const key = read(files.keyFile);
  const trustBundle = read(files.trustBundleFile);
  let san: string | undefined;
  try {
    san = new X509Certificate(certChain).subjectAltName;
  } catch (err) {
    throw new SidecarError('MESHPORT_CONFIG_INVALID', `${files.certFile}: not a PEM certificate`, { cause: err });
  }
  const id = /URI:(spiffe:\/\/[^,\s]+)/.exec(san ?? '')?.[1];
  if (!id)
    throw new SidecarError('MESHPORT_CONFIG_INVALID', `${files.certFile}: the certificate has no spiffe:// URI SAN`);
  return { certChain, key, trustBundle, identity: id };
}

function pollMaterial(
  files: TlsFiles,
  onChange: (material: TlsMaterial) => void,
  onError: (error: Error) => void,
): { close(): void } {
  let timer: NodeJS.Timeout | undefined;
  const changed = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      try {
        onChange(readMaterial(files));
      } catch (err) {
        onError(err as Error);
      }
    }, 100);
  };
  const list = [files.certFile, files.keyFile, files.trustBundleFile];
  for (const file of list) watchFile(file, { interval: 200 }, changed);
  return {
    close() {
      clearTimeout(timer);
      for (const file of list) unwatchFile(file, changed);
    },
  };
}

/** The three files of `tls`, absolute. */
export interface TlsFiles {
  certFile: string;
  keyFile: string;
  trustBundleFile: string;
}

/** The files of a `tls` block whose mode is not off (parseConfig requires all three then). */
export function tlsFilesOf(tls: TlsConfig): TlsFiles | undefined {
  if (tls.mode === 'off' || !tls.certFile || !tls.keyFile || !tls.trustBundleFile) return undefined;
  return { certFile: tls.certFile, keyFile: tls.keyFile, trustBundleFile: tls.trustBundleFile };
}

/** Reads and checks the files (the identity module's errors: missing, unreadable, not PEM, no identity, expired...). */
export function loadTlsMaterial(files: TlsFiles): Promise<TlsMaterial> | TlsMaterial {
  return identity.loadTlsMaterial(files);
}

/** Calls `onChange` with the new material when a file changes and reads well, `onError` when it does not. */
export function watchTlsMaterial(
  files: TlsFiles,
  onChange: (material: TlsMaterial) => void,
  onError: (error: Error) => void,
): { close(): void } {
  return identity.watchTlsMaterial(files, onChange, onError);
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
