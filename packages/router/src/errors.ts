// The error table of the router package: what it raises on purpose to its embedder, documented in docs/errors.md.
// Failures of calls are not errors here: they are protocol answers to the caller (docs/router.md, responses.ts).

import { MeshportError } from '@meshport/protocol';

/** Every code @meshport/router raises on purpose, with its one-line meaning (docs/errors.md keeps the same table). */
export const ROUTER_ERROR_CODES = {
  MESHPORT_ROUTER_NOT_LISTENING:
    'address() was asked for a listener that is not bound: the router has not started, that listener is turned off (false), or it has stopped',
} as const;

export type RouterErrorCode = keyof typeof ROUTER_ERROR_CODES;

export class RouterError extends MeshportError {
  declare readonly code: RouterErrorCode;

  constructor(code: RouterErrorCode, message: string) {
    super(code, message);
  }
}

/** Both engines' answer to address() for a listener that is not bound. */
export function notListening(listener: string): RouterError {
  return new RouterError('MESHPORT_ROUTER_NOT_LISTENING', `${listener} is not listening`);
}
