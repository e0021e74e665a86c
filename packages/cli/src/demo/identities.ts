// The demo's identities: a development CA in the demo's own temporary directory (what `meshport ca init` makes) and
// one certificate per pod (what `meshport ca issue` makes), so both sidecars run with `tls: { mode: strict }` and
// every call between the pods goes over mutual TLS. MESHPORT_DEMO_TLS=off runs the pods in plaintext instead.

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const DEMO_TRUST_DOMAIN = 'meshport.demo';

export type DemoApp = 'provider' | 'consumer';

/** `spiffe://meshport.demo/ns/demo/sa/<app>`: the identity of the pod that runs the app. */
export const demoIdentity = (app: DemoApp) => `spiffe://${DEMO_TRUST_DOMAIN}/ns/demo/sa/${app}`;

/** What a pod's config needs for mutual TLS (see podConfig). */
export interface PodTls {
  identity: string;
  certFile: string;
  keyFile: string;
  trustBundleFile: string;
  /** Inbound: the route keys this pod serves, each allowing only these identities (authz.services). */
  allow?: Record<string, string[]>;
}

export interface DemoPki {
  dir: string;
  trustDomain: string;
  caFile: string;
  pods: Record<DemoApp, PodTls>;
  cleanup(): void;
}

/** Whether the demo runs mTLS: MESHPORT_DEMO_TLS=off turns it off; on (strict) by default. */
export function demoTls(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = (env.MESHPORT_DEMO_TLS ?? '').toLowerCase();
  return !['off', '0', 'false', 'no'].includes(value);
}

/**
 * A development CA and one leaf per pod, in a temporary directory of their own (keys 0600, as the CA writes them).
 * The CA module loads here, and only when the demo runs mTLS.
 */
export async function makeDemoPki(): Promise<DemoPki> {
  const { initCa, issueCertificate } = await import('@meshport/sidecar');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-demo-ca-'));
  try {
    const ca = initCa({ dir: path.join(dir, 'ca'), trustDomain: DEMO_TRUST_DOMAIN });
    const issue = (app: DemoApp): PodTls => {
      const leaf = issueCertificate({ caDir: ca.dir, id: demoIdentity(app), out: path.join(dir, app) });
      return { identity: leaf.id, certFile: leaf.certFile, keyFile: leaf.keyFile, trustBundleFile: ca.certFile };
    };
    return {
      dir,
      trustDomain: DEMO_TRUST_DOMAIN,
      caFile: ca.certFile,
      pods: { provider: issue('provider'), consumer: issue('consumer') },
      cleanup: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** The `tls` and `authz` lines of a pod's config. */
export function tlsConfigLines(tls: PodTls): string[] {
  const lines = [
    `tls: { mode: strict, certFile: "${tls.certFile}", keyFile: "${tls.keyFile}", trustBundleFile: "${tls.trustBundleFile}" }`,
  ];
  if (tls.allow && Object.keys(tls.allow).length > 0) {
    lines.push('authz:', '  default: allow-trust-domain', '  services:');
    for (const [service, ids] of Object.entries(tls.allow))
      lines.push(`    "${service}": { allow: [${ids.map((id) => `"${id}"`).join(', ')}] }`);
  }
  return lines;
}
