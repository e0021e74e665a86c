// One request in flight through the router: who asked, where it went, and its deadline.

import { savedId, type FrameIdentity } from '@meshport/protocol';
import type { Cluster, Host } from './cluster';
import type { CallerConnection } from './caller';
import type { Expiring } from './deadlines';
import type { MethodMetrics } from './stats';

export class Call implements Expiring {
  upstreamId = 0;
  /**
   * The upstream connection carrying it; of it a call only needs to be forgotten (timeout, failure). Typed by that
   * alone so that upstream.ts, which holds calls, is not imported back.
   */
  connection: { forget(call: Call): void } | undefined;
  host: Host | undefined;
  /** Endpoints whose connection failed for this call: a retry avoids them. */
  tried: Set<Host> | undefined;
  /** True while the call counts as pending (its connection is still connecting). */
  pending = false;
  done = false;
  /** performance.now() at arrival; a double, so no BigInt per call. */
  readonly startedAt = performance.now();
  /** Set by the router with the timeout; see DeadlineWheel. */
  deadline = 0;
  /** Its method's per-service metrics, and the method's name (set by the router as the call starts). */
  counted!: MethodMetrics;
  methodName = '';
  /** The caller's id (two 32-bit words, see savedId), written back into the answer. */
  readonly idHigh: number;
  readonly idLow: number;

  constructor(
    readonly caller: CallerConnection,
    /** The caller's own id and framing, restored on the response. */
    readonly who: FrameIdentity,
    /** The request bytes; its id is rewritten per upstream connection. */
    readonly frame: Buffer,
    readonly cluster: Cluster,
    readonly service: string,
    readonly hashKey: string | undefined,
    /** The call's method when the cluster has method-dependent routing rules, else ''. */
    readonly method = '',
  ) {
    this.idHigh = savedId.high(frame);
    this.idLow = savedId.low(frame);
  }

  /** The connection came up: the call is no longer pending but active. */
  onConnected(): void {
    if (this.pending) {
      this.pending = false;
      this.cluster.pending--;
    }
  }

  elapsedSeconds(): number {
    return (performance.now() - this.startedAt) / 1000;
  }
}
