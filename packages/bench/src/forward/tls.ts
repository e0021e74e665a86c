// The mutual TLS cases of the forward suite (issue 18): one development CA (the test kit's makeTestPki, made by the
// openssl command), a consumer and a provider identity issued by it, the RouterSecurity each router of
// meshport-2hop-mtls gets, the same certificates as haproxy-2hop-tls's PEM files, and what a router's /stats says
// about the handshakes it made.

import http from 'node:http';
import type { RouterSecurity } from '@meshport/router';
import { makeTestPki, type TestLeaf, type TestPki } from '@meshport/testkit';
import type { HaproxyTlsMaterial } from './haproxy';

export const TRUST_DOMAIN = 'cluster.local';
/** The identities of the two sidecars (and of haproxy's two hops, which present the same certificates). */
export const CONSUMER_ID = `spiffe://${TRUST_DOMAIN}/ns/bench/sa/loadgen`;
export const PROVIDER_ID = `spiffe://${TRUST_DOMAIN}/ns/bench/sa/echo`;

export interface BenchPki {
  pki: TestPki;
  consumer: TestLeaf;
  provider: TestLeaf;
  cleanup(): void;
}

/** A CA and the two leaves (ECDSA P-256, the URI SAN their identity); throws when openssl is missing. */
export function makeBenchPki(): BenchPki {
  const pki = makeTestPki({ trustDomain: TRUST_DOMAIN, name: 'meshport bench CA' });
  try {
    return {
      pki,
      consumer: pki.issue(CONSUMER_ID),
      provider: pki.issue(PROVIDER_ID),
      cleanup: () => pki.cleanup(),
    };
  } catch (err) {
    pki.cleanup();
    throw err;
  }
}

/**
 * A router's RouterSecurity: its own leaf, the CA as trust bundle, strict mode (the provider accepts TLS only), and a
 * policy with a rule per service that lets the consumer in, so each call pays for the lookup a real policy costs.
 */
export function routerSecurity(b: BenchPki, self: TestLeaf, services: string[]): RouterSecurity {
  return {
    mode: 'strict',
    material: { certChain: self.certPem, key: self.keyPem, trustBundle: b.pki.caPem, identity: self.identity },
    policy: {
      default: 'deny',
      trustDomain: TRUST_DOMAIN,
      services: Object.fromEntries(services.map((s) => [s, { allow: [CONSUMER_ID] }])),
    },
  };
}

/** haproxy-2hop-tls's certificates: the consumer's leaf on its first hop, the provider's on its second. */
export function haproxyMaterial(b: BenchPki): HaproxyTlsMaterial {
  return {
    clientCert: b.consumer.certPem,
    clientKey: b.consumer.keyPem,
    serverCert: b.provider.certPem,
    serverKey: b.provider.keyPem,
    ca: b.pki.caPem,
  };
}

/** TLS counters of a router's /stats (Prometheus text), summed over their other labels. */
export interface TlsCounters {
  inbound: number;
  outbound: number;
  failures: number;
  /** Failures by `direction/reason`, e.g. `inbound/no-client-cert`. */
  failureReasons: Record<string, number>;
}

export function parseTlsCounters(text: string): TlsCounters {
  const out: TlsCounters = { inbound: 0, outbound: 0, failures: 0, failureReasons: {} };
  for (const line of text.split('\n')) {
    const m = /^(meshport_tls_handshakes_total|meshport_tls_handshake_failures_total)\{([^}]*)\}\s+(\S+)/.exec(line);
    if (!m) continue;
    const value = Number(m[3]);
    if (!Number.isFinite(value)) continue;
    const label = (k: string) => new RegExp(`${k}="([^"]*)"`).exec(m[2])?.[1];
    const direction = label('direction');
    if (m[1] === 'meshport_tls_handshakes_total') {
      if (direction === 'inbound') out.inbound += value;
      else if (direction === 'outbound') out.outbound += value;
    } else {
      out.failures += value;
      const key = `${direction ?? '?'}/${label('reason') ?? '?'}`;
      out.failureReasons[key] = (out.failureReasons[key] ?? 0) + value;
    }
  }
  return out;
}

/** GET http://127.0.0.1:<admin>/stats and its TLS counters. */
export function tlsCounters(adminPort: number): Promise<TlsCounters> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: adminPort, path: '/stats', timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () =>
        res.statusCode === 200
          ? resolve(parseTlsCounters(body))
          : reject(new Error(`/stats answered ${res.statusCode}: ${body.slice(0, 200)}`)),
      );
    });
    req.on('timeout', () => req.destroy(new Error('/stats did not answer within 5 s')));
    req.on('error', reject);
  });
}
