// Real ZooKeeper and Redis servers for the registry suites: started and stopped by the suites themselves, on
// loopback only, each in its own temp dir. Every child is registered so that a root `after` hook (when loaded by
// mocha) and `process.on('exit')` kill whatever a suite forgot to stop; only the pids started here are touched.

import { ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const HOST = '127.0.0.1';

/** How Debian's libzookeeper-java is put on the classpath (see /etc/zookeeper/conf/environment and zkEnv.sh). */
export const ZOOKEEPER_CLASSPATH = [
  '/etc/zookeeper/conf', // log4j.properties
  '/usr/share/java/zookeeper.jar', // its manifest Class-Path names jute, netty, slf4j-api, jetty, jackson, ...
  '/usr/share/java/slf4j-log4j12.jar', // the slf4j binding, not in the manifest
  '/usr/share/java/log4j-1.2.jar', // log4j 1.2 the binding needs
].join(':');

const JAVA = process.env.MESHPORT_JAVA ?? '/usr/bin/java';
const REDIS_SERVER = process.env.MESHPORT_REDIS_SERVER ?? '/usr/bin/redis-server';
const STOP_GRACE_MS = 5_000;
const OUTPUT_LINES = 60;

// ---------------------------------------------------------------------------------------------------------------
// Bookkeeping: every child we spawn and every temp dir we make, so nothing outlives the test process.

const liveChildren = new Set<ChildProcess>();
const liveDirs = new Set<string>();

/** Synchronously SIGKILLs every child still running and removes every temp dir (safe to call repeatedly). */
export function killAllServersSync(): void {
  for (const child of liveChildren) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  liveChildren.clear();
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  liveDirs.clear();
}

/** Gracefully stops every server still registered (what the root hook runs). */
export async function stopAllServers(): Promise<void> {
  await Promise.all([...liveChildren].map((child) => terminate(child)));
  killAllServersSync();
}

process.on('exit', killAllServersSync);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killAllServersSync();
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  });
}
// A root-level hook when this module is loaded while mocha loads spec files.
if (typeof after === 'function') {
  after('stop servers the suites left running', async function () {
    this.timeout(STOP_GRACE_MS + 5_000);
    await stopAllServers();
  });
}

function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  liveDirs.add(dir);
  return dir;
}

function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  liveDirs.delete(dir);
}

// ---------------------------------------------------------------------------------------------------------------
// Small helpers.

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Free loopback ports, all distinct: each is held open until all are found, then released. */
export async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const server = net.createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, HOST, () => resolve());
      });
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

export async function freePort(): Promise<number> {
  return (await freePorts(1))[0];
}

/** Sends `payload` over plain TCP and returns everything the server writes until it closes (or `until` matches). */
export function tcpExchange(
  port: number,
  payload: string,
  opts: { timeoutMs?: number; until?: (text: string) => boolean } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: HOST, port });
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const timer = setTimeout(() => finish(new Error(`no answer from ${HOST}:${port} within ${opts.timeoutMs ?? 2000} ms`)), opts.timeoutMs ?? 2000);
    socket.on('connect', () => socket.write(payload));
    socket.on('data', (d) => {
      chunks.push(d);
      if (opts.until?.(Buffer.concat(chunks).toString('utf8'))) finish();
    });
    socket.on('end', () => finish());
    socket.on('close', () => finish());
    socket.on('error', (e) => finish(e));
  });
}

/** A ZooKeeper four-letter word (ruok, srvr, stat, mntr). */
export function fourLetterWord(port: number, word: string, timeoutMs = 2000): Promise<string> {
  return tcpExchange(port, word, { timeoutMs });
}

/** Resolves true when nothing accepts connections on the port (ECONNREFUSED). */
export function portRefuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: HOST, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

/** True when a process with this pid exists (signal 0 probe). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A spawned server with the tail of its output kept for error messages. */
interface Spawned {
  child: ChildProcess;
  pid: number;
  tail(): string;
  exited: Promise<void>;
}

function spawnServer(command: string, args: string[], cwd: string): Spawned {
  const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  liveChildren.add(child);
  const lines: string[] = [];
  let partial = '';
  const collect = (d: Buffer) => {
    const parts = (partial + d.toString('utf8')).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
    if (lines.length > OUTPUT_LINES) lines.splice(0, lines.length - OUTPUT_LINES);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      liveChildren.delete(child);
      resolve();
    });
    child.once('error', (e) => {
      lines.push(`spawn error: ${e.message}`);
      liveChildren.delete(child);
      resolve();
    });
  });
  return { child, pid: child.pid ?? -1, tail: () => [...lines, partial].filter(Boolean).join('\n'), exited };
}

