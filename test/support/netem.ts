// Kernel-side faults for the fault-injection suites: two network namespaces joined by a veth pair at test addresses
// (198.18.0.0/15 only), with delay, jitter, loss and bandwidth limits on the veth. The namespace and veth helpers
// are @meshport/hijack's (the ones e2e-hijack and the demo use); this file only adds the fault part and the checks a
// suite needs to prove it left nothing behind. A qdisc lives on its device and the device in its namespace, so
// deleting the namespaces removes everything; removeLinkFaults exists for a test that wants the link clean again.
//
// Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for `ip netns`), iproute2 and iptables (bootstrap Debian packages).
//
// applyLinkFaults() is the kernel-portable entry: one netem qdisc where sch_netem exists; otherwise loss through
// iptables' statistic match (in a chain of our own, so removal is exact), bandwidth through a tbf qdisc, and delay
// reported unavailable (the in-process latency toxic is the delay injector then). It says what it applied and how,
// so a test measures only what is really there. linkFaultProblem() is its precondition (root, ip, tc, iptables).

import {
  assertTestAddress,
  createNetns,
  createVethPair,
  deleteNetns,
  listNetns,
  run,
  runChecked,
  uniqueNetnsName,
} from '@meshport/hijack';

export interface NetnsPair {
  /** Namespace names. */
  a: string;
  b: string;
  /** Veth device in each. */
  devA: string;
  devB: string;
  /** Addresses without prefix length. */
  addressA: string;
  addressB: string;
  /** Deletes both namespaces (and with them the veth and its qdiscs); safe to call twice. */
  destroy(): Promise<void>;
}

let subnet = 0;

/**
 * Two fresh namespaces `<prefix>-<pid>-<n>a|b` joined by a veth pair, 198.19.<n>.1/24 <-> 198.19.<n>.2/24. On a
 * failure half-way, whatever was made is deleted before the error is thrown.
 */
export async function createNetnsPair(prefix = 'mpnetem'): Promise<NetnsPair> {
  subnet = (subnet % 250) + 1;
  const base = uniqueNetnsName(prefix);
  const pair: NetnsPair = {
    a: `${base}a`,
    b: `${base}b`,
    devA: 'mpn0',
    devB: 'mpn1',
    addressA: `198.19.${subnet}.1`,
    addressB: `198.19.${subnet}.2`,
    destroy: async () => {
      await deleteNetns(pair.a);
      await deleteNetns(pair.b);
    },
  };
  try {
    await createNetns(pair.a);
    await createNetns(pair.b);
    await createVethPair({
      netnsA: pair.a,
      netnsB: pair.b,
      deviceA: pair.devA,
      deviceB: pair.devB,
      addressA: `${pair.addressA}/24`,
      addressB: `${pair.addressB}/24`,
    });
  } catch (error) {
    await pair.destroy().catch(() => {});
    throw error;
  }
  return pair;
}

/** The `tc qdisc show` lines of DEV, e.g. `qdisc netem 8001: root refcnt 2 limit 1000 delay 50ms  20ms loss 1%`. */
export async function qdiscs(netns: string, dev: string): Promise<string[]> {
  const r = await runChecked('tc', ['qdisc', 'show', 'dev', dev], { netns });
  return r.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

/** Namespaces whose names start with `prefix` (for after hooks: delete them, then assert none is left). */
export async function netnsWithPrefix(prefix: string): Promise<string[]> {
  return (await listNetns()).filter((n) => n.startsWith(prefix));
}

/** Deletes every namespace whose name starts with `prefix`; returns what it deleted. */
export async function deleteNetnsWithPrefix(prefix: string): Promise<string[]> {
  const names = await netnsWithPrefix(prefix);
  for (const n of names) await deleteNetns(n);
  return names;
}

// --- applyLinkFaults: netem where the kernel has it, tbf + iptables statistic where it does not ----------------

export interface LinkFaultSpec {
  delayMs?: number;
  /** +/- around delayMs; needs delay (netem only). */
  jitterMs?: number;
  /** Percent of packets dropped, e.g. 1 for 1%. */
  lossPercent?: number;
  /** Egress bandwidth of DEV in kbit/s. */
  rateKbit?: number;
}

/** The other end of the link, when known: loss then goes on its ingress instead of DEV's egress (see applyLinkFaults). */
export interface LinkPeer {
  netns: string;
  dev: string;
}

export interface AppliedLinkFaults {
  /** undefined when not asked for. */
  delay?: 'netem' | `unavailable: ${string}`;
  loss?: 'netem' | 'iptables statistic';
  /** Where the iptables loss rule sits: `<netns> <table> <hook> -i|-o <dev>` (undefined for netem). */
  lossRule?: string;
  rate?: 'netem' | 'tbf';
  /** The `tc qdisc add` arguments used, when a qdisc was added. */
  qdisc?: string[];
}

/** Our iptables chain for DEV (per device, so two devices in one namespace never share one; <= 28 chars). */
export function linkFaultChain(dev: string): string {
  return `MESHPORT_LF_${dev}`;
}

/** Why applyLinkFaults cannot run here (root, iproute2, iptables), or undefined when it can. Needs no sch_netem. */
export async function linkFaultProblem(): Promise<string | undefined> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'not root';
  for (const [cmd, args] of [
    ['ip', ['netns', 'list']],
    ['tc', ['-V']],
    ['iptables', ['-V']],
  ] as const) {
    const r = await run(cmd, args);
    if (r.code !== 0) return `'${cmd}' unavailable: ${r.stderr.trim()}`;
  }
  return undefined;
}

