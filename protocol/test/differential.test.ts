// Differential tests against the npm peers: sofa-bolt-node 2.0.1 (Bolt v1/v2), dubbo-remoting 2.1.4 (Dubbo) and
// hessian.js 2.11.0 (the reference reader of Dubbo's leading body strings).
//
// 1. Frames the peers make, decoded by meshport and compared field by field with what went in and with what the
//    peer itself decodes from the same bytes.
// 2. Each of those frames through FrameSplitter whole, byte by byte and split in two at every point (a sample of
//    points for the 1 MiB frames), and all of them concatenated across protocols: the frames out are the frames in.
// 3. Frames meshport makes (heartbeats, acks, error responses, rewritten request ids), read by the peers.

import { strict as assert } from 'node:assert';
import * as boltPeer from 'sofa-bolt-node/lib/protocol';
import type {
  BoltPeerCodecOptions,
  BoltPeerCommand,
  BoltPeerOptions,
  BoltPeerPacket,
  BoltPeerProto,
} from 'sofa-bolt-node/lib/protocol';
import * as boltHeaderMap from 'sofa-bolt-node/lib/simple_map_serializer';
import BoltStreamDecoder = require('sofa-bolt-node/lib/decoder');
import * as dubboPeer from 'dubbo-remoting/lib/protocol';
import type { DubboPeerPacket } from 'dubbo-remoting/lib/protocol';
import * as dubboRemoting from 'dubbo-remoting';
import * as dubboSerialization from 'dubbo-remoting/lib/serialize';
import * as dubboUtils from 'dubbo-remoting/lib/utils';
import * as hessian from 'hessian.js';
import DubboResponse = require('dubbo-remoting/lib/protocol/response');
import DubboRequest = require('dubbo-remoting/lib/protocol/request');
import DubboInvocation = require('dubbo-remoting/lib/protocol/invocation');
import {
  BoltStatus,
  DubboStatus,
  FrameSplitter,
  ProtocolError,
  decodeFrame,
  detectProtocol,
  encodeBoltErrorResponse,
  encodeBoltHeartbeat,
  encodeBoltHeartbeatAck,
  encodeDubboErrorResponse,
  encodeDubboHeartbeat,
  encodeDubboHeartbeatAck,
  setRequestId,
} from '../src/index';
import type { BoltFrameHeader, BoltFrameOptions, DubboFrameHeader, FrameHeader, FrameKind } from '../src/index';
import { decodeBody } from '../src/body';

const SOFA_REQUEST = 'com.alipay.sofa.rpc.core.request.SofaRequest';
const SOFA_RESPONSE = 'com.alipay.sofa.rpc.core.response.SofaResponse';
const RPC_SERVER_EXCEPTION = 'com.alipay.remoting.rpc.exception.RpcServerException';

// ---------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------

/** A 1 MiB (2^20 UTF-16 units) string with 1-, 2-, 3- and 4-byte (UTF-8) characters in it. */
const PATTERN = 'mé中文😀port-01xyz';
assert.equal(PATTERN.length, 16);
const MIB_STRING = PATTERN.repeat((1024 * 1024) / PATTERN.length);

const UNICODE_SERVICE = 'com.例子.回声服务😀Service';
const UNICODE_METHOD = '回显😀';

/** A fixed-seed PRNG (mulberry32), so every run splits the same way. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hex(buf: Buffer, max = 96): string {
  const h = buf.subarray(0, max).toString('hex');
  return buf.length > max ? `${h}… (${buf.length} bytes)` : h;
}

/** Runs chunks through a fresh FrameSplitter and returns copies of the frames it handed out. */
function split(chunks: Iterable<Buffer>): { frames: Buffer[]; offset: number; buffered: number } {
  const frames: Buffer[] = [];
  const splitter = new FrameSplitter((f) => frames.push(Buffer.from(f)));
  for (const c of chunks) splitter.write(c);
  splitter.end();
  return { frames, offset: splitter.offset, buffered: splitter.buffered };
}

function assertFramesOut(out: Buffer[], expected: Buffer[], how: string): void {
  assert.equal(out.length, expected.length, `${how}: ${out.length} frames out, ${expected.length} in`);
  for (let i = 0; i < expected.length; i++) {
    if (!out[i].equals(expected[i])) {
      assert.fail(`${how}: frame ${i} differs\n  in:  ${hex(expected[i])}\n  out: ${hex(out[i])}`);
    }
  }
}

/** One-byte chunks, made lazily (an array of a million views would cost more than the splitting). */
function* byteByByte(buf: Buffer): Generator<Buffer> {
  for (let i = 0; i < buf.length; i++) yield buf.subarray(i, i + 1);
}

/** Every split point of a small frame; for a large one the first and last 64, the header area and a spread. */
function splitPoints(frame: Buffer, header: FrameHeader): number[] {
  const len = frame.length;
  if (len <= 8192) return Array.from({ length: len - 1 }, (_, i) => i + 1);
  const points = new Set<number>();
  for (let i = 1; i <= 32; i++) {
    points.add(i);
    points.add(len - i);
  }
  for (let d = -4; d <= 4; d++) points.add(header.bodyOffset + d);
  for (let i = 1; i < 32; i++) points.add(Math.floor((len * i) / 32));
  const rnd = prng(len);
  for (let i = 0; i < 16; i++) points.add(1 + Math.floor(rnd() * (len - 1)));
  return [...points].filter((p) => p > 0 && p < len).sort((a, b) => a - b);
}

/** Whole, byte by byte, and split in two at every (sampled) point: one frame out, byte-identical. */
function assertSplitsCleanly(frame: Buffer): void {
  const header = decodeFrame(frame);
  const whole = split([frame]);
  assertFramesOut(whole.frames, [frame], 'whole');
  assert.equal(whole.offset, frame.length);
  assert.equal(whole.buffered, 0);
  assertFramesOut(split(byteByByte(frame)).frames, [frame], 'byte by byte');
  for (const p of splitPoints(frame, header)) {
    assertFramesOut(split([frame.subarray(0, p), frame.subarray(p)]).frames, [frame], `split at ${p}`);
  }
}

/** The Bolt kind sofa-bolt-node reports (it does not tell oneway from request). */
function boltPeerKind(packetType: BoltPeerPacket['packetType']): FrameKind {
  return packetType === 'heartbeat_ack' ? 'heartbeat-ack' : packetType;
}

function dubboPeerKind(packetType: DubboPeerPacket['packetType']): FrameKind {
  return packetType === 'heartbeat_ack' ? 'heartbeat-ack' : packetType;
}

function asBolt(h: FrameHeader): BoltFrameHeader {
  assert.equal(h.protocol, 'bolt');
  return h as BoltFrameHeader;
}

function asDubbo(h: FrameHeader): DubboFrameHeader {
  assert.equal(h.protocol, 'dubbo');
  return h as DubboFrameHeader;
}

/** hessian.js DecoderV2 at position 16, five read() calls: dubbo version, path, version, method, arg types. */
function hessianLeadingValues(frame: Buffer): unknown[] {
  const decoder = new hessian.DecoderV2(frame);
  decoder.position(16);
  return [decoder.read(), decoder.read(), decoder.read(), decoder.read(), decoder.read()];
}

/** Everything dubbo-remoting's streaming decoder (lib/decoder.js) emits for the given chunks. */
async function dubboStreamDecode(chunks: Buffer[]): Promise<DubboPeerPacket[]> {
  const decoder = dubboRemoting.decoder({});
  const got: DubboPeerPacket[] = [];
  for (const ev of ['request', 'response', 'heartbeat', 'heartbeat_ack']) {
    decoder.on(ev, (packet: DubboPeerPacket) => got.push(packet));
  }
  await new Promise<void>((resolve, reject) => {
    decoder.on('error', reject);
    decoder.on('finish', resolve);
    for (const c of chunks) decoder.write(c);
    decoder.end();
  });
  return got;
}

