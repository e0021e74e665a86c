// Where a native process spends its time, from Linux `perf`: CPU, system calls and context switches per thread
// (`perf stat --per-thread`), and self time per shared object and symbol (`perf record`, flat: the engine is built
// without frame pointers, so call graphs would not be trustworthy). For the forward suite's MESHPORT_BENCH_PERF.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { track } from './children';

export const PERF = 'perf';

/** Why perf cannot be used here, or null when it can. */
export function perfUnavailable(): string | null {
  try {
    execFileSync(PERF, ['--version'], { stdio: 'ignore' });
    return null;
  } catch (err) {
    return `\`${PERF}\` does not run here (${(err as Error).message.split('\n')[0]})`;
  }
}

/** One thread's counts over the window. */
export interface ThreadCounts {
  pid: number;
  tid: number;
  cpuMs: number;
  syscalls: number;
  contextSwitches: number;
}

export interface Share {
  name: string;
  /** Share of the samples, 0..1. */
  share: number;
}

export interface PerfResult {
  threads: ThreadCounts[];
  /** Self time per shared object ([kernel.kallsyms], meshport_engine.node, libc, node, ...), when recorded. */
  byDso: Share[];
  /** Self time per symbol (`dso: symbol`), when recorded. */
  bySymbol: Share[];
  /** perf's own count of the samples ("12K of event 'cpu-clock'"), '' when not recorded. */
  samples: string;
}

function tidsOf(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number);
  } catch {
    return [];
  }
}

function stopPerf(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGINT');
  });
}

/** `perf stat --per-thread -x,` lines: `comm-tid,value,unit,event,...`. */
export function parsePerfStat(text: string, owner: Map<number, number>): ThreadCounts[] {
  const byTid = new Map<number, ThreadCounts>();
  for (const line of text.split('\n')) {
    const f = line.split(',');
    const m = /-(\d+)$/.exec(f[0] ?? '');
    if (!m || f.length < 4) continue;
    const tid = Number(m[1]);
    const value = Number(f[1]);
    if (!Number.isFinite(value)) continue; // <not counted>: the thread did not run
    const t = byTid.get(tid) ?? { pid: owner.get(tid) ?? -1, tid, cpuMs: 0, syscalls: 0, contextSwitches: 0 };
    if (f[3].startsWith('task-clock')) t.cpuMs += value;
    else if (f[3].startsWith('raw_syscalls:sys_enter')) t.syscalls += value;
    else if (f[3].startsWith('context-switches')) t.contextSwitches += value;
    byTid.set(tid, t);
  }
  return [...byTid.values()];
}

/** A C++ symbol with its template arguments folded (`std::_Map_base<...>::operator[]`): some run to 800 characters. */
export function shortSymbol(name: string): string {
  let out = '';
  let depth = 0;
  for (const ch of name) {
    if (ch === '<') {
      if (depth === 0) out += '<...>';
      depth++;
    } else if (ch === '>' && depth > 0) {
      depth--;
    } else if (depth === 0) {
      out += ch;
    }
  }
  return depth === 0 ? out : name; // unbalanced (an operator< or >> in the name): leave it as perf printed it
}

/** `perf report --stdio` lines: `  12.34%  col  col ...`. */
export function parsePerfReport(text: string): Share[] {
  const out: Share[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s+([\d.]+)%\s+(.+?)\s*$/.exec(line);
    if (!m) continue;
    out.push({ name: shortSymbol(m[2].replace(/\s{2,}/g, ' ')), share: Number(m[1]) / 100 });
  }
  return out;
}

function report(file: string, sort: string): Share[] {
  try {
    const text = execFileSync(
      PERF,
      ['report', '-i', file, '--stdio', '--no-children', '--sort', sort, '--percent-limit', '0.5'],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
        maxBuffer: 64 << 20,
      },
    );
    return parsePerfReport(text);
  } catch {
    return [];
  }
}

/** The "# Samples: 12K of event 'cpu-clock'" line of a recording, for the report. */
function samplesLine(file: string): string {
  try {
    const text = execFileSync(PERF, ['report', '-i', file, '--stdio', '--sort', 'dso'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      maxBuffer: 64 << 20,
    });
    return /^# Samples: (.*)$/m.exec(text)?.[1] ?? '';
  } catch {
    return '';
  }
}

/**
 * Counts (and, given `recordFile`, samples) the threads of `pids` from now until `stop()`. Waits until perf is
 * attached before resolving, so a load started afterwards is inside the window.
 */
export async function startPerf(pids: number[], recordFile?: string): Promise<{ stop(): Promise<PerfResult> }> {
  const owner = new Map<number, number>();
  for (const pid of pids) for (const tid of tidsOf(pid)) owner.set(tid, pid);
  const list = pids.join(',');
  const stat = spawn(
    PERF,
    ['stat', '--per-thread', '-x,', '-e', 'task-clock,raw_syscalls:sys_enter,context-switches', '-p', list],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  track(stat);
  let statText = '';
  stat.stderr!.on('data', (c: Buffer) => (statText += c.toString()));
  let record: ChildProcess | undefined;
  if (recordFile) {
    record = spawn(PERF, ['record', '-q', '-F', '1999', '-o', recordFile, '-p', list], { stdio: 'ignore' });
    track(record);
  }
  await new Promise((r) => setTimeout(r, 400)); // perf attaches to every thread before counting
  return {
    async stop(): Promise<PerfResult> {
      await Promise.all([stopPerf(stat), ...(record ? [stopPerf(record)] : [])]);
      const threads = parsePerfStat(statText, owner);
      if (!recordFile) return { threads, byDso: [], bySymbol: [], samples: '' };
      return {
        threads,
        byDso: report(recordFile, 'dso'),
        bySymbol: report(recordFile, 'dso,sym'),
        samples: samplesLine(recordFile),
      };
    },
  };
}
