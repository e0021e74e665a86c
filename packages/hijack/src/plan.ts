// Hijack plans as plain data: which iptables chains and rules, ip rules, routes and BPF attachments a mode needs.
//
// Why iptables (the iptables-nft CLI) rather than an nft table of our own: the TPROXY, owner and socket matches
// and their semantics are the ones Istio and Envoy's transparent-proxy docs are written against, so an operator
// can read our rules next to theirs; `iptables-save` gives one canonical text that `print` reproduces line for
// line; and on an nft kernel the rules still land in nftables (tables `ip nat` / `ip mangle`). Our own chains
// (MESHPORT_*) hang off the built-in ones by one jump rule each, so `remove` deletes exactly what `apply` made.

import { createHash } from 'node:crypto';
import path from 'node:path';
import { HijackError } from './errors';

export type HijackMode = 'redirect' | 'tproxy' | 'connect-hook';
export const HIJACK_MODES: readonly HijackMode[] = ['redirect', 'tproxy', 'connect-hook'];

/**
 * What to capture and what never to capture. Every port is TCP. redirect and tproxy are IPv4 only (no ip6tables
 * rules); connect-hook captures IPv4, the IPv4-mapped connects of dual-stack sockets and native IPv6 (connect6).
 */
export interface HijackOptions {
  mode: HijackMode;
  /** The sidecar's uid: its sockets are never captured. @default 1337 */
  uid?: number;
  /** Outbound capture listener (REDIRECT / connect-hook target). @default 15001 */
  outboundPort?: number;
  /** Inbound capture listener (REDIRECT or TPROXY target). @default 15006 */
  inboundPort?: number;
  /** The sidecar's admin HTTP port, never captured. @default 15000 */
  adminPort?: number;
  /** The sidecar's own listeners and registry facades, never captured. @default DEFAULT_FACADE_PORTS */
  facadePorts?: number[];
  /** More destination ports never captured, either direction. @default [] */
  excludePorts?: number[];
  /** Inbound destination ports to capture; `'*'` = every port but the excluded ones; `[]` = no inbound capture. @default '*' */
  inboundPorts?: '*' | number[];
  /** Outbound destination ports to capture; `'*'` = every port but the excluded ones. @default '*' */
  outboundPorts?: '*' | number[];
  /** Also capture connections to 127.0.0.0/8 (normally the app's own loopback calls pass untouched). @default false */
  includeLoopback?: boolean;
  /** fwmark that TPROXY sets and the policy-routing rule matches. @default 0x539 (1337) */
  mark?: number;
  /** Routing table holding the `local 0.0.0.0/0 dev lo` route for TPROXY. @default 133 */
  routeTable?: number;
  /**
   * The pod's cgroup v2 directory the BPF programs attach to; required by connect-hook and `sockmap` (no default:
   * attached at the cgroup root they would capture every process of the host). @default undefined
   */
  cgroup?: string;
  /** Also attach sockops + sk_msg for the same-host socket-to-socket shortcut. @default false */
  sockmap?: boolean;
}

/**
 * The sidecar's own ports besides capture and admin, excluded by default:
 * 12220 (router outbound listener, what sofa-rpc dials in mesh mode), 12201 (router inbound listener, where other
 * sidecars call in), 13330 (the sofa-mesh HTTP API facade). Facades on other ports go in `excludePorts`.
 */
export const DEFAULT_FACADE_PORTS: readonly number[] = [12201, 12220, 13330];

export const HIJACK_DEFAULTS = {
  uid: 1337,
  outboundPort: 15001,
  inboundPort: 15006,
  adminPort: 15000,
  facadePorts: DEFAULT_FACADE_PORTS,
  excludePorts: [] as readonly number[],
  inboundPorts: '*' as const,
  outboundPorts: '*' as const,
  includeLoopback: false,
  mark: 0x539,
  routeTable: 133,
  cgroup: null,
  sockmap: false,
  /** Where BPF links and maps are pinned, one directory per cgroup, so they outlive the `meshport hijack` process. */
  bpfPinRoot: '/sys/fs/bpf/meshport',
  /** The BPF connect4 program holds at most this many include/exclude ports (MESHPORT_MAX_PORTS). */
  bpfMaxPorts: 16,
} as const;

export type ResolvedHijackOptions = Required<Omit<HijackOptions, 'cgroup'>> & { cgroup: string | null };

export type IptablesTable = 'nat' | 'mangle';

