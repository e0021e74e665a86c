// `meshport top`: the figures it computes from two reads of /services (rates, success, p50/p99 from bucket deltas,
// the order of the rows), its errors, its --json against a real sidecar under load, and its live view in a real
// terminal (tmux): the rows and numbers on screen, a key that re-sorts, `q` giving the terminal back.

import { strict as assert } from 'node:assert';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BoltStatus, FrameSplitter, decodeFrame } from '@meshport/protocol';
import { BOLT_SOFA_REQUEST, type EchoProvider, echoResponse, skipOrFail, startEchoProvider } from '@meshport/testkit';
import {
  formatQuantile,
  formatSuccess,
  interval,
  quantile,
  type ServicesPage,
  type ServiceTotals,
  sortRows,
} from '../src/top/figures';
import { renderScreen } from '../src/top/screen';
import { DEFAULT_ADMIN } from '../src/main';
import { SIDECAR_DEFAULTS } from '@meshport/sidecar';

const BIN = path.resolve(__dirname, '../../bin/meshport.js');
const BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Latency counts (17, the last unbounded) with `n` in bucket `i`, and so on for each pair. */
function counts(...pairs: [number, number][]): number[] {
  const c = new Array<number>(BUCKETS.length + 1).fill(0);
  for (const [i, n] of pairs) c[i] = n;
  return c;
}

function row(
  direction: 'outbound' | 'inbound',
  service: string,
  method: string,
  outcomes: Record<string, number>,
  latency: number[],
): ServiceTotals {
  const answered = Object.values(outcomes).reduce((a, b) => a + b, 0);
  return {
    direction,
    service,
    method,
    requests: answered,
    outcomes,
    latency: { counts: latency, sum: 0, count: latency.reduce((a, b) => a + b, 0) },
  };
}

function page(at: number, services: ServiceTotals[], callers: ServicesPage['callers'] = []): ServicesPage {
  return { at, services, callers, folded: {}, buckets: BUCKETS };
}

