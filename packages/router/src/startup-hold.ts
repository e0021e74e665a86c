// The start-up hold: for startupHoldMs after start, a request for a service with no route yet waits for its route
// instead of being refused, because a restarted sidecar's apps reconnect before its registries have reported.

import type { FrameHeader } from '@meshport/protocol';
import type { CallerConnection } from './caller';

/** A request that came in before its route: dispatched again as it came. */
export interface HeldRequest {
  caller: CallerConnection;
  frame: Buffer;
  header: FrameHeader;
}

export class StartupHold {
  /** Until this time, unrouted requests wait; 0 once the hold is over (or never began). */
  private until = 0;
  private held: HeldRequest[] = [];
  private timer: NodeJS.Timeout | undefined;

  /** `dispatch` serves a released request as if it had just come in (the router's own request handling). */
  constructor(private readonly dispatch: (request: HeldRequest) => void) {}

  /** Opens the hold for `ms` (nothing when 0); when it runs out, whatever still waits is dispatched, to be refused. */
  begin(ms: number): void {
    if (ms <= 0) return;
    this.until = Date.now() + ms;
    this.timer = setTimeout(() => this.end(), ms);
    this.timer.unref();
  }

  /** Whether an unrouted request should wait now rather than be refused. */
  get open(): boolean {
    return this.until !== 0 && Date.now() < this.until;
  }

  get size(): number {
    return this.held.length;
  }

  /** Keeps a request until its route appears; counted as in flight, so its caller's drain and close wait for it. */
  hold(request: HeldRequest): void {
    request.caller.callStarted();
    this.held.push(request);
  }

  /** After a route-table change: dispatches the requests `routed` says now have a route; the rest wait on. */
  routesChanged(routed: (request: HeldRequest) => boolean): void {
    if (this.held.length === 0) return;
    this.release((request) => routed(request));
  }

  /** The hold is over (its time ran out, or a drain): every request still waiting is dispatched, to be refused. */
  end(): void {
    this.until = 0;
    clearTimeout(this.timer);
    this.release(() => true);
  }

  private release(go: (request: HeldRequest) => boolean): void {
    const waiting = this.held;
    this.held = [];
    for (const request of waiting) {
      if (!go(request)) {
        this.held.push(request);
        continue;
      }
      request.caller.callDone();
      if (!request.caller.socket.destroyed) this.dispatch(request);
    }
  }
}
