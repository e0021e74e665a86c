// The security contract between the sidecar and both engines: mutual TLS between sidecars (who this sidecar is, whom
// it trusts, what it accepts inbound) and the per-service authorization policy, as plain data so that the TypeScript
// engine and the native one read the same thing. docs/security.md is the user's view of it.

/**
 * What the inbound listener accepts. `permissive`: TLS (told apart by its first byte, 0x16) and plaintext on the same
 * port, for a migration; `strict`: TLS only, plaintext connections are closed at their first byte and counted;
 * `off`: plaintext only (a TLS client handshake is then a bad frame).
 */
export type TlsMode = 'off' | 'permissive' | 'strict';

/** PEM text of this sidecar's credentials; replaced as a whole on rotation. */
export interface TlsMaterial {
  /** The leaf certificate, then any intermediates. Its SAN carries `identity` as a URI. */
  certChain: string;
  /** The leaf's private key (PKCS#8 or SEC1 PEM). */
  key: string;
  /** The trust bundle: CA certificates that issue peers' certificates. */
  trustBundle: string;
  /** This sidecar's identity, e.g. `spiffe://cluster.local/ns/default/sa/echo-provider`. */
  identity: string;
}

/**
 * Who may call what on the inbound side. A caller is known by the identity in its client certificate; a plaintext
 * caller (permissive mode) has none. Rules are per service (route key, as routes are) and optionally per method; the
 * most specific one that exists decides: method list, else service list, else `default`.
 */
export interface AuthzPolicy {
  /**
   * With no rule for the service: `allow-trust-domain` lets in every caller whose identity is in `trustDomain` (and,
   * in permissive mode, plaintext callers, which have not migrated yet); `allow-all` everyone; `deny` no one.
   * @default 'allow-trust-domain'
   */
  default: 'allow-trust-domain' | 'allow-all' | 'deny';
  /** The trust domain of `allow-trust-domain`, e.g. `cluster.local`. */
  trustDomain: string;
  /** Per service: the identities allowed (exact, or a prefix ending in `/*`), and per method if finer. */
  services: Record<string, { allow: string[]; methods?: Record<string, string[]> }>;
}

/** The router's view of security; absent: plaintext everywhere, every call allowed (today's behaviour). */
export interface RouterSecurity {
  mode: TlsMode;
  /** The current credentials; outbound TLS is used for an endpoint whose `identity` is set, with these. */
  material: TlsMaterial;
  policy: AuthzPolicy;
}

/** Why a handshake failed, as counted in `meshport_tls_handshake_failures_total{reason}`. */
export type HandshakeFailure =
  | 'no-client-cert' // inbound: the caller presented no certificate
  | 'untrusted' // the peer's chain does not verify against the trust bundle (another CA, self-signed)
  | 'expired' // the peer's certificate is outside its validity period
  | 'wrong-identity' // outbound: the provider's certificate does not carry the identity the registry published
  | 'no-identity' // the peer's certificate has no spiffe:// URI SAN
  | 'plaintext-refused' // inbound strict mode: the first byte was not a TLS handshake
  | 'protocol' // anything else the TLS layer refused (version, cipher, malformed record)
  | 'timeout'; // the handshake did not finish within the connect timeout

/** Whether `caller` (undefined: a plaintext caller) may call `method` of `service` under `policy`. */
export function authorize(
  policy: AuthzPolicy,
  service: string,
  method: string | undefined,
  caller: string | undefined,
): boolean {
  const rule = policy.services[service];
  if (rule) {
    const list = (method !== undefined && rule.methods?.[method]) || rule.allow;
    return caller !== undefined && list.some((allowed) => identityMatches(allowed, caller));
  }
  switch (policy.default) {
    case 'allow-all':
      return true;
    case 'deny':
      return false;
    default:
      return caller === undefined || trustDomainOf(caller) === policy.trustDomain;
  }
}

/** `spiffe://td/ns/a/sa/b` matches itself, and `spiffe://td/ns/a/*` matches every identity under `spiffe://td/ns/a/`. */
export function identityMatches(allowed: string, caller: string): boolean {
  return allowed.endsWith('/*') ? caller.startsWith(allowed.slice(0, -1)) : allowed === caller;
}

/** The trust domain of a `spiffe://` identity, or undefined when it is not one. */
export function trustDomainOf(identity: string): string | undefined {
  const m = /^spiffe:\/\/([^/]+)(\/|$)/.exec(identity);
  return m ? m[1] : undefined;
}
