// A stand-in SOFA Registry session server for the tests of SofaRegistryClient, and only for them.
//
// It is a stand-in because no SOFA Registry server (a Java cluster of meta, data and session servers) can run here.
// It is built from the public class definitions of sofastack/sofa-registry (core/model: PublisherRegister,
// SubscriberRegister, RegisterResponse, ReceivedData, Result, DataBox) and the session server's observable behaviour:
// Bolt v1 with Hessian 2.0 bodies, one RegisterResponse per register, publishers held per connection and dropped with
// it, a ReceivedData push to every subscriber of a dataId on each change with an increasing version, Result answers.
// Bodies are read and written with hessian.js (2.x, the Hessian 2.0 grammar sofa-hessian writes), as the client's are
// (session-model), but the Java side of each class is written out here on its own: every test that passes through it
// checks the client's class names, field names and Java types against a second account of them. The grammar itself,
// the library's, is held to Caucho's Java Hessian in session-java.test.ts, byte for byte for what the client writes.
// What it writes is held to Caucho's Java Hessian reading into the model classes (session-java.test.ts): the exact
// class names, field names and Java types (Long where Java has Long or long, Integer in dataCount, List and Map).

import net from 'node:net';
import {
  BoltStatus,
  FrameSplitter,
  decodeFrame,
  encodeBoltHeartbeat,
  encodeBoltHeartbeatAck,
} from '@meshport/protocol';
import { encodeBoltRequest, encodeBoltResponse } from '../src/session-bolt';

const MODEL = 'com.alipay.sofa.registry.core.model.';
export const STAND_IN_CLASSES = {
  publisherRegister: `${MODEL}PublisherRegister`,
  subscriberRegister: `${MODEL}SubscriberRegister`,
  registerResponse: `${MODEL}RegisterResponse`,
  receivedData: `${MODEL}ReceivedData`,
  result: `${MODEL}Result`,
  dataBox: `${MODEL}DataBox`,
} as const;

