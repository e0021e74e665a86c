// `meshport tap`: a TCP forwarder that passes bytes through unchanged and prints every frame, both ways, paired.

import net from 'node:net';
import { FrameSplitter, ProtocolError, decodeFrame, type FrameHeader } from '@meshport/protocol';
import { decodeBody } from '@meshport/protocol/body';
import { Style, bodyPretty, frameJson, framePretty } from './format';
import type { Io } from './io';

export interface HostPort {
  host: string;
  port: number;
}

export interface TapOptions {
  listen: HostPort;
  upstream: HostPort;
  /** One JSON object per line instead of the coloured view. @default false */
  json?: boolean;
  /** Also decode bodies through hessian (display only; the bytes forwarded are never touched). @default false */
  body?: boolean;
  /** JSON only: add each frame's bytes as `hex` (how fixtures are captured). @default false */
  withBytes?: boolean;
  /** @default false */
  colour?: boolean;
  /** Largest frame the tap decodes; bigger ones are still forwarded. @default 16 MiB */
  maxFrameSize?: number;
}

export interface RunningTap {
  address: net.AddressInfo;
  close(): Promise<void>;
}

/** `HOST:PORT`, `[v6]:PORT`, `:PORT` or `PORT`; the last two are loopback, where every meshport server listens by default. */
export function parseHostPort(text: string, what: string): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text) ?? /^()()(\d{1,5})$/.exec(text);
  if (!m) throw new Error(`${what} must be HOST:PORT, :PORT or PORT, got '${text}'`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`${what} port ${port} is out of range`);
  return { host: m[1] || m[2] || '127.0.0.1', port };
}

/** A listen failure as the operator reads it (`127.0.0.1:12201 is in use`), or undefined for any other error. */
export function describeListenError(err: unknown, listen: HostPort): string | undefined {
  const { code, syscall } = err as NodeJS.ErrnoException;
  const at = `${listen.host.includes(':') ? `[${listen.host}]` : listen.host}:${listen.port}`;
  if (code === 'EADDRINUSE') return `${at} is in use (another process listens there)`;
  if (code === 'EADDRNOTAVAIL') return `${at} cannot be bound: the address is not one of this host (EADDRNOTAVAIL)`;
  if (code === 'EACCES') return `${at} cannot be bound: a port below 1024 needs CAP_NET_BIND_SERVICE (EACCES)`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
    return `${at}: the host name ${listen.host} does not resolve (${code})`;
  if (syscall === 'listen' || syscall === 'bind') return `${at} cannot be bound: ${(err as Error).message}`;
  return undefined;
}

type Direction = 'client' | 'upstream';

/** Starts listening; every accepted connection is forwarded to the upstream and printed. */
export async function startTap(options: TapOptions, io: Io): Promise<RunningTap> {
  const style = new Style(options.colour ?? false);
  const sockets = new Set<net.Socket>();
  let connections = 0;

  const print = (line: string) => io.stdout.write(line + '\n');
  const now = () => new Date().toISOString();

  const server = net.createServer((client) => {
    const conn = ++connections;
    const upstream = net.connect(options.upstream);
    sockets.add(client).add(upstream);
    const tag = style.dim(`#${conn}`);
    // Connection events: a line for people, a structured object for --json (`event` plus its own fields).
    const note = (text: string, event: Record<string, unknown> & { event: string }) =>
      options.json ? print(JSON.stringify({ ts: now(), conn, ...event })) : print(`${style.dim(now())} ${tag} ${text}`);
    note(`open ${client.remoteAddress}:${client.remotePort} -> ${options.upstream.host}:${options.upstream.port}`, {
      event: 'open',
      client: { host: client.remoteAddress, port: client.remotePort },
      upstream: { host: options.upstream.host, port: options.upstream.port },
    });

    // Requests waiting for their response, by id, to pair them and time the round trip.
    const pending = new Map<string, { at: bigint; header: FrameHeader }>();
    const observe = (from: Direction) => {
      let broken = false;
      const splitter = new FrameSplitter((frame) => show(from, frame, splitter.offset - frame.length), {
        maxFrameSize: options.maxFrameSize,
      });
      return (chunk: Buffer) => {
        if (broken) return;
        try {
          splitter.write(chunk);
        } catch (err) {
          if (!(err instanceof ProtocolError)) throw err;
          broken = true;
          note(style.red(`${from} stream: ${err.code}: ${err.message}; still forwarding, no longer decoding it`), {
            event: 'undecodable',
            from,
            code: err.code,
            message: err.message,
            offset: err.offset,
          });
        }
      };
    };
    const show = (from: Direction, frame: Buffer, offset: number) => {
      const header = decodeFrameAt(frame, offset);
      const key = String(header.requestId);
      let latencyMs: number | undefined;
      if (header.kind === 'request' || header.kind === 'heartbeat')
        pending.set(key, { at: process.hrtime.bigint(), header });
      else if (header.kind === 'response' || header.kind === 'heartbeat-ack') {
        const req = pending.get(key);
        if (req) {
          pending.delete(key);
          latencyMs = Number(process.hrtime.bigint() - req.at) / 1e6;
        }
      }
      const body = options.body ? safeBody(frame, header) : undefined;
      if (options.json) {
        const extra = {
          ts: now(),
          conn,
          from,
          latencyMs,
          body,
          hex: options.withBytes ? frame.toString('hex') : undefined,
        };
        print(JSON.stringify(frameJson(header, extra)));
        return;
      }
      const arrow = from === 'client' ? style.bold('→') : style.bold('←');
      const paired = latencyMs !== undefined ? ` ${style.yellow(`${latencyMs.toFixed(2)} ms`)}` : '';
      const text = framePretty(header, style, `${style.dim(now())} ${tag} ${arrow} `);
      const [headline, ...rest] = text.split('\n');
      print([headline + paired, ...rest].join('\n'));
      if (body) print(bodyPretty(body, style, '    '));
    };

    const fromClient = observe('client');
    const fromUpstream = observe('upstream');
    client.on('data', fromClient);
    upstream.on('data', fromUpstream);
    // pipe() carries backpressure: a slow side pauses the other, the tap buffers nothing of its own.
    client.pipe(upstream);
    upstream.pipe(client);
    let closed = false;
    const finish = (why?: Error) => {
      if (closed) return;
      closed = true;
      if (why)
        note(style.red(`error: ${why.message}`), {
          event: 'error',
          message: why.message,
          code: (why as NodeJS.ErrnoException).code,
        });
      client.destroy();
      upstream.destroy();
      const waiting = pending.size > 0 ? `, ${pending.size} request(s) never answered` : '';
      note(`closed${waiting}`, { event: 'closed', unanswered: pending.size });
    };
    client.on('error', finish).on('close', () => finish());
    upstream.on('error', finish).on('close', () => finish());
    client.on('close', () => sockets.delete(client));
    upstream.on('close', () => sockets.delete(upstream));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listen.port, options.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as net.AddressInfo;
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function decodeFrameAt(frame: Buffer, offset: number): FrameHeader {
  try {
    return decodeFrame(frame);
  } catch (err) {
    throw err instanceof ProtocolError ? err.shifted(offset) : err;
  }
}

function safeBody(frame: Buffer, header: FrameHeader): unknown[] {
  try {
    return decodeBody(frame, header);
  } catch (err) {
    return [{ $error: (err as Error).message }];
  }
}
