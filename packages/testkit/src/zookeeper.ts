// Real ZooKeeper servers on loopback (or a given address), each in its own temp dir: a standalone server for the
// registry suites and the `meshport demo`, and a quorum ensemble for the reliability suites. Node built-ins only, so
// the demo can load it (as `@meshport/testkit/zookeeper`) without anything a test run needs.

import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HOST, onFreePorts } from './ports';
import { fourLetterWord } from './probes';
import {
  PortTakenError,
  makeTempDir,
  removeTempDir,
  saysPortTaken,
  spawnServer,
  startRestartable,
  terminate,
  waitUntilReady,
  type Restartable,
  type Spawned,
} from './processes';

export type { RestartOptions } from './processes';

/**
 * How Debian's libzookeeper-java is put on the classpath (see /etc/zookeeper/conf/environment and zkEnv.sh);
 * MESHPORT_ZOOKEEPER_CLASSPATH replaces it. The one copy: the suites, the demo and the bench all start ZooKeeper so.
 */
export const ZOOKEEPER_CLASSPATH =
  process.env.MESHPORT_ZOOKEEPER_CLASSPATH ??
  [
    '/etc/zookeeper/conf', // log4j.properties
    '/usr/share/java/zookeeper.jar', // its manifest Class-Path names jute, netty, slf4j-api, jetty, jackson, ...
    '/usr/share/java/slf4j-log4j12.jar', // the slf4j binding, not in the manifest
    '/usr/share/java/log4j-1.2.jar', // log4j 1.2 the binding needs
  ].join(':');

/** The java that runs ZooKeeper; MESHPORT_JAVA replaces it. */
export const JAVA = process.env.MESHPORT_JAVA ?? '/usr/bin/java';

export interface ZooKeeperOptions {
  /** ZooKeeper's tickTime in ms (fast elections; session timeouts are clamped to 2..20 ticks). @default 500 */
  tickTime?: number;
  /** How long to wait until it serves requests. @default 30000 (45000 for an ensemble) */
  startTimeoutMs?: number;
  /** The address it binds. @default '127.0.0.1' */
  host?: string;
  /** Stops waiting for the start (and stops the server) when aborted: a Ctrl-C during the demo's start-up. */
  signal?: AbortSignal;
  /** A fixed client port; a start that finds it taken fails with PortTakenError. @default a free port, new ones when taken */
  port?: number;
}

export interface RunningZooKeeper extends Restartable {
  host: string;
  port: number;
  connectString: string;
  dataDir: string;
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
  return (
    Object.entries(lines)
      .map(([k, v]) => `${k}=${v}`)
      .join('\n') + '\n'
  );
}

function needJava(): void {
  if (!existsSync(JAVA)) throw new Error(`no java at ${JAVA} (set MESHPORT_JAVA): ZooKeeper runs as a real server`);
}

/** The server's mode from `srvr` ('standalone', 'leader', 'follower'), or undefined while it does not serve. */
async function serverMode(port: number, host = HOST): Promise<string | undefined> {
  try {
    return /^Mode: (\w+)/m.exec(await fourLetterWord(port, 'srvr', 1000, host))?.[1];
  } catch {
    return undefined;
  }
}

/** `ruok` answers `imok` as soon as the port is up; `srvr` tells when the server actually serves requests. */
async function isServing(port: number, host: string): Promise<boolean> {
  return (await fourLetterWord(port, 'ruok', 1000, host)) === 'imok' && (await serverMode(port, host)) !== undefined;
}

/** One standalone ZooKeeper; resolves once it serves requests. A port taken before it bound means a new port. */
export async function startZooKeeper(options: ZooKeeperOptions = {}): Promise<RunningZooKeeper> {
  needJava();
  const host = options.host ?? HOST;
  const start = async ([port]: number[]): Promise<RunningZooKeeper> => {
    const dir = makeTempDir('meshport-zk-');
    const dataDir = path.join(dir, 'data');
    mkdirSync(dataDir);
    const cfg = path.join(dir, 'zoo.cfg');
    writeFileSync(
      cfg,
      zooCfg({
        tickTime: options.tickTime ?? 500,
        dataDir,
        clientPort: port!,
        clientPortAddress: host,
        'admin.enableServer': 'false',
        '4lw.commands.whitelist': 'ruok,stat,srvr,mntr',
        maxClientCnxns: 0,
      }),
    );
    const life = await startRestartable({
      what: `ZooKeeper on ${host}:${port}`,
      dir,
      spawn: () => spawnServer(JAVA, javaArgs(dir, 'org.apache.zookeeper.server.ZooKeeperServerMain', cfg), dir),
      ready: () => isServing(port!, host),
      startTimeoutMs: options.startTimeoutMs ?? 30_000,
      goneOnStop: 'ZooKeeper was stopped (its data is gone); start a new one',
      signal: options.signal,
    });
    return Object.assign(life, { host, port: port!, connectString: `${host}:${port}`, dataDir });
  };
  return options.port === undefined ? onFreePorts(1, start, { host }) : start([options.port]);
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

/** `n` ZooKeeper nodes in one quorum on loopback; resolves once a leader serves and every node follows it. */
export async function startZooKeeperEnsemble(
  n = 3,
  options: Omit<ZooKeeperOptions, 'host' | 'signal' | 'port'> = {},
): Promise<RunningZooKeeperEnsemble> {
  needJava();
  // A node whose client, peer or election port was taken meanwhile: the whole ensemble again, on new ports.
  return onFreePorts(3 * n, (ports) => startEnsembleOn(ports, n, options));
}

async function startEnsembleOn(
  ports: number[],
  n: number,
  options: Omit<ZooKeeperOptions, 'host' | 'signal' | 'port'>,
): Promise<RunningZooKeeperEnsemble> {
  const tickTime = options.tickTime ?? 500;
  const startTimeoutMs = options.startTimeoutMs ?? 45_000;
  const root = makeTempDir('meshport-zk-ensemble-');
  const spec = Array.from({ length: n }, (_, i) => ({
    id: i + 1,
    port: ports[3 * i]!,
    peerPort: ports[3 * i + 1]!,
    electionPort: ports[3 * i + 2]!,
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
    writeFileSync(
      cfg,
      zooCfg({
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
      }),
    );
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
        await waitUntilReady(
          `ZooKeeper ensemble node ${s.id} on ${HOST}:${s.port}`,
          sp,
          async () => (await serverMode(s.port)) !== undefined,
          startTimeoutMs,
        );
      },
      async restart() {
        await node.stop();
        await node.start();
      },
      mode: () => serverMode(s.port),
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
      const tails = nodes.map(
        (x) => `--- node ${x.id} (mode ${modes[x.id - 1]}):\n${spawnedById.get(x.id)?.tail() ?? '(stopped)'}`,
      );
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
    const taken = [...spawnedById.values()].some((sp) => saysPortTaken(sp.tail()));
    await ensemble.stop();
    throw taken ? new PortTakenError((e as Error).message) : e;
  }
  return ensemble;
}
