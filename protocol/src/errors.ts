// The error table of the protocol package: stable codes that callers match on, documented in docs/errors.md.

/**
 * Every code the protocol package can raise, with the one-line meaning documented in docs/errors.md.
 * A test keeps this table and the document in sync. Codes are never renamed or reused once released.
 */
export const PROTOCOL_ERROR_CODES = {
  MESHPORT_BAD_MAGIC: 'the first byte of a frame is neither Bolt (0x01, 0x02) nor Dubbo (0xda 0xbb)',
  MESHPORT_FRAME_TRUNCATED: 'the input ends before the length its header declares',
  MESHPORT_FRAME_OVERSIZE: 'the header declares a frame larger than the configured maximum frame size',
  MESHPORT_BOLT_BAD_VERSION: 'a Bolt v2 frame has a ver1 byte other than 1 or 2',
  MESHPORT_BOLT_BAD_TYPE: 'a Bolt type byte is not 0 (response), 1 (request) or 2 (oneway)',
  MESHPORT_BOLT_BAD_CMDCODE: 'a Bolt cmdcode is unknown or does not fit the type byte',
  MESHPORT_BOLT_BAD_LENGTH: 'a Bolt class, header or content length is negative',
  MESHPORT_BOLT_BAD_HEADER_MAP: 'a Bolt header map entry has a bad length or runs past the header',
  MESHPORT_BOLT_BAD_CRC: 'a Bolt v2 frame carries a CRC32 that does not match its bytes',
  MESHPORT_DUBBO_BAD_LENGTH: 'a Dubbo body length is negative',
  MESHPORT_DUBBO_BAD_BODY: 'the leading strings of a Dubbo hessian2 request (version, service, method) are malformed',
  MESHPORT_BODY_UNDECODABLE: 'a full body decode (CLI --body) failed or the serialization is not supported',
} as const;

export type ProtocolErrorCode = keyof typeof PROTOCOL_ERROR_CODES;

/** Base class of every error meshport raises on purpose; `code` is stable and documented. */
export class MeshportError extends Error {
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Bad bytes on the wire. `offset` is the byte offset, from the start of the input, where the problem lies. */
export class ProtocolError extends MeshportError {
  declare readonly code: ProtocolErrorCode;
  readonly offset: number;

  constructor(code: ProtocolErrorCode, message: string, offset: number) {
    super(code, `${message} (at byte ${offset})`);
    this.offset = offset;
  }

  /** The same error seen from further into a stream: frame-relative offsets become input-relative. */
  shifted(by: number): ProtocolError {
    if (by === 0) return this;
    const message = this.message.replace(/ \(at byte \d+\)$/, '');
    return new ProtocolError(this.code, message, this.offset + by);
  }
}

/** Two hex digits, for messages that name a byte. */
export function hexByte(n: number): string {
  return n.toString(16).padStart(2, '0');
}
