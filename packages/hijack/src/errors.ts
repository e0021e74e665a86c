// The error table of the hijack package: stable codes that callers (and the CLI's exit codes) match on.

import { MeshportError } from '@meshport/protocol';

/**
 * Every code the hijack package can raise, with its one-line meaning.
 * Codes are never renamed or reused once released.
 */
export const HIJACK_ERROR_CODES = {
  MESHPORT_HIJACK_BAD_OPTIONS: 'a hijack option is out of range, malformed, or contradicts another one',
  MESHPORT_HIJACK_LOOP:
    "the rule set would capture the sidecar's own traffic (its uid, or its capture, admin or facade ports)",
  MESHPORT_HIJACK_COMMAND_FAILED: 'an iptables or ip command failed while applying or removing a plan',
  MESHPORT_HIJACK_NOT_SUPPORTED: 'the plan needs something this machine or build cannot do yet (BPF attach)',
  MESHPORT_HIJACK_PERMISSION_DENIED:
    'the kernel refused a BPF load, attach or detach for lack of privilege (EPERM/EACCES); errno, systemCode and syscall say which call',
  MESHPORT_HIJACK_BPF_FAILED:
    'a BPF load, attach or detach failed for a reason other than privilege or a missing kernel feature; errno, systemCode and syscall say which',
  MESHPORT_HIJACK_OTHER_MODE_INSTALLED:
    "another mode's rules are installed where this mode would go; the message names the command that removes them",
} as const;

export type HijackErrorCode = keyof typeof HIJACK_ERROR_CODES;

/** An error raised on purpose by the hijack package; `code` is stable. */
export class HijackError extends MeshportError {
  declare readonly code: HijackErrorCode;

  constructor(code: HijackErrorCode, message: string) {
    super(code, message);
  }
}

/** A command that exited non-zero: the argv, the exit code and what it said on stderr. */
export class HijackCommandError extends HijackError {
  readonly argv: readonly string[];
  readonly exitCode: number;
  readonly stderr: string;

  constructor(argv: readonly string[], exitCode: number, stderr: string) {
    super(
      'MESHPORT_HIJACK_COMMAND_FAILED',
      `'${argv.join(' ')}' exited ${exitCode}: ${stderr.trim() || '(no output)'}`,
    );
    this.argv = argv;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

/**
 * A kernel call of BPF apply/remove that failed: `errno` (positive), `systemCode` (its name, 'EPERM'...) and
 * `syscall` as @meshport/socket reported them, the socket error itself as `cause`. Absent when the failure had
 * no errno (no addon, no cgroup v2).
 */
export class HijackKernelError extends HijackError {
  readonly errno?: number;
  readonly systemCode?: string;
  readonly syscall?: string;

  constructor(code: HijackErrorCode, message: string, cause: unknown) {
    super(code, message);
    const c = cause as { errno?: unknown; code?: unknown; syscall?: unknown };
    if (typeof c?.errno === 'number') this.errno = c.errno;
    if (typeof c?.code === 'string' && typeof c.errno === 'number') this.systemCode = c.code;
    if (typeof c?.syscall === 'string') this.syscall = c.syscall;
    Object.defineProperty(this, 'cause', { value: cause, enumerable: false, writable: true, configurable: true });
  }
}