/** What applyLinkFaults did per (netns, dev), so removeLinkFaults finds a peer-side rule without being told. */
const appliedPeers = new Map<string, LinkPeer>();

/**
 * Puts `spec` on DEV's egress inside `netns` and says what it applied and how.
 *
 * With sch_netem: one `netem` qdisc for delay, jitter, loss and rate, as `tc qdisc add ... netem` takes them. Without it: bandwidth through
 * `tc qdisc add dev DEV root tbf rate Rkbit burst 32kbit latency 400ms`; loss through
 * `iptables -m statistic --mode random --probability p -j DROP` in chain MESHPORT_LF_<dev>; delay is not applied and
 * comes back as `unavailable: ...` (tbf and iptables cannot delay; the in-process latency toxic does).
 *
 * Where the loss rule sits: a DROP in OUTPUT fails the sender's send() with EPERM, which is not what loss on a wire
 * looks like (UDP sees an error, TCP retries the local send instead of retransmitting). With `peer` (the other end of
 * a veth) the rule goes in the peer's `raw PREROUTING -i <peerDev>`: the packet leaves DEV, is dropped on arrival,
 * and neither end's stack knows, as with netem. Without `peer`: `filter OUTPUT -o DEV` in `netns`.
 *
 * A failure half-way removes what was added before the error is thrown.
 */
export async function applyLinkFaults(
  netns: string,
  dev: string,
  spec: LinkFaultSpec,
  peer?: LinkPeer,
): Promise<AppliedLinkFaults> {
  const wantDelay = !!spec.delayMs || !!spec.jitterMs;
  if (spec.jitterMs && !spec.delayMs) throw new Error('jitterMs needs delayMs');
  if (spec.lossPercent !== undefined && !(spec.lossPercent >= 0 && spec.lossPercent <= 100))
    throw new Error(`lossPercent ${spec.lossPercent}`);
  const applied: AppliedLinkFaults = {};

  const netem: string[] = [];
  if (wantDelay) {
    netem.push('delay', `${spec.delayMs}ms`);
    if (spec.jitterMs) netem.push(`${spec.jitterMs}ms`);
  }
  if (spec.lossPercent) netem.push('loss', `${spec.lossPercent}%`);
  if (spec.rateKbit) netem.push('rate', `${spec.rateKbit}kbit`);
  if (netem.length === 0) return applied;

  const tried = ['qdisc', 'add', 'dev', dev, 'root', 'netem', ...netem];
  const r = await run('tc', tried, { netns });
  if (r.code === 0) {
    if (wantDelay) applied.delay = 'netem';
    if (spec.lossPercent) applied.loss = 'netem';
    if (spec.rateKbit) applied.rate = 'netem';
    applied.qdisc = tried.slice(4);
    return applied;
  }
  if (!/unknown|not found|No such file/i.test(r.stderr))
    throw new Error(`tc ${tried.join(' ')} (netns ${netns}): ${r.stderr.trim()}`);
  const why = `no sch_netem in this kernel (${r.stderr.trim()})`;

  if (wantDelay) applied.delay = `unavailable: ${why}`;
  try {
    if (spec.rateKbit) {
      const tbf = [
        'qdisc',
        'add',
        'dev',
        dev,
        'root',
        'tbf',
        'rate',
        `${spec.rateKbit}kbit`,
        'burst',
        '32kbit',
        'latency',
        '400ms',
      ];
      await runChecked('tc', tbf, { netns });
      applied.rate = 'tbf';
      applied.qdisc = tbf.slice(4);
    }
    if (spec.lossPercent) {
      const probability = (spec.lossPercent / 100).toFixed(6);
      const at = peer
        ? { netns: peer.netns, table: 'raw', hook: 'PREROUTING', match: ['-i', peer.dev], dev: peer.dev }
        : { netns, table: 'filter', hook: 'OUTPUT', match: ['-o', dev], dev };
      if (peer) appliedPeers.set(`${netns}/${dev}`, peer);
      const chain = linkFaultChain(at.dev);
      const ipt = (...args: string[]) => runChecked('iptables', ['-w', '-t', at.table, ...args], { netns: at.netns });
      await ipt('-N', chain);
      await ipt('-A', chain, '-m', 'statistic', '--mode', 'random', '--probability', probability, '-j', 'DROP');
      await ipt('-A', at.hook, ...at.match, '-j', chain);
      applied.loss = 'iptables statistic';
      applied.lossRule = `${at.netns} ${at.table} ${at.hook} ${at.match.join(' ')} -> ${chain} (probability ${probability})`;
    }
  } catch (error) {
    await removeLinkFaults(netns, dev, peer).catch(() => {});
    throw error;
  }
  return applied;
}