/** The matches meshport uses, in the order `iptables-save` prints them. */
export interface RuleMatch {
  /** `-d CIDR` */
  destination?: string;
  /** `-i DEV` */
  inInterface?: string;
  /** `-p tcp` */
  protocol?: 'tcp';
  /** `-m tcp --dport N` (needs protocol tcp) */
  dport?: number;
  /** `-m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN` (i.e. `! --syn`): not the first packet of a connection */
  notSyn?: boolean;
  /** `-m socket`: the packet belongs to a local socket (established; listeners on 0.0.0.0 do not count) */
  socket?: boolean;
  /** `-m owner --uid-owner N` (OUTPUT only) */
  uidOwner?: number;
  /** `-m socket --transparent`: the packet belongs to a local socket with IP_TRANSPARENT */
  transparentSocket?: boolean;
}

export type RuleTarget =
  | { kind: 'return' }
  | { kind: 'accept' }
  | { kind: 'jump'; chain: string }
  | { kind: 'redirect'; toPort: number }
  | { kind: 'tproxy'; onPort: number; mark: number }
  | { kind: 'mark'; mark: number };

export interface IptablesRule {
  table: IptablesTable;
  chain: string;
  match: RuleMatch;
  target: RuleTarget;
  /** Why the rule is there (printed as a comment, not installed). */
  why?: string;
}

export interface IptablesChain {
  table: IptablesTable;
  chain: string;
}

export interface IpRule {
  fwmark: number;
  table: number;
}

export interface IpRoute {
  type: 'local';
  destination: '0.0.0.0/0';
  device: 'lo';
  table: number;
}

/** The programs of @meshport/socket's BPF object, by the names its API uses (attach types in the comments). */
export type BpfProgram =
  | 'connect4' // cgroup/connect4: rewrites connect() to the capture port, records the destination by cookie
  | 'connect6' // cgroup/connect6: the same for AF_INET6 sockets: IPv4-mapped (a JVM's default) and native IPv6
  | 'sockops' // sockops: copies the record to the 4-tuple map; fills the SOCKHASH for sk_msg
  | 'getsockopt' // cgroup/getsockopt: answers SO_ORIGINAL_DST from the record
  | 'sk_msg'; // sk_msg on the SOCKHASH: same-host socket-to-socket shortcut

export interface BpfAttachment {
  program: BpfProgram;
  /** cgroup v2 directory the program is attached to (sk_msg: its SOCKHASH, filled by sockops of this cgroup). */
  cgroup: string;
  /** bpffs directory holding the pinned links, so `remove` (another process) can detach them. */
  pinDir: string;
  /**
   * connect4 only: the load-time config of the object (connect6 runs with it), the same exclusions the iptables rules
   * encode. captureAddress6 is where native IPv6 connects go, on the same port, while a listener is there; absent in
   * plans written before it existed, which then get '::1'.
   */
  config?: {
    captureAddress: '127.0.0.1';
    captureAddress6?: '::1';
    capturePort: number;
    excludeUid: number;
    excludePorts: number[];
    includePorts: number[];
  };
}

/**
 * One pin directory per cgroup, and never one for two: `remove`/re-apply of one cgroup detaches everything in its
 * directory, so two cgroups sharing one would detach each other. The name is the normalized path with `/` as `-`,
 * `-` as `_-`, `_` as `__` and any other byte outside [A-Za-z0-9.] as `_xx` (hex): a prefix-free escape, so
 * distinct paths give distinct names (`/a/b-c` and `/a-b/c` were both `hijack-a-b-c` before). A name over the
 * 255-byte limit of a file name becomes `hijack=sha256=<hex of the path>` (`=` never appears in an escaped one).
 */
export function bpfPinDir(cgroup: string): string {
  const normalized = cgroup === '' ? '' : path.posix.normalize(cgroup).replace(/(.)\/+$/, '$1');
  if (normalized === '') return path.join(HIJACK_DEFAULTS.bpfPinRoot, 'hijack=root');
  let escaped = '';
  for (const byte of Buffer.from(normalized, 'utf8')) {
    const ch = String.fromCharCode(byte);
    if (/[A-Za-z0-9.]/.test(ch)) escaped += ch;
    else if (ch === '/') escaped += '-';
    else if (ch === '-') escaped += '_-';
    else if (ch === '_') escaped += '__';
    else escaped += `_${byte.toString(16).padStart(2, '0')}`;
  }
  const name = `hijack${escaped}`;
  if (Buffer.byteLength(name) <= 255) return path.join(HIJACK_DEFAULTS.bpfPinRoot, name);
  return path.join(
    HIJACK_DEFAULTS.bpfPinRoot,
    `hijack=sha256=${createHash('sha256').update(normalized).digest('hex')}`,
  );
}

