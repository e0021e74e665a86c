// Mutual TLS between sidecars on the TypeScript engine: the contexts made once per RouterSecurity, the inbound side
// (first byte 0x16: a TLS handshake that must present a client certificate the trust bundle verifies; anything else:
// plaintext or refused, by mode) and the checks both directions make of a peer's certificate. The contract (modes,
// reasons, the identity's form) is security.ts; docs/router.md says what a caller sees.

import type net from 'node:net';
import tls from 'node:tls';
import type { HandshakeFailure, RouterSecurity } from './security';

export type TlsDirection = 'inbound' | 'outbound';

/** Sidecar to sidecar is TLS 1.3 only. */
const MIN_VERSION = 'TLSv1.3';

/** A TLS record of type handshake: how a ClientHello begins, and no Bolt (0x01, 0x02) or Dubbo (0xda) frame does. */
const TLS_HANDSHAKE_RECORD = 0x16;

/** A handshake that failed for one of the counted reasons (security.ts HandshakeFailure), with what the log says. */
export class HandshakeError extends Error {
  constructor(
    readonly reason: HandshakeFailure,
    message: string,
  ) {
    super(message);
  }
}

/** What the inbound side tells the router about each connection that begins. */
export interface InboundTlsEvents {
  /** The first byte of a connection came: it is being served, in its TLS handshake, or refused. */
  sniffed(socket: net.Socket): void;
  /** A connection to serve: a TLS one whose caller proved `identity`, or plaintext (identity undefined). */
  serve(socket: net.Socket, identity: string | undefined): void;
  /** A handshake that completed and verified. */
  handshake(): void;
  /** A connection closed for `error.reason` (plaintext-refused included). */
  refused(socket: net.Socket, error: HandshakeError): void;
}

/**
 * One RouterSecurity made ready for connections: the client context and the server (never listening, fed sockets
 * by `admit`) built once, so a connection costs a handshake and no parsing of PEM. setSecurity makes a new one; the
 * connections of the old one keep it until they close.
 */
export class TlsContexts {
  readonly client: tls.SecureContext;
  private readonly server: tls.Server;

  constructor(
    readonly security: RouterSecurity,
    handshakeTimeoutMs: number,
    private readonly events: InboundTlsEvents,
  ) {
    const { certChain, key, trustBundle } = security.material;
    const material = { cert: certChain, key, ca: trustBundle, minVersion: MIN_VERSION } as const;
    this.client = tls.createSecureContext(material);
    // rejectUnauthorized is ours to apply (verifyPeer): Node's would close a caller without telling why.
    this.server = tls.createServer({
      ...material,
      requestCert: true,
      rejectUnauthorized: false,
      handshakeTimeout: handshakeTimeoutMs,
    });
    this.server.on('secureConnection', (socket: tls.TLSSocket) => {
      const verified = verifyPeer(socket, undefined);
      if (verified instanceof HandshakeError) {
        socket.on('error', () => {});
        events.refused(socket, verified);
        socket.destroy();
        return;
      }
      events.handshake();
      events.serve(socket, verified);
    });
    this.server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
      events.refused(socket, handshakeErrorOf(err));
      socket.destroy();
    });
  }

  get mode() {
    return this.security.mode;
  }

  /**
   * An accepted inbound connection in mode permissive or strict: its first byte decides. 0x16 begins a TLS
   * handshake, whose caller must present a certificate that verifies and carries a spiffe:// identity; anything else
   * is served as plaintext (permissive) or closed (strict). Nothing is read from a connection that fails.
   */
  admit(socket: net.Socket): void {
    socket.on('error', () => {}); // 'close' follows; before the first byte nobody else listens
    socket.once('data', (first: Buffer) => {
      socket.pause();
      socket.unshift(first); // the TLS layer (or the caller's framing) reads it again
      this.events.sniffed(socket);
      if (first[0] === TLS_HANDSHAKE_RECORD) {
        // Node's TLS server wraps it (taking the unshifted bytes); its events above say how it went.
        this.server.emit('connection', socket);
      } else if (this.security.mode === 'permissive') {
        this.events.serve(socket, undefined);
      } else {
        this.events.refused(
          socket,
          new HandshakeError(
            'plaintext-refused',
            `a plaintext connection (first byte 0x${hex(first[0])}) on the strict mutual-TLS inbound listener`,
          ),
        );
        socket.destroy();
      }
    });
  }
}

