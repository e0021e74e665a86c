// A real ZooKeeper (Debian's zookeeper 3.8 package) for the registry suite: one standalone server on a free loopback
// port with its data in a temp dir, started and stopped by the suite itself. The JVM is a tracked child, so an exit of
// the bench (error, signal) kills it by its pid and removes the dir (forward/children's exit hook).

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
// The classpath the suites and the demo start ZooKeeper with (Debian's layout, MESHPORT_ZOOKEEPER_CLASSPATH overrides).
import { ZOOKEEPER_CLASSPATH } from '@meshport/testkit/zookeeper';
import { track, trackTempDir } from '../forward/children';

const HOST = '127.0.0.1';
const JAVA = process.env.MESHPORT_JAVA ?? '/usr/bin/java';

export interface BenchZooKeeper {
  host: string;
  port: number;
  connectString: string;
  pid: number;
  dataDir: string;
  /** The `srvr` four-letter word's answer (version, node count, latencies). */
  srvr(): Promise<string>;
  /** SIGTERM, SIGKILL after a grace period; then the temp dir goes. Safe to call twice. */
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Sends a four-letter word and returns everything the server wrote before closing. */
function fourLetterWord(port: number, word: string, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: HOST, port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer to ${word}`));
    }, timeoutMs);
    socket.on('connect', () => socket.write(word));
    socket.on('data', (d) => chunks.push(d));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

function stopProcess(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const pid = child.pid;
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }, graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      clearTimeout(timer);
      resolve();
    }
  });
}

/** Starts ZooKeeper and resolves once it serves requests (`srvr` reports a mode). */
export async function startZooKeeper(
  opts: { tickTime?: number; startTimeoutMs?: number } = {},
): Promise<BenchZooKeeper> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-bench-zk-'));
  const tempDir = trackTempDir(dir);
  const dataDir = path.join(dir, 'data');
  mkdirSync(dataDir);
  const port = await freePort();
  const cfg = path.join(dir, 'zoo.cfg');
  const settings: Record<string, string | number> = {
    tickTime: opts.tickTime ?? 500,
    dataDir,
    clientPort: port,
    clientPortAddress: HOST,
    'admin.enableServer': 'false',
    '4lw.commands.whitelist': 'ruok,srvr,mntr',
    maxClientCnxns: 0,
  };
  writeFileSync(
    cfg,
    Object.entries(settings)
      .map(([k, v]) => `${k}=${v}\n`)
      .join(''),
  );
  const args = [
    '-Xmx512m',
    '-Djava.net.preferIPv4Stack=true',
    '-Dzookeeper.root.logger=WARN,CONSOLE',
    `-Dzookeeper.log.dir=${dir}`,
    '-Dzookeeper.jmx.log4j.disable=true',
    '-cp',
    ZOOKEEPER_CLASSPATH,
    'org.apache.zookeeper.server.ZooKeeperServerMain',
    cfg,
  ];
  const child = spawn(JAVA, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  const tail: string[] = [];
  const keep = (d: Buffer) => {
    tail.push(...d.toString('utf8').split('\n').filter(Boolean));
    if (tail.length > 40) tail.splice(0, tail.length - 40);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= stopProcess(child, 5000).then(() => {
      rmSync(dir, { recursive: true, force: true });
      tempDir.release();
    }));

  const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await stop();
      throw new Error(`ZooKeeper exited before it served (code ${child.exitCode}); last output:\n${tail.join('\n')}`);
    }
    try {
      if (/^Mode: \w+/m.test(await fourLetterWord(port, 'srvr'))) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(
        `ZooKeeper on ${HOST}:${port} did not serve within ${opts.startTimeoutMs ?? 30_000} ms; last output:\n${tail.join('\n')}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    host: HOST,
    port,
    connectString: `${HOST}:${port}`,
    pid: child.pid!,
    dataDir,
    srvr: () => fourLetterWord(port, 'srvr'),
    stop,
  };
}
