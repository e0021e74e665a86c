// `node packages/bench/dist/src/main.js [suite ...] [--json] [--duration SECONDS] [--update-docs]`

import * as os from 'node:os';
import { parseArgs } from 'node:util';
import { DOCS_FILE, updateDocsSection } from './docs';
import { sinkValue } from './measure';
import type { SuiteReport } from './suite';
import { SUITES } from './suites';

const DEFAULT_DURATION = 3;
const DEFAULT_ROUNDS = 5;

function usage(): string {
  const names = [...SUITES.values()].map((s) => `  ${s.name.padEnd(10)} ${s.summary}`).join('\n');
  return [
    'usage: npm run bench -- [suite ...] [options]',
    '',
    'suites (all when none is named):',
    names,
    '',
    'options:',
    '  --json             print one JSON line per suite, {"suite": NAME, "results": [...]}, instead of tables',
    `  --duration SECONDS timed seconds per measurement (default ${DEFAULT_DURATION})`,
    `  --rounds N         samples per measurement, the median is reported (default ${DEFAULT_ROUNDS})`,
    '  --update-docs      rewrite the suite\'s section of docs/benchmarks.md with this run',
    '  -h, --help         this text',
  ].join('\n');
}

interface Environment {
  date: string;
  node: string;
  v8: string;
  cpu: string;
  cpus: number;
  platform: string;
  /** 1-minute load average when the run started: other work on the machine skews every figure. */
  load: number;
}

function environment(): Environment {
  const cpus = os.cpus();
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    node: process.version,
    v8: process.versions.v8,
    cpu: cpus.length > 0 ? cpus[0].model.trim() : 'unknown',
    cpus: cpus.length,
    platform: `${os.platform()} ${os.arch()}`,
    load: os.loadavg()[0],
  };
}

function positiveNumber(value: string | undefined, flag: string, fallback: number, integer = false): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new UsageError(`${flag} wants a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(value)}`);
  }
  return n;
}

class UsageError extends Error {}

function docsSection(report: SuiteReport, env: Environment, durationSeconds: number, rounds: number): string {
  return [
    `Run ${env.date} on ${env.cpu} (${env.cpus} logical CPUs, ${env.platform}), Node ${env.node} (V8 ${env.v8}), ` +
      `load average ${env.load.toFixed(2)} at start; ` +
      `${durationSeconds} s per measurement, ${rounds} samples; command \`node packages/bench/dist/src/main.js ${report.suite}\`.`,
    '',
    report.markdown,
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  let json: boolean;
  let updateDocs: boolean;
  let durationSeconds: number;
  let rounds: number;
  let names: string[];
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        json: { type: 'boolean', default: false },
        duration: { type: 'string' },
        rounds: { type: 'string' },
        'update-docs': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
    if (values.help) {
      process.stdout.write(`${usage()}\n`);
      return 0;
    }
    json = values.json === true;
    updateDocs = values['update-docs'] === true;
    durationSeconds = positiveNumber(values.duration, '--duration', DEFAULT_DURATION);
    rounds = positiveNumber(values.rounds, '--rounds', DEFAULT_ROUNDS, true);
    names = positionals.length > 0 ? positionals : [...SUITES.keys()];
    const unknown = names.filter((n) => !SUITES.has(n));
    if (unknown.length > 0) throw new UsageError(`unknown suite ${unknown.join(', ')}; known: ${[...SUITES.keys()].join(', ')}`);
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n\n${usage()}\n`);
    return 2;
  }

  const env = environment();
  const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);
  log(`${env.cpu}, Node ${env.node}, load ${env.load.toFixed(2)}, ${durationSeconds} s x ${rounds} samples per measurement`);
  for (const name of names) {
    const suite = SUITES.get(name)!;
    const report = await suite.run({ durationSeconds, rounds, log });
    if (json) {
      process.stdout.write(`${JSON.stringify({ suite: report.suite, results: report.results })}\n`);
    } else {
      process.stdout.write(
        `\n== ${report.suite} == ${env.date}, ${env.cpu} (${env.cpus} CPUs), Node ${env.node}, load ${env.load.toFixed(2)}\n\n` +
          `${report.text}\n`,
      );
    }
    if (updateDocs) {
      updateDocsSection(report.suite, docsSection(report, env, durationSeconds, rounds));
      log(`updated ${DOCS_FILE} (section ${report.suite})`);
    }
  }
  // The sink every workload folded its results into: printing it keeps the measured work observable.
  log(`sink ${sinkValue()}`);
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
