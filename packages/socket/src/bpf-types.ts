// The shapes of the eBPF API: what bpf.ts takes and returns and bpf-args.ts checks, in their own module so the two
// import them without importing each other.

/**
 * The programs of bpf/meshport.bpf.c, by the name the API uses. connect6 captures the IPv4-mapped connects
 * (`::ffff:a.b.c.d`) of dual-stack IPv6 sockets, a JVM's default, to the IPv4 capture address, and native IPv6
 * connects to `captureAddress6` while a listener is there (see BpfCaptureConfig).
 */
export type BpfProgramName = 'connect4' | 'connect6' | 'sockops' | 'getsockopt' | 'sk_msg';

/** What the connect4 hook captures; fixed at load time (it lives in the object's read-only data). */
export interface BpfCaptureConfig {
  /** Where captured connects go (connect4, and IPv4-mapped ones of connect6). @default '127.0.0.1' */
  captureAddress?: string;
  /**
   * Where connect6 sends native IPv6 connects, on the same capture port. A connect is rewritten only while a TCP
   * listener is on this address and port (or on `::`) in the connecting socket's network namespace; without one it
   * goes where it says (counted in skippedConnects), so an IPv4-only capture listener leaves IPv6 uncaptured rather
   * than refused. Neither `::` nor an IPv4-mapped address. @default '::1'
   */
  captureAddress6?: string;
  /** The sidecar's outbound capture port. @default 15001 */
  capturePort?: number;
  /** Connects made by this uid are never rewritten (the sidecar's own upstream connects). @default 1337 */
  sidecarUid?: number;
  /** When non-empty, only these destination ports are captured (at most 16). @default [] */
  includePorts?: number[];
  /** Destination ports never captured (at most 16). @default [] */
  excludePorts?: number[];
}

export interface BpfLoadOptions {
  /** Directory holding meshport.bpf.o. @default the package's bpf/ directory */
  objectDir?: string;
  config?: BpfCaptureConfig;
  /**
   * Size of the SOCKHASH the sk_msg shortcut uses. Sockets that do not fit take the normal TCP path and are
   * counted in `sockmapFailed`.
   * @default 65536 (the object's own)
   */
  sockmapMaxEntries?: number;
  /**
   * A pin directory (absolute) whose pinned maps this object takes over where their shape matches, so that a
   * bpfAttach into that directory, which replaces its pinned links in place, keeps the old programs' records.
   * @default none: fresh maps
   */
  reuseMapsFrom?: string;
}

export interface BpfAttachOptions {
  /** A cgroup v2 directory, e.g. /sys/fs/cgroup/unified/pod-x. */
  cgroupPath: string;
  /**
   * Which programs to attach. getsockopt answers only for connections sockops recorded, so attach sockops with
   * connect4/getsockopt; sk_msg needs sockops too (sockops fills the SOCKHASH only while sk_msg is attached).
   * Anything but a non-empty array of these names is refused (MESHPORT_SOCKET_BAD_ARGUMENT).
   * @default ['connect4', 'connect6', 'sockops', 'getsockopt', 'sk_msg']
   */
  programs?: BpfProgramName[];
  /**
   * Pin the links and maps here (an absolute bpffs directory; a relative one is refused) so the attachment outlives
   * this process; bpffs is mounted at /sys/fs/bpf first when absent. Without it, the attachment ends with this
   * process. The directory belongs to one attachment set: a map pin there that is not this object's (a crashed
   * run's, another build's) is replaced by this object's map.
   * @default undefined (no pins)
   */
  pinDir?: string;
}

export interface BpfDetachOptions {
  /** Detach only what this process attached to this cgroup. @default every attachment of this process */
  cgroupPath?: string;
  /** Detach only these programs; anything but a non-empty array is refused. @default all */
  programs?: BpfProgramName[];
  /** Also detach and remove whatever is pinned in this directory (even by another process), then the directory. */
  pinDir?: string;
}

/** Counters kept by the programs, summed over CPUs. */
export interface BpfStats {
  hookedConnects: number;
  /**
   * TCP connects the hooks left alone: the sidecar's uid, the capture address itself, ports not captured, a record
   * that could not be written, and native IPv6 ones with no listener on captureAddress6 or to a link-local address.
   */
  skippedConnects: number;
  originalDstRecorded: number;
  originalDstAnswered: number;
  sockmapAdded: number;
  redirectedMessages: number;
  redirectedBytes: number;
  redirectMisses: number;
  /** Sockets sockops could not add to the SOCKHASH (full, or refused): they take the normal TCP path. */
  sockmapFailed: number;
}

export interface BpfFeature {
  supported: boolean;
  /** Why not, when not supported. */
  reason?: string;
}

export interface BpfProbeResult {
  /** connect4 + connect6 + sockops + getsockopt loaded and attached to a scratch cgroup. */
  connectHook: BpfFeature;
  /** sockops + sk_msg on a SOCKHASH loaded and attached. */
  sockmap: BpfFeature;
}

export interface BpfAttachment {
  cgroupPath: string;
  program: BpfProgramName;
  /** true for a bpf_link; false for the legacy sk_msg prog attach of kernels before 6.10 */
  link: boolean;
  pinPath?: string;
}

export interface OriginalDst {
  address: string;
  port: number;
}