/**
 * What a completed handshake proved of the peer: its identity (a string), or why it is refused. `expected`: the
 * identity the registry published for a provider (outbound); undefined for a caller (inbound, any identity).
 */
export function verifyPeer(socket: tls.TLSSocket, expected: string | undefined): string | HandshakeError {
  const who = expected === undefined ? 'the caller' : 'the provider';
  const cert = socket.getPeerX509Certificate();
  if (cert === undefined) return new HandshakeError('no-client-cert', `${who} presented no certificate`);
  if (!socket.authorized) {
    const code = String(socket.authorizationError ?? 'UNSPECIFIED');
    if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
      return new HandshakeError(
        'expired',
        `${who}'s certificate is outside its validity period (${cert.validFrom} to ${cert.validTo}): ${code}`,
      );
    }
    return new HandshakeError('untrusted', `${who}'s certificate does not verify against the trust bundle: ${code}`);
  }
  const identity = spiffeIdOf(cert.subjectAltName);
  if (identity === undefined) {
    return new HandshakeError('no-identity', `${who}'s certificate carries no spiffe:// URI in its SAN`);
  }
  if (expected !== undefined && identity !== expected) {
    return new HandshakeError(
      'wrong-identity',
      `the provider's certificate is ${identity}; the registry says that endpoint is ${expected}`,
    );
  }
  return identity;
}

/** The first `spiffe://` URI of a certificate's SAN as Node prints it (`DNS:a, URI:spiffe://td/ns/x/sa/y`). */
export function spiffeIdOf(subjectAltName: string | undefined): string | undefined {
  if (subjectAltName === undefined) return undefined;
  for (const entry of subjectAltName.split(', ')) {
    if (!entry.startsWith('URI:')) continue;
    // Node quotes a value holding a comma or a quote as a JSON string.
    let value = entry.slice(4);
    if (value.startsWith('"')) {
      try {
        value = JSON.parse(value) as string;
      } catch {
        continue;
      }
    }
    if (value.startsWith('spiffe://')) return value;
  }
  return undefined;
}

/** Why a handshake that did not complete failed, from the error the TLS layer (or our connect timer) raised. */
export function handshakeErrorOf(err: Error & { code?: string }): HandshakeError {
  if (err instanceof HandshakeError) return err;
  const code = err.code ?? '';
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT' || code === 'ETIMEDOUT') {
    return new HandshakeError('timeout', `the TLS handshake did not finish in time: ${err.message}`);
  }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
    return new HandshakeError('expired', `the peer's certificate is outside its validity period: ${code}`);
  }
  return new HandshakeError(
    'protocol',
    `the TLS handshake failed: ${code ? `${code}: ` : ''}${firstLine(err.message)}`,
  );
}

function firstLine(text: string): string {
  return text.split('\n')[0];
}

function hex(byte: number | undefined): string {
  return (byte ?? 0).toString(16).padStart(2, '0');
}

/** The client side of a connection to a provider sidecar whose certificate must carry `identity`. */
export function connectTls(context: tls.SecureContext, host: string, port: number): tls.TLSSocket {
  return tls.connect({
    host,
    port,
    secureContext: context,
    minVersion: MIN_VERSION,
    // Identity is the URI SAN checked by verifyPeer, not the host name: endpoints are IP addresses.
    checkServerIdentity: () => undefined,
    // Verified by verifyPeer after the handshake, so the failure is counted with its reason.
    rejectUnauthorized: false,
  });
}
