// The forward suite's observability cases (issue 19) are only worth their figures if they wrote what their sampling
// says: what the routers' file sink writes, how the suite counts it (files of hundreds of MB, not parsed), and when it
// calls a case broken.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  type ObsRow,
  type Written,
  checkWritten,
  comparisons,
  countWritten,
  expectedWritten,
  obsMetrics,
} from '../src/forward/observability';
import { countingLogger, fileSink } from '../src/forward/telemetry-files';

const TRACE = '0000000000000000000000000000abc1';

function span(id: string, parent?: string): string {
  return JSON.stringify({
    traceId: TRACE,
    spanId: id,
    ...(parent ? { parentSpanId: parent } : {}),
    name: 'com.example.EchoService:1.0/echo',
    kind: 3,
    attributes: [{ key: 'rpc.method', value: { stringValue: 'say "spanId":' } }],
    status: { code: 1 },
  });
}

const accessLine = (n: number) =>
  `${JSON.stringify({ time: '2026-12-06T18:30:00.123Z', direction: 'outbound', protocol: 'bolt', n })}\n`;

describe('bench forward: observability cases', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-bench-obs-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('the file sink writes access lines as given and each batch of spans as one OTLP request line', async () => {
    const access = path.join(dir, 'access.jsonl');
    const spans = path.join(dir, 'spans.jsonl');
    const files = fileSink({ access, span: spans });
    files.sink('access', accessLine(1) + accessLine(2));
    files.sink('span', `${span('00000000000000a1')}\n${span('00000000000000a2', '00000000000000a1')}\n`);
    files.sink('span', `${span('00000000000000a3')}\n`);
    await files.close();
    assert.equal(files.dropped(), 0);
    assert.equal(readFileSync(access, 'utf8'), accessLine(1) + accessLine(2));
    const requests = readFileSync(spans, 'utf8')
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(requests.length, 2);
    const first = requests[0].resourceSpans[0];
    assert.deepEqual(first.resource.attributes[0], { key: 'service.name', value: { stringValue: 'meshport' } });
    assert.equal(first.scopeSpans[0].scope.name, 'meshport');
    assert.deepEqual(
      first.scopeSpans[0].spans.map((s: { spanId: string }) => s.spanId),
      ['00000000000000a1', '00000000000000a2'],
    );
    assert.equal(requests[1].resourceSpans[0].scopeSpans[0].spans.length, 1);
  });

  it("writes the native engine's batches of bytes as it writes strings (the sidecar's bytes path)", async () => {
    const fromText = path.join(dir, 'text.jsonl');
    const fromBytes = path.join(dir, 'bytes.jsonl');
    const batch = `${span('00000000000000c1')}\n${span('00000000000000c2', '00000000000000c1')}\n`;
    const text = fileSink({ span: fromText, access: path.join(dir, 'a-text.jsonl') });
    const bytes = fileSink({ span: fromBytes, access: path.join(dir, 'a-bytes.jsonl') });
    text.sink('span', batch);
    text.sink('access', accessLine(7));
    assert.ok(bytes.sink.bytes, 'the sink takes bytes');
    const given = Buffer.from(batch);
    bytes.sink.bytes('span', given);
    bytes.sink.bytes('access', Buffer.from(accessLine(7)));
    await Promise.all([text.close(), bytes.close()]);
    assert.equal(given.toString(), batch, 'the batch handed over is not changed');
    assert.equal(readFileSync(fromBytes, 'utf8'), readFileSync(fromText, 'utf8'));
    assert.equal(readFileSync(path.join(dir, 'a-bytes.jsonl'), 'utf8'), accessLine(7));
    assert.equal(countWritten(fromBytes, 'span').items, 2);
  });

  it('counts one span per spanId key, not parentSpanId nor a quoted string, also across two reads of 1 MiB', async () => {
    const line = `${span('00000000000000b1')}\n`;
    // Where the key sits in a request line as the sink writes it.
    const probe = path.join(dir, 'probe.jsonl');
    const once = fileSink({ span: probe });
    once.sink('span', line);
    await once.close();
    const keyAt = readFileSync(probe, 'utf8').indexOf('"spanId":');
    // A filler line long enough that the first span's key starts 4 bytes before the end of the first 1 MiB read.
    const file = path.join(dir, 'spans.jsonl');
    const filler = `{"pad":"${'x'.repeat((1 << 20) - 4 - keyAt - 11)}"}\n`;
    writeFileSync(file, filler);
    assert.equal(Buffer.byteLength(filler) + keyAt, (1 << 20) - 4);
    const files = fileSink({ span: file });
    files.sink('span', `${line}${span('00000000000000b2', '00000000000000b1')}\n`);
    files.sink('span', line);
    await files.close();
    const w = countWritten(file, 'span');
    assert.equal(w.items, 3);
    assert.equal(w.lines, 3);
    assert.ok(w.first.startsWith('{"pad":'));
  });

  it('calls a case broken when it wrote nothing, too few or too many, or lines of another shape', async () => {
    const access = (items: number, first = accessLine(1).trimEnd()): Written => ({
      lines: items,
      items,
      bytes: items * 100,
      first,
    });
    assert.equal(expectedWritten('accesslog', 10_099), 100);
    assert.equal(expectedWritten('tracing', 10_099), 10_099);
    assert.equal(checkWritten('accesslog', 10_099, access(100)), null);
    assert.equal(checkWritten('accesslog', 10_099, access(108)), null, 'errors and slow calls add a few');
    assert.match(checkWritten('accesslog', 10_099, access(0)) ?? '', /no access log lines written after 10,099 calls/);
    assert.match(checkWritten('accesslog', 10_099, access(50)) ?? '', /50 access log lines written .* 100 expected/);
    assert.match(checkWritten('accesslog', 10_099, access(10_099)) ?? '', /10,099 access log lines/);
    assert.match(checkWritten('accesslog', 10_099, access(100, '{"level":30}')) ?? '', /does not look like/);
    // What the sidecar's writer dropped (its queue full) is accounted for, not taken for a broken case.
    assert.equal(checkWritten('accesslog', 10_099, access(80), 20), null);
    assert.match(checkWritten('accesslog', 10_099, access(80), 5) ?? '', /80 access log lines written and 5 dropped/);

    const file = path.join(dir, 'spans.jsonl');
    const files = fileSink({ span: file });
    for (let i = 0; i < 40; i++) files.sink('span', `${span(`00000000000000${(16 + i).toString(16)}`)}\n`);
    await files.close();
    assert.equal(checkWritten('tracing', 40, countWritten(file, 'span')), null);
    assert.match(checkWritten('tracing', 80, countWritten(file, 'span')) ?? '', /40 spans written after 80 calls/);
  });

  it('sets each case against its twin, and today against the baseline (not the other way round), with the goal of its kind', () => {
    const row = (target: string, cpu: number, rps = 100): ObsRow => ({
      protocol: 'bolt',
      target,
      rps,
      rpsSamples: [rps, rps],
      cpuSamples: [cpu, cpu],
      p50: 50,
      p50ByRound: [50, 50],
      cpuPerReqUs: cpu,
    });
    const rows = [
      row('meshport-2hop-native', 1.1),
      row('meshport-2hop-baseline', 1.0),
      row('meshport-2hop-accesslog', 1.21),
      row('meshport-2hop-tracing', 1.32),
    ];
    const list = comparisons(['bolt'], (_, t) => rows.find((r) => r.target === t));
    const by = Object.fromEntries(list.map((c) => [c.goalName, c]));
    assert.deepEqual(Object.keys(by).sort(), ['accesslog', 'metrics', 'tracing']);
    assert.equal(by.metrics.subject.target, 'meshport-2hop-native');
    assert.equal(by.metrics.against.target, 'meshport-2hop-baseline');
    assert.equal(Math.round(by.metrics.cpuRatio * 100) / 100, 1.1);
    assert.equal(by.metrics.goal, 1.05);
    assert.equal(Math.round(by.accesslog.cpuRatio * 100) / 100, 1.1);
    assert.equal(by.tracing.goal, 1.25);
    assert.ok(by.tracing.cpuRatio <= by.tracing.goal);
    assert.deepEqual(
      obsMetrics(list).map((m) => m.name),
      [
        'Bolt: meshport-2hop-accesslog / meshport-2hop-native CPU per request',
        'Bolt: meshport-2hop-tracing / meshport-2hop-native CPU per request',
        'Bolt: meshport-2hop-native / meshport-2hop-baseline CPU per request',
      ],
    );
  });

  it("counts the native engine's own drops from its warnings, and passes every line on", () => {
    const lines: string[] = [];
    const { logger, dropped } = countingLogger({ write: (l) => lines.push(l) });
    // As NativeRouter forwards the engine's log event: its fields beside the message.
    logger.warn(
      { accessLines: 3, spans: 120 },
      "access log lines and spans dropped: JavaScript had not taken the engine's last batches",
    );
    logger.warn({ inflight: 4 }, 'draining');
    logger.warn({ accessLines: 0, spans: 7 }, 'access log lines and spans dropped: again');
    assert.equal(dropped(), 130);
    assert.equal(lines.length, 3);
    assert.match(lines[1], /"msg":"draining"/);
  });
});