/** The hessian.js calls used here (the package ships no types). */
interface HessianJs {
  EncoderV2: new () => { write(value: unknown): unknown; get(): Buffer };
  DecoderV2: new (buf: Buffer) => { read(withType?: boolean): unknown };
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const hessianJs = require('hessian.js') as HessianJs;

/** A body decoded by hessian.js, plain (fields by name). */
export function decodePlain(body: Buffer): Record<string, unknown> {
  return new hessianJs.DecoderV2(body).read(false) as Record<string, unknown>;
}

/** A body decoded by hessian.js with its types: `{ $class, $ }` all the way down. */
export function decodeTyped(body: Buffer): { $class: string; $: Record<string, unknown> } {
  return new hessianJs.DecoderV2(body).read(true) as { $class: string; $: Record<string, unknown> };
}

/** Any value as hessian.js writes it (`{ $class, $ }` for a Java type), for tests that need a body of their own. */
export function hessianJsBody(value: unknown): Buffer {
  return encode(value);
}

function encode(value: unknown): Buffer {
  const encoder = new hessianJs.EncoderV2();
  encoder.write(value);
  return encoder.get();
}

// hessian.js writes a long given as a decimal string exactly (through long.js); a number past 2^53 would be rounded.
export const jLong = (n: bigint) => ({ $class: 'long', $: n.toString() });
const jInt = (n: number) => ({ $class: 'int', $: n });
const jBool = (b: boolean) => ({ $class: 'boolean', $: b });
const jList = (items: unknown[]) => ({ $class: 'java.util.ArrayList', $: items });
const jHashMap = (entries: Iterable<readonly [string, unknown]>) => ({
  $class: 'java.util.HashMap',
  $: new Map(entries),
});

/** What a ReceivedData push holds, as the stand-in fills it in. */
export interface PushBody {
  dataId: string;
  group: string | null;
  instanceId: string | null;
  segment: string | null;
  scope: string | null;
  registIds: string[];
  /** zone -> data strings; null sends `data: null`. */
  data: Record<string, string[]> | null;
  version: bigint | null;
  localZone: string | null;
}

/** A ReceivedData body written by hessian.js, for the client to read (and for tests to send as they like). */
export function receivedDataBody(p: PushBody): Buffer {
  const zones = Object.entries(p.data ?? {});
  const data =
    p.data === null
      ? null
      : jHashMap(
          zones.map(([zone, list]) => [
            zone,
            jList(list.map((d) => ({ $class: STAND_IN_CLASSES.dataBox, $: { data: d } }))),
          ]),
        );
  // ReceivedData's fields in the order Java's serializer writes them: the java.lang ones (String, Long) first, then
  // the collections, each group in declaration order. `dataCount` is Map<String, Integer>: data per zone.
  return encode({
    $class: STAND_IN_CLASSES.receivedData,
    $: {
      dataId: p.dataId,
      group: p.group,
      instanceId: p.instanceId,
      segment: p.segment,
      scope: p.scope,
      version: p.version === null ? null : jLong(p.version),
      localZone: p.localZone,
      subscriberRegistIds: jList(p.registIds),
      data,
      dataCount: jHashMap(zones.map(([zone, list]) => [zone, jInt(list.length)])),
    },
  });
}

/** A Result body written by hessian.js. */
export function resultBody(success: boolean, message: string | null): Buffer {
  return encode({ $class: STAND_IN_CLASSES.result, $: { success: jBool(success), message } });
}

/** A Java long as hessian.js reads it (a number, or a decimal string past 2^53), exactly. */
export function readLong(value: unknown): bigint {
  if (typeof value === 'number' || typeof value === 'string' || typeof value === 'bigint') return BigInt(value);
  throw new TypeError(`not a long: ${String(value)}`);
}

/**
 * A datum version as the session server makes one (DatumVersionUtil.nextId): milliseconds since 2019-01-01 shifted
 * left by 15 bits, the low bits a sequence within the millisecond. From late 2027 on it is past 2^53.
 */
export function datumVersion(epochMs: number, sequence = 0): bigint {
  return ((BigInt(epochMs) - 1_546_272_000_000n) << 15n) | BigInt(sequence);
}

/** The data center a session server pushes as each datum's segment (ReceivedDataConverter sets the local one). */
export const STAND_IN_DATA_CENTER = 'DefaultDataCenter';

/** One request the stand-in received, kept for the tests to inspect. */
export interface ReceivedRequest {
  className: string;
  content: Buffer;
  fields: Record<string, unknown>;
}

/** The client's answer to a push. */
export interface PushAnswer {
  status: number;
  className: string;
  /** The body as the client wrote it. */
  content: Buffer;
  /** The Result, decoded by hessian.js; undefined for an empty body. */
  result: Record<string, unknown> | undefined;
}

interface Publisher {
  conn: Peer;
  zone: string;
  version: bigint;
  data: string[];
}

interface Subscriber {
  conn: Peer;
  registId: string;
  zone: string;
  scope: string;
  group: string;
  instanceId: string;
}

interface Peer {
  socket: net.Socket;
  pending: Map<number, (answer: PushAnswer) => void>;
}

export interface InjectedPush {
  /** Whom it is for; every subscriber of `dataId` when omitted. */
  registIds?: string[];
  dataId: string;
  version: bigint | null;
  /** zone -> data strings; null sends `data: null`. */
  data: Record<string, string[]> | null;
  /** @default STAND_IN_DATA_CENTER */
  segment?: string;
}

/** How the stand-in answers registers while `failRegisters` is set: as a server that refuses, or as Bolt's error. */
export type RegisterFailure = { message: string } | { boltStatus: number };

export class SessionStandIn {
  private server: net.Server | undefined;
  private listeningPort = 0;
  private readonly peers = new Set<Peer>();
  private readonly publishers = new Map<string, Map<string, Publisher>>();
  private readonly subscribers = new Map<string, Map<string, Subscriber>>();
  /**
   * One counter for the stand-in's whole life, restarts included: versions only ever grow, as a datum's do. It starts
   * where a real server's stand in 2028, past 2^53, and counts by one, so every test runs on versions that a number
   * would round together.
   */
  private version = datumVersion(Date.UTC(2028, 0, 1));
  /** Set: every register is answered as failed, so the client's retry and its log line can be watched. */
  failRegisters: RegisterFailure | undefined;
  private requestIds = 0;
  /** Every register received, in order. */
  readonly received: ReceivedRequest[] = [];
  /** Every answer the clients gave to a push, in order. */
  readonly pushAnswers: PushAnswer[] = [];
  /** Every body the stand-in wrote (RegisterResponses and pushes), in order, for the Java interop test to read. */
  readonly sent: Array<{ className: string; content: Buffer }> = [];
  /** Heartbeat acks received from clients. */
  heartbeatAcks = 0;
  /** Heartbeats received from clients (Bolt's idle heartbeat). */
  heartbeatsReceived = 0;

  get port(): number {
    return this.listeningPort;
  }

  get address(): string {
    return `127.0.0.1:${this.listeningPort}`;
  }

  get connectionCount(): number {
    return this.peers.size;
  }

  /** Listens on `port` (the previous one when restarting, an ephemeral one the first time). */
  async start(port = this.listeningPort): Promise<void> {
    const server = net.createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.listeningPort = (server.address() as net.AddressInfo).port;
  }

