// Network-namespace helpers: run commands in a netns, create and delete namespaces and veth pairs (tests, demo).

import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { isIPv6 } from 'node:net';
import { HijackCommandError, HijackError } from './errors';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Run inside this network namespace (`ip netns exec NAME …`); the host's own namespace when absent. */
  netns?: string;
  /** Drop to this uid (and the same gid) before exec, through `setpriv`; root is needed to enter a netns. */
  uid?: number;
  /** @default 30000 */
  timeoutMs?: number;
}

const NETNS_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

/** Rejects names `ip netns` would misread as an option or a path. */
export function assertNetnsName(name: string): void {
  if (!NETNS_NAME.test(name)) {
    throw new HijackError(
      'MESHPORT_HIJACK_BAD_OPTIONS',
      `'${name}' is not a valid network namespace name (letters, digits, _ . -)`,
    );
  }
}

/** The argv that runs `cmd args` as `options` say: inside a netns, as another uid, or both. */
export function commandArgv(
  cmd: string,
  args: readonly string[],
  options: Pick<ExecOptions, 'netns' | 'uid'> = {},
): string[] {
  let argv = [cmd, ...args];
  if (options.uid !== undefined) {
    const id = String(options.uid);
    argv = ['setpriv', `--reuid=${id}`, `--regid=${id}`, '--clear-groups', '--', ...argv];
  }
  if (options.netns !== undefined) {
    assertNetnsName(options.netns);
    argv = ['ip', 'netns', 'exec', options.netns, ...argv];
  }
  return argv;
}

/** Runs a command to completion; never throws for a non-zero exit (the caller decides what a failure means). */
export function run(cmd: string, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  const [file, ...rest] = commandArgv(cmd, args, options);
  return new Promise((resolve) => {
    execFile(
      file,
      rest,
      { timeout: options.timeoutMs ?? 30000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 127) : 0;
        resolve({
          code,
          stdout: String(stdout),
          stderr: String(stderr) || (err && typeof err.code !== 'number' ? err.message : ''),
        });
      },
    );
  });
}

/** Runs a command and throws `HijackCommandError` unless it exits 0. */
export async function runChecked(cmd: string, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  const r = await run(cmd, args, options);
  if (r.code !== 0) throw new HijackCommandError(commandArgv(cmd, args, options), r.code, r.stderr);
  return r;
}

/** Runs `cmd args` inside `netns` (and optionally as `uid`), throwing when it fails. */
export function execInNetns(
  netns: string,
  cmd: string,
  args: readonly string[],
  options: Omit<ExecOptions, 'netns'> = {},
): Promise<ExecResult> {
  return runChecked(cmd, args, { ...options, netns });
}

/** Starts a long-running process inside `netns` (optionally as `uid`); the caller owns and must kill it. */
export function spawnInNetns(
  netns: string,
  cmd: string,
  args: readonly string[],
  options: { uid?: number } & Pick<SpawnOptions, 'stdio' | 'env'> = {},
): ChildProcess {
  const [file, ...rest] = commandArgv(cmd, args, { netns, uid: options.uid });
  return spawn(file, rest, { stdio: options.stdio ?? ['pipe', 'pipe', 'pipe'], env: options.env });
}

/** The names `ip netns list` shows. */
export async function listNetns(): Promise<string[]> {
  const r = await runChecked('ip', ['netns', 'list']);
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter(Boolean);
}

/** Creates a namespace (an existing one is an error: tests must own what they create) and brings its `lo` up. */
export async function createNetns(name: string, options: { loopbackUp?: boolean } = {}): Promise<void> {
  assertNetnsName(name);
  await runChecked('ip', ['netns', 'add', name]);
  if (options.loopbackUp ?? true) await runChecked('ip', ['link', 'set', 'lo', 'up'], { netns: name });
}

