// The `hijack` suite's rig: one fresh network namespace (and cgroup, for the BPF modes) per measurement, the echo
// server, the capture relay (uid 1337) and the load generator inside it, the mode's plan applied there; and a
// teardown that removes all of it, also on an error or a signal.

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmdirSync } from 'node:fs';
import * as path from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import {
  HIJACK_DEFAULTS,
  addTestAddress,
  applyPlan,
  bpfPinDir,
  commandArgv,
  createNetns,
  deleteNetns,
  planRules,
  removePlan,
  run,
  uniqueNetnsName,
  type HijackPlan,
} from '@meshport/hijack';
import { bpfDetach, bpfStats, createCgroup, findCgroup2Mount, removeCgroup, type BpfStats } from '@meshport/socket';
import { cpuTimes, peakRssMB } from '../proc';

export type CaseName = 'direct' | 'redirect' | 'connect-hook' | 'connect-hook+sockmap';
export const CASES: readonly CaseName[] = ['direct', 'redirect', 'connect-hook', 'connect-hook+sockmap'];

export const SERVER = { host: '198.18.0.1', port: 7000 };
const CAPTURE = { host: '127.0.0.1', port: HIJACK_DEFAULTS.outboundPort };
const SIDECAR_UID = HIJACK_DEFAULTS.uid;
const RUNNERS = path.resolve(__dirname, '../runners');

/** A runner child speaking JSON lines: one command in, one answer out. */
export class Child {
  private readonly lines: Interface;
  private readonly waiting: ((obj: Record<string, unknown>) => void)[] = [];
  private stderr = '';
  readonly exited: Promise<void>;