  /** Stops listening and drops every connection; every publisher and subscriber goes with them. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    const closed = [...this.peers].map(
      (peer) =>
        new Promise<void>((resolve) => (peer.socket.closed ? resolve() : peer.socket.once('close', () => resolve()))),
    );
    for (const peer of this.peers) peer.socket.destroy();
    await Promise.all(closed);
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    this.publishers.clear();
    this.subscribers.clear();
  }

  /** The data strings published for `dataId`, from every connection. */
  publishedData(dataId: string): string[] {
    return [...(this.publishers.get(dataId)?.values() ?? [])].flatMap((p) => p.data).sort();
  }

  /** The registIds subscribed to `dataId`. */
  subscriberIds(dataId: string): string[] {
    return [...(this.subscribers.get(dataId)?.keys() ?? [])];
  }

  /** The last version pushed. */
  get lastVersion(): bigint {
    return this.version;
  }

  /** A version newer than every one pushed so far (later pushes of the stand-in's own count on from it). */
  nextVersion(): bigint {
    return ++this.version;
  }

  /** Sends a ReceivedData of the test's making; resolves with each addressed connection's answer. */
  injectPush(push: InjectedPush): Promise<PushAnswer[]> {
    const subs = [...(this.subscribers.get(push.dataId)?.values() ?? [])].filter(
      (s) => !push.registIds || push.registIds.includes(s.registId),
    );
    const byPeer = groupByPeer(subs);
    return Promise.all(
      [...byPeer].map(([peer, group]) =>
        this.sendPush(peer, {
          dataId: push.dataId,
          group: group[0].group,
          instanceId: group[0].instanceId,
          segment: push.segment ?? STAND_IN_DATA_CENTER,
          scope: group[0].scope,
          registIds: group.map((s) => s.registId),
          data: push.data,
          version: push.version,
          localZone: group[0].zone,
        }),
      ),
    );
  }

  /** Sends a request frame with any class name and body to every connection; resolves with their answers. */
  sendRequest(className: string, content: Buffer): Promise<PushAnswer[]> {
    return Promise.all([...this.peers].map((peer) => this.request(peer, className, content)));
  }

  /** Writes raw bytes to every connection. */
  sendRaw(bytes: Buffer): void {
    for (const peer of this.peers) peer.socket.write(bytes);
  }

  /** Sends a Bolt heartbeat to every connection. */
  sendHeartbeat(): void {
    for (const peer of this.peers) peer.socket.write(encodeBoltHeartbeat(++this.requestIds));
  }

  // -------------------------------------------------------------------------------------------------------------

