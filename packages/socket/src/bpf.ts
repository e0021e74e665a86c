// Typed access to meshport's eBPF side: load bpf/meshport.bpf.o with a config, attach it to a cgroup, read counters.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkAttachOptions, checkDetachOptions, checkFd, checkLoadOptions, checkStatsOptions } from './bpf-args';
import { NotSupportedError } from './errors';
import { requireOps } from './native';

/**
 * The programs of bpf/meshport.bpf.c, by the name the API uses. connect6 captures the IPv4-mapped connects
 * (`::ffff:a.b.c.d`) of dual-stack IPv6 sockets, a JVM's default, to the IPv4 capture address, and native IPv6
 * connects to `captureAddress6` while a listener is there (see BpfCaptureConfig).
 */
export type BpfProgramName = 'connect4' | 'connect6' | 'sockops' | 'getsockopt' | 'sk_msg';

/** What the connect4 hook captures; fixed at load time (it lives in the object's read-only data). */
export interface BpfCaptureConfig {
  /** Where captured connects go (connect4, and IPv4-mapped ones of connect6). @default '127.0.0.1' */
  captureAddress?: string;
  /**
   * Where connect6 sends native IPv6 connects, on the same capture port. A connect is rewritten only while a TCP
   * listener is on this address and port (or on `::`) in the connecting socket's network namespace; without one it
   * goes where it says (counted in skippedConnects), so an IPv4-only capture listener leaves IPv6 uncaptured rather
   * than refused. Neither `::` nor an IPv4-mapped address. @default '::1'
   */
  captureAddress6?: string;
  /** The sidecar's outbound capture port. @default 15001 */
  capturePort?: number;
  /** Connects made by this uid are never rewritten (the sidecar's own upstream connects). @default 1337 */
  sidecarUid?: number;
  /** When non-empty, only these destination ports are captured (at most 16). @default [] */
  includePorts?: number[];
  /** Destination ports never captured (at most 16). @default [] */
  excludePorts?: number[];
}

export interface BpfLoadOptions {
  /** Directory holding meshport.bpf.o. @default the package's bpf/ directory */
  objectDir?: string;
  config?: BpfCaptureConfig;
  /**
   * Size of the SOCKHASH the sk_msg shortcut uses. Sockets that do not fit take the normal TCP path and are
   * counted in `sockmapFailed`.
   * @default 65536 (the object's own)
   */
  sockmapMaxEntries?: number;
  /**
   * A pin directory (absolute) whose pinned maps this object takes over where their shape matches, so that a
   * bpfAttach into that directory, which replaces its pinned links in place, keeps the old programs' records.
   * @default none: fresh maps
   */
  reuseMapsFrom?: string;
}

export interface BpfAttachOptions {
  /** A cgroup v2 directory, e.g. /sys/fs/cgroup/unified/pod-x. */
  cgroupPath: string;
  /**
   * Which programs to attach. getsockopt answers only for connections sockops recorded, so attach sockops with
   * connect4/getsockopt; sk_msg needs sockops too (sockops fills the SOCKHASH only while sk_msg is attached).
   * Anything but a non-empty array of these names is refused (MESHPORT_SOCKET_BAD_ARGUMENT).
   * @default ['connect4', 'connect6', 'sockops', 'getsockopt', 'sk_msg']
   */
  programs?: BpfProgramName[];
  /**
   * Pin the links and maps here (an absolute bpffs directory; a relative one is refused) so the attachment outlives
   * this process; bpffs is mounted at /sys/fs/bpf first when absent. Without it, the attachment ends with this
   * process. The directory belongs to one attachment set: a map pin there that is not this object's (a crashed
   * run's, another build's) is replaced by this object's map.
   * @default undefined (no pins)
   */
  pinDir?: string;
}

export interface BpfDetachOptions {
  /** Detach only what this process attached to this cgroup. @default every attachment of this process */
  cgroupPath?: string;
  /** Detach only these programs; anything but a non-empty array is refused. @default all */
  programs?: BpfProgramName[];
  /** Also detach and remove whatever is pinned in this directory (even by another process), then the directory. */
  pinDir?: string;
}

