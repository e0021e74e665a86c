// @meshport/socket: typed access to the native addon (build/Release/meshport_socket.node): original destinations,
// transparent listeners, socket marks, feature probes.

import net from 'node:net';
import { SocketError, badValue, checkInteger, checkPort } from './errors';
import { addon, requireOps } from './native';

export { NotSupportedError, SOCKET_ERROR_CODES, SocketError } from './errors';
export type { SocketArgumentError, SocketErrorCode } from './errors';

/** An address as `net.Socket#address()` gives it. */
export interface SocketAddress {
  address: string;
  port: number;
  family: 'IPv4' | 'IPv6';
}

export interface FeatureSupport {
  supported: boolean;
  /** Why not, when `supported` is false. */
  reason?: string;
}

export interface SocketFeatures {
  /** `getsockopt(SO_ORIGINAL_DST)` has someone to answer it (nf_conntrack loaded). */
  originalDst: FeatureSupport;
  /** `IP_TRANSPARENT` can be set (CAP_NET_ADMIN or CAP_NET_RAW). */
  transparent: FeatureSupport;
  /** `SO_MARK` can be set (CAP_NET_ADMIN or CAP_NET_RAW). */
  mark: FeatureSupport;
}

export interface TransparentListenOptions {
  /** Numeric address to bind; with IP_TRANSPARENT it may be one this host does not own. No default: choose. */
  host: string;
  /** Port to bind; 0 picks one (read it from `server.address()`). */
  port: number;
  /** @default 511 (Node's own default) */
  backlog?: number;
  /** @default inferred from `host` */
  family?: 4 | 6;
}

export interface ConnectMarkedOptions {
  /** Host name or address; resolved by net.Socket#connect as usual. */
  host: string;
  port: number;
  /** SO_MARK value, set before connect() so routing rules and iptables see the SYN already marked. */
  mark: number;
  /** @default inferred from `host` when it is an address, else 4 */
  family?: 4 | 6;
}

export const transparentListenDefaults = { backlog: 511 } as const;

interface HandleWithFd {
  fd?: unknown;
}

/**
 * The kernel fd behind a net.Socket. Node has no public API for it, but every libuv stream handle exposes
 * `_handle.fd` (a getter, -1 once closed); the fd stays owned by Node — callers only getsockopt/setsockopt on it,
 * never close or keep it, so using the private field cannot desynchronize libuv.
 */
function socketFd(socket: net.Socket, what: string): number {
  if (!(socket instanceof net.Socket))
    throw badValue(what, 'socket', 'a net.Socket', socket === null ? null : typeof socket);
  const handle = (socket as unknown as { _handle?: HandleWithFd | null })._handle;
  const fd = handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new SocketError(
      'MESHPORT_SOCKET_NO_DESCRIPTOR',
      `${what}: the socket has no file descriptor (not connected yet, already destroyed, or not a TCP socket)`,
    );
  }
  return fd;
}

function checkMark(mark: unknown, what: string): number {
  return checkInteger(mark, what, 'mark', 0, 0xffffffff, 'an integer from 0 to 0xffffffff');
}

function checkFamily(family: unknown, what: string): 4 | 6 | undefined {
  if (family === undefined) return undefined;
  if (family !== 4 && family !== 6) throw badValue(what, 'family', '4 or 6', family);
  return family;
}

/**
 * The destination a connection had before iptables `REDIRECT` (or meshport's connect4/connect6 BPF hook) sent it to
 * this process: `getsockopt(SOL_IP, SO_ORIGINAL_DST)`, or `(SOL_IPV6, IP6T_SO_ORIGINAL_DST)` on an IPv6 connection.
 *
 * Throws an Error with `code`, `errno`, `syscall`; `code === 'ENOENT'` (syscall 'getsockopt') means the kernel has
 * no NAT/hook record for this connection: it was not redirected, so its local address is the real destination.
 */
export function getOriginalDst(socket: net.Socket): SocketAddress {
  const fd = socketFd(socket, 'getOriginalDst');
  const ops = requireOps();
  try {
    return ops.getOriginalDst(fd);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') {
      e.message =
        'getsockopt(SO_ORIGINAL_DST) failed: no NAT or hook record for this connection (ENOENT): it was not redirected';
    }
    throw e;
  }
}

