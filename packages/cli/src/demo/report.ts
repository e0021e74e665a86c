// What the demo reads back to show what happened: latency percentiles, and the pods' admin pages (/routes, /stats).

import type { HostPort } from './pods';

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
  endpoints: { address: string; healthy?: boolean }[];
}

export async function adminRoutes(admin: HostPort): Promise<RouteCluster[]> {
  const res = await fetch(`http://${admin.host}:${admin.port}/routes`);
  const body = (await res.json()) as { clusters: RouteCluster[] };
  return body.clusters;
}

/** meshport_responses_total by `listener cluster outcome`. */
export async function adminResponses(admin: HostPort): Promise<Map<string, number>> {
  const text = await (await fetch(`http://${admin.host}:${admin.port}/stats`)).text();
  const counts = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('meshport_responses_total{')) continue;
    const m = /\{(.*)\}\s+(\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    counts.set(`${labels.listener} ${labels.cluster} ${labels.outcome}`, Number(m[2]));
  }
  return counts;
}
