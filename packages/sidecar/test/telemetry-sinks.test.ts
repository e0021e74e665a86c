// The telemetry targets on their own, fed lines as the router hands them over: the rotated access log file, the
// OTLP/HTTP exporter against the collector stand-in (up, failing, down, slow), the trace file.

import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, readExport, startOtlpCollector, type OtlpCollector } from '@meshport/testkit';
import { exportRequest, OtlpExporter, RotatingFile, tracesUrl } from '../src/index';
import { TraceFile } from '../src/telemetry/trace-file';

/** Counts what a target reports, with the errors it gave. */
function tally() {
  const t = { written: 0, dropped: 0, errors: [] as Error[] };
  return {
    t,
    events: {
      written: (n: number) => {
        t.written += n;
      },
      dropped: (n: number, error?: Error) => {
        t.dropped += n;
        if (error) t.errors.push(error);
      },
    },
  };
}

/** A span line as an engine writes it (section 3 of the specification), with its number in the name. */
function span(i: number, traceId = (i + 1).toString(16).padStart(32, '0')): string {
  return (
    `{"traceId":"${traceId}","spanId":"${(i + 1).toString(16).padStart(16, '0')}",` +
    `"parentSpanId":"00000000000000aa","name":"com.example.EchoService:1.0/echo#${i}","kind":3,` +
    '"startTimeUnixNano":"1765045800123000000","endTimeUnixNano":"1765045800123412000",' +
    '"attributes":[{"key":"rpc.system","value":{"stringValue":"sofarpc"}},' +
    '{"key":"meshport.bytes_in","value":{"intValue":"123"}}],"status":{"code":1}}\n'
  );
}

function spans(from: number, count: number): string {
  let out = '';
  for (let i = from; i < from + count; i++) out += span(i);
  return out;
}