/** Counters kept by the programs, summed over CPUs. */
export interface BpfStats {
  hookedConnects: number;
  /**
   * TCP connects the hooks left alone: the sidecar's uid, the capture address itself, ports not captured, a record
   * that could not be written, and native IPv6 ones with no listener on captureAddress6 or to a link-local address.
   */
  skippedConnects: number;
  originalDstRecorded: number;
  originalDstAnswered: number;
  sockmapAdded: number;
  redirectedMessages: number;
  redirectedBytes: number;
  redirectMisses: number;
  /** Sockets sockops could not add to the SOCKHASH (full, or refused): they take the normal TCP path. */
  sockmapFailed: number;
}

export interface BpfFeature {
  supported: boolean;
  /** Why not, when not supported. */
  reason?: string;
}

export interface BpfProbeResult {
  /** connect4 + connect6 + sockops + getsockopt loaded and attached to a scratch cgroup. */
  connectHook: BpfFeature;
  /** sockops + sk_msg on a SOCKHASH loaded and attached. */
  sockmap: BpfFeature;
}

export interface BpfAttachment {
  cgroupPath: string;
  program: BpfProgramName;
  /** true for a bpf_link; false for the legacy sk_msg prog attach of kernels before 6.10 */
  link: boolean;
  pinPath?: string;
}

export interface OriginalDst {
  address: string;
  port: number;
}

export const bpfDefaults = {
  objectDir: path.join(__dirname, '..', '..', 'bpf'),
  captureAddress: '127.0.0.1',
  captureAddress6: '::1',
  capturePort: 15001,
  sidecarUid: 1337,
  includePorts: [] as number[],
  excludePorts: [] as number[],
  programs: ['connect4', 'connect6', 'sockops', 'getsockopt', 'sk_msg'] as BpfProgramName[],
  /** Where meshport's pins go: one directory per attachment set, <pinRoot>/<name>. */
  pinRoot: '/sys/fs/bpf/meshport',
  /** The bound of includePorts/excludePorts (MESHPORT_MAX_PORTS in bpf/meshport.h). */
  maxPorts: 16,
} as const;

interface BpfAddon {
  bpfLoad(options: {
    objectDir: string;
    config: Required<BpfCaptureConfig>;
    sockmapMaxEntries?: number;
    reuseMapsFrom?: string;
  }): void;
  bpfUnload(options?: { keepPinned: boolean }): void;
  bpfAttach(options: { cgroupPath: string; programs: BpfProgramName[]; pinDir?: string }): {
    updated: number;
    unchanged: number;
  };
  bpfDetach(options: BpfDetachOptions): { detached: number };
  bpfAttachments(): BpfAttachment[];
  bpfStats(options: { pinDir?: string }): BpfStats;
  bpfProbe(options: { objectDir: string }): BpfProbeResult;
  bpfOriginalDst(fd: number): OriginalDst;
  bpfEnsureBpffs(): boolean;
}

// The addon that native.ts loads (MESHPORT_SOCKET_ADDON included), seen through its BPF entry points; an addon
// built without bpf_loader.cc has the socket options only.
function native(): BpfAddon {
  const loaded = requireOps() as unknown as Partial<BpfAddon>;
  if (typeof loaded.bpfLoad !== 'function')
    throw new NotSupportedError('the native addon was built without the BPF loader');
  return loaded as BpfAddon;
}

/**
 * Loads the programs with their config. One loaded object per Node environment (the main thread and each
 * worker_thread have their own): bpfUnload() before loading again.
 */
export function bpfLoad(options: BpfLoadOptions = {}): void {
  native().bpfLoad(checkLoadOptions(options, bpfDefaults));
}

/**
 * Detaches everything this process attached (pins included) and closes the loaded object. With `keepPinned`,
 * pinned links and maps stay (their pins hold them), for a re-apply that updates them in place.
 */
export function bpfUnload(options: { keepPinned?: boolean } = {}): void {
  native().bpfUnload({ keepPinned: options.keepPinned === true });
}

/**
 * Attaches the loaded programs to a cgroup; all or nothing (an update is rolled back to the previous program). A
 * link already pinned in `pinDir` for a program on this cgroup gets the new program atomically (bpf_link_update)
 * instead of a detach and attach; `updated` counts those. One already running the same program (instructions, maps
 * and config) is left as it is: `unchanged`. The rewrite (connect4, connect6) goes last.
 */