/** Everything `apply` installs, as data. `print` renders it; `remove` deletes exactly it. */
export interface HijackPlan {
  mode: HijackMode;
  options: ResolvedHijackOptions;
  /** Our chains, created (or flushed) before their rules are appended. */
  chains: IptablesChain[];
  /** Rules inside our chains, in order. */
  rules: IptablesRule[];
  /** Jump rules from the built-in chains into ours: the only rules outside our chains. */
  hooks: IptablesRule[];
  ipRules: IpRule[];
  routes: IpRoute[];
  bpf: BpfAttachment[];
  /** Human notes (e.g. "outbound stays REDIRECT in tproxy mode"). */
  notes: string[];
}

export const CHAINS = {
  output: 'MESHPORT_OUTPUT',
  inbound: 'MESHPORT_INBOUND',
  divert: 'MESHPORT_DIVERT',
} as const;

const LOOPBACK = '127.0.0.0/8';

function badOption(message: string): HijackError {
  return new HijackError('MESHPORT_HIJACK_BAD_OPTIONS', message);
}

function checkPort(port: number, what: string): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw badOption(`${what} must be a port 1-65535, got ${port}`);
}

function checkU32(n: number, what: string, min = 0): void {
  if (!Number.isInteger(n) || n < min || n > 0xffffffff)
    throw badOption(`${what} must be an integer ${min}-4294967295, got ${n}`);
}

/** Fills defaults and validates ranges; throws MESHPORT_HIJACK_BAD_OPTIONS. */
export function resolveHijackOptions(options: HijackOptions): ResolvedHijackOptions {
  if (!HIJACK_MODES.includes(options.mode))
    throw badOption(`mode must be one of ${HIJACK_MODES.join(', ')}, got '${options.mode}'`);
  const o: ResolvedHijackOptions = {
    mode: options.mode,
    uid: options.uid ?? HIJACK_DEFAULTS.uid,
    outboundPort: options.outboundPort ?? HIJACK_DEFAULTS.outboundPort,
    inboundPort: options.inboundPort ?? HIJACK_DEFAULTS.inboundPort,
    adminPort: options.adminPort ?? HIJACK_DEFAULTS.adminPort,
    facadePorts: [...(options.facadePorts ?? HIJACK_DEFAULTS.facadePorts)],
    excludePorts: [...(options.excludePorts ?? HIJACK_DEFAULTS.excludePorts)],
    inboundPorts: options.inboundPorts === undefined || options.inboundPorts === '*' ? '*' : [...options.inboundPorts],
    outboundPorts:
      options.outboundPorts === undefined || options.outboundPorts === '*' ? '*' : [...options.outboundPorts],
    includeLoopback: options.includeLoopback ?? HIJACK_DEFAULTS.includeLoopback,
    mark: options.mark ?? HIJACK_DEFAULTS.mark,
    routeTable: options.routeTable ?? HIJACK_DEFAULTS.routeTable,
    cgroup: options.cgroup ?? HIJACK_DEFAULTS.cgroup,
    sockmap: options.sockmap ?? HIJACK_DEFAULTS.sockmap,
  };
  checkU32(o.uid, 'uid');
  checkPort(o.outboundPort, 'outbound port');
  checkPort(o.inboundPort, 'inbound port');
  checkPort(o.adminPort, 'admin port');
  for (const p of o.facadePorts) checkPort(p, 'facade port');
  for (const p of o.excludePorts) checkPort(p, 'excluded port');
  if (o.inboundPorts !== '*') for (const p of o.inboundPorts) checkPort(p, 'inbound capture port');
  if (o.outboundPorts !== '*') for (const p of o.outboundPorts) checkPort(p, 'outbound capture port');
  checkU32(o.mark, 'mark', 1);
  // 253-255 are the kernel's default/main/local tables; 0 is unspecified.
  checkU32(o.routeTable, 'routing table', 1);
  if ([253, 254, 255].includes(o.routeTable))
    throw badOption(`routing table ${o.routeTable} is one of the kernel's own (default, main, local)`);
  if (o.cgroup !== null && (!o.cgroup.startsWith('/') || o.cgroup.split('/').includes('..'))) {
    throw badOption(`cgroup must be an absolute path without '..', got '${o.cgroup}'`);
  }
  if ((o.mode === 'connect-hook' || o.sockmap) && o.cgroup === null) {
    throw badOption(
      `${o.mode === 'connect-hook' ? 'connect-hook' : '--sockmap'} needs the pod's cgroup v2 directory (--cgroup PATH); at the root it would capture the whole host`,
    );
  }
  if (o.outboundPort === o.inboundPort)
    throw loopError(`outbound and inbound capture ports are both ${o.outboundPort}`);
  return o;
}

