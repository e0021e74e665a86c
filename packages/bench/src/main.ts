// `npm run bench -- [suite ...] [--quick] [--json] [--save FILE] [--compare FILE] [--update-docs [--docs-section NAME]]
//  [--duration S] [--rounds N] [--baseline DIR]`

import { appendFileSync, existsSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { compareMetrics, comparisonTable, readSaved, type Comparison, type SavedSuite } from './compare';
import { BenchUsageError } from './errors';
import {
  DOCS_FILE,
  README_FILE,
  RESULTS_FILE,
  updateDocsSection,
  updateInline,
  updateResults,
  writeChart,
} from './docs';
import { fixed } from './format';
import { baselineRouter } from './forward/observability';
import { sinkValue } from './measure';
import { Progress } from './progress';
import { renderTable } from './render';
import { environment, machineLine, metricsTable, processTable, type Environment } from './report';
import type { DocsPart, ResultRow, SuiteReport } from './suite';
import { SUITES } from './suites';
import { renderChart } from './svg';

const DEFAULT_DURATION = 3;
const DEFAULT_ROUNDS = 5;
const QUICK_DURATION = 1;
const QUICK_ROUNDS = 3;
export { BENCH_ERROR_CODES, BenchUsageError } from './errors';
export type { BenchErrorCode } from './errors';

/** Exit status when `--compare` found a regression beyond the spread (2 is a usage error, 1 a failed run). */
export const EXIT_REGRESSION = 3;

function usage(): string {
  const names = [...SUITES.values()].map((s) => `  ${s.name.padEnd(10)} ${s.summary}`).join('\n');
  return [
    'usage: npm run bench -- [suite ...] [options]',
    '',
    'suites (all when none is named):',
    names,
    '',
    'options:',
    '  --quick            the short version of every suite (all of them in about a minute), to check a change',
    '  --json             print one JSON line per suite, {"suite", "env", "results", "metrics", "processes"}, instead of tables',
    '  --save FILE        also write those JSON lines to FILE',
    `  --compare FILE     compare with saved JSON lines (e.g. ${'docs/bench/results.jsonl'}); exit ${EXIT_REGRESSION} on a regression beyond the spread`,
    "  --update-docs      rewrite the suites' sections, charts and saved results in docs/",
    '  --docs-section NAME  with --update-docs: rewrite only the marked section NAME of docs/benchmarks.md (a suite, or',
    '                     a part of one such as forward-mtls), nothing else; may be given more than once',
    `  --duration SECONDS timed seconds per measurement (default ${DEFAULT_DURATION}, ${QUICK_DURATION} with --quick)`,
    `  --rounds N         interleaved rounds per measurement, the median is reported (default ${DEFAULT_ROUNDS}, ${QUICK_ROUNDS} with --quick)`,
    '  --baseline DIR     forward: also measure the plain pairs on the build at DIR (made by packages/bench/scripts/',
    '                     baseline.sh from the commit before issue 19): what the always-on per-service metrics cost',
    '  -h, --help         this text',
  ].join('\n');
}

function positiveNumber(value: string | undefined, flag: string, fallback: number, integer = false): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new BenchUsageError(
      `${flag} wants a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(value)}`,
    );
  }
  return n;
}

interface RunSettings {
  quick: boolean;
  durationSeconds: number;
  rounds: number;
  baseline?: string;
}

function command(suite: string, s: RunSettings): string {
  return `npm run bench -- ${suite}${s.quick ? ' --quick' : ''}${s.baseline ? ' --baseline DIR' : ''}`;
}

function runLine(report: SuiteReport, env: Environment, s: RunSettings): string {
  return (
    `Run ${env.date} on ${machineLine(env)}, load average ${env.load.toFixed(2)} at start; ` +
    `${s.quick ? 'quick mode, ' : ''}${s.durationSeconds} s per measurement, ${s.rounds} rounds; command \`${command(report.suite, s)}\`.`
  );
}

/** A suite's section of docs/benchmarks.md: how it ran, its own tables, ratios, processes, chart. */
function docsSection(report: SuiteReport, env: Environment, s: RunSettings, chart: string | null): string {
  return [
    runLine(report, env, s),
    '',
    ...(chart ? [`![${report.suite}: throughput and latency percentiles](${chart})`, ''] : []),
    report.markdown,
    '',
    '**Ratios and watched figures** (what `--compare` checks; a ratio is the median of per-round ratios to a peer measured in the same round):',
    '',
    renderTable(metricsTable(report.metrics), 'markdown'),
    '',
    '**CPU and memory per process** (user + system seconds from /proc/PID/stat over the measured windows; peak RSS = VmHWM of /proc/PID/status):',
    '',
    renderTable(processTable(report.processes), 'markdown'),
  ].join('\n');
}

