// Requests carrying a method in the body and trace context in every place a real client puts it, made by the npm
// peers (sofa-bolt-node 2.0.1 in hessian2 and protobuf mode, dubbo-remoting 2.1.4, hessian.js-1's draft-grammar
// encoder) or placed by hand where no peer writes that shape (Java SOFA clients' header keys, Java's field order).
// Each with what boltBodyMethod and readTraceContext must read of it. Deterministic: the engine's differential test
// and the fuzz seeds (packages/engine/fuzz/seeds.js) load this module from protocol's test build.

import * as boltPeer from 'sofa-bolt-node/lib/protocol';
import * as dubboPeer from 'dubbo-remoting/lib/protocol';
import type { TraceContext } from '../../src/trace-context';
import { bolt } from './build';

export interface TraceFrame {
  name: string;
  frame: Buffer;
  /** What boltBodyMethod reads (undefined: nothing). */
  method: string | undefined;
  /** What readTraceContext reads. */
  trace: TraceContext | undefined;
}

export const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
export const TRACEPARENT_UNSAMPLED = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00';
const SERVICE = 'com.example.EchoService:1.0';
const V1 = { protocolType: 'bolt', codecType: 'hessian2' } as const;
const V2_CRC = { protocolType: 'bolt2', boltVersion: 2, crcEnable: true, codecType: 'hessian2' } as const;

interface DraftEncoder {
  write(v: unknown): void;
  get(): Buffer;
}
const hessianDraft = require('hessian.js-1') as { EncoderV2: new () => DraftEncoder };

/** sofa-bolt-node's hessian2 request. */
function sofaRequest(
  id: number,
  requestProps: Record<string, unknown> | undefined,
  options: boltPeer.BoltPeerOptions = V1,
): Buffer {
  return Buffer.from(
    boltPeer.requestEncode(
      id,
      { serverSignature: SERVICE, methodName: 'echo', args: ['hello'], timeout: 3000, requestProps },
      options,
    ),
  );
}

/** The body (content) of a sofa-bolt-node hessian2 request. */
function bodyOf(frame: Buffer): Buffer {
  const classLen = frame.readInt16BE(14);
  const headerLen = frame.readInt16BE(16);
  return frame.subarray(22 + classLen + headerLen);
}

/**
 * A SofaRequest in Java's field order (targetAppName, methodArgSigs, ..., methodName last), written by hessian.js-1's
 * draft-grammar encoder, then the argument: the method is read only after stepping over the fields before it.
 */
function javaOrderBody(requestProps: Record<string, unknown>): Buffer {
  const enc = new hessianDraft.EncoderV2();
  enc.write({
    $class: 'com.alipay.sofa.rpc.core.request.SofaRequest',
    $: {
      targetAppName: { $class: 'java.lang.String', $: 'caller-app' },
      methodArgSigs: { $class: '[java.lang.String', $: [{ $class: 'java.lang.String', $: 'java.lang.String' }] },
      targetServiceUniqueName: { $class: 'java.lang.String', $: SERVICE },
      requestProps: { $class: 'java.util.HashMap', $: requestProps },
      timeout: { $class: 'int', $: 3000 },
      createdAt: { $class: 'java.util.Date', $: new Date(0) },
      payload: { $class: 'byte[]', $: Buffer.from('0123456789') },
      methodName: { $class: 'java.lang.String', $: 'sayHello' },
    },
  });
  enc.write('hello');
  return enc.get();
}

/** sofa-bolt-node's protobuf mode: requestProps flattened into the header map, no hessian body. */
function protobufRequest(id: number, requestProps: Record<string, unknown>): Buffer {
  // The codec looks the method up in a protobufjs root; one without a request type writes no content.
  const proto = { lookupService: () => ({ get: () => ({ resolve: () => ({ requestType: null }) }) }) };
  return Buffer.from(
    boltPeer.requestEncode(
      id,
      { serverSignature: SERVICE, methodName: 'echo', args: [], timeout: 3000, requestProps },
      { protocolType: 'bolt', codecType: 'protobuf', proto },
    ),
  );
}

function dubboRequest(id: number, requestProps: Record<string, unknown>): Buffer {
  return Buffer.from(
    dubboPeer.requestEncode(id, { serverSignature: SERVICE, methodName: 'echo', args: ['hello'], requestProps }, {}),
  );
}

