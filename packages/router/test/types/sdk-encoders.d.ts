// The npm SDKs' frame encoders the telemetry suite sends real frames with (the SDKs ship no types).

declare module 'sofa-bolt-node/lib/protocol' {
  /** A SofaRequest as sofa-bolt-node encodes it; hessian2 puts methodName and requestProps in the body. */
  export function requestEncode(
    id: number,
    req: {
      serverSignature: string;
      methodName: string;
      args: unknown[];
      timeout: number;
      requestProps?: Record<string, string>;
      oneway?: boolean;
    },
    options: { protocolType: 'bolt'; codecType: 'hessian2'; boltVersion: 1 | 2; crcEnable?: boolean },
  ): Buffer;
}

declare module 'dubbo-remoting/lib/protocol' {
  /** A Dubbo request as dubbo-remoting encodes it; requestProps become attachments. */
  export function requestEncode(
    id: number,
    data: {
      serverSignature: string;
      methodName: string;
      args: unknown[];
      group?: string;
      requestProps?: Record<string, string>;
    },
    options: { codecType: 'hessian2' },
  ): Buffer;
}