/** A part of a suite's page (DocsPart): how it ran, then its own tables. */
function docsPartSection(report: SuiteReport, part: DocsPart, env: Environment, s: RunSettings): string {
  return [runLine(report, env, s), '', part.markdown].join('\n');
}

/** The table of last runs at the top of the page, from every suite's saved line. */
function runsSection(lines: string[]): string {
  const rows = lines.flatMap((l) => {
    try {
      const o = JSON.parse(l) as {
        suite: string;
        quick?: boolean;
        env: Environment;
        metrics?: { name: string; value: number; unit: string }[];
      };
      const ratios = (o.metrics ?? []).filter((m) => m.unit === 'x').slice(0, 3);
      return [
        `| \`${o.suite}\` | ${o.env.date} | ${o.quick ? 'quick' : 'full'} | ${o.env.cpus} CPUs, Node ${o.env.node}, load ${fixed(o.env.load, 2)} | ` +
          `${ratios.map((m) => `${m.name}: ${fixed(m.value, 2)}x`).join('; ') || '-'} |`,
      ];
    } catch {
      return [];
    }
  });
  return ['| suite | last run | mode | machine | headline ratios |', '|---|---|---|---|---|', ...rows].join('\n');
}

function textReport(report: SuiteReport, env: Environment, s: RunSettings): string {
  return [
    `== ${report.suite} == ${runLine(report, env, s)}`,
    '',
    report.text,
    '',
    renderTable(metricsTable(report.metrics), 'text'),
    '',
    renderTable(processTable(report.processes), 'text'),
    '',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  let json: boolean;
  let updateDocs: boolean;
  let docsSections: string[];
  let settings: RunSettings;
  let names: string[];
  let save: string | undefined;
  let saved: Map<string, SavedSuite> | undefined;
  let compareFile: string | undefined;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        json: { type: 'boolean', default: false },
        quick: { type: 'boolean', default: false },
        duration: { type: 'string' },
        rounds: { type: 'string' },
        save: { type: 'string' },
        compare: { type: 'string' },
        'update-docs': { type: 'boolean', default: false },
        'docs-section': { type: 'string', multiple: true },
        baseline: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
    if (values.help) {
      process.stdout.write(`${usage()}\n`);
      return 0;
    }
    json = values.json === true;
    updateDocs = values['update-docs'] === true;
    docsSections = values['docs-section'] ?? [];
    if (docsSections.length > 0 && !updateDocs) throw new BenchUsageError('--docs-section goes with --update-docs');
    const quick = values.quick === true;
    settings = {
      quick,
      durationSeconds: positiveNumber(values.duration, '--duration', quick ? QUICK_DURATION : DEFAULT_DURATION),
      rounds: positiveNumber(values.rounds, '--rounds', quick ? QUICK_ROUNDS : DEFAULT_ROUNDS, true),
    };
    if (values.baseline !== undefined) {
      const dir = path.resolve(values.baseline);
      if (!existsSync(baselineRouter(dir)))
        throw new BenchUsageError(
          `--baseline: no ${baselineRouter(dir)}; make the build with packages/bench/scripts/baseline.sh ${values.baseline}`,
        );
      settings.baseline = dir;
    }
    names = positionals.length > 0 ? positionals : [...SUITES.keys()];
    const unknown = names.filter((n) => !SUITES.has(n));
    if (unknown.length > 0)
      throw new BenchUsageError(`unknown suite ${unknown.join(', ')}; known: ${[...SUITES.keys()].join(', ')}`);
    save = values.save;
    compareFile = values.compare;
    if (compareFile !== undefined) {
      if (!existsSync(compareFile)) throw new BenchUsageError(`--compare: no such file ${compareFile}`);
      saved = readSaved(compareFile); // read before the run: a bad file should not cost a whole run
    }
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n\n${usage()}\n`);
    return 2;
  }

  const env = environment();
  const progress = new Progress(names.length);
  const log = (line: string) => progress.log(line);
  if (save) writeFileSync(save, '');
  log(
    `${machineLine(env)}, load ${env.load.toFixed(2)}; ${settings.quick ? 'quick, ' : ''}${settings.durationSeconds} s x ${settings.rounds} rounds per measurement`,
  );

  let regressions = 0;
  const written = new Set<string>();
  for (const name of names) {
    const suite = SUITES.get(name)!;
    const why = suite.unavailable?.() ?? null;
    if (why) {
      // Named on purpose: an error. Part of "every suite": say so and go on with the others.
      if (positionalsNamed(argv, name)) throw new Error(`${name}: ${why}`);
      log(`${name}: skipped: ${why}`);
      if (json) process.stdout.write(`${JSON.stringify({ suite: name, skipped: why })}\n`);
      continue;
    }
    progress.startSuite(name);
    const t0 = Date.now();
    const report = await suite.run({ ...settings, log, progress: (d, t) => progress.update(d, t) });
    progress.update(1, 1);
    log(`${name}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    progress.clear();
    const line = JSON.stringify({
      suite: report.suite,
      env: { ...env, date: new Date().toISOString().replace(/\.\d+Z$/, 'Z') },
      quick: settings.quick,
      results: report.results,
      metrics: report.metrics,
      processes: report.processes,
    });
    if (json) process.stdout.write(`${line}\n`);
    else process.stdout.write(`\n${textReport(report, env, settings)}`);
    if (save) appendFileSync(save, `${line}\n`);

    if (saved) {
      const then = saved.get(report.suite);
      if (!then) {
        log(`${name}: not in ${compareFile}, nothing to compare`);
      } else {
        const renamed = suite.renamedMetric;
        const thenMetrics = renamed ? then.metrics.map((m) => ({ ...m, name: renamed(m.name) })) : then.metrics;
        const rows: Comparison[] = compareMetrics(thenMetrics, report.metrics);
        const bad = rows.filter((r) => r.verdict === 'regression');
        regressions += bad.length;
        const out = json ? process.stderr : process.stdout;
        out.write(
          `\n-- ${name} compared with ${compareFile}${then.date ? ` (run ${then.date})` : ''}: ` +
            `${bad.length === 0 ? 'no regression beyond the spread' : `${bad.length} REGRESSION(S) beyond the spread`}\n\n` +
            `${renderTable(comparisonTable(rows), 'text')}\n`,
        );
      }
    }

    if (updateDocs && docsSections.length > 0) {
      // Only the sections named: no saved results, no table of last runs, no README glance.
      if (docsSections.includes(report.suite)) {
        const svg = renderChart(`meshport bench: ${report.suite}`, report.charts);
        updateDocsSection(report.suite, docsSection(report, env, settings, svg ? writeChart(report.suite, svg) : null));
        written.add(report.suite);
      }
      for (const part of (report.parts ?? []).filter((p) => docsSections.includes(p.section))) {
        updateDocsSection(part.section, docsPartSection(report, part, env, settings), DOCS_FILE, part.heading);
        written.add(part.section);
      }
    } else if (updateDocs) {
      const svg = renderChart(`meshport bench: ${report.suite}`, report.charts);
      const chart = svg ? writeChart(report.suite, svg) : null;
      updateDocsSection(report.suite, docsSection(report, env, settings, chart));
      for (const part of report.parts ?? [])
        updateDocsSection(part.section, docsPartSection(report, part, env, settings), DOCS_FILE, part.heading);
      const lines = updateResults(report.suite, line);
      updateDocsSection('runs', runsSection(lines), DOCS_FILE, '## Last runs');
      log(`updated ${DOCS_FILE} (section ${report.suite}), ${chart ? `docs/${chart}, ` : ''}${RESULTS_FILE}`);
      if (updateGlances(lines)) log(`updated ${README_FILE} (benchmarks at a glance)`);
    }
  }
  for (const section of docsSections.filter((x) => !written.has(x)))
    log(`--docs-section ${section}: no suite of this run writes that section; nothing written for it`);
  if (written.size > 0) log(`updated ${DOCS_FILE}: section ${[...written].join(', ')} only`);
  // The sink every workload folded its results into: printing it keeps the measured work observable.
  log(`sink ${sinkValue()}`);
  progress.clear();
  return regressions > 0 ? EXIT_REGRESSION : 0;
}

/** The README's glance cells of every suite that makes them, from the saved results lines; true when any was written. */
function updateGlances(lines: string[]): boolean {
  let any = false;
  for (const l of lines) {
    let o: { suite?: string; results?: ResultRow[] };
    try {
      o = JSON.parse(l) as typeof o;
    } catch {
      continue;
    }
    const g = o.suite && o.results ? SUITES.get(o.suite)?.glance?.(o.results) : null;
    if (!g) continue;
    any = updateInline(`${o.suite}:figures`, g.figures) || any;
    any = updateInline(`${o.suite}:goal`, g.goal) || any;
  }
  return any;
}

function positionalsNamed(argv: string[], name: string): boolean {
  return argv.includes(name);
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`\nbench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
