// SPIFFE IDs as meshport uses them: `spiffe://<trust domain>/<path>`, checked by the rules of the SPIFFE ID
// specification (§2), and read out of a certificate's subjectAltName.

import type { X509Certificate } from 'node:crypto';

/** A trust domain: lowercase letters, digits, dot, dash, underscore (SPIFFE ID §2.1). */
export const TRUST_DOMAIN_PATTERN = /^[a-z0-9._-]+$/;

/** The meshport form of an identity, for messages and docs. */
export const IDENTITY_FORM = 'spiffe://<trust domain>/ns/<namespace>/sa/<app>';

/**
 * Splits a SPIFFE ID of a workload into trust domain and path, or says what is wrong with it: the scheme, the trust
 * domain's characters, a path that is empty (the trust domain's own ID names no workload), empty or dot segments,
 * segment characters other than letters, digits, dot, dash, underscore, a query or fragment.
 */
export function parseSpiffeId(id: string): { trustDomain: string; path: string } | { problem: string } {
  if (!id.startsWith('spiffe://')) return { problem: `'${id}' does not start with spiffe://` };
  if (id.length > 2048) return { problem: 'a SPIFFE ID is at most 2048 bytes' };
  const rest = id.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash < 0 ? rest : rest.slice(0, slash);
  if (!TRUST_DOMAIN_PATTERN.test(trustDomain))
    return { problem: `'${trustDomain}' is not a trust domain (lowercase letters, digits, '.', '-', '_')` };
  const path = slash < 0 ? '' : rest.slice(slash);
  if (path === '' || path === '/') return { problem: `'${id}' names a trust domain, not a workload: add a path` };
  for (const segment of path.slice(1).split('/')) {
    if (segment === '') return { problem: `'${id}' has an empty path segment (a doubled or trailing '/')` };
    if (segment === '.' || segment === '..') return { problem: `'${id}' has a '${segment}' path segment` };
    if (!/^[A-Za-z0-9._-]+$/.test(segment))
      return { problem: `'${id}': path segment '${segment}' may hold only letters, digits, '.', '-', '_'` };
  }
  return { trustDomain, path };
}

/**
 * The URIs of a certificate's subjectAltName. Node lists entries as `URI:…, DNS:…`, quoting a value (as a JSON
 * string) when it holds a comma or quote, so a crafted SAN cannot pass for two entries.
 */
export function sanUris(cert: X509Certificate): string[] {
  const san = cert.subjectAltName;
  if (!san) return [];
  const uris: string[] = [];
  const entry = /(?:^|, )([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)/g;
  for (let m: RegExpExecArray | null; (m = entry.exec(san)); ) {
    if (m[1] !== 'URI') continue;
    uris.push(m[2].startsWith('"') ? (JSON.parse(m[2]) as string) : m[2]);
  }
  return uris;
}

/** The spiffe:// URIs of a certificate's subjectAltName. */
export function spiffeIdsOf(cert: X509Certificate): string[] {
  return sanUris(cert).filter((u) => u.startsWith('spiffe://'));
}
