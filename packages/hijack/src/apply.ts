// Installing and removing a plan, idempotently: apply twice = apply once; remove with nothing there = no error.

import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import {
  NotSupportedError,
  bpfAttach,
  bpfDetach,
  bpfLoad,
  bpfProbe,
  bpfUnload,
  nativeAddonStatus,
  type BpfFeature,
} from '@meshport/socket';
import { HijackError, HijackKernelError } from './errors';
import { run, runChecked, type ExecOptions } from './netns';
import {
  HIJACK_DEFAULTS,
  bpfPinDir,
  checkLoops,
  ipRouteArgs,
  ipRuleArgs,
  ruleArgs,
  type HijackMode,
  type HijackPlan,
  type IpRoute,
  type IpRule,
  type IptablesRule,
  type IptablesTable,
} from './plan';

export interface ApplyOptions {
  /** Network namespace to work in (`ip netns exec NAME`); the current one when absent. */
  netns?: string;
}

export interface ApplyReport {
  /** Every command that changed something, as run. */
  changed: string[];
}

/** Whether @meshport/socket's native addon (which holds the BPF loader) is loaded; `reason` says why not. */
export function bpfAttachSupported(): { supported: boolean; reason?: string } {
  const status = nativeAddonStatus();
  return status.loaded ? { supported: true } : { supported: false, reason: status.reason };
}

/** Refuses BPF entries a plan file could use to point detach at some other directory. */
const BPF_PROGRAMS: readonly string[] = ['connect4', 'connect6', 'sockops', 'getsockopt', 'sk_msg'];

function checkBpfEntries(plan: HijackPlan): void {
  const programs = BPF_PROGRAMS;
  for (const b of plan.bpf) {
    if (
      !programs.includes(b.program) ||
      typeof b.cgroup !== 'string' ||
      b.cgroup !== plan.options.cgroup ||
      b.pinDir !== bpfPinDir(b.cgroup)
    ) {
      throw new HijackError(
        'MESHPORT_HIJACK_BAD_OPTIONS',
        `plan BPF entry ${JSON.stringify(b)} does not match the plan's cgroup and pin directory`,
      );
    }
  }
}

