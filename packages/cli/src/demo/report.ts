// What the demo reads back to show what happened: latency percentiles, and the pods' admin pages (/routes,
// /services, /stats).

import { spawn } from 'node:child_process';
import { formatQuantile, quantile, type ServicesPage } from '../top/figures';
import type { HostPort } from './pods';

/** GET http://admin/path; for a netns pod from inside its namespace (the admin port is on the pod's loopback). */
async function adminGet(admin: HostPort, urlPath: string, netns?: string): Promise<string> {
  const url = `http://${admin.host}:${admin.port}${urlPath}`;
  if (!netns) return (await fetch(url)).text();
  const script =
    'fetch(process.argv[1]).then((r) => r.text()).then((t) => process.stdout.write(t), (e) => { console.error(e.message); process.exit(1); })';
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', script, url], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (err += d.toString('utf8')));
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`GET ${url} in ${netns}: ${err.trim() || `exit ${code}`}`));
    });
  });
}

/** The value below which `p` percent of the sorted samples lie (nearest rank). */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function formatMs(ms: number): string {
  if (Number.isNaN(ms)) return '-';
  return ms < 10 ? `${ms.toFixed(2)} ms` : `${ms.toFixed(1)} ms`;
}

export interface RouteCluster {
  listener: string;
  name: string;
  /** `identity`: what the provider published (meshport.id); the endpoint is dialed with mutual TLS. */
  endpoints: { address: string; healthy?: boolean; identity?: string }[];
}

export async function adminRoutes(admin: HostPort, netns?: string): Promise<RouteCluster[]> {
  const body = JSON.parse(await adminGet(admin, '/routes', netns)) as { clusters: RouteCluster[] };
  return body.clusters;
}

/** One service and method of a pod's /services, since its sidecar started: calls, success, p50/p99, callers. */
export interface ServiceLine {
  direction: string;
  service: string;
  method: string;
  calls: number;
  answered: number;
  ok: number;
  /** The answers that were not ok, by outcome. */
  failures: [string, number][];
  p50: string;
  p99: string;
  /** The service's callers (its identity when the caller had one, else its address), busiest first. */
  callers: string[];
}

/** A pod's /services (the same page `meshport top` reads), as totals since its sidecar started. */
export async function adminServices(admin: HostPort, netns?: string): Promise<ServiceLine[]> {
  const page = JSON.parse(await adminGet(admin, '/services', netns)) as ServicesPage;
  return page.services.map((s) => {
    const answered = Object.values(s.outcomes).reduce((a, b) => a + b, 0);
    return {
      direction: s.direction,
      service: s.service,
      method: s.method,
      calls: s.requests,
      answered,
      ok: s.outcomes.ok ?? 0,
      failures: Object.entries(s.outcomes).filter(([o, n]) => o !== 'ok' && n > 0),
      p50: formatQuantile(quantile(s.latency.counts, page.buckets, 0.5)),
      p99: formatQuantile(quantile(s.latency.counts, page.buckets, 0.99)),
      callers: page.callers
        .filter((c) => c.direction === s.direction && c.service === s.service && c.requests > 0)
        .sort((a, b) => b.requests - a.requests)
        .map((c) => c.caller),
    };
  });
}

/** The mutual-TLS counters of a pod's /stats: handshakes and failures by direction, calls denied by policy. */
export interface TlsCounts {
  handshakes: { inbound: number; outbound: number };
  /** `direction reason` -> count. */
  failures: Map<string, number>;
  denied: number;
}

export async function adminTls(admin: HostPort, netns?: string): Promise<TlsCounts> {
  const text = await adminGet(admin, '/stats', netns);
  const counts: TlsCounts = { handshakes: { inbound: 0, outbound: 0 }, failures: new Map(), denied: 0 };
  for (const line of text.split('\n')) {
    const m =
      /^(meshport_tls_handshakes_total|meshport_tls_handshake_failures_total|meshport_calls_denied_total)\{(.*)\}\s+(\S+)$/.exec(
        line,
      );
    if (!m) continue;
    const labels = Object.fromEntries([...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    const value = Number(m[3]);
    if (m[1] === 'meshport_calls_denied_total') counts.denied += value;
    else if (m[1] === 'meshport_tls_handshakes_total') {
      if (labels.direction === 'inbound' || labels.direction === 'outbound')
        counts.handshakes[labels.direction] += value;
    } else if (value > 0) counts.failures.set(`${labels.direction} ${labels.reason}`, value);
  }
  return counts;
}
