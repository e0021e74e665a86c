// docs/benchmarks.md and docs/bench/: each suite owns the part of the page between its markers, its chart
// (docs/bench/SUITE.svg) and its line of docs/bench/results.jsonl, all rewritten by `--update-docs`; the table of
// last runs at the top is rebuilt from results.jsonl, and so are the README's figures of a suite that has a glance
// (between inline markers in its row of "Benchmarks at a glance").

import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

/** docs/ of the repository (four levels above dist/src of this package); MESHPORT_BENCH_DOCS_DIR elsewhere (tests). */
const DOCS_DIR = process.env.MESHPORT_BENCH_DOCS_DIR ?? path.resolve(__dirname, '../../../../docs');
export const DOCS_FILE = path.join(DOCS_DIR, 'benchmarks.md');
export const CHART_DIR = path.join(DOCS_DIR, 'bench');
export const RESULTS_FILE = path.join(CHART_DIR, 'results.jsonl');
/** The README next to docs/. */
export const README_FILE = path.join(DOCS_DIR, '..', 'README.md');

const INTRO = `# Benchmarks

Side-by-side measurements of meshport against its peers on one machine. Rewritten by \`npm run bench -- --update-docs\`.
`;

function markers(section: string): { start: string; end: string } {
  return { start: `<!-- bench:${section}:start -->`, end: `<!-- bench:${section}:end -->` };
}

function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

/** Replaces a marked section (creating the file, or appending the section, when missing). */
export function updateDocsSection(
  section: string,
  body: string,
  file: string = DOCS_FILE,
  heading = `## Suite \`${section}\``,
): void {
  const { start, end } = markers(section);
  const block = `${start}\n${body.trim()}\n${end}`;
  let text = existsSync(file) ? readFileSync(file, 'utf8') : INTRO;
  const i = text.indexOf(start);
  const j = i < 0 ? -1 : text.indexOf(end, i + start.length);
  if (i >= 0 && j >= 0) {
    text = text.slice(0, i) + block + text.slice(j + end.length);
  } else if (i >= 0 || text.includes(end)) {
    throw new Error(`${file}: the markers of section ${section} are unbalanced; fix them by hand`);
  } else {
    text = `${text.trimEnd()}\n\n${heading}\n\n${block}\n`;
  }
  writeAtomic(file, text);
}

/** Writes the suite's chart; returns its path relative to docs/ for the page's image link. */
export function writeChart(suite: string, svg: string, dir: string = CHART_DIR): string {
  mkdirSync(dir, { recursive: true });
  writeAtomic(path.join(dir, `${suite}.svg`), svg);
  return `bench/${suite}.svg`;
}

/** Replaces the suite's line of results.jsonl (the saved results `--compare` reads by default); returns all lines. */
export function updateResults(suite: string, line: string, file: string = RESULTS_FILE): string[] {
  mkdirSync(path.dirname(file), { recursive: true });
  const lines = existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l.trim().length > 0)
    : [];
  const kept = lines.filter((l) => {
    try {
      return (JSON.parse(l) as { suite?: string }).suite !== suite;
    } catch {
      return false;
    }
  });
  kept.push(line);
  writeAtomic(file, `${kept.join('\n')}\n`);
  return kept;
}

/**
 * Replaces the text between `<!-- bench:glance:KEY:start -->` and `<!-- bench:glance:KEY:end -->` (inline markers,
 * so they can sit in a table row); false when the file or its markers are not there (nothing written).
 */
export function updateInline(key: string, text: string, file: string = README_FILE): boolean {
  if (!existsSync(file)) return false;
  const start = `<!-- bench:glance:${key}:start -->`;
  const end = `<!-- bench:glance:${key}:end -->`;
  const page = readFileSync(file, 'utf8');
  const i = page.indexOf(start);
  const j = i < 0 ? -1 : page.indexOf(end, i + start.length);
  if (i < 0 || j < 0) return false;
  if (text.includes('\n')) throw new Error(`glance ${key}: one line only`);
  const next = page.slice(0, i + start.length) + text + page.slice(j);
  if (next !== page) writeAtomic(file, next);
  return true;
}
