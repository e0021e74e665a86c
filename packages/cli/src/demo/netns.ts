// Network-namespace pods for the demo (root only): a "net" namespace acting as the router between the two pods and
// the host, so nothing on the host forwards and nothing but our own veth (and its route) is added to the host.
//
//   host  198.18.12.1/24 (ZooKeeper binds here) --veth-- 198.18.12.2  net ns (ip_forward=1, only in this ns)
//   net   198.18.10.1/24 --veth-- 198.18.10.2/24  provider ns (default via 198.18.10.1)
//   net   198.18.11.1/24 --veth-- 198.18.11.2/24  consumer ns (default via 198.18.11.1)
//   host  route 198.18.10.0/23 via 198.18.12.2 (goes with the host veth)
//
// Everything is named after the demo's pid; cleanup deletes the namespaces and the host veth, also synchronously
// (signals, process exit).

import { spawnSync } from 'node:child_process';

export const HOST_IP = '198.18.12.1';
const NET_HOST_SIDE_IP = '198.18.12.2';
export const PROVIDER_POD_IP = '198.18.10.2';
export const CONSUMER_POD_IP = '198.18.11.2';

export interface DemoNetns {
  provider: string;
  consumer: string;
  net: string;
  hostIp: string;
  /** Deletes the namespaces and the host veth; never throws. */
  cleanup(): void;
}

function ip(args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0)
    throw new Error(`ip ${args.join(' ')}: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}`);
}

function quietIp(args: string[]): void {
  spawnSync('ip', args, { stdio: 'ignore', timeout: 10_000 });
}

/** Root, and `ip netns` answers. */
export function netnsUsable(): boolean {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return false;
  const r = spawnSync('ip', ['netns', 'list'], { stdio: 'ignore', timeout: 5_000 });
  return r.status === 0;
}

/** The pod mode: MESHPORT_DEMO_PODS=loopback|netns, else netns when usable. */
export function podMode(): 'loopback' | 'netns' {
  const want = process.env.MESHPORT_DEMO_PODS;
  if (want === 'loopback') return 'loopback';
  if (want === 'netns') {
    if (!netnsUsable()) throw new Error('MESHPORT_DEMO_PODS=netns needs root and a working `ip netns`');
    return 'netns';
  }
  return netnsUsable() ? 'netns' : 'loopback';
}

export function setupNetns(pid = process.pid): DemoNetns {
  const base = `meshport-demo-${pid}`;
  const ns = { provider: `${base}-provider`, consumer: `${base}-consumer`, net: `${base}-net` };
  const link = (suffix: string) => `mpd${pid}${suffix}`; // at most 15 characters
  const hostVeth = link('h');
  const cleanup = () => {
    for (const n of [ns.provider, ns.consumer, ns.net]) quietIp(['netns', 'del', n]);
    quietIp(['link', 'del', hostVeth]);
  };
  try {
    for (const n of [ns.provider, ns.consumer, ns.net]) {
      ip(['netns', 'add', n]);
      ip(['-n', n, 'link', 'set', 'lo', 'up']);
    }
    spawnSync('ip', ['netns', 'exec', ns.net, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'], { stdio: 'ignore' });
    // host <-> net
    ip(['link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', link('n'), 'netns', ns.net]);
    ip(['addr', 'add', `${HOST_IP}/24`, 'dev', hostVeth]);
    ip(['link', 'set', hostVeth, 'up']);
    ip(['-n', ns.net, 'addr', 'add', `${NET_HOST_SIDE_IP}/24`, 'dev', link('n')]);
    ip(['-n', ns.net, 'link', 'set', link('n'), 'up']);
    ip(['route', 'add', '198.18.10.0/23', 'via', NET_HOST_SIDE_IP, 'dev', hostVeth]);
    // net <-> each pod
    for (const [pod, subnet, nsName] of [
      ['p', '10', ns.provider],
      ['c', '11', ns.consumer],
    ] as const) {
      const routerSide = link(`${pod}r`);
      const podSide = link(pod);
      ip(['-n', ns.net, 'link', 'add', routerSide, 'type', 'veth', 'peer', 'name', podSide, 'netns', nsName]);
      ip(['-n', ns.net, 'addr', 'add', `198.18.${subnet}.1/24`, 'dev', routerSide]);
      ip(['-n', ns.net, 'link', 'set', routerSide, 'up']);
      ip(['-n', nsName, 'addr', 'add', `198.18.${subnet}.2/24`, 'dev', podSide]);
      ip(['-n', nsName, 'link', 'set', podSide, 'up']);
      ip(['-n', nsName, 'route', 'add', 'default', 'via', `198.18.${subnet}.1`]);
    }
    const forwarding = spawnSync('ip', ['netns', 'exec', ns.net, 'cat', '/proc/sys/net/ipv4/ip_forward'], {
      encoding: 'utf8',
    });
    if (forwarding.stdout.trim() !== '1') throw new Error(`could not enable forwarding in ${ns.net}`);
  } catch (err) {
    cleanup();
    throw err;
  }
  return { ...ns, hostIp: HOST_IP, cleanup };
}
