// How many caller connections one remote address may hold on a listener. Callers that open connections and send
// nothing hold no frame (so neither frameTimeoutMs nor maxPartialFrames sees them), only sockets: without a cap per
// source, one host could take every file descriptor and shut out the rest.

import type net from 'node:net';

export class SourceLimit {
  private readonly open = new Map<string, number>();
  /** Sources refused since they last had room: one warning each per episode, not one per connection. */
  private readonly refusing = new Set<string>();

  constructor(
    private readonly perSource: number,
    /** Called for each refused connection; `first` for the first refusal of an episode. */
    private readonly onRefuse: (source: string, first: boolean) => void,
  ) {}

  /** Counts the socket against its source until it closes; false (and the socket destroyed) past the cap. */
  admit(socket: net.Socket): boolean {
    const source = socket.remoteAddress ?? '';
    const held = this.open.get(source) ?? 0;
    if (held >= this.perSource) {
      socket.destroy();
      const first = !this.refusing.has(source);
      this.refusing.add(source);
      this.onRefuse(source, first);
      return false;
    }
    this.open.set(source, held + 1);
    socket.once('close', () => {
      const left = (this.open.get(source) ?? 1) - 1;
      if (left > 0) this.open.set(source, left);
      else this.open.delete(source);
      this.refusing.delete(source);
    });
    return true;
  }
}