/** The pids of a cgroup and of every cgroup below it (a pod's containers are child cgroups of the pod's). */
function cgroupPids(cgroup: string): number[] {
  const pids: number[] = [];
  const walk = (dir: string): void => {
    try {
      for (const line of readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n'))
        if (/^[1-9]\d*$/.test(line)) pids.push(Number(line));
      for (const entry of readdirSync(dir, { withFileTypes: true }))
        if (entry.isDirectory()) walk(path.join(dir, entry.name));
    } catch {
      // gone meanwhile, or not a cgroup directory: the attach itself reports a bad cgroup
    }
  };
  walk(cgroup);
  return pids;
}

/**
 * Refuses connect-hook for a cgroup with processes in another user namespace. connect4 excludes the sidecar by the
 * uid the host sees (bpf_get_current_uid_gid() is in the initial user namespace); in a user-namespaced pod the
 * sidecar's uid 1337 is some other number there, so its own connections would be captured: a loop. A cgroup with
 * no processes yet (apply before the pod starts) cannot be checked; docs/kubernetes says so.
 */
function checkUserNamespaces(plan: HijackPlan): void {
  const connect4 = plan.bpf.find((b) => b.program === 'connect4');
  if (connect4 === undefined) return;
  let ours: string;
  try {
    ours = readlinkSync('/proc/self/ns/user');
  } catch {
    return; // no /proc: nothing to compare with
  }
  for (const pid of cgroupPids(connect4.cgroup)) {
    let theirs: string;
    try {
      theirs = readlinkSync(`/proc/${pid}/ns/user`);
    } catch {
      continue; // exited meanwhile
    }
    if (theirs === ours) continue;
    let uidMap = '';
    try {
      uidMap = readFileSync(`/proc/${pid}/uid_map`, 'utf8').trim().split('\n')[0]?.trim().replace(/\s+/g, ' ') ?? '';
    } catch {
      // exited meanwhile; the namespace differs all the same
    }
    throw new HijackError(
      'MESHPORT_HIJACK_LOOP',
      `connect-hook refused for ${connect4.cgroup}: process ${pid} runs in a user namespace (${theirs}, uid_map '${uidMap}'), ` +
        `so the sidecar's uid ${connect4.config?.excludeUid ?? plan.options.uid} is another uid on the host and connect4 would capture ` +
        "the sidecar's own connections (a loop). Use redirect or tproxy mode for pods with a user namespace (hostUsers: false)",
    );
  }
}

// Refused for lack of privilege: never a missing feature, whatever the call.
const PERMISSION_ERRNOS: ReadonlySet<number> = new Set([1 /* EPERM */, 13 /* EACCES */]);
// The kernel has no bpf() (ENOSYS) or lacks the program/attach/map type asked for (EOPNOTSUPP, ENOTSUPP 524).
const MISSING_FEATURE_ERRNOS: ReadonlySet<number> = new Set([38 /* ENOSYS */, 95 /* EOPNOTSUPP */, 524 /* ENOTSUPP */]);

/**
 * What a failed BPF step of apply/remove means for the caller. NOT_SUPPORTED only when the kernel or build lacks
 * something: no addon, ENOSYS/EOPNOTSUPP/ENOTSUPP, or a load/attach that fails where the feature probe (a real load
 * and attach in a scratch cgroup) fails too; EPERM/EACCES are permission errors; the rest keep their errno.
 * `probe` is consulted only for a bpf call that failed with another errno (a verifier or BTF refusal says EINVAL).
 */
export function classifyBpfError(err: unknown, action: string, probe?: () => BpfFeature): HijackError {
  if (err instanceof HijackError) return err;
  const e = err as { errno?: unknown; code?: unknown; syscall?: unknown; message?: unknown; reason?: unknown };
  const message = typeof e?.message === 'string' ? e.message : String(err);
  if (err instanceof NotSupportedError)
    return new HijackKernelError('MESHPORT_HIJACK_NOT_SUPPORTED', `${action}: ${message}`, err);
  if (e?.code === 'MESHPORT_SOCKET_BAD_ARGUMENT')
    return new HijackKernelError('MESHPORT_HIJACK_BAD_OPTIONS', `${action}: ${message}`, err);
  const errno = typeof e?.errno === 'number' ? e.errno : undefined;
  const call = typeof e?.syscall === 'string' ? e.syscall : 'a BPF call';
  const name = typeof e?.code === 'string' ? e.code : `errno ${errno}`;
  if (errno !== undefined && PERMISSION_ERRNOS.has(errno)) {
    return new HijackKernelError(
      'MESHPORT_HIJACK_PERMISSION_DENIED',
      `${action}: ${call} was refused with ${name}: loading, attaching and pinning BPF programs needs root, or CAP_BPF ` +
        'and CAP_NET_ADMIN (CAP_SYS_ADMIN before Linux 5.8), and a kernel that is not locked down against BPF',
      err,
    );
  }
  if (errno !== undefined && MISSING_FEATURE_ERRNOS.has(errno)) {
    return new HijackKernelError(
      'MESHPORT_HIJACK_NOT_SUPPORTED',
      `${action}: this kernel lacks a BPF feature the plan needs: ${message}`,
      err,
    );
  }
  if (probe && call.startsWith('bpf')) {
    let feature: BpfFeature | undefined;
    try {
      feature = probe();
    } catch {
      feature = undefined; // the probe could not run: no verdict on the feature, so not "not supported"
    }
    if (feature && !feature.supported) {
      return new HijackKernelError(
        'MESHPORT_HIJACK_NOT_SUPPORTED',
        `${action}: this kernel cannot run the plan's programs (${feature.reason}): ${message}`,
        err,
      );
    }
  }
  return new HijackKernelError('MESHPORT_HIJACK_BPF_FAILED', `${action}: ${message}`, err);
}

/**
 * Loads @meshport/socket's programs with the connect4 config and attaches them to the plan's cgroup, pinned so
 * they outlive this process. A previous attachment in the same pin directory is detached after the load and just
 * before the attach (so a changed config takes effect and there is never a second copy). One loaded object per process: an earlier one of this
 * process is unloaded first.
 */
function attachBpf(plan: HijackPlan, changed: string[]): void {
  if (plan.bpf.length === 0) return;
  const support = bpfAttachSupported();
  if (!support.supported)
    throw new HijackError(
      'MESHPORT_HIJACK_NOT_SUPPORTED',
      `BPF attach needs @meshport/socket's native addon: ${support.reason}`,
    );
  const { cgroup, pinDir } = plan.bpf[0];
  const connect4 = plan.bpf.find((b) => b.program === 'connect4')?.config;
  const o = plan.options;
  try {
    try {
      bpfUnload({ keepPinned: true }); // this process's earlier apply: its pins stay, to be updated in place
    } catch {
      // nothing loaded in this process
    }
    const programs = [...new Set(plan.bpf.map((b) => b.program))];
    // Re-apply: the pinned links of this plan's programs get the new programs in place (bpf_link_update), and the
    // new object takes over the pinned maps, so no connect is missed or left without its record. Pins of programs
    // the plan no longer has (sockmap dropped) cannot be updated: then the old set is detached first, after the
    // load (the verifier's milliseconds), so that window is a few syscalls.
    const pinned = existsSync(pinDir) ? readdirSync(pinDir).filter((n) => BPF_PROGRAMS.includes(n)) : [];
    const inPlace = pinned.length > 0 && pinned.every((n) => (programs as string[]).includes(n));
    bpfLoad({
      ...(inPlace ? { reuseMapsFrom: pinDir } : {}),
      config: {
        captureAddress: connect4?.captureAddress ?? '127.0.0.1',
        captureAddress6: connect4?.captureAddress6 ?? '::1',
        capturePort: connect4?.capturePort ?? o.outboundPort,
        sidecarUid: connect4?.excludeUid ?? o.uid,
        excludePorts: connect4?.excludePorts ?? [],
        includePorts: connect4?.includePorts ?? [],
      },
    });
    const load = `bpf load capture=${connect4?.captureAddress ?? '127.0.0.1'}:${connect4?.capturePort ?? o.outboundPort}`;
    const detachFirst = !inPlace && existsSync(pinDir);
    if (detachFirst) changed.push(load, `bpf detach pin=${pinDir} (${bpfDetach({ pinDir })} attachment(s))`);
    const { updated, unchanged } = bpfAttach({ cgroupPath: cgroup, programs, pinDir });
    if (unchanged === programs.length) return; // an identical re-apply: every pinned link already runs these programs
    if (!detachFirst) changed.push(load);
    changed.push(
      `${updated > 0 ? 'bpf update' : 'bpf attach'} ${programs.join(',')} ${cgroup} pin=${pinDir}${updated > 0 ? ` (${updated} link(s) in place)` : ''}`,
    );
  } catch (err) {
    const needsSockmap = plan.bpf.some((b) => b.program === 'sk_msg');
    throw classifyBpfError(err, `BPF attach to ${cgroup}`, () => {
      const probe = bpfProbe();
      return !probe.connectHook.supported || !needsSockmap ? probe.connectHook : probe.sockmap;
    });
  }
}

/** Detaches and unpins whatever the plan's pin directory holds (even if another process attached it). */
function detachBpf(plan: HijackPlan, changed: string[]): void {
  const dirs = [...new Set(plan.bpf.map((b) => b.pinDir))];
  for (const pinDir of dirs) {
    if (!existsSync(pinDir)) continue;
    try {
      changed.push(`bpf detach pin=${pinDir} (${bpfDetach({ pinDir })} attachment(s))`);
    } catch (err) {
      throw classifyBpfError(err, `BPF detach of ${pinDir}`);
    }
  }
  if (plan.bpf.length > 0) {
    try {
      bpfUnload(); // this process's own loaded object, when apply ran in it
    } catch {
      // nothing loaded here, or no addon: nothing to unload
    }
  }
}

function rulesOf(plan: HijackPlan, table: IptablesTable, chain: string): IptablesRule[] {
  return plan.rules.filter((rule) => rule.table === table && rule.chain === chain);
}

class Runner {
  readonly changed: string[] = [];

  constructor(private readonly exec: ExecOptions) {}

  try(cmd: string, args: string[]) {
    return run(cmd, args, this.exec);
  }

  async must(cmd: string, args: string[]) {
    const r = await runChecked(cmd, args, this.exec);
    this.changed.push([cmd, ...args].join(' '));
    return r;
  }

  async chainExists(table: IptablesTable, chain: string): Promise<boolean> {
    return (await this.try('iptables', ['-t', table, '-S', chain])).code === 0;
  }

  async ruleExists(rule: IptablesRule): Promise<boolean> {
    return (await this.try('iptables', ['-t', rule.table, '-C', rule.chain, ...ruleArgs(rule)])).code === 0;
  }

  async ipRuleCount(r: IpRule): Promise<number> {
    const out = await runChecked('ip', ['-j', 'rule', 'show'], this.exec);
    const rows = JSON.parse(out.stdout || '[]') as { fwmark?: string; table?: string; src?: string }[];
    return rows.filter(
      (row) => row.fwmark !== undefined && Number(row.fwmark) === r.fwmark && row.table === String(r.table),
    ).length;
  }

  async routeExists(r: IpRoute): Promise<boolean> {
    const out = await this.try('ip', ['-j', 'route', 'show', 'table', String(r.table)]);
    if (out.code !== 0) return false; // a table that was never used does not exist yet
    const rows = JSON.parse(out.stdout || '[]') as { type?: string; dst?: string; dev?: string }[];
    return rows.some(
      (row) => row.type === r.type && (row.dst === 'default' || row.dst === r.destination) && row.dev === r.device,
    );
  }
}

/** The iptables chains each mode can install (whatever its options), by table. */
const MODE_CHAINS: Record<HijackMode, readonly string[]> = {
  redirect: ['nat MESHPORT_OUTPUT', 'nat MESHPORT_INBOUND'],
  tproxy: ['nat MESHPORT_OUTPUT', 'mangle MESHPORT_INBOUND', 'mangle MESHPORT_DIVERT'],
  'connect-hook': ['mangle MESHPORT_INBOUND', 'mangle MESHPORT_DIVERT'],
};

/**
 * Refuses to install a mode over another mode's rules. Applying tproxy over redirect used to succeed and leave both
 * in force; removing either mode afterwards left the other's chains (or TPROXY's ip rule) behind, capturing traffic
 * for a sidecar that no longer expects it. What is installed is read from the namespace: chains of ours that this
 * mode never makes, TPROXY's ip rule under a redirect plan, and, when the plan names a cgroup, a connect hook pinned
 * for it. (tproxy over a connect hook whose cgroup the plan does not name is not seen: the hook lives in a cgroup,
 * not in the namespace.) The error names the command that removes what is there.
 */
async function checkOtherMode(plan: HijackPlan, r: Runner, netns: string | undefined): Promise<void> {
  const present: string[] = [];
  for (const id of new Set(Object.values(MODE_CHAINS).flat())) {
    const [table, chain] = id.split(' ') as [IptablesTable, string];
    if (await r.chainExists(table, chain)) present.push(id);
  }
  const o = plan.options;
  const foreign = present.filter((id) => !MODE_CHAINS[plan.mode].includes(id));
  const tproxyRule = { fwmark: o.mark, table: o.routeTable } as IpRule;
  const strayIpRule = plan.mode === 'redirect' && (await r.ipRuleCount(tproxyRule)) > 0;
  const cgroup = o.cgroup ?? undefined;
  const hookPinned =
    plan.mode !== 'connect-hook' && cgroup !== undefined && existsSync(path.join(bpfPinDir(cgroup), 'connect4'));
  const has = (id: string) => present.includes(id);
  const mangle = has('mangle MESHPORT_INBOUND') || has('mangle MESHPORT_DIVERT');
  // tproxy always makes nat MESHPORT_OUTPUT (first): TPROXY's chains without it are connect-hook's inbound half.
  const hookInbound = plan.mode === 'tproxy' && mangle && !has('nat MESHPORT_OUTPUT');
  if (foreign.length === 0 && !strayIpRule && !hookPinned && !hookInbound) return;

  const installed: HijackMode = has('nat MESHPORT_INBOUND')
    ? 'redirect'
    : hookPinned || (mangle && !has('nat MESHPORT_OUTPUT'))
      ? 'connect-hook'
      : mangle || strayIpRule
        ? 'tproxy'
        : 'redirect';
  const what = [...foreign.map((id) => `iptables -t ${id.replace(' ', ' chain ')}`)];
  if (strayIpRule) what.push(`ip rule fwmark 0x${o.mark.toString(16)} lookup ${o.routeTable}`);
  if (hookPinned) what.push(`BPF connect hook pinned for ${cgroup}`);
  if (hookInbound)
    what.push(
      `${present
        .filter((id) => id.startsWith('mangle '))
        .map((id) => `iptables -t ${id.replace(' ', ' chain ')}`)
        .join('; ')}, and no nat chain MESHPORT_OUTPUT`,
    );
  const remove = ['meshport', 'hijack', 'remove', '--mode', installed];
  if (installed === 'connect-hook') remove.push('--cgroup', cgroup ?? 'POD_CGROUP');
  if (o.mark !== HIJACK_DEFAULTS.mark) remove.push('--mark', String(o.mark));
  if (o.routeTable !== HIJACK_DEFAULTS.routeTable) remove.push('--route-table', String(o.routeTable));
  if (netns !== undefined) remove.push('--netns', netns);
  const quoted = remove.map((p) => (/^[\w@%+=:,./-]+$/.test(p) ? p : `'${p.replace(/'/g, `'\\''`)}'`)).join(' ');
  throw new HijackError(
    'MESHPORT_HIJACK_OTHER_MODE_INSTALLED',
    `${plan.mode} refused${netns === undefined ? '' : ` in netns ${netns}`}: the rules of ${installed} mode are installed (${what.join('; ')}). ` +
      `Two modes at once capture the same traffic twice, and removing one leaves the other behind. Remove them first: ${quoted}` +
      (cgroup === undefined && installed === 'connect-hook'
        ? " (POD_CGROUP: the pod's cgroup v2 directory the hook was applied to)"
        : ''),
  );
}

/**
 * Installs a plan. Our chains are created when missing and always flushed and refilled (so a changed plan replaces
 * the old one); jump rules, ip rules and routes are added only when absent. Refuses a plan that fails the loop
 * check, that needs BPF attach, or whose mode differs from the one installed, before touching anything.
 */
export async function applyPlan(plan: HijackPlan, options: ApplyOptions = {}): Promise<ApplyReport> {
  checkLoops(plan);
  checkBpfEntries(plan);
  checkUserNamespaces(plan);
  const r = new Runner({ netns: options.netns });
  await checkOtherMode(plan, r, options.netns);
  // BPF first: when the kernel or build cannot, nothing else has been installed yet.
  attachBpf(plan, r.changed);
  // A chain that already holds exactly the planned rules is left alone, so a second apply changes nothing.
  const refill: HijackPlan['chains'] = [];
  for (const c of plan.chains) {
    const want = [
      `-N ${c.chain}`,
      ...rulesOf(plan, c.table, c.chain).map((rule) => ['-A', c.chain, ...ruleArgs(rule)].join(' ')),
    ];
    const have = await r.try('iptables', ['-t', c.table, '-S', c.chain]);
    if (have.code !== 0) await r.must('iptables', ['-t', c.table, '-N', c.chain]);
    else if (have.stdout.split('\n').filter(Boolean).join('\n') === want.join('\n')) continue;
    else await r.must('iptables', ['-t', c.table, '-F', c.chain]);
    refill.push(c);
  }
  for (const c of refill) {
    for (const rule of rulesOf(plan, c.table, c.chain))
      await r.must('iptables', ['-t', rule.table, '-A', rule.chain, ...ruleArgs(rule)]);
  }
  for (const hook of plan.hooks) {
    if (!(await r.ruleExists(hook))) await r.must('iptables', ['-t', hook.table, '-A', hook.chain, ...ruleArgs(hook)]);
  }
  for (const ipRule of plan.ipRules) {
    if ((await r.ipRuleCount(ipRule)) === 0) await r.must('ip', ['rule', 'add', ...ipRuleArgs(ipRule)]);
  }
  for (const route of plan.routes) {
    if (!(await r.routeExists(route))) await r.must('ip', ['route', 'add', ...ipRouteArgs(route)]);
  }
  return { changed: r.changed };
}

/**
 * Deletes what `applyPlan(plan)` installs: the jump rules (every copy), our chains, the ip rules and routes.
 * Anything already gone is skipped, so removing twice, or with nothing installed, succeeds.
 */
export async function removePlan(plan: HijackPlan, options: ApplyOptions = {}): Promise<ApplyReport> {
  checkBpfEntries(plan);
  const r = new Runner({ netns: options.netns });
  for (const hook of plan.hooks) {
    while (await r.ruleExists(hook)) await r.must('iptables', ['-t', hook.table, '-D', hook.chain, ...ruleArgs(hook)]);
  }
  // Flush every chain first: MESHPORT_INBOUND jumps to MESHPORT_DIVERT, and a referenced chain cannot be deleted.
  const present: HijackPlan['chains'] = [];
  for (const c of plan.chains) if (await r.chainExists(c.table, c.chain)) present.push(c);
  for (const c of present) await r.must('iptables', ['-t', c.table, '-F', c.chain]);
  for (const c of present) await r.must('iptables', ['-t', c.table, '-X', c.chain]);
  for (const ipRule of plan.ipRules) {
    for (let n = await r.ipRuleCount(ipRule); n > 0; n -= 1) await r.must('ip', ['rule', 'del', ...ipRuleArgs(ipRule)]);
  }
  for (const route of plan.routes) {
    if (await r.routeExists(route)) await r.must('ip', ['route', 'del', ...ipRouteArgs(route)]);
  }
  detachBpf(plan, r.changed);
  return { changed: r.changed };
}

export interface InstalledState {
  /** `iptables-save` lines that mention a MESHPORT chain, per table (declarations and rules). */
  iptables: Record<IptablesTable, string[]>;
  /** `ip rule` lines with an fwmark. */
  ipRules: string[];
  /** Routes in the given tables, as `ip route show table N` prints them. */
  routes: Record<number, string[]>;
}

/** What is installed now, as the kernel reports it: for `doctor`, and for tests that compare it with a plan. */
export async function installedState(options: ApplyOptions & { routeTables?: number[] } = {}): Promise<InstalledState> {
  const exec = { netns: options.netns };
  const iptables: Record<IptablesTable, string[]> = { nat: [], mangle: [] };
  for (const table of ['nat', 'mangle'] as const) {
    const out = await run('iptables-save', ['-t', table], exec);
    if (out.code !== 0) continue; // the table was never created in this namespace
    iptables[table] = out.stdout.split('\n').filter((l) => l.includes('MESHPORT_'));
  }
  const rules = await runChecked('ip', ['rule', 'show'], exec);
  const routes: Record<number, string[]> = {};
  for (const t of options.routeTables ?? []) {
    const out = await run('ip', ['route', 'show', 'table', String(t)], exec);
    routes[t] = out.code === 0 ? out.stdout.split('\n').filter(Boolean) : [];
  }
  return { iptables, ipRules: rules.stdout.split('\n').filter((l) => l.includes('fwmark')), routes };
}
