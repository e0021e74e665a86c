// The telemetry targets behind the router's sink as a config and its reloads make them: which target gets a kind's
// lines, what a reload keeps, the late lines of a kind turned off, a failing target logged once, and a file the
// sidecar cannot append to refused at start and on reload with the line of its key.

import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { parseConfig } from '../src/config';
import { preflight } from '../src/preflight';
import { Sidecar } from '../src/sidecar';
import { LATE_LINES_MS, TelemetryOutput } from '../src/telemetry/output';

function logCollector() {
  const logs: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line)) });
  return { logger, logs };
}

const line = (n: number) => `{"n":${n}}\n`;

describe('telemetry output', function () {
  this.timeout(20_000);
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-telemetry-output-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const config = (yaml: string) => parseConfig(yaml, path.join(dir, 'meshport.yaml')).telemetry;
  const read = (name: string) => {
    try {
      return readFileSync(path.join(dir, name), 'utf8');
    } catch {
      return '';
    }
  };
  const until = async (what: string, check: () => boolean) => {
    for (let i = 0; !check(); i++) {
      if (i > 200) throw new Error(`timed out waiting for ${what}`);
      await sleep(10);
    }
  };

  it('lines of a kind go to its target; a kind that is off takes nothing', async () => {
    const out = new TelemetryOutput(
      config('telemetry: { accessLog: { to: a.log } }'),
      '10.0.0.1',
      pino({ level: 'silent' }),
    );
    out.sink('access', line(1) + line(2));
    out.sink('span', line(3));
    await out.close();
    assert.equal(read('a.log'), line(1) + line(2));
    assert.deepEqual(out.counters, { exported: { access: 2, span: 0 }, dropped: { access: 0, span: 0 } });
  });

  it('a reload keeps an unchanged target, moves a changed one, and a kind turned off takes late lines a moment', async () => {
    const out = new TelemetryOutput(
      config('telemetry: { accessLog: { to: a.log }, tracing: { file: s.json } }'),
      'n',
      pino({ level: 'silent' }),
    );
    out.sink('access', line(1));
    // Only the sampling changes: the same file target goes on.
    await out.apply(config('telemetry: { accessLog: { to: a.log, everyN: 1 }, tracing: { file: s.json } }'));
    out.sink('access', line(2));
    // Another file: the next lines go there.
    await out.apply(config('telemetry: { accessLog: { to: b.log }, tracing: { file: s.json } }'));
    out.sink('access', line(3));
    await until('line 3', () => read('b.log') === line(3));
    // Off: the lines handed over just after (formatted before the router heard of it) still reach b.log...
    const turningOff = out.apply(config('telemetry: { tracing: { file: s.json } }'));
    out.sink('access', line(4));
    await sleep(LATE_LINES_MS / 3);
    out.sink('access', line(5));
    await turningOff;
    // ...and once the moment has passed, nothing does.
    out.sink('access', line(6));
    await out.close();
    assert.equal(read('a.log'), line(1) + line(2));
    assert.equal(read('b.log'), line(3) + line(4) + line(5));
    assert.equal(out.counters.exported.access, 5);
  });

  it('a target that fails is logged once, counted every time, and logged again when it works', async () => {
    const { logger, logs } = logCollector();
    const out = new TelemetryOutput(config('telemetry: { accessLog: { to: gone/a.log } }'), 'n', logger);
    for (let i = 0; i < 3; i++) {
      out.sink('access', line(i));
      await until(`batch ${i} counted`, () => out.counters.dropped.access === i + 1);
    }
    const failed = logs.filter((l) => String(l.msg).startsWith('telemetry target failed'));
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.kind, 'access');
    assert.match(String(failed[0]!.error), /ENOENT/);
    (await import('node:fs')).mkdirSync(path.join(dir, 'gone'));
    out.sink('access', line(9));
    await until('the line written', () => out.counters.exported.access === 1);
    assert.ok(logs.some((l) => l.msg === 'telemetry target writing again'));
    await out.close();
  });

  it('a file that cannot be appended to stops the start and refuses a reload, naming the key and its line', async () => {
    const file = path.join(dir, 'meshport.yaml');
    const yaml = (telemetry: string) =>
      `listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }\nadmin: "127.0.0.1:0"\ntelemetry:\n${telemetry}`;
    const bad = yaml('  tracing:\n    file: no/such/dir/spans.json\n');
    await assert.rejects(preflight(parseConfig(bad, file)), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'MESHPORT_CONFIG_INVALID');
      assert.equal(
        err.message,
        `${file}:5: telemetry.tracing.file: cannot append to ${dir}/no/such/dir/spans.json: ENOENT`,
      );
      return true;
    });
    writeFileSync(file, yaml('  accessLog: { to: a.log }\n'));
    const sidecar = new Sidecar(parseConfig(read('meshport.yaml'), file), { logger: pino({ level: 'silent' }) });
    await sidecar.start();
    try {
      writeFileSync(file, yaml('  accessLog: { to: nowhere/a.log }\n'));
      const result = await sidecar.reload(file);
      assert.equal(result.ok, false);
      assert.match(
        String(result.error),
        /meshport\.yaml:4: telemetry\.accessLog\.to: cannot append to .*nowhere\/a\.log: ENOENT/,
      );
      assert.equal(sidecar.config.telemetry.accessLog?.to, path.join(dir, 'a.log'));
      // labelCaps are the router's from its start: a change needs a restart, and the old caps stay.
      writeFileSync(file, yaml('  accessLog: { to: a.log }\n  labelCaps: { methods: 8 }\n'));
      const caps = await sidecar.reload(file);
      assert.ok(caps.ok, String(caps.error));
      assert.deepEqual(caps.needRestart, ['telemetry.labelCaps']);
      assert.equal(caps.telemetry, undefined);
      assert.equal(sidecar.config.telemetry.labelCaps.methods, 64);
    } finally {
      await sidecar.stop(0);
    }
  });
});
