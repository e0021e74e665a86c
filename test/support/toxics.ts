// An in-process TCP proxy with "toxics", in the spirit of Shopify's toxiproxy, for the fault-injection suites: it
// sits between two real sockets on loopback and makes the link between them slow, jittery, lossy in pieces, or
// broken, while both ends keep talking plain TCP. In-process (not toxiproxy itself) so a suite needs no extra binary,
// can read exact counts of what it injected (`stats`), and can add or remove a toxic between two requests.
//
// Each accepted connection gets two pipes: `upstream` (client -> upstream server) and `downstream` (server -> client).
// A chunk read from a pipe's source goes through the toxics of that direction, always in this order whatever order
// they were added in: blackhole (drop), reset (kill the connection), latency (delay), bandwidth (pace), slicer (cut).
// What comes out is a list of pieces, each with the time it may be written. The pipe writes its pieces strictly in
// FIFO order, each not before its time, so a toxic can slow bytes down but never reorder them: TCP never reorders,
// and a proxy that did would test something no network does.

import net from 'node:net';
import { once } from 'node:events';

export type Direction = 'upstream' | 'downstream';

export type Toxic =
  /** Each chunk waits `ms` +/- `jitterMs` (uniform); never overtakes the chunk before it. */
  | { type: 'latency'; ms: number; jitterMs?: number; direction?: Direction }
  /**
   * Resets the connection (RST to both ends, through `resetAndDestroy`). `per: 'chunk'`: each chunk in the
   * direction does it with `probability`. `per: 'kib'`: `probability` per KiB carried, so a chunk of n bytes does it
   * with 1 - (1 - probability)^(n / 1024): the fault rate follows the traffic, not how a sender happens to batch its
   * writes (a proxy that writes more often, in smaller chunks, meets no more resets for it). `per: 'connection'`: each new connection is picked with `probability` and
   * reset `afterMs` after it was accepted (0: on its first chunk in the direction).
   */
  | { type: 'reset'; probability: number; per: 'chunk' | 'kib' | 'connection'; afterMs?: number; direction?: Direction }
  /** When the source sends FIN, the FIN is passed on only `delayMs` later (data still flows until then). */
  | { type: 'slowClose'; delayMs: number; direction?: Direction }
  /** Partial writes: each chunk is cut into pieces of `averageSize` +/- `sizeVariation` bytes, `delayUs` apart. */
  | { type: 'slicer'; averageSize: number; sizeVariation?: number; delayUs?: number; direction?: Direction }
  /** Reads everything, forwards nothing; the connection stays open. */
  | { type: 'blackhole'; direction?: Direction }
  /** Paces the pipe to `bytesPerSecond` (a token bucket with no burst: each byte has its slot). */
  | { type: 'bandwidth'; bytesPerSecond: number; direction?: Direction };

export interface ToxicStats {
  /** Connections accepted. */
  connections: number;
  /** Connections open right now. */
  open: number;
  /** Resets the reset toxic made (not the ones the ends made themselves). */
  resetsInjected: number;
  /** Bytes forwarded, per direction (dropped bytes not counted). */
  bytes: Record<Direction, number>;
  /** Bytes a blackhole swallowed. */
  blackholed: number;
  /** Pieces written: more than the chunks read when a slicer cuts. */
  writes: Record<Direction, number>;
}

export interface ToxicProxy {
  port: number;
  host: string;
  addToxic(name: string, toxic: Toxic): void;
  removeToxic(name: string): void;
  readonly stats: ToxicStats;
  /** Stops listening and destroys every connection; resolves when the listener is closed. */
  close(): Promise<void>;
}

export interface ToxicProxyOptions {
  upstream: { host: string; port: number };
  /** Port to listen on (127.0.0.1). @default 0, any free port */
  listen?: number;
  /** Random source in [0, 1), for reproducible runs. @default Math.random */
  random?: () => number;
}

/** Bytes queued in a pipe before its source is paused, so a slow toxic turns into TCP backpressure, not memory. */
const QUEUE_HIGH_WATER = 1 << 20;

interface Piece {
  data: Buffer;
  at: number;
}

