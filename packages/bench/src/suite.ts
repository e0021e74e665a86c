// What a benchmark suite is: a name in the table of src/suites/index.ts and a run that returns figures, tables,
// the ratios to its peers, what each process cost, and the data of its chart.

/** A figure of one result row: numbers, labels, flags, or the raw samples. */
export type Figure = string | number | boolean | null | number[];

/** One row of a suite's JSON output: `name` plus whatever figures the suite reports. */
export type ResultRow = { name: string } & { [figure: string]: Figure };

export interface SuiteOptions {
  /** Timed seconds per measurement (a measurement is one row). */
  durationSeconds: number;
  /** Samples per measurement; the median is reported. */
  rounds: number;
  /** `--quick`: the short version of the suite, for checking a change (every suite together under a minute). */
  quick: boolean;
  /**
   * `--baseline DIR`: a build of an older commit (packages/bench/scripts/baseline.sh) the forward suite also measures,
   * for what a change costs in the same rounds (issue 19: the always-on per-service metrics).
   */
  baseline?: string;
  /** Progress lines (to stderr). */
  log: (line: string) => void;
  /** How far the suite is: `done` of `total` steps (drives the progress bar). */
  progress: (done: number, total: number) => void;
}

/**
 * A figure `--compare` watches between runs. Ratios to a peer measured in the same rounds (unit `x`) are the ones to
 * trust on a noisy machine; absolute figures are listed too, with their spread.
 */
export interface Metric {
  /** Stable across runs: how `--compare` matches a metric with the saved one. */
  name: string;
  value: number;
  unit: string;
  better: 'higher' | 'lower';
  /** (max - min) / median over the rounds that made `value`; 0 when there was one. */
  spread: number;
  /** How many rounds (or samples) made it. */
  rounds: number;
  /** For a ratio: the peer it is measured against (shown in the ratio table). */
  peer?: string;
}

/** CPU and memory of one process over the suite's measured windows, from the OS's own accounting (/proc). */
export interface ProcessUsage {
  /** The case it served ("Bolt: meshport-2hop"). */
  scope: string;
  /** Its role ("consumer router", "haproxy", "ZooKeeper"). */
  process: string;
  cpuSeconds: number | null;
  peakRssMB: number | null;
}

export interface BarChart {
  title: string;
  unit: string;
  bars: { label: string; value: number; spread?: number }[];
}

export interface LineChart {
  title: string;
  unit: string;
  /** The x positions, e.g. ['p50', 'p90', 'p99']. */
  x: string[];
  series: { label: string; values: number[] }[];
  /** Log scale for values over several orders of magnitude. */
  log?: boolean;
}

export interface SuiteCharts {
  bars?: BarChart;
  lines?: LineChart;
}

/**
 * A part of docs/benchmarks.md a suite writes besides its own section (the forward suite's mutual TLS figures): a
 * marked section of its own, so that `--update-docs --docs-section NAME` can rewrite it alone.
 */
export interface DocsPart {
  /** The markers' name: `<!-- bench:SECTION:start -->`; unique across suites. */
  section: string;
  /** The heading written above the markers when the page does not have them yet (appended at the end). */
  heading: string;
  /** Its tables and notes in markdown (main adds the line that describes the run). */
  markdown: string;
}

export interface SuiteReport {
  suite: string;
  /** The rows of the `--json` line: `{"suite": ..., "results": [...], "metrics": [...]}`. */
  results: ResultRow[];
  metrics: Metric[];
  processes: ProcessUsage[];
  charts: SuiteCharts;
  /** Tables for a terminal. */
  text: string;
  /** Tables in markdown, for docs/benchmarks.md (main adds the date, the machine, ratios, processes and the chart). */
  markdown: string;
  /** Parts of the page with markers of their own; their tables are in `text` too, not in `markdown`. */
  parts?: DocsPart[];
}

export interface Suite {
  name: string;
  /** One line for `--help`. */
  summary: string;
  /** Whether the suite can run here (the hijack suite needs root); a reason when not. */
  unavailable?: () => string | null;
  /**
   * The name a metric saved by an older version of the suite has now (a case renamed or split), so that `--compare`
   * still matches it with this run's. @default the name unchanged
   */
  renamedMetric?: (savedName: string) => string;
  /**
   * The suite's cells of the README's "Benchmarks at a glance" row, made from a saved results line (docs/bench/
   * results.jsonl), for `--update-docs`: the figures there come from the results file, never typed by hand.
   */
  glance?: (results: ResultRow[]) => { figures: string; goal: string } | null;
  run(options: SuiteOptions): Promise<SuiteReport> | SuiteReport;
}
