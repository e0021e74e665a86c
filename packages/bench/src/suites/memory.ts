// Suite `memory`: what an idle sidecar holds. The real `meshport sidecar` command (packages/cli/bin/meshport.js), with
// the router's listeners, admin and one `zookeeper` registry against a real ZooKeeper (a facade for the app and one
// subscribed service, so the adapter's session is open), left idle until its heap settles; next to it, as the floor,
// a bare `node` process doing nothing. The sidecar is also run with V8's own heap settings, to show what the daemon's
// settings (@meshport/sidecar/v8-settings) change. What 10,000 endpoints add is the `registry` suite's figure.
//
//   meshport-sidecar             node -r runners/memory-probe.js bin/meshport.js sidecar --config <temp>/meshport.yaml
//   meshport-sidecar-v8-defaults the same with --semi-space-growth-factor=2 --heap-growing-percent=0 (V8's defaults)
//   bare-node                    node -e 'setInterval(() => {}, 1e9)'
//
// The three run side by side, one round at a time: RSS (/proc/PID/status) sampled every 500 ms for the settle time;
// the figure is the last sample (V8's memory reducer has shrunk the heap of a process gone idle by then), and the
// probe preloaded into the sidecars says where it is (smaps by kind of mapping, V8 spaces, the module cache).

import { type ChildProcess, fork, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { RUNNERS, stopChild, track, trackTempDir } from '../forward/children';
import { cpuTimes } from '../proc';
import { type Align, fixed, int } from '../format';
import { renderReport } from '../render';
import { type BenchZooKeeper, startZooKeeper } from '../registry/zookeeper';
import type { ProbeAnswer } from '../runners/memory-probe';
import { median, roundRatio, spread } from '../stats';
import type { Metric, ProcessUsage, ResultRow, Suite, SuiteOptions, SuiteReport } from '../suite';

/** Goal of issue 15: an idle sidecar with one ZooKeeper registry at most 50 MB RSS. */
const GOAL_IDLE_MB = 50;
const MB = 1024 * 1024;
const HOST = '127.0.0.1';
/** The CLI's launcher, from dist/src/suites of this package. */
const MESHPORT_BIN = path.resolve(__dirname, '../../../../cli/bin/meshport.js');
const PROBE = path.join(RUNNERS, 'memory-probe.js');
const SAMPLE_MS = 500;
/** Idle time before the figure: V8's memory reducer acts some seconds after the start-up's allocations stop. */
const FULL = { rounds: 3, settleSeconds: 25 };
const QUICK = { rounds: 1, settleSeconds: 15 };

type Case = 'meshport-sidecar' | 'meshport-sidecar-v8-defaults' | 'bare-node';
const CASES: Case[] = ['meshport-sidecar', 'meshport-sidecar-v8-defaults', 'bare-node'];
const V8_DEFAULT_FLAGS = ['--semi-space-growth-factor=2', '--heap-growing-percent=0'];

interface Sample {
  /** RSS over the settle time, MiB, one sample each SAMPLE_MS. */
  rssMB: number[];
  /** The last sample: the figure. */
  idleMB: number;
  /** RSS once ready (the sidecar's admin answers /ready; the bare node at once). */
  readyMB: number;
  peakMB: number;
  startMs: number;
  /** CPU seconds (user + system, all threads) over the process's life, and over the settle time alone. */
  cpuSeconds: number;
  idleCpuSeconds: number;
  probe?: ProbeAnswer['memory'];
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function statusKB(pid: number, key: string): number | null {
  try {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function getStatus(port: number, urlPath: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get({ host: HOST, port, path: urlPath, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
  });
}

function askProbe(child: ChildProcess): Promise<ProbeAnswer['memory']> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.off('message', on);
      reject(new Error('memory probe: no answer within 10 s'));
    }, 10_000);
    const on = (msg: Partial<ProbeAnswer>) => {
      if (!msg?.memory) return;
      clearTimeout(timer);
      child.off('message', on);
      resolve(msg.memory);
    };
    child.on('message', on);
    child.send({ memory: true });
  });
}