/** SIGTERM, then SIGKILL after the grace period; resolves once the child has exited. Only this child's pid. */
async function terminate(child: ChildProcess, graceMs = STOP_GRACE_MS): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    process.kill(child.pid, 'SIGTERM');
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }, graceMs);
  await exited;
  clearTimeout(timer);
  liveChildren.delete(child);
}

/** Polls `probe` until it returns true; fails with the server's output tail if it exits or the time runs out. */
async function waitUntil(what: string, spawned: Spawned, probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void spawned.exited.then(() => (exited = true));
  let lastError = '';
  while (Date.now() < deadline) {
    if (exited) {
      throw new Error(`${what}: process ${spawned.pid} exited before it was ready ` +
        `(code ${spawned.child.exitCode}, signal ${spawned.child.signalCode}). Last output:\n${spawned.tail()}`);
    }
    try {
      if (await probe()) return;
    } catch (e) {
      lastError = (e as Error).message;
    }
    await sleep(100);
  }
  await terminate(spawned.child, 1000);
  throw new Error(`${what}: not ready within ${timeoutMs} ms${lastError ? ` (last probe: ${lastError})` : ''}. ` +
    `Last output:\n${spawned.tail()}`);
}

// ---------------------------------------------------------------------------------------------------------------
// ZooKeeper.

export interface ZooKeeperOptions {
  /** ZooKeeper's tickTime in ms (default 500: fast elections; session timeouts are clamped to 2..20 ticks). */
  tickTime?: number;
  /** How long to wait for `imok` (default 30 s). */
  startTimeoutMs?: number;
}

export interface RunningZooKeeper {
  host: string;
  port: number;
  connectString: string;
  dataDir: string;
  /** The current JVM's pid (changes on restart). */
  pid: number;
  /** Kills the server (SIGTERM, then SIGKILL) and removes its temp dir. */
  stop(): Promise<void>;
  /** Stops the JVM and starts it again on the same port with the same data (after `downMs`, default 0). */
  restart(options?: RestartOptions): Promise<void>;
}

export interface RestartOptions {
  /** How long the server stays down between its exit and the new start. @default 0 */
  downMs?: number;
  /** Called once the old process has exited (when the outage starts). */
  onStopped?: () => void;
}

function javaArgs(dir: string, main: string, cfg: string): string[] {
  return [
    '-Xmx256m',
    '-XX:+UseSerialGC',
    '-XX:TieredStopAtLevel=1',
    '-Djava.net.preferIPv4Stack=true',
    '-Dzookeeper.root.logger=INFO,CONSOLE',
    `-Dzookeeper.log.dir=${dir}`,
    '-Dzookeeper.jmx.log4j.disable=true',
    '-cp',
    ZOOKEEPER_CLASSPATH,
    main,
    cfg,
  ];
}

function zooCfg(lines: Record<string, string | number>): string {
  return Object.entries(lines).map(([k, v]) => `${k}=${v}`).join('\n') + '\n';
}

/** `ruok` answers `imok` as soon as the port is up; `srvr` tells when the server actually serves requests. */
async function isServing(port: number): Promise<boolean> {
  return (await fourLetterWord(port, 'ruok', 1000)) === 'imok' && (await nodeMode(port)) !== undefined;
}

export async function startZooKeeper(options: ZooKeeperOptions = {}): Promise<RunningZooKeeper> {
  const tickTime = options.tickTime ?? 500;
  const startTimeoutMs = options.startTimeoutMs ?? 30_000;
  const dir = makeTempDir('meshport-zk-');
  const dataDir = path.join(dir, 'data');
  mkdirSync(dataDir);
  const port = await freePort();
  const cfg = path.join(dir, 'zoo.cfg');
  writeFileSync(cfg, zooCfg({
    tickTime,
    dataDir,
    clientPort: port,
    clientPortAddress: HOST,
    'admin.enableServer': 'false',
    '4lw.commands.whitelist': 'ruok,stat,srvr,mntr',
    maxClientCnxns: 0,
  }));

  const life = await startRestartable({
    what: `ZooKeeper on ${HOST}:${port}`,
    dir,
    spawn: () => spawnServer(JAVA, javaArgs(dir, 'org.apache.zookeeper.server.ZooKeeperServerMain', cfg), dir),
    ready: () => isServing(port),
    startTimeoutMs,
    goneOnStop: 'ZooKeeper was stopped (its data is gone); start a new one',
  });
  return Object.assign(life, { host: HOST, port, connectString: `${HOST}:${port}`, dataDir });
}

