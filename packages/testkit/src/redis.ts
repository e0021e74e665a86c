// A real redis-server on loopback for the Redis registry suites: no persistence, its dir a temp dir.

import { HOST, onFreePorts } from './ports';
import { tcpExchange } from './probes';
import { makeTempDir, spawnServer, startRestartable, type Restartable } from './processes';

const REDIS_SERVER = process.env.MESHPORT_REDIS_SERVER ?? '/usr/bin/redis-server';

export interface RunningRedis extends Restartable {
  host: string;
  port: number;
  /** redis://127.0.0.1:port */
  url: string;
}

async function isPong(port: number): Promise<boolean> {
  const reply = await tcpExchange(port, '*1\r\n$4\r\nPING\r\n', { timeoutMs: 1000, until: (t) => t.includes('\r\n') });
  return reply === '+PONG\r\n';
}

export interface RedisOptions {
  /** How long to wait until it answers PING. @default 15000 */
  startTimeoutMs?: number;
  /** A fixed port; a start that finds it taken fails with PortTakenError. @default a free port, new ones when taken */
  port?: number;
}

/** Resolves once it answers PING. A restart loses every key (no persistence), as a real outage of such a server does. */
export async function startRedis(options: RedisOptions = {}): Promise<RunningRedis> {
  const start = async ([port]: number[]): Promise<RunningRedis> => {
    const dir = makeTempDir('meshport-redis-');
    const args = [
      '--save',
      '',
      '--appendonly',
      'no',
      '--bind',
      HOST,
      '--port',
      String(port),
      '--dir',
      dir,
      '--daemonize',
      'no',
      '--loglevel',
      'notice',
    ];
    const life = await startRestartable({
      what: `redis-server on ${HOST}:${port}`,
      dir,
      spawn: () => spawnServer(REDIS_SERVER, args, dir),
      ready: () => isPong(port!),
      startTimeoutMs: options.startTimeoutMs ?? 15_000,
      goneOnStop: 'redis-server was stopped; start a new one',
    });
    return Object.assign(life, { host: HOST, port: port!, url: `redis://${HOST}:${port}` });
  };
  return options.port === undefined ? onFreePorts(1, start) : start([options.port]);
}
