// The socket addon against a real kernel: SO_ORIGINAL_DST behind REDIRECT, IP_TRANSPARENT behind TPROXY, SO_MARK,
// argument checks and the not-built path. Traffic stays on loopback or inside network namespaces made here.

import { strict as assert } from 'node:assert';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { skipOrFail } from '@meshport/testkit';
import { connectMarked, getMark, getOriginalDst, probeSocketFeatures, setMark, transparentListen } from '../src/index';
import { bpfLoad, bpfOriginalDst, bpfAttach, bpfDetach, bpfStats, type BpfProgramName } from '../src/bpf';
import { NOT_BUILT_REASON, loadAddon, requireOps } from '../src/native';

// dist/test/socket.test.js -> test/fixtures (plain JS, run by child processes inside namespaces)
const FIXTURES = path.resolve(__dirname, '..', '..', 'test', 'fixtures');

/** What every argument error of the package carries besides its name and message. */
const BAD_ARGUMENT = { code: 'MESHPORT_SOCKET_BAD_ARGUMENT' } as const;
/** Numbers no integer option may take: each must be refused with the option's name, never cast. */
const NOT_AN_INTEGER_IN_RANGE = [Number.NaN, Infinity, -Infinity, -1, 2 ** 32, 1.5];

/** Every namespace this run created, so the last hook can prove none is left behind. */
const createdNamespaces = new Set<string>();
/** Fixture processes still running, killed (by pid, ours only) when a test fails half-way. */
const runningFixtures = new Set<ChildProcess>();

function run(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs every cleanup step even when one fails, newest first; throws the first failure at the end. */
function unwind(steps: Array<() => void>): void {
  let first: unknown;
  while (steps.length > 0) {
    const step = steps.pop()!;
    try {
      step();
    } catch (err) {
      first ??= err;
    }
  }
  if (first !== undefined) throw first;
}

/** A missing kernel feature or tool skips locally and fails in CI, where a silent skip would hide a regression. */
function featureMissing(ctx: Mocha.Context, reason: string): never {
  return skipOrFail(ctx, `kernel feature missing: ${reason}`);
}

function describeError(err: unknown): string {
  const e = err as { message?: string; stderr?: string };
  return `${e.message ?? String(err)}${e.stderr ? `: ${e.stderr}` : ''}`;
}

/** Creates `meshport-sock-<random>` with lo up and registers its removal in `cleanup`. */
function createNamespace(ctx: Mocha.Context, cleanup: Array<() => void>): string {
  const name = `meshport-sock-${randomBytes(4).toString('hex')}`;
  try {
    run('ip', ['netns', 'add', name]);
  } catch (err) {
    featureMissing(ctx, `cannot create a network namespace (root and iproute2 needed): ${describeError(err)}`);
  }
  createdNamespaces.add(name);
  cleanup.push(() => run('ip', ['netns', 'del', name]));
  run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return name;
}

/**
 * Adds an iptables rule inside `ns` and registers its deletion (the namespace's removal would drop it too; deleting
 * it explicitly keeps the cleanup honest if the namespace removal is ever changed).
 */
function addIptablesRule(
  ctx: Mocha.Context,
  cleanup: Array<() => void>,
  ns: string,
  table: string,
  rule: string[],
): void {
  try {
    run('ip', ['netns', 'exec', ns, 'iptables', '-t', table, '-A', ...rule]);
  } catch (err) {
    featureMissing(ctx, `iptables -t ${table} ${rule.join(' ')}: ${describeError(err)}`);
  }
  cleanup.push(() => run('ip', ['netns', 'exec', ns, 'iptables', '-t', table, '-D', ...rule]));
}

/** The ip6tables twin of addIptablesRule (nat table). */
function addIptables6Rule(ctx: Mocha.Context, cleanup: Array<() => void>, ns: string, rule: string[]): void {
  try {
    run('ip', ['netns', 'exec', ns, 'ip6tables', '-t', 'nat', '-A', ...rule]);
  } catch (err) {
    featureMissing(ctx, `ip6tables -t nat ${rule.join(' ')}: ${describeError(err)}`);
  }
  cleanup.push(() => run('ip', ['netns', 'exec', ns, 'ip6tables', '-t', 'nat', '-D', ...rule]));
}

/** One line of fixture output. */
type Json = Record<string, any>;

/** A fixture runner as a child process (inside `ns` when given) whose stdout is one JSON object per line. */
class Fixture {
  readonly child: ChildProcess;
  private readonly lines: Json[] = [];
  private readonly waiters: Array<{ resolve: (value: Json) => void; reject: (err: Error) => void }> = [];
  private stderr = '';
  private exitCode: number | null | undefined;
  readonly exited: Promise<number | null>;

  constructor(ns: string | null, script: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
    const node = [process.execPath, path.join(FIXTURES, script), ...args];
    this.child =
      ns === null ? spawn(node[0]!, node.slice(1), { env }) : spawn('ip', ['netns', 'exec', ns, ...node], { env });
    runningFixtures.add(this.child);
    let pending = '';
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk;
      let newline: number;
      while ((newline = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, newline).trim();
        pending = pending.slice(newline + 1);
        if (line.length > 0) this.push(JSON.parse(line) as Json);
      }
    });
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code) => {
        runningFixtures.delete(this.child);
        this.exitCode = code;
        for (const waiter of this.waiters.splice(0)) {
          waiter.reject(new Error(`${script} exited (${code}) before reporting; stderr: ${this.stderr}`));
        }
        resolve(code);
      });
    });
  }

  private push(line: Json): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve(line);
    else this.lines.push(line);
  }

  /** The next JSON line the fixture prints. */
  next(): Promise<Json> {
    const line = this.lines.shift();
    if (line) return Promise.resolve(line);
    if (this.exitCode !== undefined) return Promise.reject(new Error(`fixture already exited; stderr: ${this.stderr}`));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
}