function loopError(message: string): HijackError {
  return new HijackError(
    'MESHPORT_HIJACK_LOOP',
    `refusing a rule set that would capture the sidecar's own traffic: ${message}`,
  );
}

/** The sidecar's own ports: never captured in either direction. Sorted, no duplicates. */
export function sidecarPorts(o: ResolvedHijackOptions): number[] {
  return [...new Set([o.outboundPort, o.inboundPort, o.adminPort, ...o.facadePorts, ...o.excludePorts])].sort(
    (a, b) => a - b,
  );
}

/** Builds the plan for `options`, refusing (MESHPORT_HIJACK_LOOP) one that would capture the sidecar itself. */
export function planRules(options: HijackOptions): HijackPlan {
  const o = resolveHijackOptions(options);
  const own = sidecarPorts(o);
  const ownPorts = (list: '*' | number[], what: string) => {
    if (list === '*') return;
    const clash = list.filter((p) => own.includes(p));
    if (clash.length)
      throw loopError(
        `${what} ${clash.join(',')} ${clash.length > 1 ? 'are' : 'is'} the sidecar's own (capture, admin, facade or excluded ports)`,
      );
  };
  ownPorts(o.inboundPorts, 'inbound capture port');
  ownPorts(o.outboundPorts, 'outbound capture port');
  if (o.mode === 'connect-hook') {
    const max = HIJACK_DEFAULTS.bpfMaxPorts;
    if (own.length > max)
      throw badOption(
        `connect-hook excludes at most ${max} ports (the BPF program's bound); this plan has ${own.length}: ${own.join(',')}`,
      );
    if (o.outboundPorts !== '*' && o.outboundPorts.length > max)
      throw badOption(`connect-hook captures at most ${max} listed outbound ports`);
  }

  const plan: HijackPlan = {
    mode: o.mode,
    options: o,
    chains: [],
    rules: [],
    hooks: [],
    ipRules: [],
    routes: [],
    bpf: [],
    notes: [],
  };

  const cgroup = o.cgroup ?? '';
  const pinDir = bpfPinDir(cgroup);
  if (o.mode === 'connect-hook') {
    const includePorts = o.outboundPorts === '*' ? [] : o.outboundPorts;
    plan.bpf.push(
      {
        program: 'connect4',
        cgroup,
        pinDir,
        config: {
          captureAddress: '127.0.0.1',
          captureAddress6: '::1',
          capturePort: o.outboundPort,
          excludeUid: o.uid,
          excludePorts: own,
          includePorts,
        },
      },
      // Java apps connect from AF_INET6 sockets to ::ffff:a.b.c.d, and IPv6 apps to native IPv6 addresses; without
      // connect6 both would go uncaptured. It runs with connect4's config (one loaded object).
      { program: 'connect6', cgroup, pinDir },
      { program: 'sockops', cgroup, pinDir },
      { program: 'getsockopt', cgroup, pinDir },
    );
    plan.notes.push(
      'outbound: cgroup/connect4 (and connect6 for IPv4-mapped dual-stack sockets) rewrites connect() to the capture port (no conntrack); inbound: TPROXY',
    );
    plan.notes.push(
      `native IPv6: connect6 rewrites to [::1]:${o.outboundPort} while the sidecar listens there; without that listener IPv6 goes uncaptured`,
    );
    plan.notes.push('BPF programs act on every socket of the cgroup, whichever netns it is in');
    if (!o.includeLoopback)
      plan.notes.push(
        'connect4 has no loopback exclusion: loopback destinations are captured too, except the excluded ports',
      );
  } else {
    planOutboundRedirect(plan, o, own);
    if (o.mode === 'tproxy')
      plan.notes.push('outbound stays REDIRECT in tproxy mode (TPROXY works only in PREROUTING)');
  }

  if (o.inboundPorts === '*' || o.inboundPorts.length > 0) {
    if (o.mode === 'redirect') planInboundRedirect(plan, o, own);
    else planInboundTproxy(plan, o, own);
  } else {
    plan.notes.push('no inbound capture (empty --inbound-ports)');
  }

  if (o.sockmap) {
    if (!plan.bpf.some((b) => b.program === 'sockops')) plan.bpf.push({ program: 'sockops', cgroup, pinDir });
    plan.bpf.push({ program: 'sk_msg', cgroup, pinDir });
  }
  checkLoops(plan);
  return plan;
}

