// docs/benchmarks.md: each suite owns the part between its markers, rewritten by `--update-docs`.

import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

/** The repository root is four levels above dist/src of this package. */
export const DOCS_FILE = path.resolve(__dirname, '../../../../docs/benchmarks.md');

const INTRO = `# Benchmarks

Side-by-side measurements of meshport against the libraries and proxies its peers use, run on one machine: \`decode\`
in one process, \`forward\` with every party (load generator, echo server, haproxy, each meshport router) in a process of
its own. They are benchmarks, not tests: nothing fails when a figure is low, but each suite prints its goals beside the
figures.

## Running them

\`\`\`sh
npm run bench -- decode                   # bootstrap, build, then the decode suite; a table on stdout
npm run bench -- decode --json            # the last stdout line is {"suite": "decode", "results": [...]}
npm run bench -- decode --duration 5      # timed seconds per measurement (default 3)
npm run bench -- decode --update-docs     # also rewrite this suite's section of this file
npm run bench -- forward                  # direct vs haproxy vs two meshport routers, Bolt and Dubbo (about 1 min)
MESHPORT_BENCH_PROFILE=/tmp/prof npm run bench -- forward   # also CPU-profile both routers, after the measurements
\`\`\`

Without the bootstrap: \`npx tsc --build packages/bench && node packages/bench/dist/src/main.js decode\`.
With no suite named, every suite runs. Progress goes to stderr.

How a figure is made (decode; \`forward\` describes its own method under its table): every case is warmed up first,
then sampled several times round-robin across the cases of its suite (so a change of machine speed during the run
touches every case alike), each sample timing whole batches with
\`process.hrtime.bigint()\`; the median sample is reported, with the spread (max - min) / median. Every decoded id and
service name is folded into a sink the program prints at the end, so no work is dead code. Heap bytes per frame come from
the V8 heap used before and after a separate run, plus what each garbage collection in between freed (\`v8.GCProfiler\`).

Figures depend on the machine, the Node version and the load at the time; compare cases of one run, not runs of
different machines. The sections below are rewritten by \`--update-docs\`; edit outside the markers only.
`;

function markers(suite: string): { start: string; end: string } {
  return { start: `<!-- bench:${suite}:start -->`, end: `<!-- bench:${suite}:end -->` };
}

/** Replaces the suite's section (creating the file, or appending the section, when missing). */
export function updateDocsSection(suite: string, body: string, file: string = DOCS_FILE): void {
  const { start, end } = markers(suite);
  const block = `${start}\n${body.trim()}\n${end}`;
  let text = existsSync(file) ? readFileSync(file, 'utf8') : INTRO;
  const i = text.indexOf(start);
  const j = i < 0 ? -1 : text.indexOf(end, i + start.length);
  if (i >= 0 && j >= 0) {
    text = text.slice(0, i) + block + text.slice(j + end.length);
  } else if (i >= 0 || text.includes(end)) {
    throw new Error(`${file}: the markers of suite ${suite} are unbalanced; fix them by hand`);
  } else {
    text = `${text.trimEnd()}\n\n## Suite \`${suite}\`\n\n${block}\n`;
  }
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}