export function bpfAttach(options: BpfAttachOptions): { updated: number; unchanged: number } {
  const result = native().bpfAttach(checkAttachOptions(options, bpfDefaults.programs));
  return {
    updated: typeof result?.updated === 'number' ? result.updated : 0,
    unchanged: typeof result?.unchanged === 'number' ? result.unchanged : 0,
  };
}

/** Detaches; returns how many attachments went. */
export function bpfDetach(options: BpfDetachOptions = {}): number {
  return native().bpfDetach(checkDetachOptions(options)).detached;
}

export function bpfAttachments(): BpfAttachment[] {
  return native().bpfAttachments();
}

/**
 * Counters of the loaded object, or (when nothing is loaded here) of the stats map pinned in pinDir. A pinned map
 * of another shape (another object's, an older meshport's) is refused with EINVAL naming the pin.
 */
export function bpfStats(options: { pinDir?: string } = {}): BpfStats {
  return native().bpfStats(checkStatsOptions(options));
}

/** Really loads and attaches the programs in a scratch cgroup; never throws for a missing kernel feature. */
export function bpfProbe(options: { objectDir?: string } = {}): BpfProbeResult {
  let addonNow: BpfAddon;
  try {
    addonNow = native();
  } catch (err) {
    if (!(err instanceof NotSupportedError)) throw err;
    const reason = err.reason;
    return { connectHook: { supported: false, reason }, sockmap: { supported: false, reason } };
  }
  return addonNow.bpfProbe({ objectDir: options.objectDir ?? bpfDefaults.objectDir });
}

/** getsockopt(SOL_IP, SO_ORIGINAL_DST) on an accepted IPv4 socket's fd (getOriginalDst answers IPv6 ones too). */
export function bpfOriginalDst(fd: number): OriginalDst {
  return native().bpfOriginalDst(checkFd(fd, 'bpfOriginalDst'));
}

/** Mounts bpffs at /sys/fs/bpf when absent; true when this call mounted it (the caller then owns the mount). */
export function ensureBpffs(): boolean {
  return native().bpfEnsureBpffs();
}

/** The first cgroup v2 mount point in /proc/mounts, or undefined. */
export function findCgroup2Mount(): string | undefined {
  let mounts: string;
  try {
    mounts = fs.readFileSync('/proc/mounts', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of mounts.split('\n')) {
    const [, dir, type] = line.split(' ');
    if (type === 'cgroup2' && dir) return dir;
  }
  return undefined;
}

/** Creates a cgroup v2 directory (parents must exist); returns its path. */
export function createCgroup(cgroupPath: string): string {
  fs.mkdirSync(cgroupPath);
  return cgroupPath;
}

/** Moves a process into a cgroup. Sockets it creates from then on belong to that cgroup. */
export function moveToCgroup(cgroupPath: string, pid: number): void {
  fs.writeFileSync(path.join(cgroupPath, 'cgroup.procs'), `${pid}\n`);
}

/**
 * Removes a cgroup. A cgroup with live processes cannot go (EBUSY): their pids move to `evacuateTo` first when
 * given; exiting processes linger briefly, hence the retries.
 */
export async function removeCgroup(cgroupPath: string, evacuateTo?: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      fs.rmdirSync(cgroupPath);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || attempt >= 50) throw err;
      if (evacuateTo) {
        const pids = fs.readFileSync(path.join(cgroupPath, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
        for (const pid of pids) {
          try {
            moveToCgroup(evacuateTo, Number(pid));
          } catch {
            // already gone
          }
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** Runs fn with a fresh cgroup under the cgroup v2 mount and removes the cgroup afterwards, also on failure. */
export async function withCgroup<T>(fn: (cgroupPath: string) => Promise<T>, name?: string): Promise<T> {
  const root = findCgroup2Mount();
  if (!root) throw new NotSupportedError('no cgroup v2 hierarchy is mounted');
  const cgroupPath = createCgroup(
    path.join(root, name ?? `meshport-${process.pid}-${Math.random().toString(36).slice(2, 8)}`),
  );
  try {
    return await fn(cgroupPath);
  } finally {
    await removeCgroup(cgroupPath, root);
  }
}