export function traceFrames(): TraceFrame[] {
  const flat = {
    traceparent: TRACEPARENT,
    'rpc_trace_context.sofaTraceId': '0a1b2c3d4e5f60718293a4b5c6d7e8f9',
    'rpc_trace_context.sofaRpcId': '0.1',
  };
  const nested = { rpc_trace_context: { sofaTraceId: 'ac1a2b3c1765045800123100112345', sofaRpcId: '0.1.2' } };
  const javaBody = bodyOf(
    sofaRequest(60, { 'rpc_trace_context.sofaTraceId': 'from-the-body', 'rpc_trace_context.sofaRpcId': '9' }),
  );
  return [
    {
      name: 'sofa-bolt-node hessian2, flattened requestProps',
      frame: sofaRequest(51, flat),
      method: 'echo',
      trace: { traceparent: TRACEPARENT, sofaTraceId: '0a1b2c3d4e5f60718293a4b5c6d7e8f9', sofaRpcId: '0.1' },
    },
    {
      name: 'sofa-bolt-node hessian2, a nested rpc_trace_context map',
      frame: sofaRequest(52, nested),
      method: 'echo',
      trace: { sofaTraceId: 'ac1a2b3c1765045800123100112345', sofaRpcId: '0.1.2' },
    },
    {
      name: 'sofa-bolt-node hessian2, a sofaTraceId that is not hex and no rpc id',
      frame: sofaRequest(53, { 'rpc_trace_context.sofaTraceId': 'trace/not-hex: 42', other: 'x' }),
      method: 'echo',
      trace: { sofaTraceId: 'trace/not-hex: 42' },
    },
    {
      name: 'sofa-bolt-node hessian2, no requestProps',
      frame: sofaRequest(54, undefined),
      method: 'echo',
      trace: undefined,
    },
    {
      name: 'sofa-bolt-node bolt2 with CRC, traceparent not sampled',
      frame: sofaRequest(55, { traceparent: TRACEPARENT_UNSAMPLED }, V2_CRC),
      method: 'echo',
      trace: { traceparent: TRACEPARENT_UNSAMPLED },
    },
    {
      name: 'sofa-bolt-node protobuf mode: requestProps flattened into the header map',
      frame: protobufRequest(56, { ...nested, traceparent: TRACEPARENT }),
      method: undefined, // the header names it
      trace: { traceparent: TRACEPARENT, sofaTraceId: 'ac1a2b3c1765045800123100112345', sofaRpcId: '0.1.2' },
    },
    {
      name: 'Java SOFA client: method and trace context in the header map (the body says otherwise)',
      frame: bolt({
        id: 57,
        headers: {
          service: SERVICE,
          sofa_head_target_service: SERVICE,
          sofa_head_method_name: 'echo',
          'rpc_trace_context.sofaTraceId': '1e2f3a4b5c6d',
          'rpc_trace_context.sofaRpcId': '0.2.1',
          'rpc_trace_context.sofaCallerApp': 'caller-app',
        },
        content: javaBody,
      }),
      method: undefined,
      trace: { sofaTraceId: '1e2f3a4b5c6d', sofaRpcId: '0.2.1' },
    },
    {
      name: "Java's field order: methodName after other fields, requestProps before it",
      frame: bolt({ id: 58, content: javaOrderBody({ traceparent: TRACEPARENT, unrelated: 'value' }) }),
      method: 'sayHello',
      trace: { traceparent: TRACEPARENT },
    },
    {
      name: 'header traceparent, body sofa ids: both read',
      frame: bolt({ id: 59, headers: { service: SERVICE, traceparent: TRACEPARENT }, content: javaBody }),
      method: 'echo',
      trace: { traceparent: TRACEPARENT, sofaTraceId: 'from-the-body', sofaRpcId: '9' },
    },
    {
      name: 'dubbo-remoting: trace attachments',
      frame: dubboRequest(61, {
        traceparent: TRACEPARENT,
        'rpc_trace_context.sofaTraceId': 'ABCDEF0123',
        'rpc_trace_context.sofaRpcId': '0.2',
      }),
      method: undefined,
      trace: { traceparent: TRACEPARENT, sofaTraceId: 'ABCDEF0123', sofaRpcId: '0.2' },
    },
    {
      name: 'dubbo-remoting: no trace attachments',
      frame: dubboRequest(62, { other: 'x' }),
      method: undefined,
      trace: undefined,
    },
  ];
}
