// The error table of the engine package: what its TypeScript side raises on purpose, documented in docs/errors.md.

import { MeshportError } from '@meshport/protocol';

/**
 * Every code @meshport/engine raises on purpose, with its one-line meaning (docs/errors.md keeps the same table).
 * Socket errors from the engine's thread keep the errno name as `code` with `errno` and `syscall`, as Node's do.
 */
export const ENGINE_ERROR_CODES = {
  MESHPORT_ENGINE_UNAVAILABLE:
    'the native engine cannot run here (its addon is not built or failed to load); the message says why. createRouter falls back to the TypeScript engine instead of raising it',
  MESHPORT_ENGINE_CLOSED: 'a question was put to an engine that has been closed',
} as const;

export type EngineErrorCode = keyof typeof ENGINE_ERROR_CODES;

export class EngineError extends MeshportError {
  declare readonly code: EngineErrorCode;

  constructor(code: EngineErrorCode, message: string) {
    super(code, message);
  }
}