/** An access log line, numbered, padded so lines differ in length. */
function accessLine(i: number): string {
  return `${JSON.stringify({ time: new Date(0).toISOString(), n: i, pad: 'x'.repeat(i % 97) })}\n`;
}

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('telemetry targets', function () {
  this.timeout(30_000);
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-telemetry-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  describe('the rotated access log file', () => {
    /** The files of the chain, oldest first, each one's lines parsed (a line split across files would not parse). */
    function chain(file: string): { name: string; numbers: number[]; bytes: number }[] {
      const names = readdirSync(dir)
        .filter((n) => n === path.basename(file) || n.startsWith(`${path.basename(file)}.`))
        .sort((a, b) => Number(b.split('.').at(-1)) - Number(a.split('.').at(-1)) || b.length - a.length);
      return names.map((name) => {
        const text = readFileSync(path.join(dir, name), 'utf8');
        assert.ok(text.endsWith('\n'), `${name} ends mid-line`);
        const numbers = text
          .trimEnd()
          .split('\n')
          .map((l) => (JSON.parse(l) as { n: number }).n);
        return { name, numbers, bytes: Buffer.byteLength(text) };
      });
    }

    it('a burst of batches: every line once, in order, across file.N ... file, none split, each file near maxBytes', async () => {
      const file = path.join(dir, 'access.log');
      const { t, events } = tally();
      const log = new RotatingFile({ path: file, maxBytes: 4096, keep: 100 }, events);
      let n = 0;
      for (let batch = 0; batch < 300; batch++) {
        const size = 1 + (batch % 7);
        let lines = '';
        for (let i = 0; i < size; i++) lines += accessLine(n++);
        log.write(lines, size);
        // Most batches arrive while a write is under way; now and then the loop lets the writes catch up.
        if (batch % 25 === 0) await sleep(1);
      }
      await log.close(5000);
      assert.deepEqual(t, { written: n, dropped: 0, errors: [] });
      const files = chain(file);
      assert.ok(files.length > 10, `only ${files.length} files: no rotation`);
      assert.deepEqual(
        files.flatMap((f) => f.numbers),
        Array.from({ length: n }, (_, i) => i),
      );
      // A file passes maxBytes by less than one batch (at most 7 lines of < 200 bytes).
      for (const f of files) assert.ok(f.bytes <= 4096 + 7 * 200, `${f.name}: ${f.bytes} bytes`);
      assert.equal(files.at(-1)!.name, 'access.log');
    });

    it('keeps `keep` old files: the newest lines, contiguous; older ones are gone', async () => {
      const file = path.join(dir, 'access.log');
      const { t, events } = tally();
      const log = new RotatingFile({ path: file, maxBytes: 1000, keep: 2 }, events);
      for (let i = 0; i < 200; i++) {
        log.write(accessLine(i), 1);
        if (i % 10 === 0) await sleep(1);
      }
      await log.close(5000);
      assert.equal(t.written, 200);
      const files = chain(file);
      assert.deepEqual(
        files.map((f) => f.name),
        ['access.log.2', 'access.log.1', 'access.log'],
      );
      const numbers = files.flatMap((f) => f.numbers);
      assert.equal(numbers.at(-1), 199);
      assert.deepEqual(
        numbers,
        Array.from({ length: numbers.length }, (_, i) => 200 - numbers.length + i),
      );
    });

    it('appends to the file it finds, and keep 0 starts the file again with nothing kept', async () => {
      const file = path.join(dir, 'access.log');
      const first = new RotatingFile({ path: file, maxBytes: 10_000, keep: 0 }, tally().events);
      first.write(accessLine(0), 1);
      await first.close(1000);
      const { t, events } = tally();
      const again = new RotatingFile({ path: file, maxBytes: 300, keep: 0 }, events);
      for (let i = 1; i <= 20; i++) {
        again.write(accessLine(i), 1);
        await sleep(1);
      }
      await again.close(1000);
      assert.equal(t.written, 20);
      assert.deepEqual(readdirSync(dir), ['access.log']);
      const numbers = chain(file)[0]!.numbers;
      assert.equal(numbers.at(-1), 20);
      assert.ok(!numbers.includes(0), 'the first line survived a rotation with keep 0');
    });

    it('a write that fails is counted, not thrown, and writing resumes once the file can be written again', async () => {
      const sub = path.join(dir, 'logs');
      mkdirSync(sub);
      const file = path.join(sub, 'access.log');
      const { t, events } = tally();
      const log = new RotatingFile({ path: file, maxBytes: 100, keep: 1 }, events);
      log.write(accessLine(1), 1);
      await until('the first line', () => t.written === 1);
      rmSync(sub, { recursive: true });
      // The next line rotates (the file is past 100 bytes): the rename fails, the batch is dropped.
      log.write(accessLine(2) + accessLine(3), 2);
      await until('the failed batch counted', () => t.dropped === 2);
      assert.equal(t.errors.length, 1);
      assert.match(t.errors[0]!.message, /ENOENT/);
      mkdirSync(sub);
      log.write(accessLine(4), 1);
      await until('a line written again', () => t.written === 2);
      await log.close(1000);
      assert.equal(readFileSync(file, 'utf8'), accessLine(4));
    });
  });

  describe('OTLP/HTTP export', () => {
    let collector: OtlpCollector;
    afterEach(() => collector?.close());

    it('the request wrapper is an ExportTraceServiceRequest with the sidecar as its resource', () => {
      const [first, second] = readExport(JSON.parse(exportRequest(spans(0, 2), '10.1.2.3')));
      assert.deepEqual(first!.resource, { 'service.name': 'meshport', 'meshport.node': '10.1.2.3' });
      assert.equal(first!.name, 'com.example.EchoService:1.0/echo#0');
      assert.equal(second!.attributes['meshport.bytes_in'], '123');
      assert.equal(tracesUrl('http://127.0.0.1:4318').href, 'http://127.0.0.1:4318/v1/traces');
      assert.equal(tracesUrl('http://c:4318/otlp/').href, 'http://c:4318/otlp/v1/traces');
      assert.equal(tracesUrl('http://c:4318/v1/traces').href, 'http://c:4318/v1/traces');
    });

    it('sends batches of at most 512 spans, and a lone span within the interval', async () => {
      collector = await startOtlpCollector();
      const { t, events } = tally();
      const otlp = new OtlpExporter({ endpoint: collector.url, node: '10.1.2.3', intervalMs: 300 }, events);
      otlp.write(spans(0, 1000), 1000);
      const got = await collector.waitForSpans(1000);
      assert.equal(collector.requests, 2);
      assert.deepEqual(
        got.map((s) => s.name),
        Array.from({ length: 1000 }, (_, i) => `com.example.EchoService:1.0/echo#${i}`),
      );
      assert.deepEqual(got[999]!.resource, { 'service.name': 'meshport', 'meshport.node': '10.1.2.3' });
      await until('the count', () => t.written === 1000);
      const started = Date.now();
      otlp.write(span(1000), 1);
      await collector.waitForSpans(1001);
      assert.ok(Date.now() - started >= 250, 'a lone span went out before the interval');
      assert.equal(collector.requests, 3);
      await otlp.close(1000);
      assert.deepEqual(collector.invalid, []);
      assert.deepEqual(t, { written: 1001, dropped: 0, errors: [] });
    });

    it('a 5xx answer is tried once more, then the batch is dropped and counted; a 4xx is not retried', async () => {
      collector = await startOtlpCollector({ status: 503 });
      const { t, events } = tally();
      const otlp = new OtlpExporter({ endpoint: collector.url, node: 'n', intervalMs: 50 }, events);
      otlp.write(spans(0, 10), 10);
      await until('the batch dropped', () => t.dropped === 10);
      assert.equal(collector.requests, 2);
      assert.match(t.errors[0]!.message, /503/);
      collector.behave({ status: 400 });
      otlp.write(spans(10, 5), 5);
      await until('the second batch dropped', () => t.dropped === 15);
      assert.equal(collector.requests, 3);
      collector.behave({ status: 200 });
      otlp.write(spans(15, 5), 5);
      await until('the third batch taken', () => t.written === 5);
      await otlp.close(1000);
      assert.deepEqual(
        collector.spans.map((s) => s.name),
        [15, 16, 17, 18, 19].map((i) => `com.example.EchoService:1.0/echo#${i}`),
      );
    });

    it('a collector that is down: every span dropped and counted, nothing thrown', async () => {
      const port = await freePort();
      const { t, events } = tally();
      const otlp = new OtlpExporter({ endpoint: `http://127.0.0.1:${port}`, node: 'n', intervalMs: 50 }, events);
      otlp.write(spans(0, 600), 600);
      await until('both batches dropped', () => t.dropped === 600);
      assert.equal(t.written, 0);
      assert.match(t.errors[0]!.message, /ECONNREFUSED/);
      await otlp.close(1000);
    });

    it('a slow collector: the queue holds 4096 spans, the rest are dropped at once; a request past the timeout is abandoned', async () => {
      collector = await startOtlpCollector({ delayMs: 2000 });
      const { t, events } = tally();
      const otlp = new OtlpExporter({ endpoint: collector.url, node: 'n', timeoutMs: 500, intervalMs: 50 }, events);
      otlp.write(spans(0, 6000), 6000);
      // 4096 queued, of which the first 512 went out at once; 1904 had no room.
      assert.equal(t.dropped, 6000 - 4096);
      // The 512 sent made room for 512 more.
      otlp.write(spans(6000, 600), 600);
      assert.equal(t.dropped, 1904 + 88, 'the queue grew past its bound');
      // The first batch: no answer in 500 ms, tried again, abandoned again.
      await until('the first batch abandoned', () => t.dropped === 1904 + 88 + 512, 5000);
      assert.equal(t.written, 0);
      assert.match(t.errors[0]!.message, /4096 spans are waiting for the collector/);
      assert.ok(
        t.errors.some((e) => /no answer within 500 ms/.test(e.message)),
        t.errors.map((e) => e.message).join('\n'),
      );
      collector.behave({ delayMs: 0 });
      await otlp.close(10_000);
      assert.equal(t.written + t.dropped, 6600);
      assert.ok(t.written >= 3000, `only ${t.written} spans exported once the collector was quick`);
    });

    it('on close, what is queued is sent before it returns', async () => {
      collector = await startOtlpCollector();
      const { t, events } = tally();
      const otlp = new OtlpExporter({ endpoint: collector.url, node: 'n' }, events);
      otlp.write(spans(0, 700), 700);
      otlp.write(spans(700, 10), 10);
      await otlp.close(3000);
      assert.equal(collector.spans.length, 710);
      assert.deepEqual(t, { written: 710, dropped: 0, errors: [] });
    });
  });

  it('the trace file: one ExportTraceServiceRequest per batch, counted in spans', async () => {
    const file = path.join(dir, 'spans.json');
    const { t, events } = tally();
    const out = new TraceFile(file, '10.9.8.7', events);
    out.write(spans(0, 3), 3);
    out.write(spans(3, 2), 2);
    await out.close(1000);
    assert.deepEqual(t, { written: 5, dropped: 0, errors: [] });
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    assert.equal(lines.length, 2);
    const read = lines.map((l) => readExport(JSON.parse(l)));
    assert.deepEqual(
      read.map((r) => r.length),
      [3, 2],
    );
    assert.equal(read[1]![1]!.resource['meshport.node'], '10.9.8.7');
    assert.ok(!existsSync(`${file}.1`));
  });

  it('batches as bytes (the native engine) are written byte for byte as the same batches as text', async () => {
    // Non-ASCII and an escaped quote in a name: the bytes path must neither decode nor re-encode anything differently.
    const odd = spans(5, 2).replace('echo#5', 'écho\\"#5');
    const batches = [spans(0, 3), odd, spans(7, 1)];
    const written = async (asBytes: boolean) => {
      const base = path.join(dir, asBytes ? 'bytes' : 'text');
      const trace = new TraceFile(`${base}.spans`, '10.9.8.7', tally().events);
      const access = new RotatingFile({ path: `${base}.access`, maxBytes: 1 << 20, keep: 1 }, tally().events);
      for (const batch of batches) {
        trace.write(asBytes ? Buffer.from(batch) : batch, 1);
        access.write(asBytes ? Buffer.from(batch) : batch, 1);
      }
      await Promise.all([trace.close(1000), access.close(1000)]);
      return [readFileSync(`${base}.spans`), readFileSync(`${base}.access`)];
    };
    const [textSpans, textAccess] = await written(false);
    const [byteSpans, byteAccess] = await written(true);
    assert.equal(byteSpans!.toString(), textSpans!.toString());
    assert.ok(byteSpans!.equals(textSpans!));
    assert.ok(byteAccess!.equals(textAccess!));
    assert.equal(
      readExport(JSON.parse(byteSpans!.toString().split('\n')[1]!))[0]!.name,
      'com.example.EchoService:1.0/écho"#5',
    );
  });
});
