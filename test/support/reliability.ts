// What the reliability and security suites share: their size (CI or long mode), and how each reports its figures:
// a table on stdout always, and with MESHPORT_RELIABILITY_DOCS=1 its own section of docs/reliability.md, so the page
// always shows the figures of the last recorded run.

import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Long mode (`npm run test:long`): every suite at its full size (10^6 requests, 10^7 fuzz cases, 60 s outages). */
export const LONG = process.env.MESHPORT_LONG === '1';

/** The CI size or the long one. */
export function scale<T>(ci: T, long: T): T {
  return LONG ? long : ci;
}

/** The repository root: test/dist/support -> three levels up. */
export const RELIABILITY_DOCS = path.resolve(__dirname, '../../../docs/reliability.md');

export interface Figure {
  /** What was counted or timed, as a user would name it ("requests lost"). */
  name: string;
  value: number | string;
  /** The bound it is held to ("0", "<= 2 s"), if any. */
  goal?: string;
  /** Whether the goal held; a suite asserts it too, this only reports. */
  met?: boolean;
}

export interface SuiteRecord {
  /** Marker id in docs/reliability.md, e.g. `faults-resets`. */
  id: string;
  title: string;
  figures: Figure[];
  /** How it was measured: one line each. */
  notes?: string[];
}

function formatValue(v: number | string): string {
  if (typeof v === 'string') return v;
  if (Number.isInteger(v)) return v.toLocaleString('en-US');
  return v.toLocaleString('en-US', { maximumFractionDigits: 3 });
}

function markdown(record: SuiteRecord): string {
  const when = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const cpus = os.cpus();
  const lines = [
    `Last run ${when}, ${LONG ? 'long mode' : 'CI size'}, ${cpus.length} CPUs (${cpus[0]?.model.trim() ?? 'unknown'}), Node ${process.version}.`,
    '',
    '| figure | value | goal | met |',
    '|---|---:|---|---|',
    ...record.figures.map(
      (f) =>
        `| ${f.name} | ${formatValue(f.value)} | ${f.goal ?? '-'} | ${f.met === undefined ? '-' : f.met ? 'yes' : 'NO'} |`,
    ),
  ];
  if (record.notes && record.notes.length > 0) lines.push('', ...record.notes.map((n) => `- ${n}`));
  return lines.join('\n');
}

/** Replaces the suite's marked section of the page (appending it when new). */
function updateDocs(record: SuiteRecord, file = RELIABILITY_DOCS): void {
  const start = `<!-- reliability:${record.id}:start -->`;
  const end = `<!-- reliability:${record.id}:end -->`;
  const block = `${start}\n${markdown(record)}\n${end}`;
  let text = existsSync(file) ? readFileSync(file, 'utf8') : '# Reliability and security\n';
  const i = text.indexOf(start);
  const j = i < 0 ? -1 : text.indexOf(end, i);
  if (i >= 0 && j >= 0) text = text.slice(0, i) + block + text.slice(j + end.length);
  else text = `${text.trimEnd()}\n\n### ${record.title}\n\n${block}\n`;
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

/** Prints the suite's figures, and records them in docs/reliability.md when MESHPORT_RELIABILITY_DOCS=1. */
export function recordSuite(record: SuiteRecord): void {
  const width = Math.max(...record.figures.map((f) => f.name.length));
  const rows = record.figures.map((f) => {
    const verdict = f.met === undefined ? '' : f.met ? '  ok' : '  MISSED';
    return `      ${f.name.padEnd(width)}  ${formatValue(f.value)}${f.goal ? `  (goal ${f.goal})` : ''}${verdict}`;
  });
  process.stdout.write(`    [${record.id}] ${record.title}${LONG ? ' (long mode)' : ''}\n${rows.join('\n')}\n`);
  if (process.env.MESHPORT_RELIABILITY_DOCS === '1') updateDocs(record);
}