function planOutboundRedirect(plan: HijackPlan, o: ResolvedHijackOptions, own: number[]): void {
  const chain = CHAINS.output;
  const add = (match: RuleMatch, target: RuleTarget, why?: string) =>
    plan.rules.push({ table: 'nat', chain, match, target, why });
  plan.chains.push({ table: 'nat', chain });
  add({ uidOwner: o.uid }, { kind: 'return' }, "the sidecar's own connections");
  if (!o.includeLoopback) add({ destination: LOOPBACK }, { kind: 'return' }, 'loopback destinations');
  for (const p of own) add({ protocol: 'tcp', dport: p }, { kind: 'return' }, "the sidecar's own and excluded ports");
  if (o.outboundPorts === '*') add({ protocol: 'tcp' }, { kind: 'redirect', toPort: o.outboundPort }, 'capture');
  else
    for (const p of o.outboundPorts)
      add({ protocol: 'tcp', dport: p }, { kind: 'redirect', toPort: o.outboundPort }, 'capture');
  plan.hooks.push({ table: 'nat', chain: 'OUTPUT', match: { protocol: 'tcp' }, target: { kind: 'jump', chain } });
}

function planInboundRedirect(plan: HijackPlan, o: ResolvedHijackOptions, own: number[]): void {
  const chain = CHAINS.inbound;
  const add = (match: RuleMatch, target: RuleTarget, why?: string) =>
    plan.rules.push({ table: 'nat', chain, match, target, why });
  plan.chains.push({ table: 'nat', chain });
  add({ inInterface: 'lo' }, { kind: 'return' }, 'traffic from this host itself');
  if (o.inboundPorts === '*') {
    for (const p of own) add({ protocol: 'tcp', dport: p }, { kind: 'return' }, "the sidecar's own and excluded ports");
    add({ protocol: 'tcp' }, { kind: 'redirect', toPort: o.inboundPort }, 'capture');
  } else {
    for (const p of o.inboundPorts)
      add({ protocol: 'tcp', dport: p }, { kind: 'redirect', toPort: o.inboundPort }, 'capture');
  }
  plan.hooks.push({ table: 'nat', chain: 'PREROUTING', match: { protocol: 'tcp' }, target: { kind: 'jump', chain } });
}

function planInboundTproxy(plan: HijackPlan, o: ResolvedHijackOptions, own: number[]): void {
  const chain = CHAINS.inbound;
  const divert = CHAINS.divert;
  plan.chains.push({ table: 'mangle', chain: divert }, { table: 'mangle', chain });
  // Packets of connections the transparent listener already owns: mark them so the local route delivers them,
  // and stop there (no conntrack needed, unlike Istio's ctstate variant).
  plan.rules.push(
    {
      table: 'mangle',
      chain: divert,
      match: {},
      target: { kind: 'mark', mark: o.mark },
      why: 'route to the local socket',
    },
    { table: 'mangle', chain: divert, match: {}, target: { kind: 'accept' } },
  );
  const add = (match: RuleMatch, target: RuleTarget, why?: string) =>
    plan.rules.push({ table: 'mangle', chain, match, target, why });
  add({ inInterface: 'lo' }, { kind: 'return' }, 'traffic from this host itself');
  add(
    { protocol: 'tcp', transparentSocket: true },
    { kind: 'jump', chain: divert },
    'established transparent connections',
  );
  // TPROXY drops a packet whose socket is not transparent, so every later packet of the pod's other connections
  // (replies to its outbound calls, excluded ports) must leave first. Matching by socket, not conntrack state,
  // keeps this mode conntrack-free; SYNs stay out of it because a listener bound to one address is a socket too.
  add({ protocol: 'tcp', notSyn: true, socket: true }, { kind: 'return' }, "packets of the pod's other connections");
  const tproxy: RuleTarget = { kind: 'tproxy', onPort: o.inboundPort, mark: o.mark };
  if (o.inboundPorts === '*') {
    for (const p of own) add({ protocol: 'tcp', dport: p }, { kind: 'return' }, "the sidecar's own and excluded ports");
    add({ protocol: 'tcp' }, tproxy, 'capture');
  } else {
    for (const p of o.inboundPorts) add({ protocol: 'tcp', dport: p }, tproxy, 'capture');
  }
  plan.hooks.push({
    table: 'mangle',
    chain: 'PREROUTING',
    match: { protocol: 'tcp' },
    target: { kind: 'jump', chain },
  });
  plan.ipRules.push({ fwmark: o.mark, table: o.routeTable });
  plan.routes.push({ type: 'local', destination: '0.0.0.0/0', device: 'lo', table: o.routeTable });
}