async function sidecarConfig(dir: string, zk: BenchZooKeeper, name: string): Promise<string> {
  const [outbound, inbound, admin, facade] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    [
      'listeners:',
      `  outbound: ${HOST}:${outbound}`,
      `  inbound: ${HOST}:${inbound}`,
      `admin: ${HOST}:${admin}`,
      'log:',
      '  level: warn',
      'registries:',
      '  - name: zk',
      '    type: zookeeper',
      `    upstream: '${zk.connectString}'`,
      `    facade: ${HOST}:${facade}`,
      '    services:',
      "      - 'com.example.bench.Idle:1.0'",
      '',
    ].join('\n'),
  );
  return `${file}\n${admin}`;
}

/** Starts one case and resolves once it is ready, with its child and the ms it took. */
async function start(c: Case, dir: string, zk: BenchZooKeeper): Promise<{ child: ChildProcess; startMs: number }> {
  const t0 = performance.now();
  if (c === 'bare-node') {
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e9)'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    track(child);
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', reject);
    });
    const startMs = performance.now() - t0;
    await sleep(500); // past node's own start-up, so 'at ready' is the running process, not the exec
    return { child, startMs };
  }
  const [file, adminText] = (await sidecarConfig(dir, zk, c)).split('\n');
  const admin = Number(adminText);
  const execArgv = ['-r', PROBE, ...(c === 'meshport-sidecar-v8-defaults' ? V8_DEFAULT_FLAGS : [])];
  const child = fork(MESHPORT_BIN, ['sidecar', '--config', file!], {
    execArgv,
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  track(child);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`${c}: meshport sidecar exited (${child.exitCode ?? child.signalCode}) before it was ready`);
    if ((await getStatus(admin, '/ready')) === 200) break;
    if (Date.now() > deadline) {
      await stopChild(child);
      throw new Error(`${c}: meshport sidecar not ready within 30 s`);
    }
    await sleep(50);
  }
  return { child, startMs: performance.now() - t0 };
}

async function measureRound(dir: string, zk: BenchZooKeeper, settleSeconds: number): Promise<Record<Case, Sample>> {
  const started = new Map<Case, { child: ChildProcess; startMs: number }>();
  try {
    for (const c of CASES) started.set(c, await start(c, dir, zk));
    const rss: Record<Case, number[]> = { 'meshport-sidecar': [], 'meshport-sidecar-v8-defaults': [], 'bare-node': [] };
    const ready = Object.fromEntries(
      CASES.map((c) => [c, (statusKB(started.get(c)!.child.pid!, 'VmRSS') ?? 0) / 1024]),
    ) as Record<Case, number>;
    const cpu = (c: Case) => {
      const t = cpuTimes(started.get(c)!.child.pid!);
      return t ? t.user + t.system : NaN;
    };
    const cpuAtReady = Object.fromEntries(CASES.map((c) => [c, cpu(c)])) as Record<Case, number>;
    const end = Date.now() + settleSeconds * 1000;
    while (Date.now() < end) {
      await sleep(SAMPLE_MS);
      for (const c of CASES) rss[c].push((statusKB(started.get(c)!.child.pid!, 'VmRSS') ?? NaN) / 1024);
    }
    const out = {} as Record<Case, Sample>;
    for (const c of CASES) {
      const { child, startMs } = started.get(c)!;
      out[c] = {
        rssMB: rss[c],
        idleMB: rss[c][rss[c].length - 1]!,
        readyMB: ready[c],
        peakMB: (statusKB(child.pid!, 'VmHWM') ?? NaN) / 1024,
        startMs,
        cpuSeconds: cpu(c),
        idleCpuSeconds: cpu(c) - cpuAtReady[c],
        probe: c === 'bare-node' ? undefined : await askProbe(child),
      };
    }
    return out;
  } finally {
    await Promise.all([...started.values()].map(({ child }) => stopChild(child)));
  }
}

