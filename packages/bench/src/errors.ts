// The error table of the bench command: a command line it does not take.
//
// Its own table rather than @meshport/cli's UsageError: the bench sits beside the cli, not above it, and no arrow of
// the architecture (DESIGN.md section 2) runs from bench to cli.

import { MeshportError } from '@meshport/protocol';

/** Every code `npm run bench` raises itself, documented in docs/errors.md. */
export const BENCH_ERROR_CODES = {
  MESHPORT_BENCH_USAGE:
    'npm run bench was given a command line it does not take: an unknown suite, a --duration or --rounds that is not a positive number, a --compare file that does not exist; exit 2, with the usage',
} as const;

export type BenchErrorCode = keyof typeof BENCH_ERROR_CODES;

/** A usage mistake: printed as `bench: message` followed by the usage; exit 2. */
export class BenchUsageError extends MeshportError {
  declare readonly code: BenchErrorCode;

  constructor(message: string) {
    super('MESHPORT_BENCH_USAGE', message);
  }
}