export interface RunningZooKeeperNode {
  /** myid */
  id: number;
  host: string;
  /** client port */
  port: number;
  peerPort: number;
  electionPort: number;
  dataDir: string;
  /** The current JVM's pid, or undefined while the node is stopped. */
  pid: number | undefined;
  readonly running: boolean;
  /** Stops this node's JVM (its data stays, so start()/restart() brings it back). */
  stop(): Promise<void>;
  /** Starts a stopped node and waits until it serves in the quorum. */
  start(): Promise<void>;
  /** stop() + start(). */
  restart(): Promise<void>;
  /** 'leader', 'follower', or undefined if it is not serving. */
  mode(): Promise<string | undefined>;
}

export interface RunningZooKeeperEnsemble {
  host: string;
  connectString: string;
  nodes: RunningZooKeeperNode[];
  /** The node that currently reports Mode: leader. */
  leader(): Promise<RunningZooKeeperNode>;
  /** Waits until a leader exists and every running node serves. */
  waitForQuorum(timeoutMs?: number): Promise<void>;
  /** Stops every node and removes the temp dir. */
  stop(): Promise<void>;
}

async function nodeMode(port: number): Promise<string | undefined> {
  try {
    const m = /^Mode: (\w+)/m.exec(await fourLetterWord(port, 'srvr', 1000));
    return m?.[1];
  } catch {
    return undefined;
  }
}

export async function startZooKeeperEnsemble(n = 3, options: ZooKeeperOptions = {}): Promise<RunningZooKeeperEnsemble> {
  const tickTime = options.tickTime ?? 500;
  const startTimeoutMs = options.startTimeoutMs ?? 45_000;
  const root = makeTempDir('meshport-zk-ensemble-');
  const ports = await freePorts(3 * n);
  const spec = Array.from({ length: n }, (_, i) => ({
    id: i + 1,
    port: ports[3 * i],
    peerPort: ports[3 * i + 1],
    electionPort: ports[3 * i + 2],
  }));
  const servers: Record<string, string> = {};
  for (const s of spec) servers[`server.${s.id}`] = `${HOST}:${s.peerPort}:${s.electionPort}`;

  const spawnedById = new Map<number, Spawned>();
  const launchers = new Map<number, () => void>();
  const nodes: RunningZooKeeperNode[] = spec.map((s) => {
    const dir = path.join(root, `node${s.id}`);
    const dataDir = path.join(dir, 'data');
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(path.join(dataDir, 'myid'), `${s.id}\n`);
    const cfg = path.join(dir, 'zoo.cfg');
    writeFileSync(cfg, zooCfg({
      tickTime,
      initLimit: 20,
      syncLimit: 10,
      dataDir,
      clientPort: s.port,
      clientPortAddress: HOST,
      'admin.enableServer': 'false',
      '4lw.commands.whitelist': 'ruok,stat,srvr,mntr',
      maxClientCnxns: 0,
      quorumListenOnAllIPs: 'false',
      ...servers,
    }));
    const node: RunningZooKeeperNode = {
      id: s.id,
      host: HOST,
      port: s.port,
      peerPort: s.peerPort,
      electionPort: s.electionPort,
      dataDir,
      pid: undefined,
      get running() {
        return spawnedById.has(s.id);
      },
      async stop() {
        const sp = spawnedById.get(s.id);
        spawnedById.delete(s.id);
        node.pid = undefined;
        if (sp) await terminate(sp.child);
      },
      async start() {
        if (spawnedById.has(s.id)) return;
        launchers.get(s.id)!();
        const sp = spawnedById.get(s.id)!;
        await waitUntil(`ZooKeeper ensemble node ${s.id} on ${HOST}:${s.port}`, sp,
          async () => (await nodeMode(s.port)) !== undefined, startTimeoutMs);
      },
      async restart() {
        await node.stop();
        await node.start();
      },
      mode: () => nodeMode(s.port),
    };
    launchers.set(s.id, () => {
      const sp = spawnServer(JAVA, javaArgs(dir, 'org.apache.zookeeper.server.quorum.QuorumPeerMain', cfg), dir);
      spawnedById.set(s.id, sp);
      node.pid = sp.pid;
    });
    return node;
  });

  const ensemble: RunningZooKeeperEnsemble = {
    host: HOST,
    connectString: spec.map((s) => `${HOST}:${s.port}`).join(','),
    nodes,
    async leader() {
      for (const node of nodes) if (node.running && (await node.mode()) === 'leader') return node;
      throw new Error('no ZooKeeper node reports Mode: leader');
    },
    async waitForQuorum(timeoutMs = startTimeoutMs) {
      const deadline = Date.now() + timeoutMs;
      let modes: (string | undefined)[] = [];
      while (Date.now() < deadline) {
        const running = nodes.filter((x) => x.running);
        for (const node of running) {
          const sp = spawnedById.get(node.id);
          if (sp && (sp.child.exitCode !== null || sp.child.signalCode !== null)) {
            throw new Error(`ZooKeeper ensemble node ${node.id} exited. Last output:\n${sp.tail()}`);
          }
        }
        modes = await Promise.all(running.map((x) => x.mode()));
        if (modes.includes('leader') && modes.every((m) => m === 'leader' || m === 'follower')) return;
        await sleep(100);
      }
      const tails = nodes.map((x) => `--- node ${x.id} (mode ${modes[x.id - 1]}):\n${spawnedById.get(x.id)?.tail() ?? '(stopped)'}`);
      throw new Error(`ZooKeeper ensemble: no quorum within ${timeoutMs} ms. Last output:\n${tails.join('\n')}`);
    },
    async stop() {
      await Promise.all(nodes.map((x) => x.stop()));
      removeTempDir(root);
    },
  };

  for (const launch of launchers.values()) launch();
  try {
    await ensemble.waitForQuorum();
  } catch (e) {
    await ensemble.stop();
    throw e;
  }
  return ensemble;
}