async function run(options: SuiteOptions): Promise<SuiteReport> {
  const shape = options.quick ? QUICK : FULL;
  const log = (l: string) => options.log(`memory: ${l}`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-bench-memory-'));
  const tempDir = trackTempDir(dir);
  let zk: BenchZooKeeper | undefined;
  const rounds: Record<Case, Sample>[] = [];
  try {
    log('starting ZooKeeper');
    zk = await startZooKeeper();
    for (let r = 0; r < shape.rounds; r++) {
      log(`round ${r + 1}/${shape.rounds}: ${CASES.join(', ')} side by side, idle for ${shape.settleSeconds} s`);
      rounds.push(await measureRound(dir, zk, shape.settleSeconds));
      options.progress(r + 1, shape.rounds);
    }
  } finally {
    await zk?.stop();
    rmSync(dir, { recursive: true, force: true });
    tempDir.release();
  }
  return report(rounds, shape);
}

function report(rounds: Record<Case, Sample>[], shape: typeof FULL): SuiteReport {
  const mb = (x: number) => fixed(x, 1);
  const idle = (c: Case) => rounds.map((r) => r[c].idleMB);
  const med = (c: Case) => median(idle(c));
  const last = rounds[rounds.length - 1]!;
  const shipped = last['meshport-sidecar'].probe!;
  const met = med('meshport-sidecar') <= GOAL_IDLE_MB;

  const results: ResultRow[] = CASES.map((c) => {
    const p = last[c].probe;
    return {
      name: c,
      idleRssMB: Number(mb(med(c))),
      idleRssSpread: Number(fixed(spread(idle(c)), 3)),
      idleRssMBPerRound: idle(c).map((x) => Number(mb(x))),
      readyRssMB: Number(mb(median(rounds.map((r) => r[c].readyMB)))),
      rssMBLastRound: last[c].rssMB.map((x) => Number(mb(x))),
      peakRssMB: Number(mb(median(rounds.map((r) => r[c].peakMB)))),
      startMs: Math.round(median(rounds.map((r) => r[c].startMs))),
      cpuSeconds: Number(fixed(median(rounds.map((r) => r[c].cpuSeconds)), 2)),
      idleCpuSeconds: Number(fixed(median(rounds.map((r) => r[c].idleCpuSeconds)), 2)),
      ...(p
        ? {
            heapUsedMB: Number(mb(p.heapUsed / MB)),
            heapTotalMB: Number(mb(p.heapTotal / MB)),
            externalMB: Number(mb(p.external / MB)),
            nodeBinaryMB: Number(mb(p.resident.nodeBinary / 1024)),
            otherFilesMB: Number(mb(p.resident.otherFiles / 1024)),
            mallocMainMB: Number(mb(p.resident.mallocMain / 1024)),
            anonymousMB: Number(mb(p.resident.anonymous / 1024)),
            modules: p.modules,
            builtins: p.builtins,
            threads: p.threads,
          }
        : {}),
      ...(c === 'meshport-sidecar' ? { goalMB: GOAL_IDLE_MB, goalMet: met } : {}),
    };
  });

  const headers = [
    'case',
    'idle RSS MB',
    'spread',
    'at ready MB',
    'peak MB',
    'V8 heap used / committed MB',
    'modules',
    'start ms',
    'CPU s idle',
  ];
  const align: Align[] = ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'];
  const rows = CASES.map((c) => {
    const p = last[c].probe;
    return [
      c,
      mb(med(c)),
      `${fixed(spread(idle(c)) * 100, 0)}%`,
      mb(median(rounds.map((r) => r[c].readyMB))),
      mb(median(rounds.map((r) => r[c].peakMB))),
      p ? `${mb(p.heapUsed / MB)} / ${mb(p.heapTotal / MB)}` : '-',
      p ? int(p.modules) : '-',
      int(median(rounds.map((r) => r[c].startMs))),
      fixed(median(rounds.map((r) => r[c].idleCpuSeconds)), 2),
    ];
  });
  const goalRows = [
    [
      'idle sidecar, one ZooKeeper registry',
      `${mb(med('meshport-sidecar'))} MB`,
      `<= ${GOAL_IDLE_MB} MB`,
      met ? 'yes' : 'NO',
    ],
  ];

  // Where the shipped sidecar's RSS is, by kind of mapping, next to the bare node's total.
  const r = shipped.resident;
  const heapResident = Object.values(shipped.spaces).reduce((a, s) => a + s[2], 0) / MB;
  const anonOther = r.anonymous / 1024 - heapResident;
  const bare = med('bare-node');
  const whereHeaders = ['part of the idle sidecar RSS', 'MB', 'what it is'];
  const whereAlign: Align[] = ['l', 'r', 'l'];
  const whereRows = [
    [
      'node executable pages',
      mb(r.nodeBinary / 1024),
      `code and read-only data of /usr/bin/node that ran (a bare node: ${mb(bare)} MB in all)`,
    ],
    ['other mapped files', mb(r.otherFiles / 1024), 'libc, libstdc++, libm'],
    [
      'V8 heap, resident',
      mb(heapResident),
      `committed ${mb(shipped.heapTotal / MB)} MB, live ${mb(shipped.heapUsed / MB)} MB: ` +
        Object.entries(shipped.spaces)
          .map(([n, s]) => `${n.replace('_space', '')} ${mb(s[2] / MB)}`)
          .join(', '),
    ],
    [
      'malloc, main arena',
      mb(r.mallocMain / 1024),
      `Node's and V8's C++ allocations, ArrayBuffer memory (external ${mb(shipped.external / MB)} MB)`,
    ],
    [
      'other anonymous memory',
      mb(anonOther),
      `thread stacks and the malloc arenas of ${shipped.threads - 1} other threads (V8 platform workers, libuv pool)`,
    ],
  ];
  const packages = Object.entries(shipped.modulesByPackage).sort((a, b) => b[1] - a[1]);
  const moduleLine =
    `Modules loaded by the idle sidecar: ${shipped.modules} files (${shipped.builtins} of Node's own modules and bindings), by package: ` +
    packages.map(([n, k]) => `${n} ${k}`).join(', ') +
    '.';

  const notes = [
    `Idle RSS: the last of the samples of /proc/PID/status VmRSS taken every ${SAMPLE_MS} ms over ${shape.settleSeconds} s of idle after the sidecar answered /ready ` +
      "(V8's memory reducer shrinks the heap of a process gone idle a few seconds after start-up); median over " +
      `${shape.rounds} round${shape.rounds === 1 ? '' : 's'}; the three processes run side by side in each round. Peak: VmHWM. MB = 2^20 bytes.`,
    'meshport-sidecar: `node -r runners/memory-probe.js packages/cli/bin/meshport.js sidecar --config FILE`, the command a pod runs, with the ' +
      "router's outbound and inbound listeners, admin, pino at warn, and one `zookeeper` registry (a facade, and `services` naming one " +
      'service, so its upstream session is open) against a ZooKeeper 3.8 the suite starts. The probe answers the suite over IPC with ' +
      "process.memoryUsage(), V8's spaces, /proc/self/smaps by kind of mapping and the module cache; it loads no module of its own.",
    `meshport-sidecar-v8-defaults: the same with \`${V8_DEFAULT_FLAGS.join(' ')}\`, V8's own values, which the daemon's settings then leave alone.`,
    "bare-node: `node -e 'setInterval(() => {}, 1e9)'`, the floor any Node process starts from here.",
    "What 10,000 endpoints add is the `registry` suite's figure (a `Sidecar` in a process of its own, with the daemon's V8 settings).",
    `The suite has a fixed shape (${shape.rounds} round${shape.rounds === 1 ? '' : 's'} of ${shape.settleSeconds} s idle); --duration and --rounds do not apply to it. 'start ms': from the fork to /ready (the sidecar) or to the spawn (the bare node); 'CPU s idle': user + system seconds of all its threads over the idle time (/proc/PID/stat).`,
  ];
  const verdict =
    `Idle goal ${met ? 'met' : 'missed'}: ${mb(med('meshport-sidecar'))} MB against ${GOAL_IDLE_MB} MB` +
    (met ? '' : ` (${mb(med('meshport-sidecar') - GOAL_IDLE_MB)} MB over)`) +
    `; a bare node is ${mb(bare)} MB, so the sidecar's own share is ${mb(med('meshport-sidecar') - bare)} MB. ` +
    `With V8's heap defaults it is ${mb(med('meshport-sidecar-v8-defaults'))} MB.`;

  const { text, markdown } = renderReport([
    { headers, align, rows },
    { headers: ['goal', 'measured', 'target', 'met'], align: ['l', 'r', 'r', 'l'], rows: goalRows },
    { headers: whereHeaders, align: whereAlign, rows: whereRows },
    { notes: [verdict, moduleLine, ...notes] },
  ]);

  const ratio = (a: Case, b: Case): Metric => {
    const rr = roundRatio(idle(a), idle(b));
    return {
      name: `idle RSS: ${a} / ${b}`,
      value: Number(fixed(rr.ratio, 3)),
      unit: 'x',
      better: 'lower',
      spread: Number(fixed(rr.spread, 3)),
      rounds: rr.rounds,
      peer: b,
    };
  };
  const metrics: Metric[] = [
    ratio('meshport-sidecar', 'bare-node'),
    ratio('meshport-sidecar', 'meshport-sidecar-v8-defaults'),
    {
      name: 'meshport-sidecar idle RSS',
      value: Number(mb(med('meshport-sidecar'))),
      unit: 'MB',
      better: 'lower',
      spread: Number(fixed(spread(idle('meshport-sidecar')), 3)),
      rounds: rounds.length,
    },
  ];
  const processes: ProcessUsage[] = CASES.map((c) => ({
    scope: 'start-up + idle',
    process: c,
    cpuSeconds: Number(fixed(median(rounds.map((x) => x[c].cpuSeconds)), 2)),
    peakRssMB: Number(mb(median(rounds.map((x) => x[c].peakMB)))),
  }));
  const charts = {
    bars: {
      title: 'Idle RSS (MB)',
      unit: 'MB',
      bars: CASES.map((c) => ({ label: c, value: med(c), spread: spread(idle(c)) })),
    },
    lines: {
      title: 'RSS while idle, last round (MB)',
      unit: 'MB',
      x: last['meshport-sidecar'].rssMB.map((_, i) => `${((i + 1) * SAMPLE_MS) / 1000}s`),
      series: CASES.map((c) => ({ label: c, values: last[c].rssMB })),
    },
  };
  return { suite: 'memory', results, metrics, processes, charts, text, markdown };
}

/** The README's glance cells, from a saved results line. */
function glance(results: ResultRow[]): { figures: string; goal: string } | null {
  const sidecar = results.find((r) => r.name === 'meshport-sidecar');
  const bare = results.find((r) => r.name === 'bare-node');
  if (!sidecar || !bare || typeof sidecar.idleRssMB !== 'number' || typeof bare.idleRssMB !== 'number') return null;
  const over = sidecar.idleRssMB - GOAL_IDLE_MB;
  return {
    figures:
      `idle \`meshport sidecar\` with one ZooKeeper registry ${fixed(sidecar.idleRssMB, 1)} MB RSS, of which ${fixed(Number(sidecar.nodeBinaryMB), 1)} MB ` +
      `the node executable's pages and ${fixed(Number(sidecar.heapUsedMB), 1)} MB live V8 heap (a bare node: ${fixed(bare.idleRssMB, 1)} MB)`,
    goal: over <= 0 ? `<= ${GOAL_IDLE_MB} MB: met` : `<= ${GOAL_IDLE_MB} MB: missed by ${fixed(over, 1)} MB`,
  };
}

export const memorySuite: Suite = {
  name: 'memory',
  summary: 'an idle `meshport sidecar` with one ZooKeeper registry: RSS and where it goes, beside a bare node',
  glance,
  run,
};
