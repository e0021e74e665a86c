// Whether an applied connect-hook still has a sidecar behind it: pinned programs outlive the sidecar, and then every
// connect of the pod is rewritten to a capture port nobody listens on (a dead sidecar blackholes its pod).

import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import path from 'node:path';
import { run } from './netns';
import type { HijackPlan } from './plan';

export interface CaptureHealth {
  /** The plan's pin directory. */
  pinDir: string;
  /** The rewrite programs (connect4, connect6) pinned there: attached whether or not a sidecar runs. */
  rewrites: string[];
  /** Where the rewrite sends connections. */
  captureAddress: string;
  capturePort: number;
  /** Whether a TCP listener on the capture port was found in the pod's network namespace. */
  listening: boolean;
  /** Where connect6 sends native IPv6 connects (on the same port). */
  captureAddress6: string;
  /**
   * Whether something listens on [captureAddress6]:capturePort (or on `::`) there. connect6 captures native IPv6
   * only while it does; otherwise IPv6 connects go where they say (uncaptured, never refused).
   */
  ipv6Captured: boolean;
  /** Where the listeners were read: `netns NAME`, `pid N` (a process of the cgroup) or `this process`. */
  checkedIn: string;
  /** Rewrites attached and nothing listening: every captured connect of the pod is refused. */
  blackhole: boolean;
  /** The exact command that takes the hook away (recovery when the sidecar cannot be brought back). */
  removeCommand: string;
}

const TCP_LISTEN = '0A';
const REWRITES = ['connect4', 'connect6'];

/** The 16 bytes of a numeric IPv6 address, or undefined. */
function ipv6Bytes(address: string): number[] | undefined {
  if (!isIPv6(address) || address.includes('.')) return undefined; // dotted (v4-mapped) forms are not capture addresses
  const [head, tail] = address.includes('::') ? address.split('::') : [address, undefined];
  const words = (part: string | undefined) => (part ? part.split(':').map((w) => parseInt(w, 16)) : []);
  const left = words(head);
  const right = words(tail);
  const all =
    tail === undefined ? left : [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  return all.flatMap((w) => [w >> 8, w & 255]);
}

/** `/proc/net/tcp{,6}` text: is some socket in LISTEN on `port` for `address` (or a wildcard that takes it)? */
export function procNetListens(text: string, address: string, port: number): boolean {
  // /proc prints an address as host-order u32s of its network bytes: each 4-byte group reversed (little-endian here).
  const hex = (bytes: number[]) => bytes.map((b) => b.toString(16).padStart(2, '0').toUpperCase());
  const groups = (bytes: number[]) =>
    Array.from({ length: bytes.length / 4 }, (_, i) =>
      hex(bytes.slice(4 * i, 4 * i + 4))
        .reverse()
        .join(''),
    ).join('');
  // "::" takes IPv4 (dual-stack) and IPv6; 0.0.0.0 takes IPv4 only.
  const want = new Set(['00000000000000000000000000000000']);
  const octets = address.split('.').map(Number);
  const v6 = ipv6Bytes(address);
  if (octets.length === 4 && octets.every((o) => Number.isInteger(o) && o >= 0 && o <= 255)) {
    const v4 = groups(octets);
    want.add('00000000');
    want.add(v4);
    want.add(`0000000000000000FFFF0000${v4}`);
  } else if (v6 !== undefined) {
    want.add(groups(v6));
  }
  for (const line of text.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 4 || cols[3] !== TCP_LISTEN) continue;
    const [addr, hexPort] = cols[1].split(':');
    if (parseInt(hexPort, 16) === port && want.has(addr.toUpperCase())) return true;
  }
  return false;
}