/**
 * A net.Server listening on a socket with `IP_TRANSPARENT`/`IPV6_TRANSPARENT` and `SO_REUSEADDR` set before bind,
 * for TPROXY inbound: accepted sockets keep the original destination as their local address.
 * Bind/listen errors throw synchronously (with errno/code/syscall); `connectionListener` is the usual one.
 */
export function transparentListen(
  options: TransparentListenOptions,
  connectionListener?: (socket: net.Socket) => void,
): net.Server {
  if (options === null || typeof options !== 'object')
    throw badValue('transparentListen', 'options', 'an object', options);
  const { host } = options;
  if (typeof host !== 'string' || net.isIP(host) === 0)
    throw badValue('transparentListen', 'host', 'a numeric IPv4 or IPv6 address', host);
  const port = checkPort(options.port, 'transparentListen');
  // The kernel caps the backlog at somaxconn; the bound here only keeps the value a valid C int.
  const backlog = checkInteger(
    options.backlog ?? transparentListenDefaults.backlog,
    'transparentListen',
    'backlog',
    0,
    0x7fffffff,
  );
  const hostFamily = net.isIP(host) as 4 | 6;
  const family = checkFamily(options.family, 'transparentListen') ?? hostFamily;
  if (family !== hostFamily)
    throw badValue('transparentListen', 'host', `an IPv${family} address (family is ${family})`, host);

  const fd = requireOps().createTransparentListener(host, port, backlog, family);
  // From here the fd belongs to the server: net takes it over in listen({fd}) and closes it with the server.
  const server = connectionListener ? net.createServer(connectionListener) : net.createServer();
  server.listen({ fd, backlog });
  return server;
}

/**
 * A net.Socket connecting to host:port from a socket whose `SO_MARK` was set before connect(), so the very SYN
 * carries the mark (for `ip rule fwmark` or the hijack rules' "skip the sidecar's own traffic").
 * The socket behaves like `net.connect`: 'connect' on success, 'error' on failure.
 */
export function connectMarked(options: ConnectMarkedOptions, connectListener?: () => void): net.Socket {
  if (options === null || typeof options !== 'object') throw badValue('connectMarked', 'options', 'an object', options);
  const { host } = options;
  if (typeof host !== 'string' || host.length === 0)
    throw badValue('connectMarked', 'host', 'a non-empty string', host);
  const port = checkInteger(options.port, 'connectMarked', 'port', 1, 65535);
  const mark = checkMark(options.mark, 'connectMarked');
  const family = checkFamily(options.family, 'connectMarked') ?? (net.isIP(host) === 6 ? 6 : 4);

  const fd = requireOps().createMarkedSocket(family, mark);
  // manualStart: the fd is not connected yet, so reading must wait for connect(); net.Socket#connect reuses an
  // existing handle (and so this fd) instead of creating its own.
  const socket = new net.Socket({ fd, manualStart: true } as net.SocketConstructorOpts);
  return socket.connect({ host, port, family }, connectListener);
}

/** Sets `SO_MARK` on a connected or listening socket (needs CAP_NET_ADMIN or CAP_NET_RAW: EPERM otherwise). */
export function setMark(socket: net.Socket, mark: number): void {
  const fd = socketFd(socket, 'setMark');
  checkMark(mark, 'setMark');
  requireOps().setMark(fd, mark);
}

/** Reads `SO_MARK` back (0 when none was set). */
export function getMark(socket: net.Socket): number {
  const fd = socketFd(socket, 'getMark');
  return requireOps().getMark(fd);
}

/**
 * What this kernel and process allow, found by creating a socket and trying each option. Never throws: without
 * the addon every feature reports `supported: false` with the reason.
 */
export function probeSocketFeatures(): SocketFeatures {
  const loaded = addon();
  if (!loaded.loaded) {
    const no = (): FeatureSupport => ({ supported: false, reason: loaded.reason });
    return { originalDst: no(), transparent: no(), mark: no() };
  }
  return loaded.ops.probeSocketFeatures();
}

/** True when the addon is loaded; `reason` says why not. */
export function nativeAddonStatus(): { loaded: boolean; reason?: string } {
  const loaded = addon();
  return loaded.loaded ? { loaded: true } : { loaded: false, reason: loaded.reason };
}

export * from './bpf';
