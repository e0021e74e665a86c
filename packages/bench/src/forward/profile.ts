// Where a V8 CPU profile (.cpuprofile, from node:inspector or `node --cpu-prof`) spends its time: self and total time
// per function, and self time per origin (router, protocol, prom-client, pino, Node's net/stream, GC, ...).
//
//   node packages/bench/dist/src/forward/profile.js FILE.cpuprofile [TOP]

import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface FunctionTime {
  /** `name (origin file:line)` */
  label: string;
  origin: string;
  /** Share of the busy (non-idle) time, 0..1. */
  self: number;
  total: number;
}

export interface ProfileSummary {
  /** Profiled wall time, seconds. */
  seconds: number;
  /** Share of the profiled time the thread was not idle. */
  busy: number;
  samples: number;
  bySelf: FunctionTime[];
  byTotal: FunctionTime[];
  /** Self time per origin, share of busy time, largest first. */
  byOrigin: { origin: string; self: number }[];
}

/** Which part of the stack a function belongs to. */
export function originOf(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (url === '') {
    if (functionName === '(garbage collector)') return 'GC';
    if (functionName === '(idle)') return 'idle';
    if (functionName === '(program)') return 'V8/native (program)';
    if (functionName === '(root)') return 'root';
    return 'native (C++ bindings: socket writes, hrtime, ...)';
  }
  if (url.includes('/packages/router/')) return '@meshport/router';
  if (url.includes('/protocol/dist/') || url.includes('/@meshport/protocol/')) return '@meshport/protocol';
  if (url.includes('/packages/bench/')) return 'bench runner';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return pkg[1];
  if (url.startsWith('node:')) {
    const m = /^node:(?:internal\/)?([^/]+(?:\/[^/]+)?)/.exec(url);
    const mod = m ? m[1] : url;
    if (/^(net|stream|streams)\b|stream_base_commons|^internal\/stream/.test(mod)) return 'node: net + streams';
    if (/timers/.test(mod)) return 'node: timers';
    if (/process\/task_queues|async_hooks|process\//.test(mod)) return 'node: nextTick/microtasks';
    if (/^buffer|buffer$/.test(mod)) return 'node: buffer';
    if (/^events/.test(mod)) return 'node: events';
    return `node: ${mod.split('/')[0]}`;
  }
  return url;
}

function shortFile(url: string): string {
  const m = /(?:packages\/|protocol\/dist\/|node_modules\/)(.*)$/.exec(url);
  if (m) return m[1].replace(/^([^/]+)\/dist\/src\//, '$1/').replace(/^src\//, 'protocol/');
  return url.replace(/^file:\/\//, '');
}

export function summarizeProfile(profile: CpuProfile, top = 15): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  for (const n of profile.nodes) byId.set(n.id, n);
  const self = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    // timeDeltas[i] is the time before sample i; attribute the time after it (the next delta) to it.
    const dt = profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0;
    self.set(id, (self.get(id) ?? 0) + Math.max(0, dt));
  }
  const keyOf = (f: CallFrame) => `${f.functionName}|${f.url}|${f.lineNumber}`;
  const labelOf = (f: CallFrame) => {
    const name = f.functionName || '(anonymous)';
    return f.url === '' ? name : `${name} (${shortFile(f.url)}:${f.lineNumber + 1})`;
  };
  let totalTime = 0;
  let idle = 0;
  for (const [id, t] of self) {
    totalTime += t;
    const f = byId.get(id)!.callFrame;
    if (f.functionName === '(idle)') idle += t;
  }
  const busyTime = Math.max(1, totalTime - idle);

  const fnSelf = new Map<string, number>();
  const fnTotal = new Map<string, number>();
  const frames = new Map<string, CallFrame>();
  const originSelf = new Map<string, number>();
  // Depth-first from the root; a function's total counts each sample once even when it recurses.
  const onStack = new Map<string, number>();
  const walk = (node: ProfileNode): number => {
    const f = node.callFrame;
    const key = keyOf(f);
    frames.set(key, f);
    const s = self.get(node.id) ?? 0;
    if (s > 0 && f.functionName !== '(idle)') {
      fnSelf.set(key, (fnSelf.get(key) ?? 0) + s);
      const o = originOf(f);
      originSelf.set(o, (originSelf.get(o) ?? 0) + s);
    }
    onStack.set(key, (onStack.get(key) ?? 0) + 1);
    let sum = s;
    for (const c of node.children ?? []) sum += walk(byId.get(c)!);
    const depth = onStack.get(key)! - 1;
    if (depth === 0) onStack.delete(key);
    else onStack.set(key, depth);
    if (depth === 0 && f.functionName !== '(idle)' && f.functionName !== '(root)')
      fnTotal.set(key, (fnTotal.get(key) ?? 0) + sum);
    return sum;
  };
  const root = profile.nodes.find((n) => n.callFrame.functionName === '(root)') ?? profile.nodes[0];
  walk(root);

  const list = (m: Map<string, number>, other: Map<string, number>): FunctionTime[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([key, t]) => {
        const f = frames.get(key)!;
        return {
          label: labelOf(f),
          origin: originOf(f),
          self: (m === fnSelf ? t : (other.get(key) ?? 0)) / busyTime,
          total: (m === fnTotal ? t : (other.get(key) ?? 0)) / busyTime,
        };
      });
  return {
    seconds: (profile.endTime - profile.startTime) / 1e6,
    busy: busyTime / Math.max(1, totalTime),
    samples: profile.samples.length,
    bySelf: list(fnSelf, fnTotal),
    byTotal: list(fnTotal, fnSelf),
    byOrigin: [...originSelf.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([origin, t]) => ({ origin, self: t / busyTime })),
  };
}

export function readProfile(file: string): CpuProfile {
  return JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

/** Markdown lines: origins, then the top functions by self time. */
export function profileMarkdown(title: string, s: ProfileSummary, top = 12): string[] {
  const lines = [
    `${title}: ${s.seconds.toFixed(1)} s profiled, busy ${pct(s.busy)} of it, ${s.samples} samples; shares below are of the busy time.`,
    '',
    '| origin | self |',
    '|---|---:|',
    ...s.byOrigin.filter((o) => o.self >= 0.005).map((o) => `| ${o.origin} | ${pct(o.self)} |`),
    '',
    '| function (self time) | self | total |',
    '|---|---:|---:|',
    ...s.bySelf.slice(0, top).map((f) => `| ${f.label.replace(/\|/g, '\\|')} | ${pct(f.self)} | ${pct(f.total)} |`),
  ];
  return lines;
}

/**
 * Markdown for several profiles side by side (e.g. the two routers of one protocol): self time per origin, then the
 * functions in any profile's top `top` by self time, one column per profile.
 */
export function profilesMarkdown(
  title: string,
  profiles: { role: string; summary: ProfileSummary }[],
  top = 10,
): string[] {
  const roles = profiles.map((p) => p.role);
  const head = (first: string) => [`| ${first} | ${roles.join(' | ')} |`, `|---|${roles.map(() => '---:').join('|')}|`];
  const originShare = new Map<string, number[]>();
  profiles.forEach((p, i) => {
    for (const o of p.summary.byOrigin) {
      const row = originShare.get(o.origin) ?? roles.map(() => 0);
      row[i] = o.self;
      originShare.set(o.origin, row);
    }
  });
  const origins = [...originShare.entries()]
    .filter(([, v]) => Math.max(...v) >= 0.01)
    .sort((a, b) => Math.max(...b[1]) - Math.max(...a[1]));
  const fnShare = new Map<string, number[]>();
  profiles.forEach((p, i) => {
    for (const f of p.summary.bySelf) {
      const row = fnShare.get(f.label) ?? roles.map(() => 0);
      row[i] = f.self;
      fnShare.set(f.label, row);
    }
  });
  const chosen = new Set<string>();
  profiles.forEach((p) => p.summary.bySelf.slice(0, top).forEach((f) => chosen.add(f.label)));
  const fns = [...chosen]
    .map((l) => [l, fnShare.get(l)!] as const)
    .sort((a, b) => Math.max(...b[1]) - Math.max(...a[1]));
  const cell = (x: number) => (x > 0 ? pct(x) : '<');
  return [
    `${title}: ${profiles.map((p) => `${p.role} ${p.summary.seconds.toFixed(1)} s profiled, busy ${pct(p.summary.busy)}, ${p.summary.samples} samples`).join('; ')}. ` +
      'Shares are of each process\'s busy (non-idle) time; "<" = below that profile\'s top 20.',
    '',
    ...head('self time by origin'),
    ...origins.map(([o, v]) => `| ${o} | ${v.map(cell).join(' | ')} |`),
    '',
    ...head('function (self time)'),
    ...fns.map(([l, v]) => `| ${l.replace(/\|/g, '\\|')} | ${v.map(cell).join(' | ')} |`),
  ];
}

if (require.main === module) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node profile.js FILE.cpuprofile [TOP]\n');
    process.exit(2);
  }
  const top = Number(process.argv[3] ?? 25);
  const s = summarizeProfile(readProfile(file), top);
  process.stdout.write(
    `${profileMarkdown(file, s, top).join('\n')}\n\n| function (total time) | self | total |\n|---|---:|---:|\n`,
  );
  process.stdout.write(`${s.byTotal.map((f) => `| ${f.label} | ${pct(f.self)} | ${pct(f.total)} |`).join('\n')}\n`);
}