  constructor(
    readonly name: string,
    readonly proc: ChildProcess,
  ) {
    this.lines = createInterface({ input: proc.stdout! });
    this.lines.on('line', (line) => {
      let obj: Record<string, unknown>;
      try {
        obj = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      this.waiting.shift()?.(obj);
    });
    proc.stderr!.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
    this.exited = new Promise((resolve) => proc.once('exit', () => resolve()));
  }

  /** The next JSON line (the ready line first), or a rejection when the child dies or takes too long. */
  next<T = Record<string, unknown>>(timeoutMs: number): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${this.name}: no answer within ${timeoutMs} ms; stderr: ${this.stderr}`)),
        timeoutMs,
      );
      const onExit = () =>
        reject(
          new Error(`${this.name} exited (${this.proc.exitCode ?? this.proc.signalCode}); stderr: ${this.stderr}`),
        );
      this.proc.once('exit', onExit);
      this.waiting.push((obj) => {
        clearTimeout(timer);
        this.proc.off('exit', onExit);
        resolve(obj as T);
      });
    });
  }

  async ask<T = Record<string, unknown>>(command: string, timeoutMs: number): Promise<T> {
    const answer = this.next<T>(timeoutMs);
    this.proc.stdin!.write(`${command}\n`);
    return answer;
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.stdin!.end();
    const t = setTimeout(() => kill(this.proc.pid), 1500);
    await this.exited;
    clearTimeout(t);
  }
}

function kill(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}

/**
 * argv: a root shell that joins the cgroup (when given) and raises RLIMIT_NOFILE, then `ip netns exec NS`
 * (`setpriv` to the uid when given) node RUNNER. The cgroup join must come before `ip netns exec`, which mounts a
 * fresh /sys; `ip netns exec` and `setpriv` exec, so the child's pid is the node process.
 */
function runnerArgv(netns: string, script: string, args: string[], opts: { uid?: number; cgroup?: string }): string[] {
  const inner = commandArgv(process.execPath, [path.join(RUNNERS, script), ...args], { netns, uid: opts.uid });
  const join = opts.cgroup ? 'echo $$ > "$1/cgroup.procs" || exit 1; ' : '';
  return [
    'sh',
    '-c',
    `${join}ulimit -n "$(ulimit -H -n)" || exit 1; shift; exec "$@"`,
    'sh',
    opts.cgroup ?? '-',
    ...inner,
  ];
}

/** RLIMIT_NOFILE's hard limit here: the soft limit can be raised to it without CAP_SYS_RESOURCE, not beyond. */
export function nofileHardLimit(): number {
  const out = require('node:child_process').execFileSync('sh', ['-c', 'ulimit -H -n'], { encoding: 'utf8' }).trim();
  return out === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(out);
}

/** Most connections one relay process can carry: two descriptors each (app side, upstream), plus slack. */
export function maxConnections(): number {
  return Math.floor((nofileHardLimit() - 64) / 2);
}

/** Everything one measurement set up, for teardown. */
interface Installed {
  netns: string;
  cgroup?: string;
  plan?: HijackPlan;
  children: Child[];
}

const live = new Set<Installed>();
let signalsHooked = false;

/** Synchronous last-resort cleanup for a signal or an exit: kill our children, detach, delete netns and cgroups. */
function cleanupSync(): void {
  for (const inst of live) {
    for (const c of inst.children) kill(c.proc.pid);
  }
  const deadline = Date.now() + 2000;
  for (const inst of live) {
    for (const c of inst.children) {
      while (c.proc.pid !== undefined && Date.now() < deadline && alive(c.proc.pid))
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
    if (inst.cgroup) {
      try {
        bpfDetach({ pinDir: bpfPinDir(inst.cgroup) });
      } catch {
        // not attached
      }
      try {
        rmdirSync(inst.cgroup);
      } catch {
        // busy or gone
      }
    }
    try {
      require('node:child_process').execFileSync('ip', ['netns', 'del', inst.netns], { stdio: 'ignore' });
    } catch {
      // gone
    }
  }
  live.clear();
}

/** utime + stime of a process, in seconds (0 when it is gone). */
function cpuSeconds(pid: number | undefined): number {
  const t = pid === undefined ? null : cpuTimes(pid);
  return t ? t.user + t.system : 0;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function hookSignals(): void {
  if (signalsHooked) return;
  signalsHooked = true;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      process.stderr.write(`[bench] hijack: ${sig}, removing namespaces, cgroups and BPF attachments\n`);
      cleanupSync();
      process.exit(130);
    });
  }
  process.on('exit', () => {
    if (live.size > 0) cleanupSync();
  });
}

export interface Measurement {
  case: CaseName;
  connections: number;
  /** connect + first 64-byte round trip on every connection: connections per second. */
  setupPerSec: number;
  setupFailed: number;
  /** conntrack entries in the namespace with all connections open. */
  conntrack: number;
  reqPerSec: number;
  p50us: number;
  p99us: number;
  runErrors: number;
  /** 1x1: one connection, one 64-byte message at a time, after the loaded window. */
  p50us1x1: number;
  p99us1x1: number;
  /** CPU (user + system) microseconds per request in the timed window, per process. */
  cpuUsPerReq: { loadgen: number; relay: number; echo: number };
  /** CPU seconds of each process over the timed window, and its peak RSS (VmHWM) over its life, MiB. */
  usage: Record<'loadgen' | 'relay' | 'echo', { cpuSeconds: number; peakRssMB: number | null } | undefined>;
  bpf?: BpfStats;
  relay?: { routed: number; passedThrough: number; refused: number };
  somaxconn: number;
}

let counter = 0;

export async function measureOnce(
  name: CaseName,
  connections: number,
  seconds: number,
  log: (line: string) => void,
  latencySeconds = 1,
): Promise<Measurement> {
  hookSignals();
  const netns = uniqueNetnsName('mpbh');
  const inst: Installed = { netns, children: [] };
  live.add(inst);
  const root = findCgroup2Mount();
  try {
    await createNetns(netns);
    await addTestAddress(netns, 'lo', `${SERVER.host}/32`);
    // Ports for 10k connections on each of two hops, and room in the accept queues.
    await run('sysctl', ['-q', '-w', 'net.ipv4.ip_local_port_range=10000 65000'], { netns });
    const somaxconn = Number((await run('sysctl', ['-n', 'net.core.somaxconn'], { netns })).stdout.trim());

    const bpfMode = name === 'connect-hook' || name === 'connect-hook+sockmap';
    if (bpfMode) {
      if (!root) throw new Error('no cgroup v2 mount: the connect hook cannot be measured');
      counter += 1;
      inst.cgroup = createCgroup(path.join(root, `meshport-bench-hijack-${process.pid}-${counter}`));
    }
    const start = async (label: string, script: string, args: string[], opts: { uid?: number; cgroup?: string }) => {
      const [cmd, ...rest] = runnerArgv(netns, script, args, opts);
      const child = new Child(label, spawn(cmd, rest, { stdio: ['pipe', 'pipe', 'pipe'] }));
      inst.children.push(child);
      await child.next(15000);
      return child;
    };
    await start('echo', 'hijack-echo-process.js', [SERVER.host, String(SERVER.port)], {});
    let relay: Child | undefined;
    if (name !== 'direct') {
      relay = await start('relay', 'hijack-relay-process.js', [CAPTURE.host, String(CAPTURE.port)], {
        uid: SIDECAR_UID,
        cgroup: inst.cgroup,
      });
      inst.plan =
        name === 'redirect'
          ? planRules({ mode: 'redirect', inboundPorts: [] })
          : planRules({
              mode: 'connect-hook',
              inboundPorts: [],
              cgroup: inst.cgroup,
              sockmap: name === 'connect-hook+sockmap',
            });
      await applyPlan(inst.plan, { netns });
    }
    const loadgen = await start(
      'loadgen',
      'hijack-loadgen-process.js',
      [SERVER.host, String(SERVER.port), String(connections), '128'],
      { cgroup: inst.cgroup },
    );
    const opened = (await loadgen.ask<{ open: { n: number; failed: number; ms: number } }>('open', 120000)).open;
    const ct = await run('conntrack', ['-C'], { netns });
    const conntrack = ct.code === 0 ? Number(ct.stdout.trim()) : Number.NaN;
    await loadgen.ask('run 0.5', 30000); // warm-up, untimed
    const before =
      inst.cgroup && name === 'connect-hook+sockmap' ? bpfStats({ pinDir: bpfPinDir(inst.cgroup) }) : undefined;
    const cpu0 = inst.children.map((c) => cpuSeconds(c.proc.pid));
    const r = (
      await loadgen.ask<{ run: { requests: number; seconds: number; p50: number; p99: number; errors: number } }>(
        `run ${seconds}`,
        seconds * 1000 + 30000,
      )
    ).run;
    const cpu1 = inst.children.map((c) => cpuSeconds(c.proc.pid));
    const perReq = (label: string) => {
      const i = inst.children.findIndex((c) => c.name === label);
      return i < 0 ? 0 : ((cpu1[i] - cpu0[i]) * 1e6) / r.requests;
    };
    const cpuUsPerReq = { loadgen: perReq('loadgen'), relay: perReq('relay'), echo: perReq('echo') };
    let bpf: BpfStats | undefined;
    if (inst.cgroup) bpf = bpfStats({ pinDir: bpfPinDir(inst.cgroup) });
    if (bpf && before)
      bpf = {
        ...bpf,
        redirectedMessages: bpf.redirectedMessages - before.redirectedMessages,
        redirectedBytes: bpf.redirectedBytes - before.redirectedBytes,
        redirectMisses: bpf.redirectMisses - before.redirectMisses,
      };
    const relayStats = relay ? (await relay.ask<{ stats: Measurement['relay'] }>('stats', 10000)).stats : undefined;
    const lat = (await loadgen.ask<{ lat: { n: number; p50: number; p99: number } }>(`lat ${latencySeconds}`, 30000))
      .lat;
    const usageOf = (label: 'loadgen' | 'relay' | 'echo') => {
      const i = inst.children.findIndex((c) => c.name === label);
      const pid = inst.children[i]?.proc.pid;
      return i < 0 || pid === undefined ? undefined : { cpuSeconds: cpu1[i] - cpu0[i], peakRssMB: peakRssMB(pid) };
    };
    const usage = { loadgen: usageOf('loadgen'), relay: usageOf('relay'), echo: usageOf('echo') };
    await loadgen.ask('close', 30000);
    const m: Measurement = {
      case: name,
      connections: opened.n,
      setupPerSec: opened.n / (opened.ms / 1000),
      setupFailed: opened.failed,
      conntrack,
      reqPerSec: r.requests / r.seconds,
      p50us: r.p50,
      p99us: r.p99,
      runErrors: r.errors,
      p50us1x1: lat.p50,
      p99us1x1: lat.p99,
      cpuUsPerReq,
      usage,
      bpf,
      relay: relayStats,
      somaxconn,
    };
    log(
      `hijack ${name} ${connections}: ${Math.round(m.setupPerSec)} conn/s, conntrack ${conntrack}, ${Math.round(m.reqPerSec)} req/s, ` +
        `p50 ${m.p50us.toFixed(0)} us, p99 ${m.p99us.toFixed(0)} us, 1x1 p50 ${m.p50us1x1.toFixed(1)} us, ` +
        `CPU us/req app ${cpuUsPerReq.loadgen.toFixed(1)} relay ${cpuUsPerReq.relay.toFixed(1)} server ${cpuUsPerReq.echo.toFixed(1)}${bpf ? `, sk_msg redirected ${bpf.redirectedMessages}` : ''}`,
    );
    return m;
  } finally {
    await teardown(inst, root);
  }
}

async function teardown(inst: Installed, root: string | undefined): Promise<void> {
  for (const c of inst.children) await c.stop();
  if (inst.plan) await removePlan(inst.plan, { netns: inst.netns }).catch(() => undefined);
  await deleteNetns(inst.netns);
  if (inst.cgroup) {
    if (existsSync(bpfPinDir(inst.cgroup))) {
      try {
        bpfDetach({ pinDir: bpfPinDir(inst.cgroup) });
      } catch {
        // gone
      }
    }
    await removeCgroup(inst.cgroup, root);
  }
  live.delete(inst);
}

/** The bpffs mount and pin root, as found before the suite: restored afterwards when the suite made them. */
export function bpffsState(): { mounted: boolean; pinRoot: boolean } {
  const mounted = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === '/sys/fs/bpf' && l.split(' ')[2] === 'bpf');
  return { mounted, pinRoot: existsSync(HIJACK_DEFAULTS.bpfPinRoot) };
}

export async function restoreBpffs(before: { mounted: boolean; pinRoot: boolean }): Promise<void> {
  if (!before.pinRoot && existsSync(HIJACK_DEFAULTS.bpfPinRoot)) {
    try {
      rmdirSync(HIJACK_DEFAULTS.bpfPinRoot);
    } catch {
      // not empty: something else pinned there
    }
  }
  if (!before.mounted && bpffsState().mounted && readdirSync('/sys/fs/bpf').every((n) => n.endsWith('.debug'))) {
    await run('umount', ['/sys/fs/bpf']);
  }
}

/** Leftovers check: namespaces and cgroups of this process that still exist. */
export async function leftovers(): Promise<string[]> {
  const out: string[] = [];
  const ns = await run('ip', ['netns', 'list']);
  for (const l of ns.stdout.split('\n')) if (l.startsWith(`mpbh-${process.pid}-`)) out.push(`netns ${l.split(' ')[0]}`);
  const root = findCgroup2Mount();
  if (root)
    for (const d of readdirSync(root))
      if (d.startsWith(`meshport-bench-hijack-${process.pid}-`)) out.push(`cgroup ${d}`);
  return out;
}
