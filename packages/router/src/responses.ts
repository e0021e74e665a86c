// The answers the router makes itself: each failure mapped to the status a Bolt or Dubbo caller understands.

import {
  BoltStatus,
  DubboStatus,
  encodeBoltErrorResponse,
  encodeBoltHeartbeatAck,
  encodeDubboErrorResponse,
  encodeDubboHeartbeatAck,
  type FrameHeader,
  type FrameIdentity,
} from '@meshport/protocol';

/** Why the router answers a request itself. */
export type Failure =
  | 'no-route' // no cluster, or no endpoint in it
  | 'timeout' // no response within the request's timeout
  | 'busy' // the cluster's limits are reached
  | 'unavailable' // every endpoint tried refused the connection
  | 'upstream-closed' // the upstream connection closed with the request in flight
  | 'bad-request' // the frame could not be decoded
  | 'draining' // the router is shutting down
  | 'denied'; // the inbound authorization policy does not let this caller call this service (or method)

const boltStatus: Record<Failure, number> = {
  'no-route': BoltStatus.NO_PROCESSOR,
  timeout: BoltStatus.TIMEOUT,
  busy: BoltStatus.SERVER_THREADPOOL_BUSY,
  unavailable: BoltStatus.ERROR_COMM,
  'upstream-closed': BoltStatus.CONNECTION_CLOSED,
  'bad-request': BoltStatus.CODEC_EXCEPTION,
  draining: BoltStatus.SERVER_THREADPOOL_BUSY,
  denied: BoltStatus.SERVER_EXCEPTION,
};

const dubboStatus: Record<Failure, number> = {
  'no-route': DubboStatus.SERVICE_NOT_FOUND,
  timeout: DubboStatus.SERVER_TIMEOUT,
  busy: DubboStatus.SERVER_THREADPOOL_EXHAUSTED_ERROR,
  unavailable: DubboStatus.CHANNEL_INACTIVE,
  'upstream-closed': DubboStatus.CHANNEL_INACTIVE,
  'bad-request': DubboStatus.BAD_REQUEST,
  draining: DubboStatus.SERVER_THREADPOOL_EXHAUSTED_ERROR,
  denied: DubboStatus.BAD_REQUEST,
};

export function failureStatus(protocol: 'bolt' | 'dubbo', failure: Failure): number {
  return protocol === 'bolt' ? boltStatus[failure] : dubboStatus[failure];
}

/** What an answer copies from the frame it answers. */
export function identityOf(header: FrameHeader, frame: Buffer): FrameIdentity {
  if (header.protocol === 'dubbo') {
    return { protocol: 'dubbo', requestId: header.requestId, expectsResponse: header.kind === 'request' };
  }
  const v2 = header.protocolVersion === 2;
  return {
    protocol: 'bolt',
    requestId: header.requestId,
    expectsResponse: header.kind === 'request' || header.kind === 'heartbeat',
    boltVersion: header.protocolVersion,
    ver1: v2 ? frame[1] : undefined,
    switchFlags: v2 ? frame[11] : undefined,
    codec: header.codec,
  };
}

function boltOptions(who: FrameIdentity) {
  const ver1 = who.ver1 === 2 ? 2 : 1;
  return {
    protocolVersion: who.boltVersion ?? 1,
    ver1: ver1 as 1 | 2,
    // Only a CRC-capable frame (ver1 2) keeps the CRC switch: sofa-bolt-node checks a CRC whenever the switch is
    // set, so echoing switch 1 on a ver1-1 frame (which carries none, by Java's rule) would make it reject us.
    switchFlags: ver1 === 2 ? (who.switchFlags ?? 0) : 0,
    codec: who.codec,
  };
}

export function errorResponse(who: FrameIdentity, failure: Failure, message: string): Buffer {
  if (who.protocol === 'dubbo') {
    return encodeDubboErrorResponse({ requestId: who.requestId, status: dubboStatus[failure], message });
  }
  return encodeBoltErrorResponse({
    ...boltOptions(who),
    requestId: who.requestId as number,
    status: boltStatus[failure],
    message,
  });
}

export function heartbeatAck(who: FrameIdentity): Buffer {
  return who.protocol === 'dubbo'
    ? encodeDubboHeartbeatAck(who.requestId)
    : encodeBoltHeartbeatAck(who.requestId as number, boltOptions(who));
}
