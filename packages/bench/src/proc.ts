// What Linux says about a process: CPU time from /proc/<pid>/stat, peak resident memory from /proc/<pid>/status.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let ticks: number | undefined;

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ, nearly always 100). */
export function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

export interface CpuTimes {
  /** Seconds in user mode, all threads. */
  user: number;
  /** Seconds in the kernel, all threads. */
  system: number;
}

/** CPU seconds a live process has used so far (all its threads), or null when it is gone. */
export function cpuTimes(pid: number): CpuTimes | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may hold spaces and parentheses: count fields from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime is field 14, stime field 15.
  const hz = clockTicks();
  return { user: Number(fields[11]) / hz, system: Number(fields[12]) / hz };
}

/** Peak resident set size (VmHWM) in MiB, or null when the process is gone. */
export function peakRssMB(pid: number): number | null {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(status);
  return m ? Number(m[1]) / 1024 : null;
}

export function cpuDelta(before: CpuTimes | null, after: CpuTimes | null): CpuTimes {
  if (!before || !after) return { user: 0, system: 0 };
  return { user: after.user - before.user, system: after.system - before.system };
}

export interface IoCounts {
  /** read-type syscalls (read, readv, recvmsg, ...). */
  reads: number;
  /** write-type syscalls (write, writev, sendmsg, ...). */
  writes: number;
}

/** Syscall counts of /proc/<pid>/io (all threads), or null when unreadable (another user's process, or gone). */
export function ioCounts(pid: number): IoCounts | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/io`, 'utf8');
  } catch {
    return null;
  }
  const r = /^syscr:\s+(\d+)$/m.exec(text);
  const w = /^syscw:\s+(\d+)$/m.exec(text);
  return r && w ? { reads: Number(r[1]), writes: Number(w[1]) } : null;
}
