// Preloaded (`node -r memory-probe.js ...`) into a process the memory suite forks, such as the real `meshport sidecar`
// command: answers {memory: true} over IPC with what the process holds and where, read from inside (V8, the module
// cache) and from /proc/self/smaps. It loads nothing the process would not load anyway (fs and v8 are Node's own), and
// does nothing until asked.

import { readFileSync } from 'node:fs';
import { getHeapSpaceStatistics } from 'node:v8';

/** Resident kB of one kind of mapping. */
export interface ResidentByKind {
  /** The node executable's own pages (its code and read-only data, shared with every node process). */
  nodeBinary: number;
  /** Other files mapped: libc, libstdc++, a native addon. */
  otherFiles: number;
  /** The main malloc arena (brk heap): Node's and V8's C++ allocations, and ArrayBuffer memory. */
  mallocMain: number;
  /** Anonymous mappings: V8's heap pages, thread stacks and the malloc arenas of other threads. */
  anonymous: number;
}

export interface ProbeAnswer {
  memory: {
    rss: number;
    heapUsed: number;
    heapTotal: number;
    external: number;
    arrayBuffers: number;
    /** VmHWM, bytes. */
    peakRss: number;
    /** Resident kB by kind of mapping (smaps). */
    resident: ResidentByKind;
    /** V8 spaces: name -> [committed, used, resident] bytes. */
    spaces: Record<string, [number, number, number]>;
    /** Files in require.cache, and per package (node_modules/<name>, or the workspace folder). */
    modules: number;
    modulesByPackage: Record<string, number>;
    /** Node's own modules and bindings loaded (process.moduleLoadList). */
    builtins: number;
    threads: number;
  };
}

function residentByKind(): ResidentByKind {
  const out: ResidentByKind = { nodeBinary: 0, otherFiles: 0, mallocMain: 0, anonymous: 0 };
  let kind: keyof ResidentByKind = 'anonymous';
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const m = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (m) {
      const name = m[1]!.trim();
      kind =
        name === process.execPath || name === '/usr/bin/node' || name.endsWith('/bin/node')
          ? 'nodeBinary'
          : name === '[heap]'
            ? 'mallocMain'
            : name.startsWith('/')
              ? 'otherFiles'
              : 'anonymous';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB$/.exec(line);
    if (rss) out[kind] += Number(rss[1]);
  }
  return out;
}

function packageOf(file: string): string {
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file);
  if (nm) return nm[1]!;
  const ws = /\/(packages|registry-adapters|protocol)(\/[^/]+)?\//.exec(file);
  return ws ? (ws[1] === 'protocol' ? 'protocol' : `${ws[1]}${ws[2] ?? ''}`) : 'other';
}

function answer(): ProbeAnswer {
  const m = process.memoryUsage();
  const status = readFileSync('/proc/self/status', 'utf8');
  const files = Object.keys(require.cache).filter((f) => f !== __filename); // the probe is not the process's own
  const modulesByPackage: Record<string, number> = {};
  for (const f of files) modulesByPackage[packageOf(f)] = (modulesByPackage[packageOf(f)] ?? 0) + 1;
  return {
    memory: {
      rss: m.rss,
      heapUsed: m.heapUsed,
      heapTotal: m.heapTotal,
      external: m.external,
      arrayBuffers: m.arrayBuffers,
      peakRss: Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1] ?? 0) * 1024,
      resident: residentByKind(),
      spaces: Object.fromEntries(
        getHeapSpaceStatistics()
          .filter((s) => s.space_size > 0)
          .map((s) => [s.space_name, [s.space_size, s.space_used_size, s.physical_space_size]]),
      ),
      modules: files.length,
      modulesByPackage,
      builtins: (process as unknown as { moduleLoadList: string[] }).moduleLoadList.length,
      threads: Number(/^Threads:\s+(\d+)$/m.exec(status)?.[1] ?? 0),
    },
  };
}

if (process.send) {
  process.on('message', (msg: { memory?: boolean }) => {
    if (msg?.memory) process.send!(answer());
  });
  // The IPC channel must not keep a process alive that would otherwise exit, nor stop one from draining.
  process.channel?.unref();
}
