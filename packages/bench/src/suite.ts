// What a benchmark suite is: a name in the table of src/suites/index.ts and a run that returns figures and tables.

/** A figure of one result row: numbers, labels, flags, or the raw samples. */
export type Figure = string | number | boolean | null | number[];

/** One row of a suite's JSON output: `name` plus whatever figures the suite reports. */
export type ResultRow = { name: string } & { [figure: string]: Figure };

export interface SuiteOptions {
  /** Timed seconds per measurement (a measurement is one row). */
  durationSeconds: number;
  /** Samples per measurement; the median is reported. */
  rounds: number;
  /** Progress lines (to stderr). */
  log: (line: string) => void;
}

export interface SuiteReport {
  suite: string;
  /** The rows of the `--json` line: `{"suite": ..., "results": [...]}`. */
  results: ResultRow[];
  /** Tables for a terminal. */
  text: string;
  /** Tables in markdown, for docs/benchmarks.md (main adds the date and the machine). */
  markdown: string;
}

export interface Suite {
  name: string;
  /** One line for `--help`. */
  summary: string;
  run(options: SuiteOptions): Promise<SuiteReport> | SuiteReport;
}