/** Everything sofa-bolt-node's streaming decoder (lib/decoder.js, the client's framer) emits for the chunks. */
async function boltStreamDecode(chunks: Iterable<Buffer>): Promise<BoltPeerPacket[]> {
  const decoder = new BoltStreamDecoder({});
  const got: BoltPeerPacket[] = [];
  for (const ev of ['request', 'response', 'heartbeat', 'heartbeat_ack']) {
    decoder.on(ev, (packet: BoltPeerPacket) => got.push(packet));
  }
  await new Promise<void>((resolve, reject) => {
    decoder.on('error', reject);
    decoder.on('finish', resolve);
    for (const c of chunks) decoder.write(c);
    decoder.end();
  });
  return got;
}

// ---------------------------------------------------------------------------------------------------------------
// Frames made by sofa-bolt-node
// ---------------------------------------------------------------------------------------------------------------

interface BoltVariant {
  label: string;
  options: BoltPeerOptions;
  version: 1 | 2;
  ver1?: 1 | 2;
  crc: boolean;
}

const BOLT_VARIANTS: BoltVariant[] = [
  { label: 'v1', options: { protocolType: 'bolt', codecType: 'hessian2' }, version: 1, crc: false },
  {
    label: 'v2 ver1=1',
    options: { protocolType: 'bolt2', boltVersion: 1, crcEnable: false, codecType: 'hessian2' },
    version: 2,
    ver1: 1,
    crc: false,
  },
  {
    label: 'v2 ver1=2 no CRC',
    options: { protocolType: 'bolt2', boltVersion: 2, crcEnable: false, codecType: 'hessian2' },
    version: 2,
    ver1: 2,
    crc: false,
  },
  {
    label: 'v2 ver1=2 CRC',
    options: { protocolType: 'bolt2', boltVersion: 2, crcEnable: true, codecType: 'hessian2' },
    version: 2,
    ver1: 2,
    crc: true,
  },
];

interface BoltCase {
  name: string;
  frame: Buffer;
  variant: BoltVariant;
  kind: FrameKind;
  id: number;
  /** Requests: what was put in. */
  service?: string;
  method?: string;
  args?: unknown[];
  timeoutMs?: number;
  /** Responses. */
  status?: number;
  appResponse?: unknown;
  errorText?: string;
  big?: boolean;
}

function fixedError(message: string): Error {
  const err = new Error(message);
  err.stack = `Error: ${message}`;
  return err;
}

function boltCases(): BoltCase[] {
  const cases: BoltCase[] = [];
  let id = 100;
  for (const variant of BOLT_VARIANTS) {
    const o = variant.options;
    const add = (c: Omit<BoltCase, 'variant' | 'name'> & { what: string }) => {
      const { what, ...rest } = c;
      cases.push({ ...rest, variant, name: `bolt ${variant.label} ${what}`, frame: Buffer.from(rest.frame) });
    };
    const request = (
      what: string,
      service: string,
      method: string,
      args: unknown[],
      extra: { oneway?: boolean; big?: boolean } = {},
    ) => {
      const reqId = ++id;
      const timeoutMs = 1000 + reqId;
      add({
        what,
        frame: boltPeer.requestEncode(
          reqId,
          { serverSignature: service, methodName: method, args, timeout: timeoutMs, oneway: extra.oneway },
          o,
        ),
        kind: extra.oneway ? 'oneway' : 'request',
        id: reqId,
        service,
        method,
        args,
        timeoutMs,
        big: extra.big,
      });
    };
    request('request', 'com.example.EchoService:1.0', 'echo', ['hello', 42, { nested: ['x', 1] }]);
    request('oneway request', 'com.example.LogService:1.0', 'log', ['fire and forget'], { oneway: true });
    request('request, unicode service (Chinese + emoji)', `${UNICODE_SERVICE}:1.0`, UNICODE_METHOD, ['你好🌏']);
    request('request, service with uniqueId', 'com.example.EchoService:2.0:blue', 'echo', []);
    if (variant.label === 'v1' || variant.crc) {
      request('request, 1 MiB string argument', 'com.example.BulkService:1.0', 'put', [MIB_STRING], { big: true });
    }

    const appResponse = { greeting: '你好😀', n: 42 };
    let resId = ++id;
    add({
      what: 'response',
      frame: boltPeer.responseEncode(resId, { isError: false, appResponse }, o),
      kind: 'response',
      id: resId,
      status: 0,
      appResponse,
    });
    if (variant.label === 'v2 ver1=1') {
      resId = ++id;
      const big = { big: MIB_STRING };
      add({
        what: 'response, 1 MiB value',
        frame: boltPeer.responseEncode(resId, { appResponse: big }, o),
        kind: 'response',
        id: resId,
        status: 0,
        appResponse: big,
        big: true,
      });
    }
    const errors: Array<[string, number, string]> = [
      ['error response SERVER_EXCEPTION', BoltStatus.SERVER_EXCEPTION, 'provider failed: 服务异常 😀'],
      ['error response NO_PROCESSOR', BoltStatus.NO_PROCESSOR, 'no processor for com.example.Missing:1.0'],
      ['error response TIMEOUT', BoltStatus.TIMEOUT, 'biz timeout'],
      ['error response SERVER_THREADPOOL_BUSY', BoltStatus.SERVER_THREADPOOL_BUSY, 'thread pool busy'],
    ];
    for (const [what, status, text] of errors) {
      resId = ++id;
      add({
        what,
        frame: boltPeer.responseEncode(resId, { isError: true, status, appResponse: fixedError(text) }, o),
        kind: 'response',
        id: resId,
        status,
        errorText: text,
      });
    }
    // With a real stack: the RpcServerException then carries a StackTraceElement[] list.
    resId = ++id;
    add({
      what: 'error response with a stack trace',
      frame: boltPeer.responseEncode(resId, { isError: true, errorMsg: 'with a stack 栈' }, o),
      kind: 'response',
      id: resId,
      status: BoltStatus.SERVER_EXCEPTION,
      errorText: 'with a stack 栈',
    });

    const hbId = ++id;
    add({
      what: 'heartbeat',
      frame: boltPeer.heartbeatEncode(hbId, {}, o),
      kind: 'heartbeat',
      id: hbId,
      timeoutMs: 3000,
    });
    add({
      what: 'heartbeat ack',
      frame: boltPeer.heartbeatAckEncode(hbId, o),
      kind: 'heartbeat-ack',
      id: hbId,
      status: 0,
    });
  }
  return cases;
}