// ---------------------------------------------------------------------------------------------------------------
// Redis.

export interface RunningRedis {
  host: string;
  port: number;
  /** redis://127.0.0.1:port */
  url: string;
  /** The current redis-server pid (changes on restart). */
  pid: number;
  /** Kills the server (SIGTERM, then SIGKILL) and removes its temp dir. */
  stop(): Promise<void>;
  /** Stops and starts redis-server again on the same port (no persistence: the data is gone), after `downMs`. */
  restart(options?: RestartOptions): Promise<void>;
}

async function isPong(port: number): Promise<boolean> {
  const reply = await tcpExchange(port, '*1\r\n$4\r\nPING\r\n', { timeoutMs: 1000, until: (t) => t.includes('\r\n') });
  return reply === '+PONG\r\n';
}

export async function startRedis(options: { startTimeoutMs?: number } = {}): Promise<RunningRedis> {
  const startTimeoutMs = options.startTimeoutMs ?? 15_000;
  const dir = makeTempDir('meshport-redis-');
  const port = await freePort();
  const args = ['--save', '', '--appendonly', 'no', '--bind', HOST, '--port', String(port), '--dir', dir,
    '--daemonize', 'no', '--loglevel', 'notice'];

  const life = await startRestartable({
    what: `redis-server on ${HOST}:${port}`,
    dir,
    spawn: () => spawnServer(REDIS_SERVER, args, dir),
    ready: () => isPong(port),
    startTimeoutMs,
    goneOnStop: 'redis-server was stopped; start a new one',
  });
  return Object.assign(life, { host: HOST, port, url: `redis://${HOST}:${port}` });
}

/**
 * A server child that can be stopped (its temp dir removed) or restarted in place (same dir, same port). `pid`
 * follows restarts. A failed first start removes the temp dir.
 */
async function startRestartable(spec: {
  what: string;
  dir: string;
  spawn: () => Spawned;
  ready: () => Promise<boolean>;
  startTimeoutMs: number;
  goneOnStop: string;
}): Promise<{ pid: number; stop(): Promise<void>; restart(options?: RestartOptions): Promise<void> }> {
  let current: Spawned | undefined;
  let stopped = false;
  const launch = async () => {
    current = spec.spawn();
    await waitUntil(spec.what, current, spec.ready, spec.startTimeoutMs);
    life.pid = current.pid;
  };
  const life = {
    pid: 0,
    async stop() {
      stopped = true;
      if (current) await terminate(current.child);
      removeTempDir(spec.dir);
    },
    async restart(options: RestartOptions = {}) {
      if (stopped) throw new Error(spec.goneOnStop);
      if (current) await terminate(current.child);
      options.onStopped?.();
      if (options.downMs) await sleep(options.downMs);
      if (stopped) throw new Error(spec.goneOnStop);
      await launch();
    },
  };
  try {
    await launch();
  } catch (e) {
    removeTempDir(spec.dir);
    throw e;
  }
  return life;
}
