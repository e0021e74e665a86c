// `meshport sidecar` itself with its access log on standard output and its spans in a file and to a collector: the
// lines a log collector reads beside the sidecar's own log, a real SIGHUP turning the access log off, and SIGTERM
// delivering the last spans before the process exits. Runs on the engine MESHPORT_ENGINE names (js or native).

import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FrameSplitter, decodeFrame } from '@meshport/protocol';
import {
  boltRequestWith,
  JsonLinesChild,
  readExport,
  startEchoProvider,
  startOtlpCollector,
  type EchoProvider,
  type OtlpCollector,
} from '@meshport/testkit';

const MESHPORT = require.resolve('@meshport/cli/bin/meshport.js');
const SERVICE = 'com.example.Echo:1.0';

/** One call on a connection of its own; resolves with the answer's status. */
function call(port: number, traceId: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('no answer within 5 s'));
    }, 5000);
    const splitter = new FrameSplitter((frame) => {
      clearTimeout(timer);
      socket.end();
      resolve(decodeFrame(frame).status ?? -1);
    });
    socket.on('data', (d) => splitter.write(d));
    socket.on('error', reject);
    socket.write(
      boltRequestWith(
        1,
        { service: SERVICE, sofa_head_method_name: 'echo', 'rpc_trace_context.sofaTraceId': traceId },
        'hi',
      ),
    );
  });
}

describe(`meshport sidecar: access log on stdout, spans to a file (engine ${process.env.MESHPORT_ENGINE ?? 'native'})`, function () {
  this.timeout(60_000);
  let dir: string;
  let echo: EchoProvider;
  let collector: OtlpCollector;
  let sidecar: JsonLinesChild | undefined;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-telemetry-stdout-'));
    echo = await startEchoProvider();
    collector = await startOtlpCollector();
  });
  after(async () => {
    await sidecar?.kill();
    await echo?.close();
    await collector?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes a JSON line per call beside its own log, stops on SIGHUP, and flushes its spans on SIGTERM', async () => {
    writeFileSync(
      path.join(dir, 'services.json'),
      JSON.stringify({ services: { [SERVICE]: [`127.0.0.1:${echo.port}`] } }),
    );
    const config = path.join(dir, 'meshport.yaml');
    const yaml = (accessLog: string) =>
      [
        'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
        'admin: "127.0.0.1:0"',
        'registries:',
        '  - { name: static, type: file, upstream: services.json }',
        'telemetry:',
        `  tracing: { file: spans.json, otlp: "${collector.url}" }`,
        accessLog,
        '',
      ].join('\n');
    writeFileSync(config, yaml('  accessLog: { to: stdout, everyN: 1 }'));
    const child = spawn(process.execPath, [MESHPORT, 'sidecar', '--config', config], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    sidecar = new JsonLinesChild('meshport sidecar', child);
    const running = await sidecar.waitFor((m) => m.msg === 'meshport sidecar running', 'its start');
    const port = running.outbound.port as number;
    const ids = ['a1', 'a2', 'a3'];
    for (const id of ids) assert.equal(await call(port, id), 0);
    const access = () => sidecar!.lines.filter((l) => 'direction' in l && !('msg' in l));
    await sidecar.waitFor(() => access().length >= 3, 'three access log lines');
    assert.deepEqual(
      access().map((l) => [l.direction, l.service, l.method, l.status, l.endpoint, l.traceId]),
      ids.map((id) => ['outbound', SERVICE, 'echo', 'ok', `127.0.0.1:${echo.port}`, id.padStart(32, '0')]),
    );
    // The sidecar's own log lines are still whole JSON lines on the same stream.
    assert.ok(sidecar.lines.some((l) => l.msg === 'meshport sidecar running' && l.level === 30));

    writeFileSync(config, yaml(''));
    child.kill('SIGHUP');
    const reloaded = await sidecar.waitFor((m) => m.msg === 'reloaded', 'the reload');
    assert.equal(reloaded.telemetry, true);
    assert.equal(await call(port, 'b1'), 0);
    await sleep(400);
    assert.equal(access().length, 3, 'an access line after SIGHUP turned the access log off');

    // Spans of calls made just before SIGTERM reach the file before the process ends.
    assert.equal(await call(port, 'c1'), 0);
    child.kill('SIGTERM');
    await sidecar.exited;
    assert.equal(child.exitCode, 0, sidecar.output());
    const spans = readFileSync(path.join(dir, 'spans.json'), 'utf8')
      .trimEnd()
      .split('\n')
      .flatMap((line) => readExport(JSON.parse(line)));
    assert.deepEqual(
      spans.map((s) => s.traceId),
      [...ids, 'b1', 'c1'].map((id) => id.padStart(32, '0')),
    );
    assert.ok(spans.every((s) => s.kind === 3 && s.resource['service.name'] === 'meshport'));
    // The collector too: the last spans were still queued (a batch waits up to 1 s) when the signal came.
    assert.deepEqual(
      collector.spans.map((s) => s.traceId).sort(),
      [...ids, 'b1', 'c1'].map((id) => id.padStart(32, '0')).sort(),
    );
  });
});