  private accept(socket: net.Socket): void {
    const peer: Peer = { socket, pending: new Map() };
    this.peers.add(peer);
    const splitter = new FrameSplitter((frame) => this.onFrame(peer, frame));
    socket.on('data', (chunk: Buffer) => {
      try {
        splitter.write(chunk);
      } catch {
        socket.destroy();
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => this.onPeerClosed(peer));
  }

  private onPeerClosed(peer: Peer): void {
    if (!this.peers.delete(peer)) return;
    for (const resolve of peer.pending.values())
      resolve({ status: -1, className: '', content: Buffer.alloc(0), result: undefined });
    peer.pending.clear();
    // The session server drops a closed connection's registers and tells the remaining subscribers.
    const changed = new Set<string>();
    for (const [dataId, pubs] of this.publishers) {
      for (const [id, p] of pubs) if (p.conn === peer) pubs.delete(id) && changed.add(dataId);
    }
    for (const subs of this.subscribers.values()) for (const [id, s] of subs) if (s.conn === peer) subs.delete(id);
    for (const dataId of changed) this.pushAll(dataId);
  }

  private onFrame(peer: Peer, frame: Buffer): void {
    const header = decodeFrame(frame);
    if (header.protocol !== 'bolt') return;
    if (header.kind === 'heartbeat') {
      this.heartbeatsReceived++;
      peer.socket.write(encodeBoltHeartbeatAck(header.requestId));
      return;
    }
    if (header.kind === 'heartbeat-ack') {
      this.heartbeatAcks++;
      return;
    }
    const body = frame.subarray(header.bodyOffset, header.bodyOffset + header.bodyLength);
    if (header.kind === 'response') {
      const resolve = peer.pending.get(header.requestId);
      peer.pending.delete(header.requestId);
      resolve?.({
        status: header.status ?? -1,
        className: header.className,
        content: Buffer.from(body),
        result: body.length > 0 ? decodePlain(body) : undefined,
      });
      return;
    }
    const className = header.className;
    if (className !== STAND_IN_CLASSES.publisherRegister && className !== STAND_IN_CLASSES.subscriberRegister) {
      peer.socket.write(
        encodeBoltResponse({
          requestId: header.requestId,
          className: '',
          content: Buffer.alloc(0),
          status: BoltStatus.NO_PROCESSOR,
        }),
      );
      return;
    }
    const fields = decodePlain(body);
    this.received.push({ className, content: Buffer.from(body), fields });
    const registId = String(fields.registId);
    const dataId = String(fields.dataId);
    const version = readLong(fields.version);
    const answer = (success: boolean, message: string | null = null) => {
      // RegisterResponse's fields in the order Java's serializer writes them (declaration order: all are primitives
      // or java.lang): success, registId, version, refused, message.
      const content = encode({
        $class: STAND_IN_CLASSES.registerResponse,
        $: { success: jBool(success), registId, version: jLong(version), refused: jBool(false), message },
      });
      this.sent.push({ className: STAND_IN_CLASSES.registerResponse, content });
      peer.socket.write(
        encodeBoltResponse({ requestId: header.requestId, className: STAND_IN_CLASSES.registerResponse, content }),
      );
    };
    const failure = this.failRegisters;
    if (failure && 'boltStatus' in failure) {
      peer.socket.write(
        encodeBoltResponse({
          requestId: header.requestId,
          className: '',
          content: Buffer.alloc(0),
          status: failure.boltStatus,
        }),
      );
      return;
    }
    if (failure) {
      answer(false, failure.message);
      return;
    }
    if (className === STAND_IN_CLASSES.publisherRegister) {
      let pubs = this.publishers.get(dataId);
      if (!pubs) this.publishers.set(dataId, (pubs = new Map()));
      const known = pubs.get(registId);
      // An older register arriving after a newer one changes nothing.
      if (known && known.version > version) {
        answer(true);
        return;
      }
      if (fields.eventType === 'UNREGISTER') pubs.delete(registId);
      else {
        const boxes = Array.isArray(fields.dataList) ? (fields.dataList as Array<{ data?: unknown }>) : [];
        pubs.set(registId, { conn: peer, zone: String(fields.zone), version, data: boxes.map((b) => String(b.data)) });
      }
      answer(true);
      this.pushAll(dataId);
      return;
    }
    let subs = this.subscribers.get(dataId);
    if (!subs) this.subscribers.set(dataId, (subs = new Map()));
    if (fields.eventType === 'UNREGISTER') {
      subs.delete(registId);
      answer(true);
      return;
    }
    const sub: Subscriber = {
      conn: peer,
      registId,
      zone: String(fields.zone),
      scope: String(fields.scope ?? 'zone'),
      group: String(fields.group),
      instanceId: String(fields.instanceId),
    };
    subs.set(registId, sub);
    answer(true);
    void this.pushTo(peer, dataId, [sub]);
  }

  private pushAll(dataId: string): void {
    const subs = [...(this.subscribers.get(dataId)?.values() ?? [])];
    for (const [peer, group] of groupByPeer(subs)) void this.pushTo(peer, dataId, group);
  }

  /** The current datum of `dataId` as the subscribers on `peer` see it (all share the first one's zone and scope). */
  private pushTo(peer: Peer, dataId: string, subs: Subscriber[]): Promise<PushAnswer> {
    const first = subs[0];
    const data: Record<string, string[]> = {};
    for (const pub of this.publishers.get(dataId)?.values() ?? []) {
      if (first.scope === 'zone' && pub.zone !== first.zone) continue;
      (data[pub.zone] ??= []).push(...pub.data);
    }
    return this.sendPush(peer, {
      dataId,
      group: first.group,
      instanceId: first.instanceId,
      segment: STAND_IN_DATA_CENTER,
      scope: first.scope,
      registIds: subs.map((s) => s.registId),
      data,
      version: ++this.version,
      localZone: first.zone,
    });
  }

  private sendPush(peer: Peer, p: PushBody): Promise<PushAnswer> {
    const content = receivedDataBody(p);
    this.sent.push({ className: STAND_IN_CLASSES.receivedData, content });
    return this.request(peer, STAND_IN_CLASSES.receivedData, content);
  }

  private request(peer: Peer, className: string, content: Buffer): Promise<PushAnswer> {
    const requestId = ++this.requestIds;
    return new Promise<PushAnswer>((resolve) => {
      if (peer.socket.destroyed) {
        resolve({ status: -1, className: '', content: Buffer.alloc(0), result: undefined });
        return;
      }
      const timer = setTimeout(() => {
        peer.pending.delete(requestId);
        resolve({ status: -1, className: '', content: Buffer.alloc(0), result: undefined });
      }, 2_000);
      peer.pending.set(requestId, (answer) => {
        clearTimeout(timer);
        if (answer.status !== -1) this.pushAnswers.push(answer);
        resolve(answer);
      });
      peer.socket.write(encodeBoltRequest({ requestId, className, content, timeoutMs: 3_000 }));
    });
  }
}

function groupByPeer(subs: Subscriber[]): Map<Peer, Subscriber[]> {
  const byPeer = new Map<Peer, Subscriber[]>();
  for (const s of subs) {
    let list = byPeer.get(s.conn);
    if (!list) byPeer.set(s.conn, (list = []));
    list.push(s);
  }
  return byPeer;
}
