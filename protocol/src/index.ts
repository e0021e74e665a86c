// @meshport/protocol: Bolt v1/v2 and Dubbo codecs. Pure: no sockets, no timers, no files.

export { PROTOCOL_ERROR_CODES, MeshportError, ProtocolError } from './errors';
export type { ProtocolErrorCode } from './errors';
export type { ProtocolName, FrameKind } from './types';
export {
  detectProtocol,
  decodeFrame,
  setRequestId,
  frameLength,
  headerNeed,
  peekFrameIdentity,
  peek,
  savedId,
  restoreRequestId,
} from './frame';
export type { FrameHeader, DecodeOptions, FrameIdentity } from './frame';
export { FrameSplitter, FRAME_SPLITTER_DEFAULTS } from './splitter';
export type { FrameSplitterOptions } from './splitter';
export {
  BoltFrameHeader,
  BoltType,
  BoltCmdCode,
  BoltCodec,
  BoltStatus,
  SOFA_REQUEST_CLASS,
  SOFA_RESPONSE_CLASS,
  encodeBoltErrorResponse,
  encodeBoltHeartbeat,
  encodeBoltHeartbeatAck,
} from './bolt';
export type { BoltFrameOptions, BoltErrorResponseOptions, CrcPolicy } from './bolt';
export {
  DubboFrameHeader,
  DubboStatus,
  DubboSerialization,
  encodeDubboErrorResponse,
  encodeDubboHeartbeat,
  encodeDubboHeartbeatAck,
} from './dubbo';
export type { DubboErrorResponseOptions, DubboRequestId } from './dubbo';
export { hessianString } from './hessian';
export { boltBodyMethod, readTraceContext, traceValue, MAX_TRACE_VALUE, MAX_BODY_METHOD } from './trace-context';
export type { TraceContext } from './trace-context';
