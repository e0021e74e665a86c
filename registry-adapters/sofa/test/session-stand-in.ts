// A stand-in SOFA Registry session server for the tests of SofaRegistryClient, and only for them.
//
// It is a stand-in because no SOFA Registry server (a Java cluster of meta, data and session servers) can run here.
// It is built from the public class definitions of sofastack/sofa-registry (core/model: PublisherRegister,
// SubscriberRegister, RegisterResponse, ReceivedData, Result, DataBox) and the session server's observable behaviour:
// Bolt v1 with Hessian 2.0 bodies, one RegisterResponse per register, publishers held per connection and dropped with
// it, a ReceivedData push to every subscriber of a dataId on each change with an increasing version, Result answers.
// Bodies are read and written with hessian.js (2.x, the Hessian 2.0 grammar sofa-hessian writes), not with the
// client's own codec, so every test that passes through it is also a check of the client's encoding and decoding.

import net from 'node:net';
import { BoltStatus, FrameSplitter, decodeFrame, encodeBoltHeartbeat, encodeBoltHeartbeatAck } from '@meshport/protocol';
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

function encode(value: unknown): Buffer {
  const encoder = new hessianJs.EncoderV2();
  encoder.write(value);
  return encoder.get();
}

const jLong = (n: number) => ({ $class: 'long', $: n });
const jBool = (b: boolean) => ({ $class: 'boolean', $: b });
const jList = (items: unknown[]) => ({ $class: 'java.util.ArrayList', $: items });

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
  /** The Result, decoded by hessian.js; undefined for an empty body. */
  result: Record<string, unknown> | undefined;
}

interface Publisher {
  conn: Peer;
  zone: string;
  version: number;
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
  version: number | null;
  /** zone -> data strings; null sends `data: null`. */
  data: Record<string, string[]> | null;
  segment?: string;
}

export class SessionStandIn {
  private server: net.Server | undefined;
  private listeningPort = 0;
  private readonly peers = new Set<Peer>();
  private readonly publishers = new Map<string, Map<string, Publisher>>();
  private readonly subscribers = new Map<string, Map<string, Subscriber>>();
  /** One counter for the stand-in's whole life, restarts included: versions only ever grow, as a datum's do. */
  private version = 1_000;
  private requestIds = 0;
  /** Every register received, in order. */
  readonly received: ReceivedRequest[] = [];
  /** Every answer the clients gave to a push, in order. */
  readonly pushAnswers: PushAnswer[] = [];
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
      (peer) => new Promise<void>((resolve) => (peer.socket.closed ? resolve() : peer.socket.once('close', () => resolve()))),
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
          segment: push.segment ?? 'DEFAULT_SEGMENT',
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
    for (const resolve of peer.pending.values()) resolve({ status: -1, className: '', result: undefined });
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
        result: body.length > 0 ? decodePlain(body) : undefined,
      });
      return;
    }
    const className = header.className;
    if (className !== STAND_IN_CLASSES.publisherRegister && className !== STAND_IN_CLASSES.subscriberRegister) {
      peer.socket.write(
        encodeBoltResponse({ requestId: header.requestId, className: '', content: Buffer.alloc(0), status: BoltStatus.NO_PROCESSOR }),
      );
      return;
    }
    const fields = decodePlain(body);
    this.received.push({ className, content: Buffer.from(body), fields });
    const registId = String(fields.registId);
    const dataId = String(fields.dataId);
    const version = Number(fields.version);
    const answer = (success: boolean) =>
      peer.socket.write(
        encodeBoltResponse({
          requestId: header.requestId,
          className: STAND_IN_CLASSES.registerResponse,
          content: encode({
            $class: STAND_IN_CLASSES.registerResponse,
            $: { success: jBool(success), version: jLong(version), refused: jBool(false), registId, message: null },
          }),
        }),
      );
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
      segment: 'DEFAULT_SEGMENT',
      scope: first.scope,
      registIds: subs.map((s) => s.registId),
      data,
      version: ++this.version,
      localZone: first.zone,
    });
  }

  private sendPush(
    peer: Peer,
    p: {
      dataId: string;
      group: string;
      instanceId: string;
      segment: string;
      scope: string;
      registIds: string[];
      data: Record<string, string[]> | null;
      version: number | null;
      localZone: string;
    },
  ): Promise<PushAnswer> {
    const data =
      p.data === null
        ? null
        : {
            $class: 'java.util.HashMap',
            $: new Map(
              Object.entries(p.data).map(([zone, list]) => [
                zone,
                jList(list.map((d) => ({ $class: STAND_IN_CLASSES.dataBox, $: { data: d } }))),
              ]),
            ),
          };
    const content = encode({
      $class: STAND_IN_CLASSES.receivedData,
      $: {
        dataId: p.dataId,
        group: p.group,
        instanceId: p.instanceId,
        segment: p.segment,
        scope: p.scope,
        subscriberRegistIds: jList(p.registIds),
        data,
        version: p.version === null ? null : jLong(p.version),
        localZone: p.localZone,
        dataCount: { $class: 'java.util.HashMap', $: new Map() },
      },
    });
    return this.request(peer, STAND_IN_CLASSES.receivedData, content);
  }

  private request(peer: Peer, className: string, content: Buffer): Promise<PushAnswer> {
    const requestId = ++this.requestIds;
    return new Promise<PushAnswer>((resolve) => {
      if (peer.socket.destroyed) {
        resolve({ status: -1, className: '', result: undefined });
        return;
      }
      const timer = setTimeout(() => {
        peer.pending.delete(requestId);
        resolve({ status: -1, className: '', result: undefined });
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