/** Removes our iptables chain (and every jump to it) from one table of one namespace; absent is fine. */
async function removeChain(netns: string, table: string, hook: string, flag: '-i' | '-o', dev: string): Promise<void> {
  const chain = linkFaultChain(dev);
  const ipt = (...args: string[]) => run('iptables', ['-w', '-t', table, ...args], { netns });
  if ((await ipt('-S', chain)).code !== 0) return; // no such chain
  for (let i = 0; i < 100 && (await ipt('-D', hook, flag, dev, '-j', chain)).code === 0; i++);
  await runChecked('iptables', ['-w', '-t', table, '-F', chain], { netns });
  await runChecked('iptables', ['-w', '-t', table, '-X', chain], { netns });
}

/**
 * Removes what applyLinkFaults put on DEV: its root qdisc when that is netem or tbf, and our chain with its jump
 * (DEV's OUTPUT one, and the peer's PREROUTING one when a peer was used, given here or remembered). Idempotent; a
 * namespace that is gone already is fine.
 */
export async function removeLinkFaults(netns: string, dev: string, peer?: LinkPeer): Promise<void> {
  const p = peer ?? appliedPeers.get(`${netns}/${dev}`);
  const live = await listNetns();
  if (live.includes(netns)) {
    const q = await run('tc', ['qdisc', 'show', 'dev', dev, 'root'], { netns });
    if (/^qdisc (netem|tbf) /m.test(q.stdout)) await runChecked('tc', ['qdisc', 'del', 'dev', dev, 'root'], { netns });
    await removeChain(netns, 'filter', 'OUTPUT', '-o', dev);
  }
  if (p && live.includes(p.netns)) await removeChain(p.netns, 'raw', 'PREROUTING', '-i', p.dev);
  appliedPeers.delete(`${netns}/${dev}`);
}

/** What of applyLinkFaults is still on DEV (and the peer): netem/tbf qdisc lines and our chains. [] when clean. */
export async function linkFaultLeftovers(netns: string, dev: string, peer?: LinkPeer): Promise<string[]> {
  const left: string[] = [];
  const check = async (ns: string, d: string, tables: string[]) => {
    left.push(...(await qdiscs(ns, d)).filter((l) => /^qdisc (netem|tbf) /.test(l)).map((l) => `${ns} ${d}: ${l}`));
    for (const t of tables) {
      const r = await run('iptables', ['-w', '-t', t, '-S'], { netns: ns });
      left.push(
        ...r.stdout
          .split('\n')
          .filter((l) => l.includes('MESHPORT_LF_'))
          .map((l) => `${ns} ${t}: ${l}`),
      );
    }
  };
  await check(netns, dev, ['filter', 'raw']);
  if (peer) await check(peer.netns, peer.dev, ['filter', 'raw']);
  return left;
}

/** Our chains or a netem/tbf qdisc in the host's own namespace (the suites put theirs only inside theirs). */
export async function hostLinkFaultLeftovers(): Promise<string[]> {
  // netem anywhere; tbf only on our device names (a host may shape its own links with tbf).
  const left = (await run('tc', ['qdisc', 'show'])).stdout
    .split('\n')
    .filter((l) => /^qdisc netem /.test(l) || /^qdisc tbf .* dev mpn/.test(l));
  for (const t of ['filter', 'raw']) {
    const r = await run('iptables', ['-w', '-t', t, '-S']);
    left.push(
      ...r.stdout
        .split('\n')
        .filter((l) => l.includes('MESHPORT_LF_'))
        .map((l) => `host ${t}: ${l}`),
    );
  }
  return left;
}

export { assertTestAddress };
