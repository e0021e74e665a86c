// Names shared by every codec of the package.

export type ProtocolName = 'bolt' | 'dubbo';

/** What a frame is for the proxy: requests are tracked, oneways are not, heartbeats are answered locally. */
export type FrameKind = 'request' | 'oneway' | 'response' | 'heartbeat' | 'heartbeat-ack';