/** The listeners of the pod's namespace: `netns` when given, else a process of the cgroup, else this process. */
async function listenerTables(cgroup: string, netns: string | undefined): Promise<{ text: string; checkedIn: string }> {
  if (netns !== undefined) {
    const r = await run('ip', ['netns', 'exec', netns, 'cat', '/proc/net/tcp', '/proc/net/tcp6']);
    return { text: r.stdout, checkedIn: `netns ${netns}` };
  }
  let pid: string | undefined;
  try {
    pid = readFileSync(path.join(cgroup, 'cgroup.procs'), 'utf8').split('\n').find(Boolean);
  } catch {
    pid = undefined; // no such cgroup, or not readable: fall back to this process's namespace
  }
  const dir = pid === undefined ? '/proc/self/net' : `/proc/${pid}/net`;
  let text = '';
  for (const f of ['tcp', 'tcp6']) {
    try {
      text += readFileSync(path.join(dir, f), 'utf8');
    } catch {
      // no IPv6, or the process just exited
    }
  }
  return { text, checkedIn: pid === undefined ? 'this process' : `pid ${pid}` };
}

/** The `meshport hijack remove` command for this plan. */
export function removeCommand(plan: HijackPlan, netns?: string): string {
  const o = plan.options;
  const parts = ['meshport', 'hijack', 'remove', '--mode', plan.mode];
  if (o.cgroup !== null) parts.push('--cgroup', o.cgroup);
  if (o.sockmap) parts.push('--sockmap');
  if (netns !== undefined) parts.push('--netns', netns);
  return parts.map((p) => (/^[\w@%+=:,./-]+$/.test(p) ? p : `'${p.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/**
 * Whether the plan's rewrite programs are pinned (attached) and whether anything listens on their capture port in
 * the pod's network namespace. Reads only; needs root for bpffs and other namespaces.
 */
export async function captureHealth(plan: HijackPlan, options: { netns?: string } = {}): Promise<CaptureHealth> {
  const connect4 = plan.bpf.find((b) => b.program === 'connect4');
  const pinDir = plan.bpf[0]?.pinDir ?? '';
  const captureAddress = connect4?.config?.captureAddress ?? '127.0.0.1';
  const captureAddress6 = connect4?.config?.captureAddress6 ?? '::1';
  const capturePort = connect4?.config?.capturePort ?? plan.options.outboundPort;
  const rewrites =
    pinDir !== '' && existsSync(pinDir)
      ? readdirSync(pinDir)
          .filter((n) => REWRITES.includes(n))
          .sort()
      : [];
  const { text, checkedIn } = await listenerTables(plan.options.cgroup ?? '', options.netns);
  const listening = procNetListens(text, captureAddress, capturePort);
  return {
    pinDir,
    rewrites,
    captureAddress,
    capturePort,
    listening,
    captureAddress6,
    ipv6Captured: rewrites.includes('connect6') && procNetListens(text, captureAddress6, capturePort),
    checkedIn,
    blackhole: rewrites.length > 0 && !listening,
    removeCommand: removeCommand(plan, options.netns),
  };
}

/** Lines for `hijack status`/`print` and `doctor`: what is attached, whether it is served, how to recover. */
export function formatCaptureHealth(h: CaptureHealth): string {
  if (h.rewrites.length === 0) return `connect hook: not attached (nothing pinned in ${h.pinDir})\n`;
  const what = `connect hook: ${h.rewrites.join(', ')} attached (pinned in ${h.pinDir}), capture port ${h.captureAddress}:${h.capturePort}`;
  if (!h.listening) {
    return (
      `✗ ${what} has NO LISTENER (checked in ${h.checkedIn}): every connect of the pod is sent to a closed port and refused.\n` +
      `  Recover: restart the sidecar, or take the hook away: ${h.removeCommand}\n`
    );
  }
  // Not a failure: connect6 leaves native IPv6 alone while nothing listens there (it never refuses it).
  const ipv6 = h.ipv6Captured
    ? `  native IPv6: captured to [${h.captureAddress6}]:${h.capturePort}\n`
    : `  native IPv6: NOT captured (nothing listens on [${h.captureAddress6}]:${h.capturePort}): IPv6 connects go where they say\n`;
  return `✓ ${what} is listening (checked in ${h.checkedIn})\n${ipv6}`;
}