/** Deletes a namespace and with it every rule, route, veth end and address inside it; absent is fine. */
export async function deleteNetns(name: string): Promise<void> {
  assertNetnsName(name);
  if (!(await listNetns()).includes(name)) return;
  await runChecked('ip', ['netns', 'del', name]);
}

const TEST_NET = { base: (198 << 24) | (18 << 16), mask: 0xfffe0000 }; // 198.18.0.0/15 (RFC 2544 benchmarking)

/**
 * Throws unless `cidr` (an address with or without /len) lies in a range tests may use: 198.18.0.0/15 for IPv4; for
 * IPv6 a unique local address (fd00::/8) or the documentation range 2001:db8::/32, inside a namespace the test made.
 */
export function assertTestAddress(cidr: string): void {
  const [addr, len] = cidr.split('/');
  if (addr.includes(':')) {
    const prefix = len === undefined ? 128 : Number(len);
    const lower = addr.toLowerCase();
    const inRange = /^fd[0-9a-f]{2}:/.test(lower) ? prefix >= 8 : /^2001:0*db8:/.test(lower) ? prefix >= 32 : false;
    if (!isIPv6(addr) || !Number.isInteger(prefix) || prefix > 128 || !inRange) {
      throw new HijackError(
        'MESHPORT_HIJACK_BAD_OPTIONS',
        `${cidr} is outside fd00::/8 and 2001:db8::/32, the IPv6 ranges reserved for test hosts`,
      );
    }
    return;
  }
  const parts = addr.split('.').map(Number);
  const prefix = len === undefined ? 32 : Number(len);
  const valid =
    parts.length === 4 && parts.every((p) => Number.isInteger(p) && p >= 0 && p <= 255) && prefix >= 15 && prefix <= 32;
  const n = ((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0;
  if (!valid || (n & TEST_NET.mask) >>> 0 !== TEST_NET.base >>> 0) {
    throw new HijackError(
      'MESHPORT_HIJACK_BAD_OPTIONS',
      `${cidr} is outside 198.18.0.0/15, the range reserved for test hosts`,
    );
  }
}

/**
 * Adds a test address (see assertTestAddress) to a device in a namespace and brings the device up. An IPv6 one skips
 * duplicate address detection, which would keep it unusable (tentative) for a second.
 */
export async function addTestAddress(netns: string, device: string, cidr: string): Promise<void> {
  assertTestAddress(cidr);
  await runChecked('ip', ['addr', 'add', cidr, 'dev', device, ...(cidr.includes(':') ? ['nodad'] : [])], { netns });
  await runChecked('ip', ['link', 'set', device, 'up'], { netns });
}

export interface VethPairOptions {
  /** Namespace of the first end. */
  netnsA: string;
  /** Namespace of the second end. */
  netnsB: string;
  /** @default 'mp0' */
  deviceA?: string;
  /** @default 'mp1' */
  deviceB?: string;
  /** With prefix length, inside 198.18.0.0/15, e.g. `198.18.1.1/24`. */
  addressA: string;
  addressB: string;
}

/**
 * Creates a veth pair directly between two namespaces (never on the host: created in A, its peer moved to B)
 * and addresses both ends. Deleting either namespace deletes the pair.
 */
export async function createVethPair(options: VethPairOptions): Promise<void> {
  const a = options.deviceA ?? 'mp0';
  const b = options.deviceB ?? 'mp1';
  assertTestAddress(options.addressA);
  assertTestAddress(options.addressB);
  assertNetnsName(options.netnsB);
  await runChecked('ip', ['link', 'add', a, 'type', 'veth', 'peer', 'name', b, 'netns', options.netnsB], {
    netns: options.netnsA,
  });
  await addTestAddress(options.netnsA, a, options.addressA);
  await addTestAddress(options.netnsB, b, options.addressB);
}

let counter = 0;

/** A namespace name unique to this process, so parallel suites never collide (`mptest-<pid>-<n>`). */
export function uniqueNetnsName(prefix = 'mptest'): string {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}`;
}
