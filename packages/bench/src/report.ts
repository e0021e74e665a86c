// The parts of a suite's report every suite shares: the table of ratios to peers, the table of what each process
// cost, and the line that describes the run (machine, date, mode).

import * as os from 'node:os';
import { fixed, percent } from './format';
import type { ReportTable } from './render';
import type { Metric, ProcessUsage } from './suite';

export interface Environment {
  date: string;
  node: string;
  v8: string;
  cpu: string;
  cpus: number;
  memoryGiB: number;
  platform: string;
  kernel: string;
  /** 1-minute load average when the run started: other work on the machine skews every figure. */
  load: number;
}

export function environment(): Environment {
  const cpus = os.cpus();
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    node: process.version,
    v8: process.versions.v8,
    cpu: cpus.length > 0 ? cpus[0].model.trim() : 'unknown',
    cpus: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    platform: `${os.platform()} ${os.arch()}`,
    kernel: os.release(),
    load: os.loadavg()[0],
  };
}

export function machineLine(env: Environment): string {
  return `${env.cpu} (${env.cpus} logical CPUs, ${env.memoryGiB} GiB), ${env.platform} ${env.kernel}, Node ${env.node} (V8 ${env.v8})`;
}

function metricValue(m: Metric): string {
  if (m.unit === 'x') return `${fixed(m.value, 2)}x`;
  const digits = Math.abs(m.value) >= 100 ? 0 : Math.abs(m.value) >= 10 ? 1 : 2;
  return `${fixed(m.value, digits)} ${m.unit}`;
}

/** The ratios to peers (metrics with unit `x`), then the other watched figures. */
export function metricsTable(metrics: Metric[]): ReportTable {
  const ordered = [...metrics.filter((m) => m.unit === 'x'), ...metrics.filter((m) => m.unit !== 'x')];
  return {
    headers: ['figure', 'value', 'peer (same rounds)', 'better', 'spread', 'rounds'],
    align: ['l', 'r', 'l', 'l', 'r', 'r'],
    rows: ordered.map((m) => [
      m.name,
      metricValue(m),
      m.peer ?? '-',
      m.better,
      m.rounds > 1 ? percent(m.spread) : '-',
      String(m.rounds),
    ]),
  };
}

export function processTable(processes: ProcessUsage[]): ReportTable {
  const headers = ['case', 'process', 'CPU s', 'peak RSS MB'];
  const rows = processes.map((p) => [
    p.scope,
    p.process,
    p.cpuSeconds === null ? 'n/a' : fixed(p.cpuSeconds, 2),
    p.peakRssMB === null ? 'n/a' : fixed(p.peakRssMB, 1),
  ]);
  return { headers, align: ['l', 'l', 'r', 'r'], rows };
}
