// Typed access to meshport's eBPF side: load bpf/meshport.bpf.o with a config, attach it to a cgroup, read counters.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkAttachOptions, checkDetachOptions, checkFd, checkLoadOptions, checkStatsOptions } from './bpf-args';
import { NotSupportedError } from './errors';
import { requireOps } from './native';
import type {
  BpfAttachment,
  BpfCaptureConfig,
  BpfProgramName,
  BpfAttachOptions,
  BpfDetachOptions,
  BpfLoadOptions,
  BpfProbeResult,
  BpfStats,
  OriginalDst,
} from './bpf-types';

export type * from './bpf-types';

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