const hex = (n: number) => `0x${n.toString(16)}`;

/** A rule's arguments after `-A CHAIN`, exactly as `iptables-save` prints them back. */
export function ruleArgs(rule: IptablesRule): string[] {
  const m = rule.match;
  const a: string[] = [];
  if (m.destination !== undefined) a.push('-d', m.destination);
  if (m.inInterface !== undefined) a.push('-i', m.inInterface);
  if (m.protocol !== undefined) a.push('-p', m.protocol);
  if (m.dport !== undefined || m.notSyn) a.push('-m', 'tcp');
  if (m.dport !== undefined) a.push('--dport', String(m.dport));
  if (m.notSyn) a.push('!', '--tcp-flags', 'FIN,SYN,RST,ACK', 'SYN');
  if (m.uidOwner !== undefined) a.push('-m', 'owner', '--uid-owner', String(m.uidOwner));
  if (m.socket) a.push('-m', 'socket');
  if (m.transparentSocket) a.push('-m', 'socket', '--transparent');
  const t = rule.target;
  switch (t.kind) {
    case 'return':
      a.push('-j', 'RETURN');
      break;
    case 'accept':
      a.push('-j', 'ACCEPT');
      break;
    case 'jump':
      a.push('-j', t.chain);
      break;
    case 'redirect':
      a.push('-j', 'REDIRECT', '--to-ports', String(t.toPort));
      break;
    case 'tproxy':
      a.push(
        '-j',
        'TPROXY',
        '--on-port',
        String(t.onPort),
        '--on-ip',
        '0.0.0.0',
        '--tproxy-mark',
        `${hex(t.mark)}/0xffffffff`,
      );
      break;
    case 'mark':
      a.push('-j', 'MARK', '--set-xmark', `${hex(t.mark)}/0xffffffff`);
      break;
  }
  return a;
}

/** `ip rule` arguments after add/del. */
export function ipRuleArgs(r: IpRule): string[] {
  return ['fwmark', hex(r.fwmark), 'lookup', String(r.table)];
}

/** `ip route` arguments after add/del. */
export function ipRouteArgs(r: IpRoute): string[] {
  return [r.type, r.destination, 'dev', r.device, 'table', String(r.table)];
}

/** The lines of `iptables-save` that an applied plan accounts for, per table: chain declarations, then rules. */
export function expectedSaveLines(plan: HijackPlan): Record<IptablesTable, string[]> {
  const out: Record<IptablesTable, string[]> = { nat: [], mangle: [] };
  for (const c of plan.chains) out[c.table].push(`:${c.chain} - [0:0]`);
  for (const r of [...plan.hooks, ...plan.rules]) out[r.table].push(['-A', r.chain, ...ruleArgs(r)].join(' '));
  return out;
}