function checkBoltCase(c: BoltCase): void {
  const { frame, variant } = c;
  const peer = boltPeer.decode(Buffer.from(frame));
  assert.equal(detectProtocol(frame), 'bolt');
  const h = asBolt(decodeFrame(frame));

  // Version, ver1 and CRC, against what went in and what the peer read.
  assert.equal(h.protocolVersion, variant.version);
  assert.equal(h.protocolVersion, peer.options.protocolType === 'bolt2' ? 2 : 1);
  if (variant.version === 2) assert.equal(frame[1], variant.ver1);
  assert.equal(h.crc, variant.crc ? 'ok' : undefined);
  assert.equal(!!peer.options.crcEnable, variant.crc);

  // Kind and id.
  assert.equal(h.kind, c.kind);
  assert.equal(h.kind === 'oneway' ? 'request' : h.kind, boltPeerKind(peer.packetType));
  assert.equal(h.requestId, c.id);
  assert.equal(h.requestId, peer.packetId);
  assert.equal(h.codec, 1);
  assert.equal(h.serialization, peer.options.codecType);

  // Geometry: one frame, nothing missing, nothing extra.
  assert.equal(h.frameLength, frame.length);
  assert.equal(h.bodyOffset + h.bodyLength + (variant.crc ? 4 : 0), frame.length);
  assert.equal(h.className, peer.className ?? '');

  const isRequest = c.kind === 'request' || c.kind === 'oneway' || c.kind === 'heartbeat';
  if (isRequest) {
    assert.equal(h.timeoutMs, c.timeoutMs);
    assert.equal(h.timeoutMs, peer.options.timeout);
    assert.equal(h.status, undefined);
  } else {
    assert.equal(h.status, c.status);
    assert.equal(h.timeoutMs, undefined);
  }

  const body = decodeBody(frame, h);
  if (c.kind === 'request' || c.kind === 'oneway') {
    assert.equal(h.className, SOFA_REQUEST);
    assert.equal(h.service, c.service);
    assert.equal(h.service, peer.data.serverSignature);
    assert.equal(h.method, undefined, 'sofa-bolt-node in hessian2 mode sends no sofa_head_method_name');
    assert.deepEqual({ ...h.headers }, { service: c.service });
    // The body, read by meshport (hessian.js-1, draft grammar) and by the peer (sofa-hessian-node v3).
    const req = body[0] as Record<string, unknown>;
    assert.equal(req.methodName, c.method);
    assert.equal(req.methodName, peer.data.methodName);
    assert.equal(req.targetServiceUniqueName, peer.data.serverSignature);
    assert.deepEqual(req.methodArgSigs, peer.data.methodArgSigs);
    assert.equal(body.length, 1 + (c.args ?? []).length);
    assert.deepEqual(body.slice(1), peer.data.args);
    assert.deepEqual(body.slice(1), c.args);
  } else if (c.kind === 'response') {
    assert.equal(h.className, SOFA_RESPONSE);
    assert.equal(h.service, undefined);
    assert.deepEqual({ ...h.headers }, {});
    assert.equal(body.length, 1);
    if (c.status === 0) {
      const res = body[0] as Record<string, unknown>;
      assert.equal(res.isError, false);
      assert.deepEqual(res.appResponse, c.appResponse);
      assert.deepEqual(res.appResponse, peer.data.appResponse);
      assert.equal(peer.data.error, null);
    } else {
      const exc = body[0] as { $exception: string; message: string };
      assert.equal(exc.$exception, RPC_SERVER_EXCEPTION);
      assert.equal(exc.message, `Error: ${c.errorText}`);
      assert.ok(peer.data.error instanceof Error);
      assert.equal(peer.data.error.message, `${RPC_SERVER_EXCEPTION}: ${exc.message}`);
    }
  } else {
    assert.equal(h.className, '');
    assert.equal(h.bodyLength, 0);
    assert.equal(h.service, undefined);
    assert.deepEqual(body, []);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Bolt frames whose header map carries more than `service`: sofa-bolt-node's protobuf codec (which sends
// sofa_head_method_name, sofa_head_target_service, sofa_head_target_app and flattened requestProps) and hand-made
// commands framed by sofa-bolt-node, written the way older Java clients and SOFA Registry fill the header map.
// ---------------------------------------------------------------------------------------------------------------

/** Enough of a protobufjs Root for the protobuf codec: methods without request/response types (empty content). */
const FAKE_PROTO: BoltPeerProto = { lookupService: () => ({ get: () => ({ resolve: () => ({}) }) }) };

interface HeaderMapCase {
  name: string;
  frame: Buffer;
  kind: FrameKind;
  id: number;
  codec: number;
  className: string;
  service: string | undefined;
  method: string | undefined;
  crc: boolean;
  /** Options for sofa-bolt-node's decode; absent when the peer has no decoder for the class. */
  peerDecode?: Parameters<typeof boltPeer.decode>[1];
  errorText?: string;
}

/** The header map bytes, located from the wire layout of PROTOCOLS.md (not from meshport). */
function boltHeaderMapBytes(frame: Buffer): { start: number; end: number } {
  const v2 = frame[0] === 2;
  const response = frame[v2 ? 2 : 1] === 0;
  const classLenAt = (v2 ? 1 : 0) + (v2 ? 1 : 0) + (response ? 12 : 14);
  const fixed = (response ? 20 : 22) + (v2 ? 2 : 0);
  const classLen = frame.readInt16BE(classLenAt);
  const headerLen = frame.readInt16BE(classLenAt + 2);
  return { start: fixed + classLen, end: fixed + classLen + headerLen };
}

function handMadeCommand(
  className: string,
  headers: Record<string, string | null>,
  extra: Partial<BoltPeerCommand> = {},
): BoltPeerCommand {
  return {
    className,
    timeout: 2500,
    serializeClazz: (bb) => bb.put(Buffer.from(className)),
    serializeHeader: (bb) => bb.put(boltHeaderMap.encode(headers)),
    serializeContent: () => undefined,
    ...extra,
  };
}

function headerMapCases(): HeaderMapCase[] {
  const cases: HeaderMapCase[] = [];
  const variants: Array<[string, BoltPeerCodecOptions, boolean]> = [
    ['v1', { protocolType: 'bolt', codecType: 'protobuf', proto: FAKE_PROTO }, false],
    [
      'v2 CRC',
      { protocolType: 'bolt2', boltVersion: 2, crcEnable: true, codecType: 'protobuf', proto: FAKE_PROTO },
      true,
    ],
  ];
  let id = 600;
  for (const [label, o, crc] of variants) {
    const service = `${UNICODE_SERVICE}:1.0`;
    const requestProps = { rpc_trace_context: { sofaTraceId: '0a0fe8f1', sofaRpcId: 1 }, 'k😀': 'v中', empty: '' };
    for (const oneway of [false, true]) {
      const reqId = ++id;
      cases.push({
        name: `bolt ${label} protobuf ${oneway ? 'oneway' : 'request'} (method, target app, trace props in the header map)`,
        frame: Buffer.from(
          boltPeer.requestEncode(
            reqId,
            {
              serverSignature: service,
              methodName: UNICODE_METHOD,
              args: [],
              timeout: 1500,
              targetAppName: '',
              requestProps,
              oneway,
            },
            o,
          ),
        ),
        kind: oneway ? 'oneway' : 'request',
        id: reqId,
        codec: 11,
        className: SOFA_REQUEST,
        service,
        method: UNICODE_METHOD,
        crc,
        peerDecode: { proto: FAKE_PROTO },
      });
    }
    let resId = ++id;
    const appRequest = { serverSignature: service, methodName: UNICODE_METHOD };
    cases.push({
      name: `bolt ${label} protobuf response (sofa_head_response_error=false)`,
      frame: Buffer.from(boltPeer.responseEncode(resId, { appResponse: {}, appRequest }, o)),
      kind: 'response',
      id: resId,
      codec: 11,
      className: SOFA_RESPONSE,
      service: undefined,
      method: undefined,
      crc,
      peerDecode: { proto: FAKE_PROTO, sentReqs: new Map([[resId, { req: appRequest }]]) },
    });
    resId = ++id;
    cases.push({
      name: `bolt ${label} protobuf error response (sofa_head_response_error=true)`,
      frame: Buffer.from(
        boltPeer.responseEncode(resId, { isError: true, errorMsg: 'protobuf provider failed 失败' }, o),
      ),
      kind: 'response',
      id: resId,
      codec: 11,
      className: SOFA_RESPONSE,
      service: undefined,
      method: undefined,
      crc,
      peerDecode: { proto: FAKE_PROTO },
      errorText: 'protobuf provider failed 失败',
    });
    // Older Java clients: no `service` key, the target in sofa_head_target_service; empty and null values.
    let reqId = ++id;
    cases.push({
      name: `bolt ${label} Java-style header map without "service" (sofa_head_target_service, null and empty values)`,
      frame: Buffer.from(
        boltPeer.requestEncode(
          reqId,
          handMadeCommand(SOFA_REQUEST, {
            sofa_head_target_app: 'legacy-app',
            sofa_head_method_name: 'legacy',
            sofa_head_target_service: 'com.example.Legacy:1.0:blue',
            'rpc_trace_context.sofaTraceId': 'trace-1',
            'rpc_trace_context.sofaPenAttrs': '',
            nullValue: null,
          }),
          o,
        ),
      ),
      kind: 'request',
      id: reqId,
      codec: 11,
      className: SOFA_REQUEST,
      service: 'com.example.Legacy:1.0:blue',
      method: 'legacy',
      crc,
      peerDecode: { proto: FAKE_PROTO },
    });
    // Both keys present, `service` last: `service` wins whatever the order.
    reqId = ++id;
    cases.push({
      name: `bolt ${label} header map with sofa_head_target_service first and service last`,
      frame: Buffer.from(
        boltPeer.requestEncode(
          reqId,
          handMadeCommand(SOFA_REQUEST, {
            sofa_head_target_service: 'com.example.Old:1.0',
            sofa_head_method_name: 'm',
            service: 'com.example.New:2.0',
          }),
          o,
        ),
      ),
      kind: 'request',
      id: reqId,
      codec: 11,
      className: SOFA_REQUEST,
      service: 'com.example.New:2.0',
      method: 'm',
      crc,
    });
    // SOFA Registry: its own class name, empty header map.
    reqId = ++id;
    cases.push({
      name: `bolt ${label} SOFA Registry style request (own class, empty header map)`,
      frame: Buffer.from(
        boltPeer.requestEncode(reqId, handMadeCommand('com.alipay.sofa.registry.core.model.PublisherRegister', {}), {
          ...o,
          codecType: 'hessian2',
        }),
      ),
      kind: 'request',
      id: reqId,
      codec: 1,
      className: 'com.alipay.sofa.registry.core.model.PublisherRegister',
      service: undefined,
      method: undefined,
      crc,
    });
  }
  return cases;
}

function checkHeaderMapCase(c: HeaderMapCase): void {
  const { frame } = c;
  const h = asBolt(decodeFrame(frame));
  assert.equal(h.kind, c.kind);
  assert.equal(h.requestId, c.id);
  assert.equal(h.codec, c.codec);
  assert.equal(h.serialization, c.codec === 11 ? 'protobuf' : 'hessian2');
  assert.equal(h.className, c.className);
  assert.equal(h.service, c.service);
  assert.equal(h.method, c.method);
  assert.equal(h.crc, c.crc ? 'ok' : undefined);
  assert.equal(h.frameLength, frame.length);

  // Every header entry, against the peer's own header map reader over the same bytes.
  const { start, end } = boltHeaderMapBytes(frame);
  assert.equal(h.bodyOffset, end);
  const peerMap = boltHeaderMap.decode(frame.subarray(start, end)) ?? {};
  assert.deepEqual({ ...h.headers }, { ...peerMap });
  const routed = peerMap.service ?? peerMap.sofa_head_target_service ?? undefined;
  assert.equal(h.service, routed);

  if (c.peerDecode) {
    const peer = boltPeer.decode(Buffer.from(frame), c.peerDecode);
    assert.equal(peer.packetId, h.requestId);
    assert.equal(h.kind === 'oneway' ? 'request' : h.kind, boltPeerKind(peer.packetType));
    assert.equal(peer.className, h.className);
    assert.equal(peer.options.codecType, h.serialization);
    if (c.kind === 'request' || c.kind === 'oneway') {
      assert.equal(peer.data.serverSignature, peerMap.sofa_head_target_service);
      assert.equal(peer.data.methodName, h.method);
    } else if (c.errorText !== undefined) {
      assert.equal(h.status, BoltStatus.SERVER_EXCEPTION);
      // The protobuf codec carries the message as raw UTF-8; the peer wraps the Error it makes in another Error.
      assert.equal(frame.subarray(h.bodyOffset, h.bodyOffset + h.bodyLength).toString('utf8'), c.errorText);
      assert.equal(peer.data.error.message, `Error: ${c.errorText}`);
    } else {
      assert.equal(h.status, BoltStatus.SUCCESS);
      assert.equal(peer.data.error, null);
    }
  }
  if (h.bodyLength === 0) {
    assert.deepEqual(decodeBody(frame, h), []);
  } else if (c.codec === 11) {
    assert.throws(
      () => decodeBody(frame, h),
      (err: unknown) => err instanceof ProtocolError && err.code === 'MESHPORT_BODY_UNDECODABLE',
    );
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Frames made by dubbo-remoting
// ---------------------------------------------------------------------------------------------------------------

interface DubboCase {
  name: string;
  frame: Buffer;
  kind: FrameKind;
  /** Decimal int64. */
  id: string;
  status?: number;
  dubboVersion?: string;
  service?: string;
  version?: string | null;
  method?: string;
  args?: unknown[];
  errorText?: string;
  appResponse?: unknown;
  /** dubbo-remoting cannot read it back (a null version: its readUTF throws on 'N'). */
  peerCannotDecode?: boolean;
  big?: boolean;
}

/**
 * A request with a null version, as Java Dubbo sends it when none is configured. dubbo-remoting's Request.encode
 * writes '' instead, so this writes dubbo-remoting's own header and hessian2 output with a null in that place.
 */
function dubboNullVersionRequest(id: number, path: string, method: string, args: unknown[]): Buffer {
  const out = dubboSerialization.getSerializationByName('hessian2').serialize();
  const bytes = out.bytes;
  bytes.put(0xda);
  bytes.put(0xbb);
  bytes.put(0x80 | 0x40 | out.contentTypeId);
  bytes.put(0);
  bytes.putLong(id);
  bytes.skip(4);
  out.writeUTF('2.0.2');
  out.writeUTF(path);
  out.writeObject(null);
  out.writeUTF(method);
  out.writeUTF(dubboUtils.getJavaArgsDesc(args));
  for (const a of args) out.writeObject(a);
  out.writeObject({ path, interface: path });
  bytes._bytes.writeInt32BE(bytes.position() - 16, 12);
  return Buffer.from(out.get());
}

function dubboStatusResponse(id: number | string, status: number, message: string): Buffer {
  const res = new DubboResponse(id);
  res.status = status;
  res.errorMsg = message;
  return Buffer.from(res.encode({}));
}

function dubboCases(): DubboCase[] {
  const cases: DubboCase[] = [];
  const request = (
    name: string,
    id: number | string,
    signature: string,
    method: string,
    args: unknown[],
    extra: Partial<DubboCase> = {},
  ) => {
    const [service, version] = signature.split(':');
    cases.push({
      name: `dubbo ${name}`,
      frame: Buffer.from(
        dubboPeer.requestEncode(id, { serverSignature: signature, methodName: method, args, group: 'g1' }, {}),
      ),
      kind: 'request',
      id: String(id),
      dubboVersion: '5.3.0',
      service,
      version: version ?? '',
      method,
      args,
      ...extra,
    });
  };
  request('request with version', 201, 'org.apache.dubbo.demo.DemoService:1.0.0', 'sayHello', ['world']);
  request('request without version (dubbo-remoting writes "")', 202, 'org.apache.dubbo.demo.DemoService', 'sayHello', [
    'world',
    7,
  ]);
  cases.push({
    name: 'dubbo request with a null version (N)',
    frame: dubboNullVersionRequest(203, 'org.apache.dubbo.demo.DemoService', 'sayHello', ['world']),
    kind: 'request',
    id: '203',
    dubboVersion: '2.0.2',
    service: 'org.apache.dubbo.demo.DemoService',
    version: null,
    method: 'sayHello',
    args: ['world'],
    peerCannotDecode: true,
  });
  request('request, unicode service and method (Chinese + emoji)', 204, `org.例子.问候服务😀:2.0.0`, '问候😀', [
    '世界🌏',
  ]);
  request(
    'request, 700-char service name (medium string 0x32)',
    213,
    `org.example.${'m'.repeat(688)}:1.0.0`,
    'ping',
    [],
  );
  request(
    'request, 300 Chinese characters in the service name (medium string counts UTF-16 units, not bytes)',
    214,
    `org.服务.${'中'.repeat(300)}:1.0.0`,
    `方法${'法'.repeat(260)}`,
    [],
  );
  request('request, 1500-char service name (S-encoded)', 205, `org.example.${'x'.repeat(1488)}:1.0.0`, 'ping', []);
  // 'R' chunks of 0x8000 units; the emoji sits where the first chunk ends (hessian.js keeps the pair together).
  request(
    'request, 70000-char service name (R chunks) with an emoji on the chunk edge',
    206,
    `${'a'.repeat(0x7fff)}😀${'b'.repeat(70000 - 0x8001)}:1.0.0`,
    'ping',
    [],
    { big: true },
  );
  request('request, id 2^32 + 5', 2 ** 32 + 5, 'org.example.IdService:1.0.0', 'id', []);
  request('request, id 2^53 + 1 (decimal string)', '9007199254740993', 'org.example.IdService:1.0.0', 'id', []);
  request('request, id 2^63 - 1 (decimal string)', '9223372036854775807', 'org.example.IdService:1.0.0', 'id', []);
  request('request, 1 MiB string argument', 207, 'org.example.BulkService:1.0.0', 'put', [MIB_STRING], { big: true });

  const oneway = new DubboRequest(208);
  oneway.isTwoWay = false;
  oneway.data = new DubboInvocation({
    methodName: 'notify',
    args: ['event'],
    attachments: { dubbo: '5.3.0', path: 'org.example.EventService', version: '1.0.0' },
  });
  cases.push({
    name: 'dubbo oneway request',
    frame: Buffer.from(oneway.encode({})),
    kind: 'oneway',
    id: '208',
    dubboVersion: '5.3.0',
    service: 'org.example.EventService',
    version: '1.0.0',
    method: 'notify',
    args: ['event'],
  });

  cases.push({
    name: 'dubbo heartbeat (event)',
    frame: Buffer.from(dubboPeer.heartbeatEncode(209, {}, {})),
    kind: 'heartbeat',
    id: '209',
  });
  cases.push({
    name: 'dubbo heartbeat ack',
    frame: Buffer.from(dubboPeer.heartbeatAckEncode(209, {})),
    kind: 'heartbeat-ack',
    id: '209',
    status: 20,
  });
  cases.push({
    name: 'dubbo heartbeat, id 2^53 + 1',
    frame: Buffer.from(dubboPeer.heartbeatEncode('9007199254740993', {}, {})),
    kind: 'heartbeat',
    id: '9007199254740993',
  });

  const value = { greeting: '你好😀', n: 42 };
  cases.push({
    name: 'dubbo response status 20',
    frame: Buffer.from(dubboPeer.responseEncode(210, { appResponse: value }, {})),
    kind: 'response',
    id: '210',
    status: 20,
    appResponse: value,
  });
  cases.push({
    name: 'dubbo response status 20, 1 MiB value',
    frame: Buffer.from(dubboPeer.responseEncode(211, { appResponse: MIB_STRING }, {})),
    kind: 'response',
    id: '211',
    status: 20,
    appResponse: MIB_STRING,
    big: true,
  });
  cases.push({
    name: 'dubbo response status 80 (isError)',
    frame: Buffer.from(dubboPeer.responseEncode(212, { isError: true, errorMsg: 'server error 服务端错误' }, {})),
    kind: 'response',
    id: '212',
    status: 80,
    errorText: 'server error 服务端错误',
  });
  const statuses: Array<[number, string]> = [
    [DubboStatus.SERIALIZATION_ERROR, 'serialization failed'],
    [DubboStatus.CLIENT_TIMEOUT, 'client timeout'],
    [DubboStatus.SERVER_TIMEOUT, 'server timeout'],
    [DubboStatus.BAD_REQUEST, 'bad request'],
    [DubboStatus.BAD_RESPONSE, 'bad response'],
    [DubboStatus.SERVICE_NOT_FOUND, 'Not found exported service: org.example.Missing:1.0.0 找不到 😀'],
    [DubboStatus.SERVICE_ERROR, 'service error'],
    [DubboStatus.CLIENT_ERROR, 'client error'],
    [DubboStatus.SERVER_THREADPOOL_EXHAUSTED_ERROR, 'thread pool exhausted'],
  ];
  let id = 220;
  for (const [status, text] of statuses) {
    id++;
    cases.push({
      name: `dubbo response status ${status}`,
      frame: dubboStatusResponse(id, status, text),
      kind: 'response',
      id: String(id),
      status,
      errorText: text,
    });
  }
  cases.push({
    name: 'dubbo response status 60, id 2^53 + 1',
    frame: dubboStatusResponse('9007199254740993', 60, 'not found'),
    kind: 'response',
    id: '9007199254740993',
    status: 60,
    errorText: 'not found',
  });
  return cases;
}

function checkDubboCase(c: DubboCase): void {
  const { frame } = c;
  assert.equal(detectProtocol(frame), 'dubbo');
  const h = asDubbo(decodeFrame(frame));
  assert.equal(h.kind, c.kind);
  assert.equal(h.requestId, c.id);
  assert.equal(h.serialization, 'hessian2');
  assert.equal(h.serializationId, 2);
  assert.equal(h.frameLength, frame.length);
  assert.equal(h.bodyOffset, 16);
  assert.equal(h.bodyLength, frame.length - 16);
  assert.equal(h.status, c.status);

  const peer = c.peerCannotDecode ? undefined : dubboPeer.decode(Buffer.from(frame));
  if (peer) {
    assert.equal(h.requestId, String(peer.packetId));
    assert.equal(h.kind === 'oneway' ? 'request' : h.kind, dubboPeerKind(peer.packetType));
  }

  const body = decodeBody(frame, h);
  if (c.kind === 'request' || c.kind === 'oneway') {
    // Against hessian.js DecoderV2 (position 16, five read()s) and against what went in.
    const ref = hessianLeadingValues(frame);
    assert.equal(h.dubboVersion, ref[0]);
    assert.equal(h.service, ref[1]);
    assert.equal(h.version, ref[2]);
    assert.equal(h.method, ref[3]);
    assert.equal(h.dubboVersion, c.dubboVersion);
    assert.equal(h.service, c.service);
    assert.equal(h.version, c.version);
    assert.equal(h.method, c.method);
    assert.deepEqual(body.slice(0, 5), ref);
    assert.deepEqual(body.slice(5, 5 + (c.args ?? []).length), c.args);
    // The attachments past the arguments (1 MiB of them in one case) are read, and agree with the peer's.
    assert.equal(h.attachmentsError, undefined);
    if (peer) {
      const props = peer.data.requestProps as Record<string, unknown>;
      assert.equal(h.group, typeof props.group === 'string' && props.group !== '' ? props.group : undefined);
      assert.equal(h.interfaceName, props.interface);
      assert.equal(h.service, peer.data.requestProps.path);
      assert.equal(peer.data.serverSignature, h.version ? `${h.service}:${h.version}` : h.service);
      assert.equal(h.method, peer.data.methodName);
      assert.deepEqual(body.slice(5, -1), peer.data.args);
    }
  } else {
    assert.equal(h.service, undefined);
    assert.equal(h.method, undefined);
    assert.equal(h.version, undefined);
    if (c.kind === 'response' && c.status === 20) {
      assert.deepEqual(body, [1, c.appResponse]);
      assert.deepEqual(peer?.data.appResponse, c.appResponse);
    } else if (c.kind === 'response') {
      assert.deepEqual(body, [c.errorText]);
      assert.equal(peer?.data.error.message, c.errorText);
    } else {
      assert.deepEqual(body, [null]);
      assert.equal(peer?.data, null);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// 1 + 2: peer frames into meshport
// ---------------------------------------------------------------------------------------------------------------

const BOLT_CASES = boltCases();
const HEADER_MAP_CASES = headerMapCases();
const DUBBO_CASES = dubboCases();
const ALL_CASES: Array<{ name: string; frame: Buffer; big?: boolean }> = [
  ...BOLT_CASES,
  ...HEADER_MAP_CASES,
  ...DUBBO_CASES,
];

describe('differential: frames made by sofa-bolt-node 2.0.1, decoded by meshport', () => {
  for (const c of BOLT_CASES) {
    describe(c.name, () => {
      it('decodes to what went in and to what the peer reads', () => checkBoltCase(c));
      it('passes FrameSplitter whole, byte by byte and split at every point', () => assertSplitsCleanly(c.frame));
    });
  }

  describe('v2 ver1=1 with crcEnable (sofa-bolt-node writes a CRC that Java Bolt does not read)', () => {
    // sofa-bolt-node appends a CRC32 whenever crcEnable is set, and checks one whenever the switch byte is 1, even
    // with ver1 = 1. Java Bolt (and PROTOCOLS.md) carry a CRC only when ver1 == 2 AND switch bit 0 is set, so these
    // 4 bytes are not part of the frame for a Java peer. meshport follows Java. This is a peer quirk, not ours.
    const o: BoltPeerOptions = { protocolType: 'bolt2', boltVersion: 1, crcEnable: true, codecType: 'hessian2' };
    const frame = Buffer.from(
      boltPeer.requestEncode(
        301,
        { serverSignature: 'com.example.EchoService:1.0', methodName: 'echo', args: [], timeout: 3000 },
        o,
      ),
    );

    it('meshport measures the frame without the 4 trailing bytes (Java semantics)', () => {
      assert.equal(frame[1], 1, 'ver1');
      assert.equal(frame[11], 1, 'switch');
      const peer = boltPeer.decode(Buffer.from(frame));
      assert.equal(peer.packetId, 301);
      const h = asBolt(decodeFrame(frame));
      assert.equal(h.frameLength, frame.length - 4);
      assert.equal(h.crc, undefined);
      assert.equal(h.service, 'com.example.EchoService:1.0');
    });

    it('so a splitter hands out the frame and then reads the CRC as the start of the next frame', () => {
      const frames: Buffer[] = [];
      const splitter = new FrameSplitter((f) => frames.push(Buffer.from(f)));
      let failure: unknown;
      try {
        splitter.write(frame);
        splitter.end();
      } catch (err) {
        failure = err;
      }
      assert.equal(frames.length, 1);
      assert.ok(frames[0].equals(frame.subarray(0, frame.length - 4)));
      assert.ok(failure instanceof Error, 'the 4 CRC bytes cannot be a frame');
    });

    it("and the other way: meshport's v2 ver1=1 switch=1 heartbeat has no CRC, which sofa-bolt-node rejects", () => {
      const made = encodeBoltHeartbeat(302, { protocolVersion: 2, ver1: 1, switchFlags: 1 });
      assert.equal(made.length, 24, 'no CRC: ver1 is 1');
      assert.equal(asBolt(decodeFrame(made)).crc, undefined);
      assert.throws(() => boltPeer.decode(Buffer.from(made)), /CRC check failed/);
    });
  });
});

describe('differential: Bolt header maps beyond `service` (protobuf codec, Java-style, SOFA Registry), framed by sofa-bolt-node', () => {
  for (const c of HEADER_MAP_CASES) {
    describe(c.name, () => {
      it("decodes to what went in and to the peer's own header map reader", () => checkHeaderMapCase(c));
      it('passes FrameSplitter whole, byte by byte and split at every point', () => assertSplitsCleanly(c.frame));
    });
  }
});

describe('differential: frames made by dubbo-remoting 2.1.4, decoded by meshport and hessian.js', () => {
  for (const c of DUBBO_CASES) {
    describe(c.name, () => {
      it('decodes to what went in, to what hessian.js DecoderV2 and the peer read', () => checkDubboCase(c));
      it('passes FrameSplitter whole, byte by byte and split at every point', () => assertSplitsCleanly(c.frame));
    });
  }

  it('the null-version request really has N where the version goes, and hessian.js reads it as null', () => {
    const c = DUBBO_CASES.find((x) => x.version === null);
    assert.ok(c);
    const ref = hessianLeadingValues(c.frame);
    assert.equal(ref[2], null);
    const h = asDubbo(decodeFrame(c.frame));
    assert.equal(h.version, null);
    assert.notEqual(h.version, '');
  });
});

describe('differential: a concatenation of peer frames of both protocols through one FrameSplitter', () => {
  // Interleave Bolt and Dubbo so every protocol switch happens at a frame boundary somewhere.
  const small = interleave(
    ([...BOLT_CASES, ...HEADER_MAP_CASES] as Array<{ frame: Buffer; big?: boolean }>)
      .filter((c) => !c.big)
      .map((c) => c.frame),
    DUBBO_CASES.filter((c) => !c.big).map((c) => c.frame),
  );
  const smallStream = Buffer.concat(small);
  const withBig = interleave(
    ALL_CASES.map((c) => c.frame).filter((f) => f.length > 8192),
    small.slice(0, 24),
  );
  const bigStream = Buffer.concat(withBig);

  function interleave(a: Buffer[], b: Buffer[]): Buffer[] {
    const out: Buffer[] = [];
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      if (i < a.length) out.push(a[i]);
      if (i < b.length) out.push(b[i]);
    }
    return out;
  }

  it('has both protocols and all kinds in it', () => {
    const kinds = new Set(small.map((f) => `${decodeFrame(f).protocol}:${decodeFrame(f).kind}`));
    for (const p of ['bolt', 'dubbo']) {
      for (const k of ['request', 'oneway', 'response', 'heartbeat', 'heartbeat-ack'])
        assert.ok(kinds.has(`${p}:${k}`), `${p}:${k}`);
    }
    assert.ok(small.length > 60);
  });

  it('whole', () => {
    const r = split([smallStream]);
    assertFramesOut(r.frames, small, 'whole');
    assert.equal(r.offset, smallStream.length);
  });

  it('byte by byte', () => {
    assertFramesOut(split(byteByByte(smallStream)).frames, small, 'byte by byte');
  });

  it('split in two at every point', () => {
    for (let p = 1; p < smallStream.length; p++) {
      assertFramesOut(split([smallStream.subarray(0, p), smallStream.subarray(p)]).frames, small, `split at ${p}`);
    }
  });

  it('in random chunks (fixed seed)', () => {
    const rnd = prng(7);
    for (let round = 0; round < 200; round++) {
      const chunks: Buffer[] = [];
      for (let off = 0; off < smallStream.length; ) {
        const n = 1 + Math.floor(rnd() * (rnd() < 0.5 ? 40 : 2000));
        chunks.push(smallStream.subarray(off, off + n));
        off += n;
      }
      assertFramesOut(split(chunks).frames, small, `round ${round}`);
    }
  });

  it('with the 1 MiB and long-name frames mixed in: whole, byte by byte, random chunks', () => {
    assert.ok(withBig.filter((f) => f.length > 1024 * 1024).length >= 5);
    assertFramesOut(split([bigStream]).frames, withBig, 'whole');
    assertFramesOut(split(byteByByte(bigStream)).frames, withBig, 'byte by byte');
    const rnd = prng(11);
    for (let round = 0; round < 8; round++) {
      const chunks: Buffer[] = [];
      for (let off = 0; off < bigStream.length; ) {
        const n = 1 + Math.floor(rnd() * 70000);
        chunks.push(bigStream.subarray(off, off + n));
        off += n;
      }
      assertFramesOut(split(chunks).frames, withBig, `round ${round}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// 3: frames made by meshport, read by the peers
// ---------------------------------------------------------------------------------------------------------------

interface MadeVariant {
  label: string;
  options: BoltFrameOptions;
  peer: BoltPeerOptions;
  crc: boolean;
}

const MADE_VARIANTS: MadeVariant[] = [
  { label: 'v1', options: { protocolVersion: 1 }, peer: { protocolType: 'bolt', codecType: 'hessian2' }, crc: false },
  {
    label: 'v2 ver1=1',
    options: { protocolVersion: 2, ver1: 1, switchFlags: 0 },
    peer: { protocolType: 'bolt2', boltVersion: 1, crcEnable: false, codecType: 'hessian2' },
    crc: false,
  },
  {
    label: 'v2 ver1=2 CRC',
    options: { protocolVersion: 2, ver1: 2, switchFlags: 1 },
    peer: { protocolType: 'bolt2', boltVersion: 2, crcEnable: true, codecType: 'hessian2' },
    crc: true,
  },
];

describe('differential: Bolt frames made by meshport, read by sofa-bolt-node 2.0.1', () => {
  for (const v of MADE_VARIANTS) {
    it(`${v.label} heartbeat: the peer reads it, and it equals the peer's own heartbeat byte for byte`, () => {
      const frame = encodeBoltHeartbeat(4001, { ...v.options, timeoutMs: 3000 });
      const peer = boltPeer.decode(Buffer.from(frame));
      assert.equal(peer.packetType, 'heartbeat');
      assert.equal(peer.packetId, 4001);
      assert.equal(peer.options.timeout, 3000);
      assert.equal(peer.options.protocolType, v.peer.protocolType);
      assert.equal(!!peer.options.crcEnable, v.crc);
      const own = Buffer.from(boltPeer.heartbeatEncode(4001, { timeout: 3000 }, v.peer));
      assert.equal(frame.toString('hex'), own.toString('hex'));
      const h = asBolt(decodeFrame(frame));
      assert.equal(h.kind, 'heartbeat');
      assert.equal(h.crc, v.crc ? 'ok' : undefined);
    });

    it(`${v.label} heartbeat with the default timeout: the peer reads 1000 ms`, () => {
      const peer = boltPeer.decode(Buffer.from(encodeBoltHeartbeat(4002, v.options)));
      assert.equal(peer.packetType, 'heartbeat');
      assert.equal(peer.packetId, 4002);
      assert.equal(peer.options.timeout, 1000);
    });

    it(`${v.label} heartbeat ack: the peer reads it, and it equals the peer's own ack byte for byte`, () => {
      const frame = encodeBoltHeartbeatAck(4003, v.options);
      const peer = boltPeer.decode(Buffer.from(frame));
      assert.equal(peer.packetType, 'heartbeat_ack');
      assert.equal(peer.packetId, 4003);
      assert.equal(!!peer.options.crcEnable, v.crc);
      assert.equal(frame.toString('hex'), Buffer.from(boltPeer.heartbeatAckEncode(4003, v.peer)).toString('hex'));
    });

    const messages = [
      'no provider for com.example.Missing:1.0',
      'provider 不可用：服务 😀 unavailable',
      'x'.repeat(31),
      'y'.repeat(32),
      // Longer than one draft-grammar chunk (0xffff units), with an emoji across the chunk edge.
      `${'z'.repeat(0xfffe)}😀${'w'.repeat(5000)}`,
    ];
    const statuses: Array<[string, number]> = [
      ['SERVER_EXCEPTION', BoltStatus.SERVER_EXCEPTION],
      ['NO_PROCESSOR', BoltStatus.NO_PROCESSOR],
      ['TIMEOUT', BoltStatus.TIMEOUT],
      ['SERVER_THREADPOOL_BUSY', BoltStatus.SERVER_THREADPOOL_BUSY],
    ];
    for (const [statusName, status] of statuses) {
      it(`${v.label} error response ${statusName}: the peer surfaces an error carrying our message`, () => {
        for (const message of messages) {
          const frame = encodeBoltErrorResponse({ ...v.options, requestId: 4100 + status, status, message });
          const peer = boltPeer.decode(Buffer.from(frame));
          assert.equal(peer.packetType, 'response');
          assert.equal(peer.packetId, 4100 + status);
          assert.equal(peer.className, SOFA_RESPONSE);
          assert.ok(peer.data.error instanceof Error, 'the peer sees an error');
          assert.ok(
            (peer.data.error.message as string).includes(message),
            `peer message ${JSON.stringify((peer.data.error.message as string).slice(0, 120))} lacks ours`,
          );
          assert.equal(peer.data.error.message, `${RPC_SERVER_EXCEPTION}: ${message}`);
          const h = asBolt(decodeFrame(frame));
          assert.equal(h.status, status);
          assert.equal(h.kind, 'response');
          assert.equal(h.crc, v.crc ? 'ok' : undefined);
          // meshport's own body reader agrees with the peer.
          assert.deepEqual(decodeBody(frame, h), [{ $exception: RPC_SERVER_EXCEPTION, message }]);
        }
      });
    }
  }
});

describe("differential: meshport's Bolt frames through sofa-bolt-node's stream decoder", () => {
  it('heartbeats, acks and error responses of every variant, concatenated: whole and byte by byte', async () => {
    const made: Array<{ frame: Buffer; type: BoltPeerPacket['packetType']; id: number; message?: string }> = [];
    let id = 4500;
    for (const v of MADE_VARIANTS) {
      made.push({ frame: encodeBoltHeartbeat(++id, v.options), type: 'heartbeat', id });
      made.push({ frame: encodeBoltHeartbeatAck(id, v.options), type: 'heartbeat_ack', id });
      for (const status of [
        BoltStatus.SERVER_EXCEPTION,
        BoltStatus.NO_PROCESSOR,
        BoltStatus.TIMEOUT,
        BoltStatus.SERVER_THREADPOOL_BUSY,
      ]) {
        const message = `status ${status} 状态 😀`;
        made.push({
          frame: encodeBoltErrorResponse({ ...v.options, requestId: ++id, status, message }),
          type: 'response',
          id,
          message,
        });
      }
    }
    const stream = Buffer.concat(made.map((m) => m.frame));
    for (const chunks of [[stream], byteByByte(stream)]) {
      const got = await boltStreamDecode(chunks);
      assert.equal(got.length, made.length);
      got.forEach((p, i) => {
        assert.equal(p.packetType, made[i].type, `frame ${i}`);
        assert.equal(p.packetId, made[i].id);
        if (made[i].message !== undefined)
          assert.equal(p.data.error.message, `${RPC_SERVER_EXCEPTION}: ${made[i].message}`);
      });
    }
  });
});

describe('differential: Dubbo frames made by meshport, read by dubbo-remoting 2.1.4', () => {
  const messages = [
    'Not found exported service: org.example.Missing:1.0.0',
    '找不到服务 😀 org.例子.Missing',
    'a'.repeat(31),
    'b'.repeat(32),
    'c'.repeat(1023),
    'd'.repeat(1024),
    // More than one hessian2 chunk, with an emoji across the chunk edge.
    `${'e'.repeat(0xfffe)}😀${'f'.repeat(5000)}`,
  ];
  const statuses: Array<[string, number]> = [
    ['60 SERVICE_NOT_FOUND', DubboStatus.SERVICE_NOT_FOUND],
    ['30 CLIENT_TIMEOUT', DubboStatus.CLIENT_TIMEOUT],
    ['100 SERVER_THREADPOOL_EXHAUSTED_ERROR', DubboStatus.SERVER_THREADPOOL_EXHAUSTED_ERROR],
    ['80 SERVER_ERROR', DubboStatus.SERVER_ERROR],
  ];
  for (const [statusName, status] of statuses) {
    it(`error response ${statusName}: the peer's decoder takes the error path with our message`, async () => {
      const ids = ['5001', '9007199254740993'];
      const frames = messages.flatMap((message) =>
        ids.map((requestId) => ({
          message,
          requestId,
          frame: encodeDubboErrorResponse({ requestId, status, message }),
        })),
      );
      // The status byte as written, then the peer's own stream decoder over all of them (one write, then bytewise).
      for (const f of frames) {
        assert.equal(f.frame[3], status);
        const h = asDubbo(decodeFrame(f.frame));
        assert.equal(h.status, status);
        assert.equal(h.requestId, f.requestId);
      }
      for (const chunks of [
        [Buffer.concat(frames.map((f) => f.frame))],
        frames.slice(0, 4).flatMap((f) => [...byteByByte(f.frame)]),
      ]) {
        const got = await dubboStreamDecode(chunks);
        assert.equal(got.length, chunks.length === 1 ? frames.length : 4);
        got.forEach((packet, i) => {
          const f = frames[i];
          assert.equal(packet.packetType, 'response');
          assert.equal(String(packet.packetId), f.requestId);
          // dubbo-remoting surfaces a non-OK status as data.error (status 20 would be read as a result flag).
          assert.equal(packet.data.appResponse, null);
          assert.ok(packet.data.error instanceof Error);
          assert.equal(packet.data.error.message, f.message);
        });
      }
    });
  }

  it("error responses equal dubbo-remoting's own for the same status and message, byte for byte", () => {
    for (const [, status] of statuses) {
      for (const message of messages.slice(0, 6)) {
        const ours = encodeDubboErrorResponse({ requestId: 5002, status, message });
        assert.equal(
          ours.toString('hex'),
          dubboStatusResponse(5002, status, message).toString('hex'),
          `status ${status}, ${message.length} chars`,
        );
      }
    }
  });

  it('heartbeat and ack: the peer reads them, and they equal its own byte for byte', async () => {
    for (const id of [5003, 2 ** 32 + 1, '9007199254740993']) {
      const hb = encodeDubboHeartbeat(id);
      const ack = encodeDubboHeartbeatAck(id);
      assert.equal(hb.toString('hex'), Buffer.from(dubboPeer.heartbeatEncode(id, {}, {})).toString('hex'));
      assert.equal(ack.toString('hex'), Buffer.from(dubboPeer.heartbeatAckEncode(id, {})).toString('hex'));
      const got = await dubboStreamDecode([hb, ack]);
      assert.deepEqual(
        got.map((p) => [p.packetType, String(p.packetId), p.data]),
        [
          ['heartbeat', String(id), null],
          ['heartbeat_ack', String(id), null],
        ],
      );
    }
  });
});

describe('differential: setRequestId on peer frames, read back by the peers', () => {
  const v2crc = BOLT_VARIANTS[3].options;
  const boltFrames: Array<[string, (id: number) => Buffer]> = [
    [
      'v2 CRC request',
      (id) =>
        boltPeer.requestEncode(
          id,
          { serverSignature: `${UNICODE_SERVICE}:1.0`, methodName: 'echo', args: ['hi'], timeout: 3000 },
          v2crc,
        ),
    ],
    ['v2 CRC response', (id) => boltPeer.responseEncode(id, { appResponse: 'ok' }, v2crc)],
    [
      'v2 CRC error response',
      (id) => boltPeer.responseEncode(id, { isError: true, status: 6, appResponse: fixedError('nope') }, v2crc),
    ],
    ['v2 CRC heartbeat', (id) => boltPeer.heartbeatEncode(id, {}, v2crc)],
    [
      'v1 request',
      (id) =>
        boltPeer.requestEncode(
          id,
          { serverSignature: 'a.B:1.0', methodName: 'm', args: [], timeout: 3000 },
          BOLT_VARIANTS[0].options,
        ),
    ],
    [
      'v2 ver1=1 request',
      (id) =>
        boltPeer.requestEncode(
          id,
          { serverSignature: 'a.B:1.0', methodName: 'm', args: [], timeout: 3000 },
          BOLT_VARIANTS[1].options,
        ),
    ],
  ];
  for (const [name, make] of boltFrames) {
    it(`Bolt ${name}: the peer accepts it (CRC included) and it equals the peer's frame made with the new id`, () => {
      for (const newId of [7, 0x7fffffff, 123456789]) {
        const frame = Buffer.from(make(17));
        setRequestId(frame, newId);
        const peer = boltPeer.decode(Buffer.from(frame)); // throws 'CRC check failed!' on a stale CRC
        assert.equal(peer.packetId, newId);
        const h = asBolt(decodeFrame(frame));
        assert.equal(h.requestId, newId);
        if (frame[0] === 2 && frame[1] === 2) assert.equal(h.crc, 'ok');
        assert.equal(frame.toString('hex'), Buffer.from(make(newId)).toString('hex'));
      }
    });
  }

  it('Bolt v2 CRC: an id of 0xffffffff is written as int32 -1 and the CRC still holds', () => {
    const frame = Buffer.from(boltFrames[0][1](17));
    setRequestId(frame, 0xffffffff);
    assert.equal(boltPeer.decode(Buffer.from(frame)).packetId, -1);
    const h = asBolt(decodeFrame(frame));
    assert.equal(h.requestId, -1);
    assert.equal(h.crc, 'ok');
  });

  const dubboFrames: Array<[string, (id: number | string) => Buffer]> = [
    [
      'request',
      (id) =>
        dubboPeer.requestEncode(id, { serverSignature: 'org.例子.Svc😀:1.0.0', methodName: 'm', args: ['x'] }, {}),
    ],
    ['heartbeat', (id) => dubboPeer.heartbeatEncode(id, {}, {})],
    ['response', (id) => dubboPeer.responseEncode(id, { appResponse: 'ok' }, {})],
    ['error response', (id) => dubboStatusResponse(id, 60, 'gone')],
  ];
  for (const [name, make] of dubboFrames) {
    it(`Dubbo ${name}: ids above 2^53 as decimal strings, read back exactly by the peer`, () => {
      for (const newId of ['9007199254740993', '9223372036854775807', '18014398509481985', '4294967296']) {
        const frame = Buffer.from(make(1));
        setRequestId(frame, newId);
        const h = asDubbo(decodeFrame(frame));
        assert.equal(h.requestId, newId);
        assert.equal(String(dubboPeer.decode(Buffer.from(frame)).packetId), newId);
        assert.equal(frame.toString('hex'), Buffer.from(make(newId)).toString('hex'));
      }
    });
  }

  it('Dubbo: a bigint id and a number id land where the peer reads them', () => {
    const frame = Buffer.from(dubboFrames[0][1](1));
    setRequestId(frame, 2n ** 60n + 3n);
    assert.equal(String(dubboPeer.decode(Buffer.from(frame)).packetId), (2n ** 60n + 3n).toString());
    setRequestId(frame, 2 ** 32 + 9);
    assert.equal(dubboPeer.decode(Buffer.from(frame)).packetId, 2 ** 32 + 9);
    assert.equal(asDubbo(decodeFrame(frame)).requestId, String(2 ** 32 + 9));
  });
});
