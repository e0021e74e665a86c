// Callers in the middle of a frame, oldest first, and the two rules that bound them: a frame must be finished within
// frameTimeoutMs of its first byte (a sweep), and at most maxPartialFrames callers may hold one (the oldest goes).
// A slow-loris caller trickling a header must not hold a connection and a buffer for ever.

import type { CallerConnection } from './caller';

/** Why a stalled caller is closed: the code meshport_bad_frames_total counts it under. */
export type StallCode = 'frame-timeout' | 'partial-frames-cap';

export interface PartialFrameLimits {
  frameTimeoutMs: number;
  maxPartialFrames: number;
}

export class PartialFrames {
  /** In the order their frames began (a Set keeps insertion order): the sweep stops at the first one still in time. */
  private readonly callers = new Set<CallerConnection>();
  private sweep: NodeJS.Timeout | undefined;

  constructor(
    private readonly limits: PartialFrameLimits,
    /** Closes a stalled caller (after the answers of its accepted calls), with why, for its count and log line. */
    private readonly closeStalled: (caller: CallerConnection, code: StallCode, message: string) => void,
  ) {}

  /** Caller connections holding an unfinished frame (at most maxPartialFrames). */
  get size(): number {
    return this.callers.size;
  }

  /**
   * Starts the sweep. Stalled frames are found by a sweep, not a timer per connection: a frame boundary costs no timer
   * churn. It runs a tenth of frameTimeoutMs apart (20 ms to 1 s), so a stall is closed at most that late.
   */
  start(): void {
    const every = Math.min(1000, Math.max(20, Math.floor(this.limits.frameTimeoutMs / 10)));
    this.sweep = setInterval(() => this.closeTimedOut(), every).unref();
  }

  stop(): void {
    clearInterval(this.sweep);
  }

  /**
   * A caller began a frame (`since` its first byte) or finished one (`since` 0). Keeps the begin order and enforces
   * maxPartialFrames by closing the caller whose frame began earliest and that the router is not itself keeping from
   * reading.
   */
  mark(caller: CallerConnection, since: number): void {
    this.callers.delete(caller);
    if (since === 0) return;
    this.callers.add(caller);
    const max = this.limits.maxPartialFrames;
    if (this.callers.size <= max) return;
    for (const oldest of this.callers) {
      if (oldest.blocked && oldest !== caller) continue;
      this.closeStalled(
        oldest,
        'partial-frames-cap',
        `more than ${max} connections hold an unfinished frame; closing the one whose frame began earliest`,
      );
      return;
    }
  }

  /** The caller's connection closed. */
  forget(caller: CallerConnection): void {
    this.callers.delete(caller);
  }

  private closeTimedOut(): void {
    const { frameTimeoutMs } = this.limits;
    const before = Date.now() - frameTimeoutMs;
    for (const caller of this.callers) {
      if (caller.partialSince > before) break; // begin order: every later one began later still
      if (caller.blocked) continue; // time the router is not reading is not the caller's
      this.closeStalled(
        caller,
        'frame-timeout',
        `a frame was not finished within ${frameTimeoutMs} ms of its first byte`,
      );
    }
  }
}
