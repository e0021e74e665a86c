// A real ZooKeeper for the demo: one standalone server on a free loopback port, data in a temp dir removed on
// stop. The classpath is Debian's libzookeeper-java layout (see /etc/zookeeper/conf/environment); MESHPORT_JAVA and
// MESHPORT_ZOOKEEPER_CLASSPATH override it.

import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { DemoChild } from './children';

const HOST = '127.0.0.1';
const CLASSPATH = [
  '/etc/zookeeper/conf', // log4j.properties
  '/usr/share/java/zookeeper.jar', // its manifest's Class-Path brings jute, netty, slf4j-api, ...
  '/usr/share/java/slf4j-log4j12.jar', // the slf4j binding
  '/usr/share/java/log4j-1.2.jar',
].join(':');

export interface DemoZooKeeper {
  connectString: string;
  port: number;
  pid: number;
  /** SIGTERM (SIGKILL after 5 s), then the temp dir goes. */
  stop(): Promise<void>;
}

export async function freePort(host = HOST): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A four-letter word's answer, or '' when the port does not answer in time. */
function fourLetterWord(host: string, port: number, word: string, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let text = '';
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(text);
    };
    const timer = setTimeout(finish, timeoutMs);
    socket.on('connect', () => socket.write(word));
    socket.on('data', (d) => (text += d.toString('utf8')));
    socket.on('close', finish);
    socket.on('error', finish);
  });
}

/** `host`: the address it binds (loopback by default; the host side of the demo's veth for netns pods). */
export async function startZooKeeper(signal?: AbortSignal, timeoutMs = 30_000, host = HOST): Promise<DemoZooKeeper> {
  const java = process.env.MESHPORT_JAVA ?? '/usr/bin/java';
  const classpath = process.env.MESHPORT_ZOOKEEPER_CLASSPATH ?? CLASSPATH;
  if (!existsSync(java)) throw new Error(`no java at ${java} (set MESHPORT_JAVA); the demo runs a real ZooKeeper`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-demo-zk-'));
  const remove = () => rmSync(dir, { recursive: true, force: true });
  let child: DemoChild | undefined;
  try {
    const dataDir = path.join(dir, 'data');
    mkdirSync(dataDir);
    const port = await freePort(host);
    const cfg = path.join(dir, 'zoo.cfg');
    const settings: Record<string, string | number> = {
      tickTime: 1000,
      dataDir,
      clientPort: port,
      clientPortAddress: host,
      'admin.enableServer': 'false',
      '4lw.commands.whitelist': 'ruok,srvr',
      maxClientCnxns: 0,
    };
    writeFileSync(cfg, Object.entries(settings).map(([k, v]) => `${k}=${v}\n`).join(''));
    child = new DemoChild('ZooKeeper', java, [
      '-Xmx256m',
      '-XX:+UseSerialGC',
      '-XX:TieredStopAtLevel=1',
      '-Djava.net.preferIPv4Stack=true',
      '-Dzookeeper.root.logger=INFO,CONSOLE',
      `-Dzookeeper.log.dir=${dir}`,
      '-Dzookeeper.jmx.log4j.disable=true',
      '-cp',
      classpath,
      'org.apache.zookeeper.server.ZooKeeperServerMain',
      cfg,
    ], { cwd: dir });
    const started = child;
    const deadline = Date.now() + timeoutMs;
    // ruok answers as soon as the port is up; srvr says "Mode:" only once the server serves requests.
    for (;;) {
      if (signal?.aborted) throw new Error('interrupted');
      if (!started.running) {
        throw new Error(`ZooKeeper (pid ${started.pid}) exited before it was ready. Last output:\n${started.tail()}`);
      }
      if ((await fourLetterWord(host, port, 'ruok')) === 'imok' && /Mode: /.test(await fourLetterWord(host, port, 'srvr'))) break;
      if (Date.now() > deadline) throw new Error(`ZooKeeper not ready within ${timeoutMs} ms. Last output:\n${started.tail()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return {
      connectString: `${host}:${port}`,
      port,
      pid: started.pid,
      async stop() {
        await started.stop();
        remove();
      },
    };
  } catch (err) {
    await child?.stop(1000);
    remove();
    throw err;
  }
}