// A lone `!` needs no quotes: bash does no history expansion on `!` followed by a blank.
const shellQuote = (s: string) =>
  s === '!' || /^[A-Za-z0-9_./:=,@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;

/** Every command `apply` runs to install the plan, in order, each as an argv (BPF attachments as `bpf attach …`). */
export function planCommands(plan: HijackPlan, netns?: string): string[][] {
  const pre = netns === undefined ? [] : ['ip', 'netns', 'exec', netns];
  const cmds: string[][] = [];
  for (const c of plan.chains) cmds.push([...pre, 'iptables', '-t', c.table, '-N', c.chain]);
  for (const r of plan.rules) cmds.push([...pre, 'iptables', '-t', r.table, '-A', r.chain, ...ruleArgs(r)]);
  for (const r of plan.hooks) cmds.push([...pre, 'iptables', '-t', r.table, '-A', r.chain, ...ruleArgs(r)]);
  for (const r of plan.ipRules) cmds.push([...pre, 'ip', 'rule', 'add', ...ipRuleArgs(r)]);
  for (const r of plan.routes) cmds.push([...pre, 'ip', 'route', 'add', ...ipRouteArgs(r)]);
  // BPF attachments are not commands a shell could run; they are shown in the same one-line form.
  for (const b of plan.bpf) {
    const c = b.config;
    const cfg = c
      ? [
          `capture=${c.captureAddress}:${c.capturePort}`,
          `sidecar-uid=${c.excludeUid}`,
          `exclude-ports=${c.excludePorts.join(',')}`,
          ...(c.includePorts.length ? [`include-ports=${c.includePorts.join(',')}`] : []),
        ]
      : [];
    cmds.push(['bpf', 'attach', b.program, b.cgroup, `pin=${b.pinDir}`, ...cfg]);
  }
  return cmds;
}

/**
 * The dry run: exactly the iptables commands, ip rules/routes and BPF attachments `apply` makes, one per line,
 * as a shell would run them (apply itself skips what is already there, so running it twice changes nothing).
 */
export function printPlan(plan: HijackPlan, options: { netns?: string } = {}): string {
  const o = plan.options;
  const lines = [
    `# meshport hijack plan: mode ${plan.mode}, sidecar uid ${o.uid}, outbound capture ${o.outboundPort}, inbound capture ${o.inboundPort}` +
      (options.netns === undefined ? '' : `, netns ${options.netns}`),
    `# never captured: uid ${o.uid}; ports ${sidecarPorts(o).join(',')}${o.includeLoopback || o.mode === 'connect-hook' ? '' : '; destinations 127.0.0.0/8 (iptables)'}`,
    ...plan.notes.map((n) => `# ${n}`),
    ...planCommands(plan, options.netns).map((argv) => argv.map(shellQuote).join(' ')),
  ];
  return lines.join('\n') + '\n';
}

/** The plan plus its commands, as `print --json` shows it (and `apply --plan FILE` reads it back). */
export function planToJson(plan: HijackPlan, options: { netns?: string } = {}): Record<string, unknown> {
  return { ...plan, commands: planCommands(plan, options.netns).map((argv) => argv.join(' ')) };
}

// ---------------------------------------------------------------------------------------------------------------
// Loop check: run probe packets through the plan's own chains and refuse it if any of the sidecar's traffic lands
// on a capture port. It works on the data, so it also guards plans that were edited or read back from JSON.

interface Probe {
  uid?: number;
  destination: string;
  dport: number;
  inInterface?: string;
}

function inCidr(addr: string, cidr: string): boolean {
  const [net, len] = cidr.split('/');
  const toN = (s: string) => s.split('.').reduce((n, p) => (n << 8) | Number(p), 0) >>> 0;
  const bits = len === undefined ? 32 : Number(len);
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return (toN(addr) & mask) >>> 0 === (toN(net) & mask) >>> 0;
}

function matches(m: RuleMatch, p: Probe): boolean {
  if (m.destination !== undefined && !inCidr(p.destination, m.destination)) return false;
  if (m.inInterface !== undefined && m.inInterface !== p.inInterface) return false;
  if (m.dport !== undefined && m.dport !== p.dport) return false;
  if (m.uidOwner !== undefined && m.uidOwner !== p.uid) return false;
  // A probe is the SYN of a new connection: no socket owns it yet.
  if (m.transparentSocket || m.socket || m.notSyn) return false;
  return true;
}

type Verdict = { captured: false } | { captured: true; rule: IptablesRule };

/** Where a new TCP connection described by `probe` ends up after the plan's hooks on one built-in chain. */
function traverse(plan: HijackPlan, table: IptablesTable, builtin: string, probe: Probe): Verdict {
  const runChain = (chain: string, depth: number): Verdict | 'return' | 'accept' => {
    if (depth > 8) throw loopError(`chain ${chain} jumps too deep`);
    for (const rule of plan.rules.filter((r) => r.table === table && r.chain === chain)) {
      if (!matches(rule.match, probe)) continue;
      const t = rule.target;
      if (t.kind === 'return') return 'return';
      if (t.kind === 'accept') return 'accept';
      if (t.kind === 'redirect' || t.kind === 'tproxy') return { captured: true, rule };
      if (t.kind === 'jump') {
        const v = runChain(t.chain, depth + 1);
        if (v !== 'return') return v;
      }
    }
    return 'return';
  };
  for (const hook of plan.hooks.filter((h) => h.table === table && h.chain === builtin)) {
    if (!matches(hook.match, probe) || hook.target.kind !== 'jump') continue;
    const v = runChain(hook.target.chain, 0);
    if (v === 'accept') return { captured: false };
    if (v !== 'return') return v;
  }
  return { captured: false };
}

/** Throws MESHPORT_HIJACK_LOOP when the plan would capture the sidecar's uid or any of its own ports. */
export function checkLoops(plan: HijackPlan): void {
  const o = plan.options;
  const own = sidecarPorts(o);
  const remote = '198.18.0.1';
  const describe = (r: IptablesRule) => `-t ${r.table} -A ${r.chain} ${ruleArgs(r).join(' ')}`;
  for (const dport of [80, ...own]) {
    for (const destination of [remote, '127.0.0.1']) {
      const v = traverse(plan, 'nat', 'OUTPUT', { uid: o.uid, destination, dport });
      if (v.captured)
        throw loopError(`uid ${o.uid} connecting to ${destination}:${dport} would be captured by ${describe(v.rule)}`);
    }
  }
  const appUid = o.uid === 0 ? 1 : 0;
  for (const dport of own) {
    for (const destination of [remote, '127.0.0.1']) {
      const v = traverse(plan, 'nat', 'OUTPUT', { uid: appUid, destination, dport });
      if (v.captured)
        throw loopError(
          `a connection to the sidecar's port ${destination}:${dport} would be captured by ${describe(v.rule)}`,
        );
    }
    for (const table of ['nat', 'mangle'] as const) {
      for (const inInterface of ['eth0', 'lo']) {
        const v = traverse(plan, table, 'PREROUTING', { destination: remote, dport, inInterface });
        if (v.captured)
          throw loopError(`inbound traffic to the sidecar's port ${dport} would be captured by ${describe(v.rule)}`);
      }
    }
  }
  for (const b of plan.bpf) {
    if (b.program !== 'connect4') continue;
    if (!b.config || b.config.excludeUid !== o.uid) throw loopError(`cgroup/connect4 does not exclude uid ${o.uid}`);
    const missing = own.filter((p) => !b.config!.excludePorts.includes(p));
    if (missing.length) throw loopError(`cgroup/connect4 does not exclude the sidecar's port(s) ${missing.join(',')}`);
  }
}

/**
 * Reads a plan back from `print --json` output (possibly edited). The shape is checked here; whether it is safe is
 * `checkLoops`'s job, which `applyPlan` always runs.
 */
export function parsePlanJson(text: string): HijackPlan {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw badOption(`the plan is not JSON: ${(err as Error).message}`);
  }
  const p = raw as Partial<HijackPlan> | null;
  if (!p || typeof p !== 'object' || !p.options || typeof p.options !== 'object')
    throw badOption('the plan has no options object');
  const options = resolveHijackOptions({ ...p.options, cgroup: p.options.cgroup ?? undefined });
  for (const key of ['chains', 'rules', 'hooks', 'ipRules', 'routes', 'bpf'] as const) {
    if (!Array.isArray(p[key])) throw badOption(`the plan has no ${key} list`);
  }
  const tables = ['nat', 'mangle'];
  const chainName = /^MESHPORT_[A-Z0-9_]+$/;
  for (const c of p.chains!) {
    if (!tables.includes(c.table) || !chainName.test(c.chain))
      throw badOption(`plan chain ${JSON.stringify(c)} is not a MESHPORT_* chain in nat or mangle`);
  }
  for (const r of [...p.rules!, ...p.hooks!]) {
    if (!r || !tables.includes(r.table) || typeof r.chain !== 'string' || !r.match || !r.target)
      throw badOption(`plan rule ${JSON.stringify(r)} is malformed`);
  }
  for (const r of p.rules!)
    if (!chainName.test(r.chain))
      throw badOption(`plan rule in ${r.chain}: rules go in MESHPORT_* chains; only hooks touch built-in chains`);
  for (const h of p.hooks!)
    if (h.target.kind !== 'jump' || !chainName.test(h.target.chain))
      throw badOption('a plan hook must jump to a MESHPORT_* chain');
  return {
    mode: options.mode,
    options,
    chains: p.chains!,
    rules: p.rules!,
    hooks: p.hooks!,
    ipRules: p.ipRules!,
    routes: p.routes!,
    bpf: p.bpf!,
    notes: Array.isArray(p.notes) ? p.notes : [],
  };
}