/** One direction of one connection. */
class Pipe {
  private readonly queue: Piece[] = [];
  private queued = 0;
  private timer: NodeJS.Timeout | undefined;
  private waitingDrain = false;
  /** When the latency toxic last released a chunk: the next may not go earlier (order kept under jitter). */
  private lastLatencyAt = 0;
  /** When the bandwidth toxic's next byte slot is free. */
  private bandwidthFreeAt = 0;
  private sourceEnded = false;
  private finished = false;

  constructor(
    readonly direction: Direction,
    private readonly source: net.Socket,
    private readonly dest: net.Socket,
    private readonly conn: Connection,
  ) {
    source.on('data', (chunk: Buffer) => this.onChunk(chunk));
    source.on('end', () => {
      this.sourceEnded = true;
      this.pump();
    });
  }

  private onChunk(chunk: Buffer): void {
    const toxics = this.conn.proxy.toxicsFor(this.direction);
    const random = this.conn.proxy.random;
    if (toxics.some((t) => t.type === 'blackhole')) {
      this.conn.proxy.stats.blackholed += chunk.length;
      return;
    }
    for (const t of toxics) {
      if (t.type !== 'reset') continue;
      const firstChunkOfPicked = t.per === 'connection' && (t.afterMs ?? 0) === 0 && this.conn.pickedForReset.has(t);
      const p =
        t.per === 'chunk' ? t.probability : t.per === 'kib' ? 1 - (1 - t.probability) ** (chunk.length / 1024) : 0;
      if ((p > 0 && random() < p) || firstChunkOfPicked) {
        this.conn.reset();
        return;
      }
    }
    const now = performance.now();
    let at = now;
    for (const t of toxics) {
      if (t.type !== 'latency') continue;
      const jitter = t.jitterMs ?? 0;
      at = Math.max(at + t.ms + (jitter > 0 ? (random() * 2 - 1) * jitter : 0), this.lastLatencyAt);
      this.lastLatencyAt = at;
    }
    for (const t of toxics) {
      if (t.type !== 'bandwidth') continue;
      this.bandwidthFreeAt = Math.max(this.bandwidthFreeAt, at) + (chunk.length * 1000) / t.bytesPerSecond;
      at = this.bandwidthFreeAt;
    }
    const slicer = toxics.find((t): t is Extract<Toxic, { type: 'slicer' }> => t.type === 'slicer');
    if (slicer === undefined) this.enqueue({ data: chunk, at });
    else {
      const variation = slicer.sizeVariation ?? Math.floor(slicer.averageSize / 2);
      const gapMs = (slicer.delayUs ?? 0) / 1000;
      let off = 0;
      let i = 0;
      while (off < chunk.length) {
        const size = Math.max(1, slicer.averageSize + Math.round((random() * 2 - 1) * variation));
        this.enqueue({ data: chunk.subarray(off, off + size), at: at + i * gapMs });
        off += size;
        i++;
      }
    }
    this.pump();
  }

  private enqueue(piece: Piece): void {
    this.queue.push(piece);
    this.queued += piece.data.length;
    if (this.queued > QUEUE_HIGH_WATER) this.source.pause();
  }

  /** Writes every piece that is due, in order; sets a timer for the next one. */
  pump(): void {
    if (this.timer !== undefined || this.waitingDrain || this.conn.dead) return;
    while (this.queue.length > 0) {
      const head = this.queue[0];
      const wait = head.at - performance.now();
      if (wait > 0) {
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.pump();
        }, Math.ceil(wait));
        return;
      }
      this.queue.shift();
      this.queued -= head.data.length;
      this.conn.proxy.stats.bytes[this.direction] += head.data.length;
      this.conn.proxy.stats.writes[this.direction]++;
      const ok = this.dest.write(head.data);
      if (this.queued <= QUEUE_HIGH_WATER / 2 && this.source.isPaused()) this.source.resume();
      if (!ok) {
        this.waitingDrain = true;
        this.dest.once('drain', () => {
          this.waitingDrain = false;
          this.pump();
        });
        return;
      }
    }
    if (this.sourceEnded && !this.finished) {
      // Everything before the FIN is written: pass the FIN on, late when a slowClose toxic says so.
      this.finished = true;
      const slow = this.conn.proxy.toxicsFor(this.direction).find((t) => t.type === 'slowClose') as
        | { delayMs: number }
        | undefined;
      const end = () => this.conn.dead || this.dest.end();
      if (slow === undefined) end();
      else this.conn.timers.push(setTimeout(end, slow.delayMs));
    }
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
  }
}

