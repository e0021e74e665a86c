// The `meshport` command behaves as command-line tools do: per-command help and options, --version, errors that name
// the command, `-` for stdin, `sidecar --check`, log level and format; the README's table and docs/errors.md agree.

import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BoltCodec, encodeBoltHeartbeat } from '@meshport/protocol';
import { freePort } from '@meshport/testkit';
import { buildProgram } from '../src/main';
import { parseHostPort, startTap } from '../src/tap';

const BIN = path.resolve(__dirname, '../../bin/meshport.js');
const ROOT = path.resolve(__dirname, '../../../..');
const FIXTURES = path.join(ROOT, 'protocol/test/fixtures');
const fixtureHex = (name: string) => readFileSync(path.join(FIXTURES, name), 'utf8').trim();

function meshport(args: string[], input?: string | Buffer) {
  const r = spawnSync(process.execPath, [BIN, ...args], { input, env: { ...process.env, NO_COLOR: '1' } });
  return { code: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

describe('meshport: a conventional command line', function () {
  this.timeout(20_000);

  it('COMMAND --help prints that command’s usage and options only, exit 0', () => {
    const decode = meshport(['decode', '--help']);
    assert.equal(decode.code, 0, decode.stderr);
    assert.match(decode.stdout, /^Usage: meshport decode \[options\]/);
    assert.match(decode.stdout, /--hex <HEX>/);
    assert.doesNotMatch(decode.stdout, /--listen|--upstream|--config|hijack/);
    const tap = meshport(['tap', '--help']);
    assert.match(tap.stdout, /^Usage: meshport tap \[options\]/);
    assert.match(tap.stdout, /--listen <ADDR>/);
    assert.doesNotMatch(tap.stdout, /--hex|--config/);
    const sidecar = meshport(['help', 'sidecar']);
    assert.equal(sidecar.code, 0);
    assert.match(sidecar.stdout, /^Usage: meshport sidecar \[options\][\s\S]*--check[\s\S]*--log-level <LEVEL>/);
    assert.doesNotMatch(sidecar.stdout, /--hex|--listen/);
    const hijack = meshport(['help', 'hijack']);
    assert.equal(hijack.code, 0);
    assert.match(hijack.stdout, /meshport hijack apply\|remove/);
    const nope = meshport(['help', 'nope']);
    assert.equal(nope.code, 2);
    assert.equal(nope.stderr, "meshport: unknown command 'nope'\nRun 'meshport --help' for usage.\n");
  });

  it('an option the command does not take is an error naming the command, exit 2', () => {
    for (const [args, option] of [
      [['decode', '--listen', '1', '--hex', '01'], '--listen'],
      [['decode', '--config', 'x', '--hex', '01'], '--config'],
      [['tap', '--hex', '01', '--listen', '1', '--upstream', '2'], '--hex'],
      [['sidecar', '--json'], '--json'],
    ] as const) {
      const r = meshport([...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(
        r.stderr,
        `meshport ${args[0]}: unknown option '${option}'\nRun 'meshport ${args[0]} --help' for usage.\n`,
      );
      assert.equal(r.stdout, '');
    }
  });

  it('--version and -V print the version of the package, exit 0', () => {
    const { version } = JSON.parse(readFileSync(path.resolve(__dirname, '../../package.json'), 'utf8')) as {
      version: string;
    };
    for (const flag of ['--version', '-V']) {
      const r = meshport([flag]);
      assert.equal(r.code, 0);
      assert.equal(r.stdout, `${version}\n`);
    }
  });

  it('decode --file - reads stdin', () => {
    const r = meshport(['decode', '--json', '--file', '-'], fixtureHex('bolt-v1-heartbeat.hex'));
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { kind: string }).kind, 'heartbeat');
  });

  it('decode --body: a body no decoder reads is noted under its header, and the next frame is decoded', () => {
    const request = Buffer.from(fixtureHex('bolt-v1-request.hex'), 'hex');
    const protobuf = Buffer.from(request);
    protobuf[9] = BoltCodec.PROTOBUF; // Bolt v1: the codec byte
    const input = Buffer.concat([protobuf, request, encodeBoltHeartbeat(3)]).toString('hex');
    const json = meshport(['decode', '--json', '--body', '--hex', input]);
    assert.equal(json.code, 0, json.stderr);
    const lines = json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(
      lines.map((l) => [l.kind, l.serialization, l.bodyNote, Array.isArray(l.body)]),
      [
        ['request', 'protobuf', 'body not decoded: no body decoder for serialization protobuf', false],
        ['request', 'hessian2', undefined, true],
        ['heartbeat', 'hessian2', undefined, true],
      ],
    );
    const text = meshport(['decode', '--body', '--hex', input]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(
      text.stdout,
      /#1 @0 bolt v1 request id=7[\s\S]*body not decoded: no body decoder for serialization protobuf\n#2 /,
    );
  });

  it('decode --body: a body its decoder finds broken is bad input, after the frame’s header is shown', () => {
    const request = Buffer.from(fixtureHex('bolt-v1-request.hex'), 'hex');
    request[request.length - 6] = 0xfe;
    request[request.length - 5] = 0xff;
    const r = meshport(['decode', '--json', '--body', '--hex', request.toString('hex')]);
    assert.equal(r.code, 1);
    assert.equal((JSON.parse(r.stdout) as { kind: string }).kind, 'request');
    assert.match(r.stderr, /^meshport decode: MESHPORT_BODY_UNDECODABLE: hessian body: /);
  });

  it('decode: a truncated frame names the length its header declares as well as what the input held', () => {
    const hex = fixtureHex('bolt-v1-request.hex');
    const r = meshport(['decode', '--hex', hex.slice(0, 100)]);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      `meshport decode: MESHPORT_FRAME_TRUNCATED: the input ends inside a frame: its header declares ${hex.length / 2} bytes, the input holds 50 (${hex.length / 2 - 50} missing) (at byte 50)\n`,
    );
    const header = meshport(['decode', '--hex', hex.slice(0, 20)]);
    assert.match(
      header.stderr,
      /MESHPORT_FRAME_TRUNCATED: the input ends inside a frame header: 10 of its 22 bytes \(at byte 10\)/,
    );
  });

  describe('sidecar --check, --log-level, --log-format', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(path.join(tmpdir(), 'meshport-cli-check-'));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('--check: a good config exits 0 and starts nothing; a bad one exits 2 with every problem', async () => {
      const admin = await freePort();
      const good = path.join(dir, 'good.yaml');
      writeFileSync(
        good,
        `admin: 127.0.0.1:${admin}\nlisteners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }\n`,
      );
      const ok = meshport(['sidecar', '--check', '--config', good]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /good\.yaml is good: .*admin 127\.0\.0\.1:\d+, 1 registry \(file\)/);
      // Nothing is left listening on the admin port.
      await new Promise<void>((resolve, reject) => {
        const probe = net.createServer().once('error', reject);
        probe.listen(admin, '127.0.0.1', () => probe.close(() => resolve()));
      });

      const held = net.createServer();
      await new Promise<void>((resolve) => held.listen(0, '127.0.0.1', () => resolve()));
      const port = (held.address() as net.AddressInfo).port;
      try {
        const bad = path.join(dir, 'bad.yaml');
        writeFileSync(
          bad,
          [
            `admin: 127.0.0.1:${port}`,
            'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
            'registries:',
            '  - { name: zk, type: zookeepr, upstream: "127.0.0.1:1" }',
          ].join('\n'),
        );
        const r = meshport(['sidecar', '--check', '--config', bad]);
        assert.equal(r.code, 2);
        const lines = r.stderr.trim().split('\n');
        assert.equal(lines.length, 2, r.stderr);
        assert.equal(
          lines[0],
          `meshport sidecar: MESHPORT_ADDRESS_UNAVAILABLE: ${bad}:1: admin: 127.0.0.1:${port} is in use (another process listens there)`,
        );
        assert.match(
          lines[1]!,
          /^meshport sidecar: MESHPORT_PLUGIN_INVALID: .*bad\.yaml:4: registries\[0\]\.type: registry plugin 'zookeepr' cannot be found: .*\(did you mean type: zookeeper\?\)$/,
        );
        assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      } finally {
        held.close();
      }

      const broken = path.join(dir, 'broken.yaml');
      writeFileSync(broken, 'admin: 10.0.0.1:1\nlog: { level: loud }\n');
      const both = meshport(['sidecar', '--check', '--config', broken]);
      assert.equal(both.code, 2);
      assert.equal(both.stderr.trim().split('\n').length, 2, 'both mistakes, at once');
    });

    it('--log-level overrides the config, --log-format pretty writes one readable line per entry', async () => {
      const admin = await freePort();
      const config = path.join(dir, 'meshport.yaml');
      writeFileSync(
        config,
        `admin: 127.0.0.1:${admin}\nlisteners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }\nlog: { level: info }\n`,
      );
      const run = async (args: string[], hangup = false) => {
        const child = spawn(process.execPath, [BIN, 'sidecar', '--config', config, ...args], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
        const deadline = Date.now() + 15_000;
        for (;;) {
          const up = await fetch(`http://127.0.0.1:${admin}/healthz`).then(
            (r) => r.ok,
            () => false,
          );
          if (up) break;
          assert.ok(Date.now() < deadline, `the admin port never answered:\n${out}`);
          await sleep(50);
        }
        if (hangup) {
          child.kill('SIGHUP');
          await sleep(500);
        }
        child.kill('SIGTERM');
        assert.equal(await exited, 0, out);
        return out;
      };
      // Nothing at info, a reload (SIGHUP) included: the flag still wins over the file's log.level.
      assert.equal(await run(['--log-level', 'error'], true), '', 'nothing at info');
      const pretty = await run(['--log-format', 'pretty']);
      assert.match(
        pretty,
        /^\d\d:\d\d:\d\d\.\d{3} INFO {2}meshport sidecar running inbound=\{"host":"127\.0\.0\.1","port":\d+\}/m,
      );
      assert.doesNotMatch(pretty, /^\{/m, 'no JSON line');
    });
  });

  describe('tap', () => {
    it('--listen :PORT and PORT listen on loopback, as the README shows', () => {
      assert.deepEqual(parseHostPort(':12201', '--listen'), { host: '127.0.0.1', port: 12201 });
      assert.deepEqual(parseHostPort('12201', '--listen'), { host: '127.0.0.1', port: 12201 });
      assert.deepEqual(parseHostPort('[::1]:12201', '--listen'), { host: '::1', port: 12201 });
      // Every address in the README's tap examples parses.
      const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
      const commands = [...readme.matchAll(/^npx meshport tap .*$/gm)].map((m) => m[0]);
      assert.ok(commands.length >= 2);
      for (const command of commands) {
        for (const [, flag, value] of command.matchAll(/(--listen|--upstream) (\S+)/g))
          assert.doesNotThrow(() => parseHostPort(value!, flag!), command);
      }
    });

    it('--listen on a busy port: one line naming it, exit 2, no stack trace', async () => {
      const held = net.createServer();
      await new Promise<void>((resolve) => held.listen(0, '127.0.0.1', () => resolve()));
      const port = (held.address() as net.AddressInfo).port;
      try {
        const r = meshport(['tap', '--listen', `:${port}`, '--upstream', '127.0.0.1:1']);
        assert.equal(r.code, 2);
        assert.equal(r.stderr, `meshport tap: --listen 127.0.0.1:${port} is in use (another process listens there)\n`);
      } finally {
        held.close();
      }
    });

    it('--json connection events are objects with their own fields', async () => {
      const upstream = net.createServer((s) => s.pipe(s));
      await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', () => resolve()));
      const upstreamPort = (upstream.address() as net.AddressInfo).port;
      let out = '';
      const io = { stdin: process.stdin, stdout: { write: (t: string) => (out += t) }, stderr: { write: () => true } };
      const tap = await startTap(
        { listen: { host: '127.0.0.1', port: 0 }, upstream: { host: '127.0.0.1', port: upstreamPort }, json: true },
        io,
      );
      try {
        const sock = net.connect(tap.address.port, '127.0.0.1');
        sock.write(Buffer.concat([encodeBoltHeartbeat(1), Buffer.from('no frame')]));
        await new Promise((resolve) => sock.once('data', resolve));
        sock.destroy();
        const deadline = Date.now() + 5000;
        while (!out.includes('"closed"') && Date.now() < deadline) await sleep(20);
      } finally {
        await tap.close();
        upstream.close();
      }
      const events = out
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.event);
      const open = events.find((e) => e.event === 'open')!;
      assert.deepEqual(open.upstream, { host: '127.0.0.1', port: upstreamPort });
      assert.equal((open.client as { host: string }).host, '127.0.0.1');
      assert.equal(typeof (open.client as { port: number }).port, 'number');
      const undecodable = events.filter((e) => e.event === 'undecodable');
      assert.ok(undecodable.length >= 1);
      assert.equal(undecodable[0]!.code, 'MESHPORT_BAD_MAGIC');
      assert.equal(undecodable[0]!.offset, 22);
      // The echo sends the heartbeat back as a heartbeat, not an ack: one request never answered.
      assert.equal(events.find((e) => e.event === 'closed')!.unanswered, 1);
      for (const e of events) assert.ok(typeof e.ts === 'string' && typeof e.conn === 'number');
    });
  });

  it("the README's CLI table has a row for every command", () => {
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const table = readme.slice(
      readme.indexOf('## CLI reference'),
      readme.indexOf('\n## ', readme.indexOf('## CLI reference') + 1),
    );
    const names = buildProgram(
      { stdin: process.stdin, stdout: { write: () => true }, stderr: { write: () => true } },
      () => {},
    ).commands.map((c) => c.name());
    assert.deepEqual([...names].sort(), ['ca', 'decode', 'demo', 'doctor', 'hijack', 'sidecar', 'tap', 'top']);
    for (const name of names)
      assert.match(table, new RegExp(`^\\| \`meshport ${name}[ \`]`, 'm'), `a row for meshport ${name}`);
    assert.match(table, /meshport --version/);
  });

  it('docs/errors.md lists every exit code the command gives', () => {
    const doc = readFileSync(path.join(ROOT, 'docs/errors.md'), 'utf8');
    const section = doc.slice(doc.indexOf('## Exit codes of `meshport`'), doc.indexOf('\n## @meshport/'));
    const rows = [...section.matchAll(/^\| (\d+) \| (.+?) \| (.+) \|$/gm)].map((m) => ({
      exit: Number(m[1]),
      commands: m[2]!,
      when: m[3]!,
    }));
    const documented = (exit: number, command: string) =>
      rows.some((r) => r.exit === exit && (r.commands === 'every command' || r.commands.includes(`\`${command}\``)));
    // One real case of each exit the command gives (demo, hijack and doctor need a kernel and are covered by their suites).
    const hex = fixtureHex('bolt-v1-request.hex');
    const cases: [string[], string][] = [
      [['decode', '--hex', hex], 'decode'],
      [['decode', '--hex', hex.slice(0, 40)], 'decode'],
      [['decode', '--nope'], 'decode'],
      [['--version'], 'decode'],
      [['sidecar', '--check', '--config', '/nonexistent/meshport.yaml'], 'sidecar'],
      [['tap', '--listen', 'x:y', '--upstream', '127.0.0.1:1'], 'tap'],
    ];
    const seen = new Set<number>();
    for (const [args, command] of cases) {
      const r = meshport(args);
      seen.add(r.code!);
      assert.ok(documented(r.code!, command), `exit ${r.code} of meshport ${args.join(' ')} is in docs/errors.md`);
    }
    assert.deepEqual([...seen].sort(), [0, 1, 2]);
    for (const exit of [0, 1, 2, 130])
      assert.ok(
        rows.some((r) => r.exit === exit),
        `exit ${exit} has a row`,
      );
  });
});