describe('meshport top: the figures of an interval', () => {
  it('p50 and p99 interpolate linearly inside the bucket that holds them', () => {
    // 100 calls, all between 0.5 ms and 1 ms: the median halfway, p99 at 99% of the bucket.
    const all = counts([3, 100]);
    assert.ok(Math.abs(quantile(all, BUCKETS, 0.5)!.seconds - 0.00075) < 1e-12);
    assert.ok(Math.abs(quantile(all, BUCKETS, 0.99)!.seconds - (0.0005 + 0.0005 * 0.99)) < 1e-12);
    // 90 in (1 ms, 2.5 ms], 10 in (25 ms, 50 ms]: the median in the first, p99 nine tenths into the second.
    const split = counts([4, 90], [8, 10]);
    assert.ok(Math.abs(quantile(split, BUCKETS, 0.5)!.seconds - (0.001 + 0.0015 * (50 / 90))) < 1e-12);
    assert.ok(Math.abs(quantile(split, BUCKETS, 0.99)!.seconds - (0.025 + 0.025 * (9 / 10))) < 1e-12);
    assert.equal(quantile(split, BUCKETS, 0.99)!.bound, undefined);
  });

  it('a quantile in the first bucket is "<0.1ms", in the unbounded one ">10s", with none "-"', () => {
    assert.deepEqual(quantile(counts([0, 10]), BUCKETS, 0.5), { seconds: 0.0001, bound: 'below' });
    assert.deepEqual(quantile(counts([0, 10], [16, 1]), BUCKETS, 0.99), { seconds: 10, bound: 'above' });
    assert.equal(formatQuantile(quantile(counts([0, 10]), BUCKETS, 0.5)), '<0.1ms');
    assert.equal(formatQuantile(quantile(counts([16, 3]), BUCKETS, 0.99)), '>10s');
    assert.equal(quantile(counts(), BUCKETS, 0.5), undefined);
    assert.equal(formatQuantile(undefined), '-');
    assert.equal(formatQuantile({ seconds: 0.00042 }), '0.42ms');
    assert.equal(formatQuantile({ seconds: 0.0125 }), '12.5ms');
    assert.equal(formatQuantile({ seconds: 0.0008 }), '0.80ms');
    assert.equal(formatQuantile({ seconds: 1.2 }), '1.20s');
  });

  it('rates, success and percentiles are of the growth between the reads, not of the totals', () => {
    const before = page(10_000, [
      row('outbound', 'com.example.Echo:1.0', 'echo', { ok: 1000 }, counts([0, 1000])),
      row('outbound', 'com.example.Echo:1.0', 'flaky', { ok: 500, 'status-2': 500 }, counts([9, 1000])),
    ]);
    const now = page(12_000, [
      // 200 more calls in 2 s, all in (0.5 ms, 1 ms]: 100/s; the slow old ones do not count.
      row('outbound', 'com.example.Echo:1.0', 'echo', { ok: 1200 }, counts([0, 1000], [3, 200])),
      // 100 more, 75 ok and 25 failed: 75% whatever the totals say (they say 57.5%).
      row('outbound', 'com.example.Echo:1.0', 'flaky', { ok: 575, 'status-2': 525 }, counts([9, 1000], [2, 100])),
      // Seen first in this interval: all of it is growth.
      row('inbound', 'com.example.Other:1.0', 'get', { ok: 10, timeout: 10 }, counts([4, 20])),
    ]);
    const figures = interval(before, now);
    assert.equal(figures.seconds, 2);
    const echo = figures.rows.find((r) => r.method === 'echo')!;
    assert.equal(echo.requests, 200);
    assert.equal(echo.rps, 100);
    assert.equal(echo.successRate, 1);
    assert.ok(Math.abs(echo.p50!.seconds - 0.00075) < 1e-12);
    const flaky = figures.rows.find((r) => r.method === 'flaky')!;
    assert.equal(flaky.rps, 50);
    assert.equal(flaky.successRate, 0.75);
    assert.deepEqual(flaky.outcomes, { ok: 75, 'status-2': 25 });
    assert.ok(flaky.p99!.seconds < 0.0005, 'p99 of the interval, not of the slow calls before it');
    const other = figures.rows.find((r) => r.method === 'get')!;
    assert.equal(other.requests, 20);
    assert.equal(other.successRate, 0.5);
  });

  it('a sidecar that restarted between the reads (totals went down) counts from zero', () => {
    const before = page(0, [row('outbound', 's', 'm', { ok: 5000 }, counts([3, 5000]))]);
    const now = page(1000, [row('outbound', 's', 'm', { ok: 40, 'status-2': 10 }, counts([3, 50]))]);
    const [r] = interval(before, now).rows;
    assert.equal(r!.requests, 50);
    assert.equal(r!.successRate, 0.8);
  });

  it('callers are ranked by their growth; idle ones are left out', () => {
    const before = page(
      0,
      [],
      [
        { direction: 'inbound', service: 's', caller: 'spiffe://a', requests: 1000 },
        { direction: 'inbound', service: 's', caller: '10.0.0.2', requests: 10 },
        { direction: 'inbound', service: 's', caller: '10.0.0.3', requests: 7 },
      ],
    );
    const now = page(
      1000,
      [],
      [
        { direction: 'inbound', service: 's', caller: 'spiffe://a', requests: 1010 },
        { direction: 'inbound', service: 's', caller: '10.0.0.2', requests: 60 },
        { direction: 'inbound', service: 's', caller: '10.0.0.3', requests: 7 },
      ],
    );
    assert.deepEqual(
      interval(before, now).callers.map((c) => [c.caller, c.rps]),
      [
        ['10.0.0.2', 50],
        ['spiffe://a', 10],
      ],
    );
  });

  it('sorts busiest, least successful, slowest first, or by name', () => {
    const before = page(0, []);
    const now = page(1000, [
      row('outbound', 'b', 'fast', { ok: 300 }, counts([1, 300])),
      row('outbound', 'a', 'slow', { ok: 10 }, counts([12, 10])),
      row('outbound', 'c', 'failing', { ok: 50, 'status-2': 50 }, counts([3, 100])),
      row('outbound', 'd', 'tail', { ok: 100 }, counts([2, 98], [14, 2])),
    ]);
    const rows = interval(before, now).rows;
    const order = (key: Parameters<typeof sortRows>[1]) => sortRows(rows, key).map((r) => r.method);
    assert.deepEqual(order('rps'), ['fast', 'failing', 'tail', 'slow']);
    assert.deepEqual(order('success'), ['failing', 'slow', 'fast', 'tail']);
    assert.deepEqual(order('p50'), ['slow', 'failing', 'tail', 'fast']);
    assert.deepEqual(order('p99'), ['tail', 'slow', 'failing', 'fast']);
    assert.deepEqual(order('name'), ['slow', 'fast', 'failing', 'tail']);
  });

  it('a success rate is never rounded up to 100%', () => {
    assert.equal(formatSuccess(0.99999), '99.9%');
    assert.equal(formatSuccess(1), '100%');
    assert.equal(formatSuccess(0.75), '75.0%');
    assert.equal(formatSuccess(undefined), '-');
  });

  it('the screen fits the terminal: no line wider, columns aligned, the sort column marked', () => {
    const figures = interval(
      page(0, []),
      page(1000, [
        row('outbound', 'com.example.EchoService:1.0', 'echo', { ok: 300 }, counts([3, 300])),
        row('inbound', 'SOFA/com.example.GreetService:1.0', 'sayHello', { ok: 30, timeout: 3 }, counts([6, 33])),
      ]),
    );
    for (const width of [64, 80, 120, 200]) {
      const lines = renderScreen(
        { admin: '127.0.0.1:15000', now: new Date(0), intervalSeconds: 1, sort: 'p99', direction: 'all', figures },
        width,
        20,
      );
      assert.equal(lines.length, 20);
      for (const l of lines) assert.ok(l.length <= width, `${width}: ${JSON.stringify(l)}`);
      const header = lines.find((l) => l.startsWith('DIR'))!;
      assert.match(header, /P99\*/);
      const first = lines.indexOf(header) + 1;
      // The slowest first (sorted by p99); each figure ends under its title.
      assert.match(lines[first]!, /^in {2}/);
      assert.match(lines[first + 1]!, /^out /);
      const end = header.indexOf('P99*') + 'P99*'.length;
      for (const l of [lines[first]!, lines[first + 1]!]) assert.match(l.slice(0, end), /\d(ms|s)$/);
      assert.equal(lines.at(-1), 'keys: r req/s  s success  5 p50  9 p99  n name  d dir  q quit');
    }
  });
});

