// `npm run bench` as a contributor uses it: every suite in quick mode with JSON, saved results and the page
// regenerated (into a scratch docs directory), then --compare against what was saved. Not a timed test: it checks
// that the instrument works end to end and reports what it promises, not how fast anything is.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const MAIN = path.resolve(__dirname, '../src/main.js');
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

function bench(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Ran> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr, seconds: (Date.now() - t0) / 1000 }));
  });
}

interface Line {
  suite: string;
  skipped?: string;
  env?: { date: string; cpus: number; node: string };
  quick?: boolean;
  results?: { name: string }[];
  metrics?: {
    name: string;
    value: number;
    unit: string;
    better: string;
    spread: number;
    rounds: number;
    peer?: string;
  }[];
  processes?: { scope: string; process: string; cpuSeconds: number | null; peakRssMB: number | null }[];
}

describe('npm run bench (quick mode, every suite)', function () {
  this.timeout(300_000);
  let dir: string;
  let saved: string;
  let lines: Line[];
  let run: Ran;

  before(async () => {
    if (!isRoot && process.env.CI === 'true')
      throw new Error('CI runs as root: the hijack suite must be part of this run');
    dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-bench-cli-'));
    saved = path.join(dir, 'saved.jsonl');
    run = await bench(['--quick', '--json', '--save', saved, '--update-docs'], {
      MESHPORT_BENCH_DOCS_DIR: path.join(dir, 'docs'),
    });
    process.stdout.write(`      (quick run of every suite: ${run.seconds.toFixed(1)} s)\n`);
    lines = run.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Line);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('runs all five suites and prints one JSON line each', () => {
    assert.equal(run.code, 0, run.stderr.slice(-3000));
    assert.deepEqual(
      lines.map((l) => l.suite),
      ['decode', 'forward', 'registry', 'memory', 'hijack'],
    );
    const ran = lines.filter((l) => !l.skipped);
    assert.equal(
      ran.length,
      isRoot ? 5 : 4,
      `skipped: ${lines
        .filter((l) => l.skipped)
        .map((l) => `${l.suite} (${l.skipped})`)
        .join(', ')}`,
    );
    for (const l of ran) {
      assert.equal(l.quick, true);
      assert.ok(l.env && l.env.cpus > 0 && /^v\d+/.test(l.env.node), `${l.suite}: the machine is described`);
      assert.ok(l.results && l.results.length > 0, `${l.suite}: results`);
    }
  });

  it('gives each suite ratios to a peer from the same rounds, with their spread', () => {
    for (const l of lines.filter((x) => !x.skipped)) {
      const ratios = l.metrics!.filter((m) => m.unit === 'x');
      assert.ok(ratios.length > 0, `${l.suite}: at least one ratio`);
      for (const m of ratios) {
        assert.ok(m.peer, `${l.suite}: ${m.name} names its peer`);
        assert.ok(Number.isFinite(m.value) && m.value > 0, `${l.suite}: ${m.name} = ${m.value}`);
        assert.ok(Number.isFinite(m.spread) && m.spread >= 0, `${l.suite}: ${m.name} spread ${m.spread}`);
        assert.ok(m.better === 'higher' || m.better === 'lower');
      }
    }
  });

  it('reports CPU seconds and peak RSS of the processes it measured, from /proc', () => {
    for (const l of lines.filter((x) => !x.skipped)) {
      const procs = l.processes!;
      assert.ok(procs.length > 0, `${l.suite}: processes`);
      assert.ok(
        procs.some((p) => typeof p.cpuSeconds === 'number' && p.cpuSeconds > 0),
        `${l.suite}: some CPU time`,
      );
      assert.ok(
        procs.some((p) => typeof p.peakRssMB === 'number' && p.peakRssMB > 10),
        `${l.suite}: some peak RSS`,
      );
    }
    const forward = lines.find((l) => l.suite === 'forward')!;
    const roles = new Set(forward.processes!.map((p) => p.process));
    for (const role of ['haproxy (both hops)', 'meshport consumer router', 'meshport provider router'])
      assert.ok(roles.has(role), role);
  });

  it('regenerates the page: machine, date, a table and a chart per suite, the saved results', () => {
    const docs = path.join(dir, 'docs');
    const page = readFileSync(path.join(docs, 'benchmarks.md'), 'utf8');
    const ran = lines.filter((l) => !l.skipped);
    for (const l of ran) {
      const start = page.indexOf(`<!-- bench:${l.suite}:start -->`);
      const end = page.indexOf(`<!-- bench:${l.suite}:end -->`);
      assert.ok(start >= 0 && end > start, `section ${l.suite}`);
      const section = page.slice(start, end);
      assert.match(section, /^Run \d{4}-\d\d-\d\dT[\d:]+Z on .+logical CPUs/m, `${l.suite}: date and machine`);
      assert.match(section, /\| figure \| value \| peer \(same rounds\) \|/, `${l.suite}: ratio table`);
      assert.match(section, /\| case \| process \| CPU s \| peak RSS MB \|/, `${l.suite}: process table`);
      assert.ok(section.includes(`](bench/${l.suite}.svg)`), `${l.suite}: chart linked`);
      const svg = readFileSync(path.join(docs, 'bench', `${l.suite}.svg`), 'utf8');
      assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
      assert.doesNotMatch(svg, /NaN|undefined/);
    }
    // The forward suite's mutual TLS figures (issue 18) have a section of their own, under its heading.
    const mtls = page.slice(
      page.indexOf('<!-- bench:forward-mtls:start -->'),
      page.indexOf('<!-- bench:forward-mtls:end -->'),
    );
    assert.ok(
      page.includes(
        '### Mutual TLS between sidecars against haproxy with TLS (issue 18)\n\n<!-- bench:forward-mtls:start -->',
      ),
    );
    assert.match(mtls, /^Run \d{4}-\d\d-\d\dT[\d:]+Z on .+logical CPUs/m, 'forward-mtls: date and machine');
    assert.match(mtls, /haproxy-2hop-tls/);
    assert.match(page, /<!-- bench:runs:start -->\n\| suite \| last run \| mode \| machine \| headline ratios \|/);
    const results = readFileSync(path.join(docs, 'bench', 'results.jsonl'), 'utf8')
      .trim()
      .split('\n');
    assert.equal(results.length, ran.length);
  });

  it('compares a run with saved results and exits 3 on a regression beyond the spread', async () => {
    // The saved decode line with one figure made 1000 times better. A lower-is-better one is chosen where there is
    // one: a higher-is-better figure can look at most 100% worse, which a loaded machine's spread can swallow.
    const decode = lines.find((l) => l.suite === 'decode')!;
    const lower = decode.metrics!.findIndex((m) => m.better === 'lower' && m.value > 0);
    const pick = Math.max(lower, 0);
    const better = (m: { value: number; better: string }) => (m.better === 'lower' ? m.value / 1000 : m.value * 1000);
    const inflated = {
      ...decode,
      metrics: decode.metrics!.map((m, i) => (i === pick ? { ...m, value: better(m), spread: 0 } : m)),
    };
    const crafted = path.join(dir, 'crafted.jsonl');
    writeFileSync(crafted, `${JSON.stringify(inflated)}\n`);
    const r = await bench(['decode', '--quick', '--compare', crafted]);
    assert.equal(r.code, 3, r.stderr.slice(-2000));
    assert.match(r.stdout, /decode compared with .*crafted\.jsonl .*REGRESSION/);
    const row = r.stdout
      .split('\n')
      .filter((l) => l.startsWith(decode.metrics![pick].name))
      .at(-1); // the goal table above shares the name
    assert.ok(row && /REGRESSION$/.test(row.trim()), `row of the inflated metric: ${row}`);
  });

  it('rewrites only the sections named with --docs-section, and nothing else of docs/', async () => {
    const docs = path.join(dir, 'docs-one');
    const r = await bench(
      ['decode', '--quick', '--update-docs', '--docs-section', 'decode', '--docs-section', 'nosuch'],
      {
        MESHPORT_BENCH_DOCS_DIR: docs,
      },
    );
    assert.equal(r.code, 0, r.stderr.slice(-2000));
    const page = readFileSync(path.join(docs, 'benchmarks.md'), 'utf8');
    assert.match(page, /<!-- bench:decode:start -->\nRun /);
    assert.doesNotMatch(page, /bench:runs:start/, 'no table of last runs');
    assert.throws(() => readFileSync(path.join(docs, 'bench', 'results.jsonl')), /ENOENT/, 'no saved results');
    assert.match(r.stderr, /--docs-section nosuch: no suite of this run writes that section/);
  });

  it('refuses bad options before running anything', async () => {
    const missing = await bench(['--compare', path.join(dir, 'nope.jsonl')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--compare: no such file/);
    const zero = await bench(['decode', '--rounds', '0']);
    assert.equal(zero.code, 2);
    assert.match(zero.stderr, /--rounds wants a positive integer/);
    const lone = await bench(['forward', '--docs-section', 'forward-mtls']);
    assert.equal(lone.code, 2);
    assert.match(lone.stderr, /--docs-section goes with --update-docs/);
    const unknown = await bench(['nosuch']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown suite nosuch; known: decode, forward, registry, memory, hijack/);
  });
});
