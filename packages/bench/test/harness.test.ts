// The parts of the bench harness a contributor relies on without seeing them: ratios taken round by round, the
// regression verdicts of --compare (and the names it reads old results by), saved files read back, charts that are
// well-formed SVG, and what is read from perf's output.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { compareMetrics, MIN_TOLERANCE, readSaved, SINGLE_ROUND_TOLERANCE } from '../src/compare';
import { updateDocsSection, updateInline, updateResults } from '../src/docs';
import { parsePerfReport, parsePerfStat, shortSymbol } from '../src/forward/perf';
import { haproxyConfig } from '../src/forward/haproxy';
import { parseTlsCounters } from '../src/forward/tls';
import { median, quantile, roundRatio, spread } from '../src/stats';
import type { Metric } from '../src/suite';
import { forwardSuite } from '../src/suites/forward';
import { renderChart, shortNumber } from '../src/svg';

const metric = (name: string, value: number, extra: Partial<Metric> = {}): Metric => ({
  name,
  value,
  unit: 'x',
  better: 'higher',
  spread: 0.05,
  rounds: 5,
  ...extra,
});

describe('bench harness', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-bench-test-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  describe('statistics', () => {
    it('takes ratios round by round, so a slow round moves both sides and not the ratio', () => {
      // Round 2 ran at half speed for both: the pooled medians would say 2.0x either way, but the spread of the
      // ratios is what shows the comparison held steady.
      const a = [200, 100, 200];
      const b = [100, 50, 100];
      const r = roundRatio(a, b);
      assert.equal(r.ratio, 2);
      assert.equal(r.spread, 0);
      assert.equal(r.rounds, 3);
      assert.ok(spread(a) > 0.4, 'the absolute samples do spread');
    });

    it('medians, spreads and nearest-rank quantiles', () => {
      assert.equal(median([3, 1, 2]), 2);
      assert.equal(median([4, 1, 2, 3]), 2.5);
      assert.ok(Number.isNaN(median([])));
      assert.equal(spread([10]), 0);
      assert.equal(spread([9, 10, 11]), 0.2);
      const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
      assert.equal(quantile(sorted, 0.5), 50);
      assert.equal(quantile(sorted, 0.99), 99);
      assert.equal(quantile(sorted, 1), 100);
    });
  });

  describe('--compare verdicts', () => {
    it('flags a drop beyond the larger spread as a regression, and not one inside it', () => {
      const then = [metric('ratio', 1.0, { spread: 0.1 })];
      assert.equal(compareMetrics(then, [metric('ratio', 0.85, { spread: 0.05 })])[0].verdict, 'regression');
      assert.equal(compareMetrics(then, [metric('ratio', 0.92, { spread: 0.05 })])[0].verdict, 'within spread');
      // The current run's wider spread widens what counts as noise.
      assert.equal(compareMetrics(then, [metric('ratio', 0.85, { spread: 0.2 })])[0].verdict, 'within spread');
      assert.equal(compareMetrics(then, [metric('ratio', 1.2, { spread: 0.05 })])[0].verdict, 'improvement');
    });

    it('reads direction from the metric: for latency, up is worse', () => {
      const then = [metric('p99', 10, { better: 'lower', unit: 'ms' })];
      assert.equal(compareMetrics(then, [metric('p99', 13, { better: 'lower', unit: 'ms' })])[0].verdict, 'regression');
      assert.equal(compareMetrics(then, [metric('p99', 7, { better: 'lower', unit: 'ms' })])[0].verdict, 'improvement');
    });

    it('never trusts a zero spread: a floor for many rounds, a wider one for a single round', () => {
      const many = compareMetrics(
        [metric('m', 100, { spread: 0 })],
        [metric('m', 100 * (1 - MIN_TOLERANCE / 2), { spread: 0 })],
      );
      assert.equal(many[0].verdict, 'within spread');
      assert.equal(many[0].tolerance, MIN_TOLERANCE);
      const one = compareMetrics(
        [metric('m', 100, { spread: 0, rounds: 1 })],
        [metric('m', 95, { spread: 0, rounds: 1 })],
      );
      assert.equal(one[0].verdict, 'within spread');
      assert.equal(one[0].tolerance, SINGLE_ROUND_TOLERANCE);
    });

    it('lists metrics that are new or missing instead of dropping them', () => {
      const rows = compareMetrics([metric('old', 1)], [metric('new', 1)]);
      assert.deepEqual(
        rows.map((r) => [r.name, r.verdict]),
        [
          ['new', 'new'],
          ['old', 'not in this run'],
        ],
      );
    });
  });

  describe('saved results', () => {
    it('reads the JSON lines of --json / --save, skipping progress text mixed in', () => {
      const file = path.join(dir, 'saved.jsonl');
      writeFileSync(
        file,
        [
          '[bench 0:01] starting',
          JSON.stringify({
            suite: 'decode',
            env: { date: '2026-11-27T00:00:00Z' },
            results: [],
            metrics: [metric('a', 2)],
          }),
          JSON.stringify({ suite: 'hijack', skipped: 'needs root' }),
        ].join('\n'),
      );
      const saved = readSaved(file);
      assert.deepEqual([...saved.keys()], ['decode']);
      assert.equal(saved.get('decode')!.date, '2026-11-27T00:00:00Z');
    });

    it('says which line is broken and what a file without results is', () => {
      const broken = path.join(dir, 'broken.jsonl');
      writeFileSync(broken, '{"suite": "decode", \n');
      assert.throws(() => readSaved(broken), /broken\.jsonl:1: not JSON/);
      const old = path.join(dir, 'old.jsonl');
      writeFileSync(old, JSON.stringify({ suite: 'decode', results: [] }));
      assert.throws(() => readSaved(old), /suite decode has no "metrics"/);
      const empty = path.join(dir, 'empty.jsonl');
      writeFileSync(empty, 'nothing here\n');
      assert.throws(() => readSaved(empty), /no suite results/);
    });

    it('keeps one line per suite in results.jsonl, the latest', () => {
      const file = path.join(dir, 'bench', 'results.jsonl');
      updateResults('decode', JSON.stringify({ suite: 'decode', metrics: [metric('a', 1)] }), file);
      updateResults('forward', JSON.stringify({ suite: 'forward', metrics: [metric('b', 1)] }), file);
      const lines = updateResults('decode', JSON.stringify({ suite: 'decode', metrics: [metric('a', 2)] }), file);
      assert.equal(lines.length, 2);
      assert.equal(readSaved(file).get('decode')!.metrics[0].value, 2);
    });

    it("rewrites only a suite's own section of the page", () => {
      const file = path.join(dir, 'benchmarks.md');
      writeFileSync(file, '# Benchmarks\n\nhand-written intro\n');
      updateDocsSection('decode', 'first', file);
      updateDocsSection('forward', 'other', file);
      updateDocsSection('decode', 'second', file);
      const text = readFileSync(file, 'utf8');
      assert.match(text, /hand-written intro/);
      assert.match(text, /<!-- bench:decode:start -->\nsecond\n<!-- bench:decode:end -->/);
      assert.match(text, /<!-- bench:forward:start -->\nother\n<!-- bench:forward:end -->/);
      assert.doesNotMatch(text, /first/);
    });
  });

  describe('charts', () => {
    it('draws one bar per case and one line per series, with labels escaped', () => {
      const svg = renderChart('forward <Bolt & Dubbo>', {
        bars: {
          title: 'req/s',
          unit: 'req/s',
          bars: [
            { label: 'a & b', value: 1000, spread: 0.2 },
            { label: 'c', value: 2500 },
          ],
        },
        lines: {
          title: 'latency',
          unit: 'us',
          x: ['p50', 'p99'],
          series: [
            { label: 's1', values: [40, 90] },
            { label: 's2', values: [100, 300] },
          ],
        },
      })!;
      assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg" width="\d+" height="\d+"/);
      assert.match(svg, /<\/svg>\n$/);
      assert.equal((svg.match(/<rect x=/g) ?? []).length, 2, 'two bars');
      assert.equal((svg.match(/<polyline /g) ?? []).length, 2, 'two lines');
      assert.match(svg, /forward &lt;Bolt &amp; Dubbo&gt;/);
      assert.match(svg, />a &amp; b</);
      assert.doesNotMatch(svg, /NaN|undefined/);
    });

    it('has nothing to draw for a suite without figures, and draws a log scale without NaN', () => {
      assert.equal(renderChart('empty', {}), null);
      const svg = renderChart('log', {
        lines: { title: 't', unit: 'ms', x: ['p50', 'max'], log: true, series: [{ label: 'x', values: [0.8, 1200] }] },
      })!;
      assert.doesNotMatch(svg, /NaN|Infinity/);
      assert.match(svg, />1\.2k<|>1000</);
    });

    it('writes short axis numbers', () => {
      assert.equal(shortNumber(6_957_753), '6.96M');
      assert.equal(shortNumber(42_700), '42.7k');
      assert.equal(shortNumber(150), '150');
      assert.equal(shortNumber(2.5), '2.5');
      assert.equal(shortNumber(0), '0');
    });
  });
  describe('forward suite', () => {
    it('reads the metrics saved as meshport-2hop (the TypeScript engine, before the split) as meshport-2hop-js', () => {
      const rename = forwardSuite.renamedMetric!;
      assert.equal(
        rename('Bolt: meshport-2hop / haproxy-2hop req/s (8x16)'),
        'Bolt: meshport-2hop-js / haproxy-2hop req/s (8x16)',
      );
      assert.equal(rename('Dubbo: meshport-2hop p50 (1x1)'), 'Dubbo: meshport-2hop-js p50 (1x1)');
      assert.equal(rename('Bolt: haproxy-2hop / direct req/s (8x16)'), 'Bolt: haproxy-2hop / direct req/s (8x16)');
      for (const now of [
        'Bolt: meshport-2hop-native / haproxy-2hop req/s (8x16)',
        'Dubbo: meshport-2hop+sockmap req/s (8x16)',
        'Bolt: meshport-2hop-js p50 (1x1)',
      ]) {
        assert.equal(rename(now), now);
      }
    });

    it('makes the README row from saved results, and writes it only between its inline markers', () => {
      const native = (protocol: string, rps: number, met: boolean) => ({
        name: `${protocol}/meshport-2hop-native`,
        protocol,
        target: 'meshport-2hop-native',
        rpsRatioVsHaproxy: rps,
        cpuPerReqRatioVsHaproxy: 0.9,
        p50DiffVsHaproxyUs: 5.5,
        consumerPeakRssMB: 58.2,
        providerPeakRssMB: 57.1,
        rpsGoalMet: met,
        cpuGoalMet: true,
        p50GoalMet: false,
        rssGoalMet: true,
      });
      const g = forwardSuite.glance!([native('bolt', 1.2, true), native('dubbo', 0.8, false)])!;
      assert.match(
        g.figures,
        /^native engine: 1\.20x \(Bolt\), 0\.80x \(Dubbo\) haproxy's req\/s; .*peak RSS 57-58 MB per sidecar$/,
      );
      assert.equal(
        g.goal,
        'req/s >= 1.0x, CPU <= 1.0x, p50 <= haproxy, RSS <= 60 MB: 5 of 8 met (missed: Bolt p50, Dubbo req/s, Dubbo p50)',
      );
      assert.equal(
        forwardSuite.glance!([{ name: 'bolt/meshport-2hop', protocol: 'bolt', target: 'meshport-2hop' }]),
        null,
        'results saved before the split',
      );

      const readme = path.join(dir, 'README.md');
      const row =
        '| forward | <!-- bench:glance:forward:figures:start -->old<!-- bench:glance:forward:figures:end --> | goal |';
      writeFileSync(readme, `# x\n\n${row}\n`);
      assert.equal(updateInline('forward:figures', 'new figures', readme), true);
      assert.equal(readFileSync(readme, 'utf8'), `# x\n\n${row.replace('old', 'new figures')}\n`);
      assert.equal(updateInline('forward:goal', 'x', readme), false, 'no markers: nothing written');
      assert.equal(updateInline('forward:figures', 'x', path.join(dir, 'none.md')), false);
    });

    it("reads the TLS counters of a router's /stats, summed over their other labels", () => {
      const c = parseTlsCounters(
        [
          '# HELP meshport_tls_handshakes_total TLS handshakes completed',
          '# TYPE meshport_tls_handshakes_total counter',
          'meshport_tls_handshakes_total{direction="inbound"} 120',
          'meshport_tls_handshakes_total{direction="outbound",peer="x"} 2',
          'meshport_tls_handshakes_total{direction="outbound",peer="y"} 1',
          'meshport_tls_handshake_failures_total{direction="inbound",reason="no-client-cert"} 3',
          'meshport_tls_handshake_failures_total{reason="untrusted",direction="inbound"} 1',
          'meshport_connections_total{listener="inbound"} 99',
        ].join('\n'),
      );
      assert.deepEqual(c, {
        inbound: 120,
        outbound: 3,
        failures: 4,
        failureReasons: { 'inbound/no-client-cert': 3, 'inbound/untrusted': 1 },
      });
      assert.deepEqual(parseTlsCounters('meshport_requests_total 5\n'), {
        inbound: 0,
        outbound: 0,
        failures: 0,
        failureReasons: {},
      });
    });

    it('makes haproxy-2hop-tls: TLS 1.3 with certificates verified both ways between the hops, plaintext at the ends', () => {
      const plain = haproxyConfig(1001, 1002, 1003);
      assert.doesNotMatch(plain, /ssl/);
      const cfg = haproxyConfig(1001, 1002, 1003, {
        clientPem: '/d/c.pem',
        serverPem: '/d/s.pem',
        caFile: '/d/ca.pem',
      });
      const lines = cfg.split('\n').map((l) => l.trim());
      assert.ok(lines.includes('bind 127.0.0.1:1001'), 'first hop: plaintext in');
      assert.ok(
        lines.includes(
          'server hop2 127.0.0.1:1002 ssl crt /d/c.pem ca-file /d/ca.pem verify required ssl-min-ver TLSv1.3 no-ssl-reuse',
        ),
      );
      assert.ok(
        lines.includes('bind 127.0.0.1:1002 ssl crt /d/s.pem ca-file /d/ca.pem verify required ssl-min-ver TLSv1.3'),
      );
      assert.ok(lines.includes('server echo 127.0.0.1:1003'), 'second hop: plaintext out');
    });

    it('reads perf stat --per-thread CSV, skipping threads that did not run, and perf report lines', () => {
      const stat = [
        'node-100,12.50,msec,task-clock,52389,100.00,0.000,CPUs utilized',
        'node-101,<not counted>,msec,task-clock,0,100.00,,',
        'node-102,3.25,msec,task-clock,52389,100.00,0.000,CPUs utilized',
        'node-100,40,,raw_syscalls:sys_enter,52389,100.00,38.176,K/sec',
        'node-102,7,,raw_syscalls:sys_enter,52389,100.00,38.176,K/sec',
        'node-100,3,,context-switches,52389,100.00,38.176,K/sec',
        '',
        'some other line',
      ].join('\n');
      const threads = parsePerfStat(
        stat,
        new Map([
          [100, 100],
          [101, 100],
          [102, 100],
        ]),
      );
      assert.deepEqual(
        threads.sort((a, b) => a.tid - b.tid),
        [
          { pid: 100, tid: 100, cpuMs: 12.5, syscalls: 40, contextSwitches: 3 },
          { pid: 100, tid: 102, cpuMs: 3.25, syscalls: 7, contextSwitches: 0 },
        ],
      );
      const report = parsePerfReport(
        [
          '# Samples: 3K of event',
          '#',
          '    67.40%  [kernel.kallsyms]     ',
          '     1.90%  meshport_engine.node  [.] meshport::Loop::request',
          '',
        ].join('\n'),
      );
      assert.equal(
        shortSymbol(
          'std::__detail::_Map_base<std::__cxx11::basic_string<char, std::char_traits<char> >, std::pair<int, std::vector<int> > >::operator[]',
        ),
        'std::__detail::_Map_base<...>::operator[]',
      );
      assert.equal(
        shortSymbol('std::_Sp_counted_base<(__gnu_cxx::_Lock_policy)2>::_M_release'),
        'std::_Sp_counted_base<...>::_M_release',
      );
      assert.equal(shortSymbol('operator<'), 'operator<', 'unbalanced: as printed');
      assert.deepEqual(report, [
        { name: '[kernel.kallsyms]', share: 0.674 },
        { name: 'meshport_engine.node [.] meshport::Loop::request', share: 0.019 },
      ]);
    });
  });
});