/** Runs a fixture to completion and returns its one result line. */
async function runFixture(
  ns: string | null,
  script: string,
  args: string[] = [],
  env?: NodeJS.ProcessEnv,
): Promise<Json> {
  const fixture = new Fixture(ns, script, args, env);
  const result = await fixture.next();
  await fixture.exited;
  return result;
}

function listen(server: net.Server, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve((server.address() as net.AddressInfo).port));
  });
}

/** A connected loopback pair in this process: [client, accepted]. */
async function loopbackPair(cleanup: Array<() => void>): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer();
  cleanup.push(() => server.close());
  const port = await listen(server, '127.0.0.1');
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect(port, '127.0.0.1');
  cleanup.push(() => client.destroy());
  await new Promise<void>((resolve, reject) => client.once('connect', resolve).once('error', reject));
  const conn = await accepted;
  cleanup.push(() => conn.destroy());
  return [client, conn];
}

describe('@meshport/socket', () => {
  after(() => {
    for (const child of runningFixtures) child.kill('SIGKILL');
    const left = run('ip', ['netns', 'list']);
    const leaked = [...createdNamespaces].filter((name) => left.includes(name));
    assert.deepEqual(leaked, [], `namespaces left behind: ${leaked.join(', ')}`);
  });

  describe('probeSocketFeatures', () => {
    it('finds SO_ORIGINAL_DST, IP_TRANSPARENT and SO_MARK usable by really setting them', function () {
      const features = probeSocketFeatures();
      for (const [name, feature] of Object.entries(features)) {
        assert.equal(typeof feature.supported, 'boolean', name);
        if (!feature.supported) featureMissing(this, `${name}: ${feature.reason}`);
      }
      assert.deepEqual(Object.keys(features).sort(), ['mark', 'originalDst', 'transparent']);
    });
  });

  describe('getOriginalDst behind iptables REDIRECT', () => {
    const cleanup: Array<() => void> = [];
    let ns = '';
    const capturePort = '15001';

    before(function () {
      ns = createNamespace(this, cleanup);
      // 198.18.0.9 must be routable for the connect() to reach nat OUTPUT; owning it on lo is the simplest route.
      run('ip', ['-n', ns, 'addr', 'add', '198.18.0.9/32', 'dev', 'lo']);
      addIptablesRule(this, cleanup, ns, 'nat', [
        'OUTPUT',
        '-p',
        'tcp',
        '-d',
        '198.18.0.9',
        '--dport',
        '80',
        '-j',
        'REDIRECT',
        '--to-ports',
        capturePort,
      ]);
      // Only SYNs that already carry mark 7 are redirected from port 81: proves connectMarked marks before connect().
      addIptablesRule(this, cleanup, ns, 'nat', [
        'OUTPUT',
        '-p',
        'tcp',
        '-d',
        '198.18.0.9',
        '--dport',
        '81',
        '-m',
        'mark',
        '--mark',
        '0x7',
        '-j',
        'REDIRECT',
        '--to-ports',
        capturePort,
      ]);
    });
    after(() => {
      unwind(cleanup);
    });

    it('returns the destination the client dialled, and the redirected connection carries data', async () => {
      const result = await runFixture(ns, 'redirect-capture.js', ['127.0.0.1', capturePort, '198.18.0.9', '80']);
      assert.equal(result.clientError, undefined, JSON.stringify(result.clientError));
      assert.deepEqual(result.accepted, {
        originalDst: { address: '198.18.0.9', port: 80, family: 'IPv4' },
        localPort: 15001,
      });
      assert.equal(result.echoed, 'ping');
      assert.equal(result.clientMark, 0);
    });

    it('connectMarked sends the SYN already marked, so a mark-matching rule redirects it', async () => {
      const marked = await runFixture(ns, 'redirect-capture.js', ['127.0.0.1', capturePort, '198.18.0.9', '81', '7']);
      assert.equal(marked.clientError, undefined, JSON.stringify(marked.clientError));
      assert.deepEqual(marked.accepted.originalDst, { address: '198.18.0.9', port: 81, family: 'IPv4' });
      assert.equal(marked.echoed, 'ping');
      assert.equal(marked.clientMark, 7);

      const unmarked = await runFixture(ns, 'redirect-capture.js', ['127.0.0.1', capturePort, '198.18.0.9', '81']);
      assert.equal(unmarked.accepted, undefined);
      assert.equal(unmarked.clientError.code, 'ECONNREFUSED');
    });

    it('answers for IPv4 connections accepted by a dual-stack listener on "::" (IPv4-mapped local address)', async () => {
      const result = await runFixture(ns, 'redirect-capture.js', ['::', capturePort, '198.18.0.9', '80']);
      assert.equal(result.clientError, undefined, JSON.stringify(result.clientError));
      assert.deepEqual(result.accepted.originalDst, { address: '198.18.0.9', port: 80, family: 'IPv4' });
      assert.equal(result.echoed, 'ping');
    });

    it('uses IP6T_SO_ORIGINAL_DST for IPv6 connections behind ip6tables REDIRECT', async function () {
      // Loopback only: ::1 port 80 redirected to the capture port on ::1.
      addIptables6Rule(this, cleanup, ns, [
        'OUTPUT',
        '-p',
        'tcp',
        '-d',
        '::1',
        '--dport',
        '80',
        '-j',
        'REDIRECT',
        '--to-ports',
        capturePort,
      ]);
      const result = await runFixture(ns, 'redirect-capture.js', ['::1', capturePort, '::1', '80']);
      assert.equal(result.clientError, undefined, JSON.stringify(result.clientError));
      assert.deepEqual(result.accepted, {
        originalDst: { address: '::1', port: 80, family: 'IPv6' },
        localPort: 15001,
      });
      assert.equal(result.echoed, 'ping');
    });
  });

  describe('getOriginalDst without NAT', () => {
    const cleanup: Array<() => void> = [];
    let ns = '';

    // A namespace with no NAT rule has no conntrack entries, whatever the host's own netfilter set-up is.
    before(function () {
      ns = createNamespace(this, cleanup);
    });
    after(() => {
      unwind(cleanup);
    });

    it('throws ENOENT from getsockopt for a plain loopback connection', async () => {
      const result = await runFixture(ns, 'plain-loopback.js');
      assert.equal(result.originalDst, undefined, JSON.stringify(result.originalDst));
      assert.equal(result.error.code, 'ENOENT');
      assert.equal(result.error.errno, 2);
      assert.equal(result.error.syscall, 'getsockopt');
      assert.match(result.error.message, /no NAT or hook record/);
    });
  });

  describe('transparentListen', () => {
    const cleanup: Array<() => void> = [];
    afterEach(() => {
      unwind(cleanup);
    });

    it('binds an address this host does not own, which only IP_TRANSPARENT allows', async () => {
      // No traffic: the socket only binds and listens.
      const server = transparentListen({ host: '198.18.0.77', port: 0 });
      cleanup.push(() => server.close());
      await new Promise<void>((resolve, reject) => server.once('listening', resolve).once('error', reject));
      const address = server.address() as net.AddressInfo;
      assert.equal(address.address, '198.18.0.77');
      assert.ok(address.port > 0);

      if (fs.readFileSync('/proc/sys/net/ipv4/ip_nonlocal_bind', 'utf8').trim() === '0') {
        const plain = net.createServer();
        cleanup.push(() => plain.close());
        await assert.rejects(listen(plain, '198.18.0.77'), { code: 'EADDRNOTAVAIL' });
      }
    });

    it('throws bind errors synchronously with errno, code and syscall', async () => {
      const taken = net.createServer();
      cleanup.push(() => taken.close());
      const port = await listen(taken, '127.0.0.1');
      assert.throws(() => transparentListen({ host: '127.0.0.1', port }), {
        code: 'EADDRINUSE',
        errno: 98,
        syscall: 'bind',
      });
    });
  });

  describe('transparentListen behind TPROXY, from another namespace over a veth pair', () => {
    const cleanup: Array<() => void> = [];
    let sidecar = '';
    let client = '';
    const listenPort = '15006';

    before(function () {
      sidecar = createNamespace(this, cleanup);
      client = createNamespace(this, cleanup);
      // Created inside the namespaces, so the pair never appears in the host's namespace.
      try {
        run('ip', [
          '-n',
          sidecar,
          'link',
          'add',
          'mp-side',
          'type',
          'veth',
          'peer',
          'name',
          'mp-client',
          'netns',
          client,
        ]);
      } catch (err) {
        featureMissing(this, `veth: ${describeError(err)}`);
      }
      cleanup.push(() => run('ip', ['-n', sidecar, 'link', 'del', 'mp-side']));
      run('ip', ['-n', sidecar, 'addr', 'add', '198.18.1.1/24', 'dev', 'mp-side']);
      run('ip', ['-n', sidecar, 'link', 'set', 'mp-side', 'up']);
      run('ip', ['-n', client, 'addr', 'add', '198.18.1.2/24', 'dev', 'mp-client']);
      run('ip', ['-n', client, 'link', 'set', 'mp-client', 'up']);
      run('ip', ['-n', client, 'route', 'add', '198.18.0.20/32', 'via', '198.18.1.1']);

      addIptablesRule(this, cleanup, sidecar, 'mangle', [
        'PREROUTING',
        '-p',
        'tcp',
        '-d',
        '198.18.0.20',
        '--dport',
        '9000',
        '-j',
        'TPROXY',
        '--on-port',
        listenPort,
        '--tproxy-mark',
        '1',
      ]);
      run('ip', ['-n', sidecar, 'rule', 'add', 'fwmark', '1', 'lookup', '100']);
      cleanup.push(() => run('ip', ['-n', sidecar, 'rule', 'del', 'fwmark', '1', 'lookup', '100']));
      run('ip', ['-n', sidecar, 'route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '100']);
      cleanup.push(() => run('ip', ['-n', sidecar, 'route', 'del', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '100']));
    });
    after(() => {
      for (const child of runningFixtures) child.kill('SIGKILL');
      unwind(cleanup);
    });

    it('accepts with the original destination as local address and the client as remote address', async () => {
      const listener = new Fixture(sidecar, 'tproxy-listener.js', [listenPort]);
      try {
        const ready = await listener.next();
        assert.equal(ready.error, undefined, JSON.stringify(ready.error));
        assert.deepEqual(ready.listening, { address: '0.0.0.0', family: 'IPv4', port: 15006 });

        const dialled = await runFixture(client, 'tproxy-client.js', ['198.18.0.20', '9000']);
        assert.equal(dialled.error, undefined, JSON.stringify(dialled.error));
        assert.equal(dialled.reply, 'pong');

        const { accepted } = await listener.next();
        assert.deepEqual(accepted, {
          localAddress: '198.18.0.20',
          localPort: 9000,
          remoteAddress: '198.18.1.2',
          remotePort: dialled.localPort,
          data: 'ping',
        });
      } finally {
        listener.child.kill('SIGKILL');
        await listener.exited;
      }
    });
  });

  describe('setMark / getMark', () => {
    const cleanup: Array<() => void> = [];
    afterEach(() => {
      unwind(cleanup);
    });

    it('reads back the mark that was set, the full 32 bits', async () => {
      const [client, conn] = await loopbackPair(cleanup);
      assert.equal(getMark(conn), 0);
      setMark(conn, 0x1234abcd);
      assert.equal(getMark(conn), 0x1234abcd);
      setMark(client, 0xffffffff);
      assert.equal(getMark(client), 0xffffffff);
    });
  });

  describe('argument checks', () => {
    const cleanup: Array<() => void> = [];
    afterEach(() => {
      unwind(cleanup);
    });

    it('rejects bad marks (RangeError) and non-sockets (TypeError), naming the argument with a stable code', async () => {
      const [, conn] = await loopbackPair(cleanup);
      for (const mark of [-1, 1.5, 2 ** 32, Number.NaN, Infinity]) {
        assert.throws(() => setMark(conn, mark), {
          ...BAD_ARGUMENT,
          name: 'RangeError',
          argument: 'mark',
          message: /setMark: mark must be an integer from 0 to 0xffffffff/,
        });
      }
      assert.throws(() => setMark(conn, '1' as unknown as number), {
        ...BAD_ARGUMENT,
        name: 'TypeError',
        argument: 'mark',
      });
      assert.throws(() => getOriginalDst({} as net.Socket), {
        ...BAD_ARGUMENT,
        name: 'TypeError',
        argument: 'socket',
        message: /must be a net\.Socket/,
      });
      assert.throws(() => getMark(null as unknown as net.Socket), {
        ...BAD_ARGUMENT,
        name: 'TypeError',
        argument: 'socket',
        message: /must be a net\.Socket/,
      });
    });

    it('says so when the socket has no file descriptor', () => {
      const unconnected = new net.Socket();
      const noDescriptor = { name: 'SocketError', code: 'MESHPORT_SOCKET_NO_DESCRIPTOR' };
      assert.throws(() => getOriginalDst(unconnected), {
        ...noDescriptor,
        message: /^getOriginalDst: the socket has no file descriptor/,
      });
      assert.throws(() => setMark(unconnected, 1), {
        ...noDescriptor,
        message: /^setMark: the socket has no file descriptor/,
      });
    });

    it('rejects bad transparentListen and connectMarked options, naming the argument', () => {
      const bad: Array<[() => unknown, string, string, RegExp]> = [
        [() => transparentListen(undefined as never), 'TypeError', 'options', /options must be an object/],
        [
          () => transparentListen({ host: 'localhost', port: 0 }),
          'TypeError',
          'host',
          /host must be a numeric IPv4 or IPv6 address/,
        ],
        [
          () => transparentListen({ host: '127.0.0.1', port: 70000 }),
          'RangeError',
          'port',
          /port must be an integer from 0 to 65535/,
        ],
        [
          () => transparentListen({ host: '127.0.0.1', port: 0, backlog: -1 }),
          'RangeError',
          'backlog',
          /backlog must be an integer from 0/,
        ],
        [
          () => transparentListen({ host: '127.0.0.1', port: 0, family: 5 as 4 }),
          'TypeError',
          'family',
          /family must be 4 or 6/,
        ],
        [
          () => transparentListen({ host: '127.0.0.1', port: 0, family: 6 }),
          'TypeError',
          'host',
          /host must be an IPv6 address/,
        ],
        [() => connectMarked({ host: '', port: 80, mark: 1 }), 'TypeError', 'host', /host must be a non-empty string/],
        [
          () => connectMarked({ host: '127.0.0.1', port: 0, mark: 1 }),
          'RangeError',
          'port',
          /port must be an integer from 1 to 65535/,
        ],
        [
          () => connectMarked({ host: '127.0.0.1', port: 80, mark: -5 }),
          'RangeError',
          'mark',
          /mark must be an integer/,
        ],
      ];
      for (const [call, name, argument, message] of bad)
        assert.throws(call, { ...BAD_ARGUMENT, name, argument, message });
    });

    it('the addon itself checks its arguments and reports errno, code and syscall', () => {
      const ops = requireOps();
      assert.throws(() => ops.getOriginalDst('3' as unknown as number), {
        ...BAD_ARGUMENT,
        name: 'TypeError',
        argument: 'fd',
        message: /^fd must be an integer/,
      });
      assert.throws(() => ops.setMark(0, 2 ** 33), {
        ...BAD_ARGUMENT,
        name: 'RangeError',
        argument: 'mark',
        message: /^mark must be an integer/,
      });
      assert.throws(() => ops.createTransparentListener('not-an-ip', 0, 1, 4), {
        ...BAD_ARGUMENT,
        name: 'TypeError',
        argument: 'host',
        message: /numeric IPv4/,
      });
      assert.throws(() => ops.createTransparentListener('127.0.0.1', 0, 1, 5 as 4), {
        ...BAD_ARGUMENT,
        name: 'RangeError',
        argument: 'family',
        message: /family must be 4 or 6/,
      });
      const notASocket = fs.openSync('/dev/null', 'r');
      try {
        assert.throws(() => ops.getMark(notASocket), { code: 'ENOTSOCK', errno: 88, syscall: 'getsockopt' });
        assert.throws(() => ops.getOriginalDst(notASocket), { code: 'ENOTSOCK', syscall: 'getsockname' });
      } finally {
        fs.closeSync(notASocket);
      }
    });
  });

  describe('errors (issue 14)', () => {
    type Addon = Record<string, (...args: unknown[]) => any>;
    const native = (): Addon => {
      const loaded = loadAddon();
      assert.ok(loaded.loaded, 'the addon is built');
      return loaded.ops as unknown as Addon;
    };

    it('names errnos as libuv does, and Linux-only ones (ENOTSUPP 524, ENOLINK) by their Linux name, never UNKNOWN', () => {
      const cases: Array<[number, string]> = [
        [524, 'ENOTSUPP'],
        [67, 'ENOLINK'],
        [28, 'ENOSPC'],
        [1, 'EPERM'],
        [13, 'EACCES'],
        [95, 'ENOTSUP'],
        [38, 'ENOSYS'],
      ];
      for (const [errno, code] of cases) {
        const err = native()._errnoError(errno, 'bpf_link_create') as NodeJS.ErrnoException;
        assert.ok(err instanceof Error);
        assert.deepEqual(
          { errno: err.errno, code: err.code, syscall: err.syscall },
          { errno, code, syscall: 'bpf_link_create' },
        );
        assert.match(err.message, new RegExp(`^bpf_link_create failed: .*\\(${code}\\)$`));
      }
      assert.equal(native()._errnoError(4000, 'x').code, 'UNKNOWN');
    });

    it('a real EPERM carries errno, code and syscall (SO_MARK as an unprivileged user)', function () {
      if (process.getuid?.() !== 0) this.skip();
      const addonPath = loadAddon().path;
      const script = `const a = require(${JSON.stringify(addonPath)});
try { a.createMarkedSocket(4, 1); console.log('{}'); }
catch (e) { console.log(JSON.stringify({ errno: e.errno, code: e.code, syscall: e.syscall, message: e.message })); }`;
      const out = execFileSync(process.execPath, ['-e', script], { uid: 65534, gid: 65534, encoding: 'utf8' });
      const err = JSON.parse(out) as Json;
      assert.deepEqual(
        { errno: err.errno, code: err.code, syscall: err.syscall },
        { errno: 1, code: 'EPERM', syscall: 'setsockopt' },
      );
      assert.match(err.message, /Operation not permitted \(EPERM\)/);
    });

    it('the TypeScript side refuses NaN, Infinity, -1, 2^32 and 1.5 for every numeric option, naming it', async () => {
      const cleanup: Array<() => void> = [];
      try {
        const [, conn] = await loopbackPair(cleanup);
        const calls: Array<[string, (n: number) => unknown]> = [
          ['mark', (n) => setMark(conn, n)],
          ['port', (n) => transparentListen({ host: '127.0.0.1', port: n })],
          ['backlog', (n) => transparentListen({ host: '127.0.0.1', port: 0, backlog: n })],
          ['port', (n) => connectMarked({ host: '127.0.0.1', port: n, mark: 1 })],
          ['mark', (n) => connectMarked({ host: '127.0.0.1', port: 80, mark: n })],
          ['config.capturePort', (n) => bpfLoad({ config: { capturePort: n } })],
          ['config.sidecarUid', (n) => bpfLoad({ config: { sidecarUid: n } })],
          ['config.includePorts[0]', (n) => bpfLoad({ config: { includePorts: [n] } })],
          ['config.excludePorts[1]', (n) => bpfLoad({ config: { excludePorts: [80, n] } })],
          ['sockmapMaxEntries', (n) => bpfLoad({ sockmapMaxEntries: n })],
          ['fd', (n) => bpfOriginalDst(n)],
        ];
        for (const [argument, call] of calls) {
          for (const n of NOT_AN_INTEGER_IN_RANGE) {
            assert.throws(() => call(n), { ...BAD_ARGUMENT, name: 'RangeError', argument }, `${argument} = ${n}`);
          }
        }
      } finally {
        unwind(cleanup);
      }
    });

    it('the addon refuses them too, before any cast or syscall', () => {
      const ops = native();
      const objectDir = '/nonexistent-meshport-objects';
      const calls: Array<[string, (n: number) => unknown]> = [
        ['fd', (n) => ops.getOriginalDst(n)],
        ['fd', (n) => ops.getMark(n)],
        ['fd', (n) => ops.setMark(n, 1)],
        ['mark', (n) => ops.setMark(0, n)],
        ['port', (n) => ops.createTransparentListener('127.0.0.1', n, 1, 4)],
        ['backlog', (n) => ops.createTransparentListener('127.0.0.1', 0, n, 4)],
        ['mark', (n) => ops.createMarkedSocket(4, n)],
        ['capturePort', (n) => ops.bpfLoad({ objectDir, config: { capturePort: n } })],
        ['sidecarUid', (n) => ops.bpfLoad({ objectDir, config: { sidecarUid: n } })],
        ['includePorts[0]', (n) => ops.bpfLoad({ objectDir, config: { includePorts: [n] } })],
        ['fd', (n) => ops.bpfOriginalDst(n)],
      ];
      for (const [argument, call] of calls) {
        for (const n of NOT_AN_INTEGER_IN_RANGE) {
          assert.throws(() => call(n), { ...BAD_ARGUMENT, name: 'RangeError', argument }, `${argument} = ${n}`);
        }
      }
      // family is an enumeration, not a range: anything but 4 or 6 is out of range
      for (const n of NOT_AN_INTEGER_IN_RANGE) {
        assert.throws(() => ops.createMarkedSocket(n, 1), { ...BAD_ARGUMENT, name: 'RangeError', argument: 'family' });
      }
    });

    it('argument errors name the argument, not a syscall: bad fd, port, path, programs', () => {
      const ops = native();
      const typeErrors: Array<[string, () => unknown]> = [
        ['fd', () => bpfOriginalDst('3' as unknown as number)],
        ['fd', () => ops.bpfOriginalDst(undefined)],
        ['port', () => transparentListen({ host: '127.0.0.1', port: '80' as unknown as number })],
        ['cgroupPath', () => bpfAttach({ cgroupPath: 42 as unknown as string })],
        ['cgroupPath', () => ops.bpfAttach({ cgroupPath: 42, programs: ['connect4'] })],
        ['pinDir', () => bpfDetach({ pinDir: {} as unknown as string })],
        ['pinDir', () => bpfStats({ pinDir: 7 as unknown as string })],
        ['objectDir', () => bpfLoad({ objectDir: 1 as unknown as string })],
        [
          'programs',
          () => bpfAttach({ cgroupPath: '/sys/fs/cgroup', programs: 'connect4' as unknown as BpfProgramName[] }),
        ],
        ['programs', () => bpfDetach({ programs: {} as unknown as BpfProgramName[] })],
        [
          'programs[1]',
          () => bpfAttach({ cgroupPath: '/sys/fs/cgroup', programs: ['connect4', 'connect5' as BpfProgramName] }),
        ],
        ['programs', () => ops.bpfAttach({ cgroupPath: '/sys/fs/cgroup', programs: 'connect4' })],
        ['programs', () => ops.bpfDetach({ programs: 'connect4' })],
        ['programs[0]', () => ops.bpfDetach({ programs: [7] })],
        // Where native IPv6 connects go: an IPv6 address that can hold a listener, never '::' or IPv4-mapped.
        ['config.captureAddress6', () => bpfLoad({ config: { captureAddress6: '::' } })],
        ['config.captureAddress6', () => bpfLoad({ config: { captureAddress6: '::ffff:127.0.0.1' } })],
        ['config.captureAddress6', () => bpfLoad({ config: { captureAddress6: '127.0.0.1' } })],
        [
          'captureAddress6',
          () => ops.bpfLoad({ objectDir: '/nonexistent-meshport-objects', config: { captureAddress6: '::' } }),
        ],
        [
          'captureAddress6',
          () =>
            ops.bpfLoad({
              objectDir: '/nonexistent-meshport-objects',
              config: { captureAddress6: '::ffff:127.0.0.1' },
            }),
        ],
      ];
      for (const [argument, call] of typeErrors) {
        assert.throws(call, (err: NodeJS.ErrnoException & { argument?: string }) => {
          assert.ok(err instanceof TypeError, `${argument}: ${err.name}: ${err.message}`);
          assert.equal(err.code, BAD_ARGUMENT.code, err.message);
          assert.equal(err.argument, argument, err.message);
          assert.equal(err.syscall, undefined);
          assert.equal(err.errno, undefined);
          assert.match(err.message, new RegExp(`\\b${argument.replace(/[[\]]/g, '\\$&')} must be `));
          return true;
        });
      }
    });
  });

  describe('without the built addon', () => {
    it('loadAddon reports "not built" for a missing file instead of throwing', () => {
      const loaded = loadAddon(path.join(FIXTURES, 'missing', 'meshport_socket.node'));
      assert.equal(loaded.loaded, false);
      assert.equal(!loaded.loaded && loaded.reason, NOT_BUILT_REASON);
    });

    it('imports fine and every call, socket option or BPF, throws NotSupportedError with the reason', async () => {
      const env = { ...process.env, MESHPORT_SOCKET_ADDON: path.join(FIXTURES, 'missing', 'meshport_socket.node') };
      const result = await runFixture(null, 'not-supported.js', [], env);
      assert.deepEqual(result.status, { loaded: false, reason: NOT_BUILT_REASON });
      for (const feature of ['originalDst', 'transparent', 'mark']) {
        assert.deepEqual(result.probe[feature], { supported: false, reason: NOT_BUILT_REASON });
      }
      // The BPF side reads the same MESHPORT_SOCKET_ADDON: with the file missing it has no addon either.
      for (const feature of ['connectHook', 'sockmap']) {
        assert.deepEqual(result.bpfProbe[feature], { supported: false, reason: NOT_BUILT_REASON });
      }
      const calls = [
        'getOriginalDst',
        'setMark',
        'getMark',
        'transparentListen',
        'connectMarked',
        'bpfLoad',
        'bpfStats',
        'bpfAttachments',
      ];
      for (const call of calls) {
        const error = result[call].error;
        assert.deepEqual(
          error && {
            name: error.name,
            code: error.code,
            reason: error.reason,
            message: error.message,
            meshport: error.meshport,
          },
          {
            name: 'NotSupportedError',
            code: 'MESHPORT_SOCKET_NOT_SUPPORTED',
            reason: NOT_BUILT_REASON,
            message: `not supported: ${NOT_BUILT_REASON}`,
            meshport: true,
          },
          `${call}: ${JSON.stringify(result[call])}`,
        );
      }
    });
  });
});
