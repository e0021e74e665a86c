// Which peers a meshport server accepts. Every server binds loopback unless the config says otherwise; when an
// operator binds one wider (0.0.0.0, a pod IP) to reach it from elsewhere, that must not silently open it to the
// whole network: a registry facade hands out routes and takes registrations, the outbound listener sends calls on the
// pod's behalf. So a server accepts loopback peers always, and others only when its config allows them explicitly.

import net from 'node:net';

/** `true`: any address; `false` or absent: loopback only; a list: loopback plus these addresses and CIDRs. */
export type AllowRemote = boolean | readonly string[];

export interface ClientGateLogger {
  warn(obj: object, msg?: string): void;
}

/** Decides per accepted socket; refusals are logged once per peer address (a scanner would flood the log). */
export class ClientGate {
  /** Connections closed at accept. */
  refused = 0;
  private readonly allowed: net.BlockList | 'any' | undefined;
  private readonly logged = new Set<string>();

  constructor(
    allow: AllowRemote | undefined,
    private readonly server: string,
    private readonly logger?: ClientGateLogger,
  ) {
    if (allow === true) this.allowed = 'any';
    else if (Array.isArray(allow) && allow.length > 0) this.allowed = allowList(allow);
  }

  /** Whether a peer at this address may talk to the server. */
  allows(address: string | undefined): boolean {
    if (address === undefined) return false;
    if (isLoopbackPeer(address) || this.allowed === 'any') return true;
    if (this.allowed === undefined) return false;
    const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
    return net.isIPv4(v4) ? this.allowed.check(v4, 'ipv4') : this.allowed.check(address, 'ipv6');
  }

  /**
   * For a server's accept path: true when the socket may stay; otherwise it is destroyed before a byte is read or
   * written (the peer sees its connection closed) and false is returned.
   */
  admit(socket: net.Socket): boolean {
    const address = socket.remoteAddress;
    // A peer whose address is the very address it dialled is in this host (network namespace): an app in the pod
    // dialling a facade bound to the pod IP. The kernel routes that over loopback; no other host can complete a
    // handshake from one of our own addresses.
    if (this.allows(address) || (address !== undefined && address === socket.localAddress)) return true;
    this.refused++;
    socket.destroy();
    const key = address ?? '(unknown)';
    if (!this.logged.has(key) && this.logged.size < 1024) {
      this.logged.add(key);
      this.logger?.warn(
        { server: this.server, remote: key },
        'refused a connection from a non-loopback address; allow it with allowRemote in the config (logged once per address)',
      );
    }
    return false;
  }
}

/** 127.0.0.0/8, ::1, and their IPv4-mapped forms. */
export function isLoopbackPeer(address: string): boolean {
  return address === '::1' || /^(::ffff:)?127\.\d+\.\d+\.\d+$/.test(address);
}

/**
 * Validates an allowRemote list: each entry an IPv4/IPv6 address or CIDR. Returns the BlockList matching them, or
 * throws an Error naming the bad entry (the config reader turns it into MESHPORT_CONFIG_INVALID with its line).
 */
export function allowList(entries: readonly string[]): net.BlockList {
  const list = new net.BlockList();
  for (const entry of entries) {
    const [address, prefix, extra] = String(entry).split('/');
    const family = net.isIPv4(address) ? 'ipv4' : net.isIPv6(address) ? 'ipv6' : undefined;
    const bits = prefix === undefined ? (family === 'ipv4' ? 32 : 128) : Number(prefix);
    const max = family === 'ipv4' ? 32 : 128;
    if (
      !family ||
      extra !== undefined ||
      !Number.isInteger(bits) ||
      bits < 0 ||
      bits > max ||
      (prefix !== undefined && prefix.trim() === '')
    ) {
      throw new Error(`${JSON.stringify(entry)} is not an IP address or CIDR (like 10.0.0.0/8)`);
    }
    list.addSubnet(address, bits, family);
  }
  return list;
}
