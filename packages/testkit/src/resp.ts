// A minimal RESP2 client over plain TCP, enough for tests: commands, replies, and pushed pub/sub messages.

import net from 'node:net';

export type RespValue = string | number | null | RespError | RespValue[];

export class RespError extends Error {}

/** Parses one RESP value from buf at offset; returns undefined when the buffer does not hold a whole value yet. */
function parse(buf: Buffer, offset: number): { value: RespValue; next: number } | undefined {
  const eol = buf.indexOf('\r\n', offset);
  if (eol < 0) return undefined;
  const type = String.fromCharCode(buf[offset]);
  const line = buf.toString('utf8', offset + 1, eol);
  const after = eol + 2;
  switch (type) {
    case '+':
      return { value: line, next: after };
    case '-':
      return { value: new RespError(line), next: after };
    case ':':
      return { value: Number(line), next: after };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, next: after };
      if (buf.length < after + len + 2) return undefined;
      return { value: buf.toString('utf8', after, after + len), next: after + len + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, next: after };
      const items: RespValue[] = [];
      let pos = after;
      for (let i = 0; i < count; i++) {
        const item = parse(buf, pos);
        if (!item) return undefined;
        items.push(item.value);
        pos = item.next;
      }
      return { value: items, next: pos };
    }
    default:
      throw new Error(`bad RESP type byte ${JSON.stringify(type)}`);
  }
}

export function encodeCommand(args: (string | number)[]): string {
  return `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('');
}

export class RespConnection {
  private buffer = Buffer.alloc(0);
  private readonly replies: RespValue[] = [];
  private readonly waiters: { resolve: (v: RespValue) => void; reject: (e: Error) => void }[] = [];
  private failure: Error | undefined;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (d) => {
      this.buffer = Buffer.concat([this.buffer, d]);
      for (;;) {
        const r = parse(this.buffer, 0);
        if (!r) break;
        this.buffer = this.buffer.subarray(r.next);
        const waiter = this.waiters.shift();
        if (waiter) waiter.resolve(r.value);
        else this.replies.push(r.value);
      }
    });
    const fail = (e: Error) => {
      this.failure ??= e;
      for (const w of this.waiters.splice(0)) w.reject(this.failure);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed')));
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RespConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port });
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new RespConnection(socket));
      });
      socket.once('error', reject);
    });
  }

  /** The next reply or pushed message, in order. */
  next(timeoutMs = 5000): Promise<RespValue> {
    const queued = this.replies.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (v: RespValue) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`no RESP reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Sends a command and returns its reply (error replies are thrown). */
  async call(...args: (string | number)[]): Promise<RespValue> {
    this.socket.write(encodeCommand(args));
    const reply = await this.next();
    if (reply instanceof RespError) throw reply;
    return reply;
  }

  close(): void {
    this.socket.destroy();
  }
}
