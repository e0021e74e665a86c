// `hijack` suite: the app. Opens N connections to the server's real address (captured or not, it cannot tell),
// then ping-pongs 64-byte messages over all of them, one in flight on each.
// argv: HOST PORT N CONNECT_CONCURRENCY. Commands on stdin, one JSON answer line each on stdout:
//   open           -> {"open": {n, failed, ms}}  connect + first 64-byte round trip on every connection
//   run SECONDS    -> {"run": {requests, seconds, p50, p99, errors}}  all connections ping-pong for SECONDS
//   lat SECONDS    -> {"lat": {n, p50, p99}}  one connection, one message at a time (the rest idle)
//   close          -> {"closed": true}

import * as net from 'node:net';
import { createInterface } from 'node:readline';

const [host, portArg, nArg, concArg] = process.argv.slice(2);
const port = Number(portArg);
const total = Number(nArg);
const concurrency = Number(concArg);
const MSG = Buffer.alloc(64, 0x78); // 'x': neither Bolt (0x01/0x02) nor Dubbo (0xdabb), so the capture relays it

interface Conn {
  socket: net.Socket;
  got: number;
  sentAt: bigint;
  onPong: () => void;
}

const conns: Conn[] = [];
let errors = 0;

function say(obj: object): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function openOne(): Promise<Conn | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, noDelay: true });
    const conn: Conn = { socket, got: 0, sentAt: 0n, onPong: () => undefined };
    let settled = false;
    const fail = () => {
      errors++;
      if (!settled) {
        settled = true;
        socket.destroy();
        resolve(null);
      }
    };
    socket.on('error', fail);
    socket.on('close', () => {
      if (!settled) fail();
    });
    socket.on('data', (chunk: Buffer) => {
      conn.got += chunk.length;
      while (conn.got >= MSG.length) {
        conn.got -= MSG.length;
        conn.onPong();
      }
    });
    socket.once('connect', () => {
      conn.onPong = () => {
        settled = true;
        conn.onPong = () => undefined;
        resolve(conn);
      };
      socket.write(MSG);
    });
  });
}

async function open(): Promise<void> {
  const t0 = process.hrtime.bigint();
  let next = 0;
  let failed = 0;
  const worker = async () => {
    while (next < total) {
      next++;
      const c = await openOne();
      if (c) conns.push(c);
      else failed++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker));
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  say({ open: { n: conns.length, failed, ms } });
}

function run(seconds: number): Promise<void> {
  return new Promise((resolve) => {
    const lat: number[] = [];
    let requests = 0;
    let inFlight = 0;
    const errorsBefore = errors;
    const t0 = process.hrtime.bigint();
    const end = t0 + BigInt(Math.round(seconds * 1e9));
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
      lat.sort((a, b) => a - b);
      const q = (p: number) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : 0);
      say({
        run: {
          requests,
          seconds: Math.min(elapsed, seconds),
          p50: q(0.5),
          p99: q(0.99),
          errors: errors - errorsBefore,
        },
      });
      resolve();
    };
    for (const c of conns) {
      const ping = () => {
        c.sentAt = process.hrtime.bigint();
        inFlight++;
        c.socket.write(MSG);
      };
      c.onPong = () => {
        const now = process.hrtime.bigint();
        inFlight--;
        if (now <= end) {
          requests++;
          lat.push(Number(now - c.sentAt) / 1000);
          ping();
        } else {
          if (inFlight === 0) finish();
        }
      };
      ping();
    }
    // A connection that broke never answers: do not wait on it past the window.
    setTimeout(
      () => {
        if (inFlight > 0) {
          inFlight = 0;
          finish();
        }
      },
      seconds * 1000 + 5000,
    ).unref();
  });
}

/** One connection, one message at a time, the others idle: the unloaded round trip through the path. */
function latency(seconds: number): Promise<void> {
  return new Promise((resolve) => {
    const c = conns[0];
    const lat: number[] = [];
    const end = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
    const ping = () => {
      c.sentAt = process.hrtime.bigint();
      c.socket.write(MSG);
    };
    c.onPong = () => {
      const now = process.hrtime.bigint();
      lat.push(Number(now - c.sentAt) / 1000);
      if (now < end) return ping();
      c.onPong = () => undefined;
      lat.sort((a, b) => a - b);
      const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
      say({ lat: { n: lat.length, p50: q(0.5), p99: q(0.99) } });
      resolve();
    };
    ping();
  });
}

const lines = createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on('line', (line) => {
  const [cmd, arg] = line.trim().split(/\s+/);
  queue = queue.then(async () => {
    if (cmd === 'open') await open();
    else if (cmd === 'run') await run(Number(arg));
    else if (cmd === 'lat') await latency(Number(arg));
    else if (cmd === 'close') {
      for (const c of conns.splice(0)) c.socket.destroy();
      say({ closed: true });
    }
  });
});
lines.on('close', () => process.exit(0));
say({ ready: 'loadgen', pid: process.pid });