describe('meshport top: what it says when it cannot read a sidecar', function () {
  this.timeout(20_000);

  it('an admin port nobody listens on: exit 1, MESHPORT_CLI_ADMIN_UNREACHABLE with the address', async () => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as net.AddressInfo).port;
    server.close();
    const r = spawnSync(process.execPath, [BIN, 'top', '--json', '--once', '--admin', String(port)], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(
      r.stderr,
      new RegExp(
        `^meshport top: MESHPORT_CLI_ADMIN_UNREACHABLE: cannot read the sidecar's admin port at 127\\.0\\.0\\.1:${port} `,
      ),
    );
    assert.match(r.stderr, /connection refused/);
  });

  it('a sidecar without /services (older than top): exit 1, says so', async () => {
    // What an older sidecar's admin port answers for a page it does not have.
    const old = http.createServer((_req, res) =>
      res
        .writeHead(404, { 'content-type': 'application/json' })
        .end(JSON.stringify({ error: 'no admin page /services', pages: ['/healthz', '/ready', '/routes', '/stats'] })),
    );
    old.listen(0, '127.0.0.1');
    await once(old, 'listening');
    const admin = `127.0.0.1:${(old.address() as net.AddressInfo).port}`;
    try {
      const r = await runCli(['top', '--json', '--once', '--admin', admin]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(`MESHPORT_CLI_NO_SERVICES_PAGE: the sidecar at ${admin} has no /services page`),
      );
    } finally {
      old.close();
    }
  });

  it("--admin defaults to the sidecar's own default admin port", () => {
    assert.equal(DEFAULT_ADMIN, `${SIDECAR_DEFAULTS.admin.host}:${SIDECAR_DEFAULTS.admin.port}`);
  });

  it('usage mistakes: a bad --admin, --sort or --interval, the live view on a pipe', async () => {
    for (const [args, message] of [
      [['--admin', 'localhost:x'], /--admin "localhost:x": give HOST:PORT/],
      [['--sort', 'speed'], /argument 'speed' is invalid/],
      [['--interval', '0'], /give seconds from 0.1 to 3600/],
      [[], /the live view needs a terminal; use --json/],
    ] as const) {
      const r = await runCli(['top', ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
  });
});

/** `meshport ARGS` as a child, without blocking this process (which may be driving load meanwhile). */
async function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

const SERVICE = 'com.example.TopDemo:1.0';

/** A Bolt v1 request naming its service and method in the header map, as SOFA's Java and protobuf clients send. */
function boltCall(id: number, service: string, method: string): Buffer {
  const cls = Buffer.from(BOLT_SOFA_REQUEST);
  const entries = [
    ['service', service],
    ['sofa_head_method_name', method],
  ].flatMap(([k, v]) => {
    const key = Buffer.from(k!);
    const value = Buffer.from(v!);
    const len = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeInt32BE(n);
      return b;
    };
    return [len(key.length), key, len(value.length), value];
  });
  const header = Buffer.concat(entries);
  const body = Buffer.from(`${method} ${id}`);
  const fixed = Buffer.alloc(22);
  fixed[0] = 1;
  fixed[1] = 1;
  fixed.writeUInt16BE(1, 2);
  fixed[4] = 1;
  fixed.writeInt32BE(id, 5);
  fixed[9] = 1;
  fixed.writeInt32BE(3000, 10);
  fixed.writeInt16BE(cls.length, 14);
  fixed.writeInt16BE(header.length, 16);
  fixed.writeInt32BE(body.length, 18);
  return Buffer.concat([fixed, cls, header, body]);
}

/** Every `failEvery`-th call of `flaky` the provider answers SERVER_EXCEPTION; every other call is echoed. */
const FAIL_EVERY = 4;

interface RunningSidecar {
  admin: string;
  outbound: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

async function startSidecar(dir: string, provider: EchoProvider): Promise<RunningSidecar> {
  writeFileSync(
    path.join(dir, 'routes.json'),
    JSON.stringify({
      services: {
        [SERVICE]: [`bolt://127.0.0.1:${provider.port}?interface=com.example.TopDemo&version=1.0`],
      },
    }),
  );
  writeFileSync(
    path.join(dir, 'meshport.yaml'),
    [
      'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
      'admin: "127.0.0.1:0"',
      'log: { level: info }',
      'registries:',
      '  - { name: static, type: file, upstream: routes.json }',
    ].join('\n'),
  );
  const child = spawn(process.execPath, [BIN, 'sidecar', '--config', path.join(dir, 'meshport.yaml')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = once(child, 'exit');
  const running = await new Promise<{ admin: { port: number }; outbound: { port: number } }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no 'running' line in:\n${out}`)), 15_000);
    const look = () => {
      const line = out.split('\n').find((l) => l.includes('meshport sidecar running'));
      if (!line) return;
      clearTimeout(timer);
      child.stdout!.off('data', look);
      resolve(JSON.parse(line) as { admin: { port: number }; outbound: { port: number } });
    };
    child.stdout!.on('data', look);
    void exited.then(() => reject(new Error(`the sidecar exited:\n${out}`)));
  });
  return {
    admin: `127.0.0.1:${running.admin.port}`,
    outbound: running.outbound.port,
    child,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * A caller on the sidecar's outbound listener: `echo` and `flaky` calls at about `perSecond` each, until stopped;
 * counts what came back.
 */
function startLoad(port: number, perSecond: number) {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  const answers = { ok: 0, failed: 0 };
  const splitter = new FrameSplitter((frame) => {
    const h = decodeFrame(frame);
    if (h.kind !== 'response') return;
    if (h.status === BoltStatus.SUCCESS) answers.ok++;
    else answers.failed++;
  });
  socket.on('data', (c) => splitter.write(c));
  let id = 0;
  const tickMs = 10;
  const perTick = Math.max(1, Math.round((perSecond * tickMs) / 1000));
  const timer = setInterval(() => {
    const frames: Buffer[] = [];
    for (let i = 0; i < perTick; i++) frames.push(boltCall(++id, SERVICE, 'echo'), boltCall(++id, SERVICE, 'flaky'));
    socket.write(Buffer.concat(frames));
  }, tickMs);
  return {
    answers,
    stop: () => {
      clearInterval(timer);
      socket.destroy();
    },
  };
}

/** The provider: echoes, but fails every FAIL_EVERY-th `flaky` call and takes 20 ms on `echo` (it is the slow one). */
async function startFlakyProvider(): Promise<EchoProvider> {
  const provider = await startEchoProvider();
  let flaky = 0;
  provider.behave = (h) =>
    h.protocol === 'bolt' && h.headers.sofa_head_method_name === 'echo' ? { delayMs: 20 } : 'answer';
  provider.respond = (frame, header) => {
    const answer = echoResponse(frame, header);
    if (header.protocol === 'bolt' && header.headers.sofa_head_method_name === 'flaky' && ++flaky % FAIL_EVERY === 0)
      answer.writeUInt16BE(BoltStatus.SERVER_EXCEPTION, 10);
    return answer;
  };
  return provider;
}

interface TopJson {
  intervalSeconds: number;
  totals: { rps: number; successRate: number | null };
  services: {
    direction: string;
    service: string;
    method: string;
    requests: number;
    rps: number;
    answered: number;
    ok: number;
    successRate: number | null;
    outcomes: Record<string, number>;
    p50Ms: number | null;
    p99Ms: number | null;
  }[];
  callers: { direction: string; service: string; caller: string; rps: number }[];
}

describe('meshport top against a real sidecar under load', function () {
  this.timeout(60_000);
  let dir: string;
  let provider: EchoProvider;
  let sidecar: RunningSidecar;
  let load: ReturnType<typeof startLoad>;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'meshport-cli-top-'));
    provider = await startFlakyProvider();
    sidecar = await startSidecar(dir, provider);
    load = startLoad(sidecar.outbound, 100);
    // Until the first answers are back.
    for (let i = 0; i < 100 && load.answers.ok === 0; i++) await sleep(50);
    assert.ok(load.answers.ok > 0, 'no answer through the sidecar');
  });

  after(async () => {
    load?.stop();
    await sidecar?.stop();
    await provider?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('--json --once: req/s of both methods, the success rate of the failures injected, a sane p99', async () => {
    const r = await runCli(['top', '--json', '--once', '--interval', '2', '--admin', sidecar.admin]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 1, r.stdout);
    const snapshot = JSON.parse(lines[0]!) as TopJson;
    assert.ok(snapshot.intervalSeconds >= 1.9 && snapshot.intervalSeconds < 3, `${snapshot.intervalSeconds}`);
    const out = (method: string) =>
      snapshot.services.find((s) => s.direction === 'outbound' && s.service === SERVICE && s.method === method);
    const echo = out('echo');
    const flaky = out('flaky');
    assert.ok(echo && flaky, `rows: ${JSON.stringify(snapshot.services)}`);
    for (const s of [echo, flaky]) {
      // ~100/s each driven; a busy machine may deliver fewer, never none.
      assert.ok(s.rps > 20 && s.rps < 150, `${s.method}: ${s.rps}/s`);
      assert.ok(s.answered > 40, `${s.method}: ${s.answered} answered`);
      assert.ok(s.p50Ms !== null && s.p99Ms !== null && s.p50Ms <= s.p99Ms, JSON.stringify(s));
      assert.ok(s.p99Ms! < 1000, `${s.method}: p99 ${s.p99Ms} ms`);
    }
    assert.equal(echo.successRate, 1);
    // Every 4th flaky call failed: 75%, give or take the calls at the interval's edges.
    assert.ok(Math.abs(flaky.successRate! - 0.75) < 0.05, `flaky success ${flaky.successRate}`);
    assert.deepEqual(Object.keys(flaky.outcomes).sort(), ['ok', 'status-2']);
    // The provider takes 20 ms on echo: at least that, at the median, through the sidecar (the bucket's resolution:
    // it lies in (10 ms, 25 ms]).
    assert.ok(echo.p50Ms! >= 10, `echo p50 ${echo.p50Ms} ms`);
    assert.ok(flaky.p50Ms! < echo.p50Ms!, `flaky p50 ${flaky.p50Ms} ms, echo ${echo.p50Ms} ms`);
    const caller = snapshot.callers.find((c) => c.direction === 'outbound' && c.service === SERVICE);
    assert.equal(caller?.caller, '127.0.0.1');
    assert.ok(caller.rps > 40, `caller ${caller.rps}/s`);
    assert.ok(snapshot.totals.rps >= echo.rps + flaky.rps - 0.01);
  });

  it('--json streams one object per interval until SIGINT; --once alone prints the table once, no escape codes', async () => {
    const child = spawn(process.execPath, [BIN, 'top', '--json', '--interval', '0.5', '--admin', sidecar.admin]);
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const exited = once(child, 'exit');
    while (stdout.split('\n').length < 4) await sleep(50);
    child.kill('SIGINT');
    const [code] = (await exited) as [number | null];
    assert.equal(code, 0);
    const objects = stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as TopJson);
    assert.ok(objects.length >= 3);
    for (const o of objects) {
      assert.ok(o.intervalSeconds > 0.4 && o.intervalSeconds < 1.5, `${o.intervalSeconds}`);
      assert.ok(o.services.some((s) => s.method === 'flaky' && s.rps > 0));
    }

    const r = await runCli(['top', '--once', '--admin', sidecar.admin]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes('\x1b'), r.stdout);
    assert.match(r.stdout, new RegExp(`^out +${SERVICE.replace(/\./g, '\\.')} +flaky +[\\d.]+/s +[\\d.]+% `, 'm'));
    assert.doesNotMatch(r.stdout, /keys:/);
  });

  it('the live view in a real terminal (tmux): rows and figures, `9` sorts by p99, `q` gives the terminal back', async function () {
    const { tmux, until, kill } = terminal(this);
    // A shell runs top and then says how it ended, so the pane outlives it and shows what top left behind.
    const command = `${process.execPath} ${BIN} top --admin ${sidecar.admin}; echo "top exited $?"; sleep 60`;
    tmux('new-session', '-d', '-s', 'top', '-x', '120', '-y', '30', command);
    try {
      const rowOf = (text: string, method: string) =>
        text.split('\n').find((l) => new RegExp(`^out +${SERVICE.replace(/\./g, '\\.')} +${method} `).test(l));
      const first = await until('rows for both methods with figures', (t) =>
        ['echo', 'flaky'].every((m) => /\d\/s +[\d.]+% +\S+ms +\S+ms/.test(rowOf(t, m) ?? '')),
      );
      assert.match(first, new RegExp(`meshport top - sidecar ${sidecar.admin} - \\d\\d:\\d\\d:\\d\\d UTC`));
      assert.match(first, /sorted by req\/s/);
      assert.match(first, /^DIR +SERVICE +METHOD +REQ\/S\* +SUCCESS +P50 +P99/m);
      assert.match(rowOf(first, 'echo')!, / 100% /);
      assert.match(rowOf(first, 'flaky')!, / (7\d|8[0-5])\.\d% .* status-2 \d+/);
      assert.match(first, /TOP CALLERS/);
      assert.match(first, new RegExp(`^out ${SERVICE.replace(/\./g, '\\.')} +127\\.0\\.0\\.1 \\d`, 'm'));
      // Full screen: the alternate screen, the cursor hidden.
      assert.equal(tmux('display-message', '-p', '-t', 'top', '#{alternate_on} #{cursor_flag}').trim(), '1 0');

      // `9`: sorted by p99, the slow echo (20 ms at the provider) above flaky, whatever their rates.
      tmux('send-keys', '-t', 'top', '9');
      const byP99 = await until('sorted by p99', (t) => /sorted by p99/.test(t) && /P99\*/.test(t));
      const lines = byP99.split('\n');
      const at = (m: string) => lines.indexOf(rowOf(byP99, m) ?? '\0');
      assert.ok(at('echo') >= 0 && at('echo') < at('flaky'), byP99);
      // `n`: by name, flaky after echo too; `r` back to req/s.
      tmux('send-keys', '-t', 'top', 'n');
      await until('sorted by name', (t) => /sorted by name/.test(t) && /SERVICE\*/.test(t));

      // `d`: outbound only (the rows stay), then inbound only (this sidecar had none), then all again.
      tmux('send-keys', '-t', 'top', 'd');
      const outbound = await until('outbound only', (t) => /direction outbound/.test(t));
      assert.ok(rowOf(outbound, 'echo') && rowOf(outbound, 'flaky'), outbound);
      tmux('send-keys', '-t', 'top', 'd');
      const inbound = await until('inbound only', (t) => /direction inbound/.test(t));
      assert.equal(rowOf(inbound, 'echo'), undefined, inbound);
      assert.match(inbound, /\(no inbound calls\)/);
      tmux('send-keys', '-t', 'top', 'd');
      await until('all directions', (t) => /direction all/.test(t) && rowOf(t, 'echo') !== undefined);

      tmux('send-keys', '-t', 'top', 'q');
      const after = await until('top exited', (t) => /top exited \d+/.test(t));
      assert.match(after, /top exited 0/);
      // The terminal as it was: the main screen (none of top's rows left on it), the cursor shown.
      assert.doesNotMatch(after, /TOP CALLERS|REQ\/S/);
      assert.equal(tmux('display-message', '-p', '-t', 'top', '#{alternate_on} #{cursor_flag}').trim(), '0 1');
    } finally {
      kill();
    }
  });
});

/**
 * A tmux server of our own (its own socket, so nothing else's sessions are seen or touched): `tmux ARGS` on it, the
 * screen of the session `top` read until a check passes, and `kill` to end that server. Skips (fails under CI) without
 * tmux.
 */
function terminal(ctx: Mocha.Context) {
  if (spawnSync('tmux', ['-V'], { stdio: 'ignore' }).status !== 0) skipOrFail(ctx, 'tmux is not installed');
  const socket = `meshport-top-test-${process.pid}-${Date.now()}`;
  const tmux = (...args: string[]) => {
    const r = spawnSync('tmux', ['-L', socket, '-f', '/dev/null', ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tmux ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const until = async (what: string, check: (text: string) => boolean) => {
    let text = '';
    for (let i = 0; i < 100; i++) {
      text = tmux('capture-pane', '-p', '-t', 'top');
      if (check(text)) return text;
      await sleep(100);
    }
    throw new Error(`${what}: the screen was\n${text}`);
  };
  const kill = () => spawnSync('tmux', ['-L', socket, 'kill-server'], { stdio: 'ignore' });
  return { tmux, until, kill };
}

describe('meshport top in a real terminal, no sidecar there', function () {
  this.timeout(30_000);

  it('waits for the admin port, saying so on screen; `q` still exits 0', async function () {
    const { tmux, until, kill } = terminal(this);
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as net.AddressInfo).port;
    server.close();
    tmux(
      'new-session',
      '-d',
      '-s',
      'top',
      '-x',
      '100',
      '-y',
      '12',
      `${process.execPath} ${BIN} top --admin ${port}; echo "top exited $?"; sleep 60`,
    );
    try {
      const waiting = await until('the waiting line', (t) => /waiting for/.test(t));
      assert.match(waiting, new RegExp(`waiting for 127\\.0\\.0\\.1:${port} \\(connection refused`));
      assert.match(waiting, /^keys: /m);
      tmux('send-keys', '-t', 'top', 'q');
      assert.match(await until('top exited', (t) => /top exited \d+/.test(t)), /top exited 0/);
    } finally {
      kill();
    }
  });
});
