// The error table of the `meshport` command's own mistakes: a command line it does not take, input it cannot read, a
// sidecar `meshport top` cannot read.

import { MeshportError } from '@meshport/protocol';

/**
 * Every code the `meshport` command raises itself (the sidecar's, hijack's and the protocol's are in their own
 * packages' tables), documented in docs/errors.md. The command prints usage and input messages without the code: they
 * are about what the user typed, and the exit code already says which kind it was. `meshport top` prints its own with
 * the code, like the sidecar's: they are about another process.
 */
export const CLI_ERROR_CODES = {
  MESHPORT_CLI_USAGE:
    "a command line the command does not take: a missing or unknown action, an argument or option it does not take, a malformed value; exit 2, with the pointer to 'meshport COMMAND --help'",
  MESHPORT_CLI_BAD_INPUT:
    'meshport decode cannot read its input: bad hex or base64, a file that cannot be read, or no input at all; exit 1',
  MESHPORT_CLI_ADMIN_UNREACHABLE:
    "meshport top cannot read the sidecar's admin port at the address given (refused, no answer): the message names the address; exit 1 (the live view waits for it instead)",
  MESHPORT_CLI_NO_SERVICES_PAGE:
    'meshport top: the sidecar at the address given has no /services page (a version older than per-service metrics) or answered it with something else; exit 1',
} as const;

export type CliErrorCode = keyof typeof CLI_ERROR_CODES;

export class CliError extends MeshportError {
  declare readonly code: CliErrorCode;

  constructor(code: CliErrorCode, message: string) {
    super(code, message);
  }
}

/** A usage mistake: printed as `meshport COMMAND: message` with the pointer to that command's help; exit 2. */
export class UsageError extends CliError {
  constructor(message: string) {
    super('MESHPORT_CLI_USAGE', message);
  }
}

/** Input the user got wrong before any frame was read (not a wire problem); exit 1. */
export class InputError extends CliError {
  constructor(message: string) {
    super('MESHPORT_CLI_BAD_INPUT', message);
  }
}
