// The forward suite's sockmap case: a cgroup the suite makes, with the socket package's sockops + sk_msg programs
// attached to it, for the app (a load generator) and its sidecar (the consumer-side router) to run in; and its removal,
// also on an error or a signal.
//
// Sockets belong to the cgroup of the process that made them (an accepted one to its listener's), so both processes
// join it before they open any socket: they are forked with runners/join-cgroup.js preloaded. Nothing is pinned: the
// links live as long as this process holds them, and bpfUnload (or this process's exit) ends them.

import { readdirSync, rmdirSync } from 'node:fs';
import * as path from 'node:path';
import {
  type BpfStats,
  bpfAttach,
  bpfLoad,
  bpfProbe,
  bpfStats,
  bpfUnload,
  createCgroup,
  findCgroup2Mount,
  removeCgroup,
} from '@meshport/socket';
import { RUNNERS } from './children';

/** What a runner forked into the cgroup needs: the preload that joins it, and where it is. */
export interface CgroupJoin {
  execArgv: string[];
  env: NodeJS.ProcessEnv;
}

/** The env variable runners/join-cgroup reads. */
export const JOIN_CGROUP_ENV = 'MESHPORT_BENCH_JOIN_CGROUP';

const PREFIX = `meshport-bench-forward-${process.pid}`;

/** Why the sockmap case cannot run here, or null when it can. MESHPORT_BENCH_SOCKMAP=0 leaves it out on purpose. */
export function sockmapUnavailable(): string | null {
  if (process.env.MESHPORT_BENCH_SOCKMAP === '0') return 'left out by MESHPORT_BENCH_SOCKMAP=0';
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'needs root (a cgroup and BPF programs)';
  if (!findCgroup2Mount()) return 'no cgroup v2 mount';
  const probe = bpfProbe();
  return probe.sockmap.supported
    ? null
    : `sockops + sk_msg do not load here: ${probe.sockmap.reason ?? 'unknown reason'}`;
}

export class SockmapCgroup {
  private removed = false;
  private readonly onExit = () => this.removeSync();

  private constructor(
    readonly cgroup: string,
    private readonly root: string,
  ) {
    process.on('exit', this.onExit);
  }

  /** Makes the cgroup and attaches sockops + sk_msg to it (no connect hook: the app dials the sidecar itself). */
  static create(): SockmapCgroup {
    const root = findCgroup2Mount();
    if (!root) throw new Error('forward: no cgroup v2 mount for the sockmap case');
    const cg = new SockmapCgroup(createCgroup(path.join(root, PREFIX)), root);
    try {
      bpfLoad();
      bpfAttach({ cgroupPath: cg.cgroup, programs: ['sockops', 'sk_msg'] });
    } catch (err) {
      cg.removeSync();
      throw err;
    }
    return cg;
  }

  join(): CgroupJoin {
    return {
      execArgv: ['--require', path.join(RUNNERS, 'join-cgroup.js')],
      env: { ...process.env, [JOIN_CGROUP_ENV]: this.cgroup },
    };
  }

  stats(): BpfStats {
    return bpfStats();
  }

  /** Detaches (unloads) the programs and removes the cgroup; the processes in it must have been stopped. */
  async remove(): Promise<void> {
    if (this.removed) return;
    this.removed = true;
    process.off('exit', this.onExit);
    try {
      bpfUnload();
    } finally {
      await removeCgroup(this.cgroup, this.root);
    }
  }

  /** The exit hook's version: the children were SIGKILLed by forward/children's hook, which runs first. */
  private removeSync(): void {
    if (this.removed) return;
    this.removed = true;
    try {
      bpfUnload();
    } catch {
      // nothing loaded
    }
    const deadline = Date.now() + 2000;
    for (;;) {
      try {
        rmdirSync(this.cgroup);
        return;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code !== 'EBUSY' || Date.now() > deadline) return;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
      }
    }
  }
}

/** Cgroups of this process's forward suite still present (for a leftovers check). */
export function forwardCgroupLeftovers(): string[] {
  const root = findCgroup2Mount();
  if (!root) return [];
  return readdirSync(root)
    .filter((d) => d === PREFIX)
    .map((d) => `cgroup ${path.join(root, d)}`);
}
