// The error table of the socket package and the argument checks every entry point runs before the addon sees a value.

import { MeshportError } from '@meshport/protocol';

/**
 * Every code @meshport/socket raises on purpose, with its one-line meaning (docs/errors.md keeps the same table).
 * Kernel errors keep the errno name as `code` (EPERM, ENOTSUPP...) with `errno` and `syscall`, as Node's own system
 * errors do. Codes are never renamed or reused once released.
 */
export const SOCKET_ERROR_CODES = {
  MESHPORT_SOCKET_BAD_ARGUMENT:
    'an argument has the wrong type (TypeError) or is not a finite integer in range (RangeError); `argument` names it',
  MESHPORT_SOCKET_NOT_SUPPORTED:
    'this machine or build lacks what the call needs (no addon, an addon without the BPF loader, no cgroup v2); `reason` says what',
  MESHPORT_SOCKET_NO_DESCRIPTOR:
    'the net.Socket given has no file descriptor: not connected yet, already destroyed, or not a TCP socket',
} as const;

export type SocketErrorCode = keyof typeof SOCKET_ERROR_CODES;

/**
 * A TypeError or RangeError with the stable code and the name of the argument; the addon throws the same shape.
 * Not a MeshportError: a wrong argument is a TypeError or RangeError in Node's own APIs, and callers (and the addon,
 * which cannot build a JavaScript subclass) keep that shape; `code` is what they match on.
 */
export interface SocketArgumentError extends Error {
  code: 'MESHPORT_SOCKET_BAD_ARGUMENT';
  /** The argument's name as the API spells it: `port`, `mark`, `fd`, `config.sidecarUid`, `programs`... */
  argument: string;
}

/** An error raised on purpose by the socket package (other than a wrong argument); `code` is stable. */
export class SocketError extends MeshportError {
  declare readonly code: SocketErrorCode;

  constructor(code: Exclude<SocketErrorCode, 'MESHPORT_SOCKET_BAD_ARGUMENT'>, message: string) {
    super(code, message);
  }
}

/** Something this machine or build lacks: the addon, its BPF loader, a cgroup v2 mount. `reason` says which. */
export class NotSupportedError extends SocketError {
  declare readonly code: 'MESHPORT_SOCKET_NOT_SUPPORTED';

  constructor(readonly reason: string) {
    super('MESHPORT_SOCKET_NOT_SUPPORTED', `not supported: ${reason}`);
  }
}

function argumentError(
  kind: typeof TypeError | typeof RangeError,
  what: string,
  argument: string,
  expected: string,
  got: unknown,
): SocketArgumentError {
  const shown = typeof got === 'string' ? JSON.stringify(got) : String(got);
  const error = new kind(`${what}: ${argument} must be ${expected}, got ${shown}`) as SocketArgumentError;
  error.code = 'MESHPORT_SOCKET_BAD_ARGUMENT';
  error.argument = argument;
  return error;
}

/** `value` when it is a number that is a finite integer in [min, max]; NaN, ±Infinity and fractions are refused. */
export function checkInteger(
  value: unknown,
  what: string,
  argument: string,
  min: number,
  max: number,
  expected?: string,
): number {
  const range = expected ?? `an integer from ${min} to ${max}`;
  if (typeof value !== 'number') throw argumentError(TypeError, what, argument, range, value);
  if (!Number.isInteger(value) || value < min || value > max)
    throw argumentError(RangeError, what, argument, range, value);
  return value;
}

export function checkString(value: unknown, what: string, argument: string, expected = 'a string'): string {
  if (typeof value !== 'string') throw argumentError(TypeError, what, argument, expected, value);
  return value;
}

/** A wrong value of the right type (a name not in the list, a host that is not an address). */
export function badValue(what: string, argument: string, expected: string, got: unknown): SocketArgumentError {
  return argumentError(TypeError, what, argument, expected, got);
}

export const checkPort = (value: unknown, what: string, argument = 'port'): number =>
  checkInteger(value, what, argument, 0, 65535);
export const checkUint32 = (value: unknown, what: string, argument: string): number =>
  checkInteger(value, what, argument, 0, 0xffffffff);
export const checkFd = (value: unknown, what: string, argument = 'fd'): number =>
  checkInteger(value, what, argument, 0, 0x7fffffff);