class Connection {
  dead = false;
  readonly timers: NodeJS.Timeout[] = [];
  /** The per-connection reset toxics that picked this connection. */
  readonly pickedForReset = new Set<Toxic>();
  private readonly pipes: Pipe[];

  constructor(
    readonly proxy: ToxicProxyImpl,
    readonly client: net.Socket,
    readonly server: net.Socket,
  ) {
    this.pipes = [new Pipe('upstream', client, server, this), new Pipe('downstream', server, client, this)];
    for (const t of proxy.allToxics()) {
      if (t.type !== 'reset' || t.per !== 'connection' || proxy.random() >= t.probability) continue;
      this.pickedForReset.add(t);
      if ((t.afterMs ?? 0) > 0) this.timers.push(setTimeout(() => this.reset(), t.afterMs));
    }
    // An end that resets (or fails) takes the whole connection down, and the other end sees a reset too, as it
    // would through a real middlebox that loses its flow state.
    const onError = () => this.destroy(true);
    client.on('error', onError);
    server.on('error', onError);
    let closed = 0;
    const onClose = () => {
      if (++closed === 1) return; // the other end may still be draining its half
      this.destroy(false);
    };
    client.on('close', onClose);
    server.on('close', onClose);
  }

  /** The reset toxic: RST to both ends, every queued byte dropped. */
  reset(): void {
    if (this.dead) return;
    this.proxy.stats.resetsInjected++;
    this.destroy(true);
  }

  destroy(withReset: boolean): void {
    if (this.dead) return;
    this.dead = true;
    for (const t of this.timers) clearTimeout(t);
    for (const p of this.pipes) p.stop();
    for (const s of [this.client, this.server]) {
      if (s.destroyed) continue;
      if (withReset && !s.connecting) s.resetAndDestroy();
      else s.destroy();
    }
    this.proxy.stats.open--;
    this.proxy.connections.delete(this);
  }
}

class ToxicProxyImpl implements ToxicProxy {
  port = 0;
  host = '127.0.0.1';
  readonly stats: ToxicStats = {
    connections: 0,
    open: 0,
    resetsInjected: 0,
    bytes: { upstream: 0, downstream: 0 },
    blackholed: 0,
    writes: { upstream: 0, downstream: 0 },
  };
  readonly connections = new Set<Connection>();
  readonly random: () => number;
  private readonly toxics = new Map<string, Toxic>();
  private readonly server: net.Server;

  constructor(private readonly options: ToxicProxyOptions) {
    this.random = options.random ?? Math.random;
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => this.accept(client));
  }

  async listen(): Promise<void> {
    this.server.listen(this.options.listen ?? 0, this.host);
    await once(this.server, 'listening');
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  private accept(client: net.Socket): void {
    this.stats.connections++;
    this.stats.open++;
    const server = net.connect({ ...this.options.upstream, allowHalfOpen: true, noDelay: true });
    this.connections.add(new Connection(this, client, server));
  }

  toxicsFor(direction: Direction): Toxic[] {
    const out: Toxic[] = [];
    for (const t of this.toxics.values()) if ((t.direction ?? 'downstream') === direction) out.push(t);
    return out;
  }

  allToxics(): Toxic[] {
    return [...this.toxics.values()];
  }

  addToxic(name: string, toxic: Toxic): void {
    if (this.toxics.has(name)) throw new Error(`toxic '${name}' exists`);
    this.toxics.set(name, toxic);
  }

  removeToxic(name: string): void {
    if (!this.toxics.delete(name)) throw new Error(`no toxic '${name}'`);
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of [...this.connections]) c.destroy(false);
    await closed;
  }
}

/**
 * Starts a proxy on 127.0.0.1 to `upstream`. Toxics default to the `downstream` direction (what the client
 * receives), as toxiproxy's do.
 */
export async function startToxicProxy(options: ToxicProxyOptions): Promise<ToxicProxy> {
  const proxy = new ToxicProxyImpl(options);
  await proxy.listen();
  return proxy;
}
