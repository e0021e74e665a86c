// Peers for the mutual-TLS suites: a TCP relay that sits on the wire between two sidecars and keeps the first bytes
// each side sent, a raw TLS caller (any certificate, or none) that speaks frames, and readers of the counters.

import { once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { FrameSplitter, decodeFrame, type FrameHeader } from '@meshport/protocol';
import type { AuthzPolicy, RouterHandle, RouterSecurity, TlsMode } from '../../src/index';
import type { TestLeaf } from '@meshport/testkit';

/** One relayed connection: the first bytes the dialling side sent (`up`) and the first the other side sent (`down`). */
export interface RelayedConnection {
  up: Buffer;
  down: Buffer;
  client: net.Socket;
  server: net.Socket;
}

export interface Relay {
  port: number;
  connections: RelayedConnection[];
  /** Cuts every relayed connection (both sides). */
  cutAll(): void;
  close(): Promise<void>;
}

const KEEP = 16;

/** A plain TCP relay on 127.0.0.1 to `targetPort`, recording what starts each direction of every connection. */
export async function startRelay(targetPort: number): Promise<Relay> {
  const connections: RelayedConnection[] = [];
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort });
    const conn: RelayedConnection = { up: Buffer.alloc(0), down: Buffer.alloc(0), client, server: upstream };
    connections.push(conn);
    client.on('data', (c: Buffer) => {
      if (conn.up.length < KEEP) conn.up = Buffer.concat([conn.up, c]).subarray(0, KEEP);
    });
    upstream.on('data', (c: Buffer) => {
      if (conn.down.length < KEEP) conn.down = Buffer.concat([conn.down, c]).subarray(0, KEEP);
    });
    client.pipe(upstream);
    upstream.pipe(client);
    for (const s of [client, upstream]) {
      s.on('error', () => {});
      s.on('close', () => {
        client.destroy();
        upstream.destroy();
      });
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    connections,
    cutAll() {
      for (const c of connections) {
        c.client.destroy();
        c.server.destroy();
      }
    },
    close: async () => {
      for (const c of connections) {
        c.client.destroy();
        c.server.destroy();
      }
      await new Promise((r) => server.close(r));
    },
  };
}

/** A RouterSecurity of a test leaf: its certificate and key, `bundle` as the trust bundle (PEM, possibly several CAs). */
export function securityOf(
  leaf: TestLeaf,
  bundle: string,
  mode: TlsMode = 'strict',
  policy: Partial<AuthzPolicy> = {},
): RouterSecurity {
  return {
    mode,
    material: { certChain: leaf.certPem, key: leaf.keyPem, trustBundle: bundle, identity: leaf.identity },
    policy: { default: 'allow-trust-domain', trustDomain: 'cluster.local', services: {}, ...policy },
  };
}

/** A caller that speaks TLS to a listener itself: with any certificate or none, frames in and answers out. */
export class TlsCaller {
  readonly answers: { header: FrameHeader; frame: Buffer }[] = [];
  /** Decrypted bytes received that were not whole frames yet, and whether the socket closed. */
  closed = false;
  /** The server's certificate, once the handshake is done. */
  serverCert: tls.PeerCertificate | undefined;
  secured = false;
  error: Error | undefined;

  private constructor(readonly socket: tls.TLSSocket) {
    const splitter = new FrameSplitter((frame) =>
      this.answers.push({ header: decodeFrame(frame), frame: Buffer.from(frame) }),
    );
    socket.on('data', (c: Buffer) => splitter.write(c));
    socket.on('error', (err) => {
      this.error = err;
    });
    socket.on('close', () => {
      this.closed = true;
    });
  }

  /**
   * Connects and waits for the handshake to end on this side (TLS 1.3: the server may still refuse the certificate
   * after that, by closing). Resolves also when the handshake fails (then `secured` is false).
   */
  static async connect(
    port: number,
    options: { leaf?: TestLeaf; ca: string; maxVersion?: tls.SecureVersion },
  ): Promise<TlsCaller> {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      ca: options.ca,
      cert: options.leaf?.certPem,
      key: options.leaf?.keyPem,
      maxVersion: options.maxVersion,
      minVersion: options.maxVersion ?? 'TLSv1.3',
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
    });
    const caller = new TlsCaller(socket);
    await new Promise<void>((resolve) => {
      socket.once('secureConnect', () => {
        caller.secured = true;
        caller.serverCert = socket.getPeerCertificate();
        resolve();
      });
      socket.once('close', () => resolve());
    });
    return caller;
  }

  send(frame: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(frame);
  }

  close(): void {
    this.socket.destroy();
  }
}

type MetricsJson = Awaited<ReturnType<RouterHandle['stats']['registry']['getMetricsAsJSON']>>;

/** The value of a counter or gauge on a router's `/stats`, summed over the series that carry `labels`. */
export async function metric(router: RouterHandle, name: string, labels: Record<string, string> = {}): Promise<number> {
  const all: MetricsJson = await router.stats.registry.getMetricsAsJSON();
  const family = all.find((m) => m.name === name);
  if (family === undefined) return 0;
  let sum = 0;
  for (const v of family.values as { labels: Record<string, string | number>; value: number }[]) {
    if (Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want)) sum += v.value;
  }
  return sum;
}
