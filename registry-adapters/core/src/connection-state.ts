// An adapter's connection state and its listeners: the bookkeeping behind RegistryAdapter.state and onStateChange.

import type { ConnectionError, ConnectionState, Unsubscribe } from './adapter';

export class ConnectionStateCell {
  private readonly listeners = new Set<(state: ConnectionState) => void>();
  private error: ConnectionError | undefined;

  constructor(private current: ConnectionState) {}

  get value(): ConnectionState {
    return this.current;
  }

  onChange(listener: (state: ConnectionState) => void): Unsubscribe {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Moves to `state` and tells the listeners; staying in the same state tells nobody. */
  set(state: ConnectionState): void {
    if (state === this.current) return;
    this.current = state;
    // A copy: a listener may unsubscribe itself while being told.
    for (const listener of [...this.listeners]) listener(state);
  }

  /** The last failure to connect or to stay connected; it stays after a reconnect, with when it happened. */
  get lastError(): ConnectionError | undefined {
    return this.error;
  }

  /** Records a failure to connect or stay connected (a refused or reset socket, a name that does not resolve...). */
  fail(error: unknown): void {
    const e = error as { message?: unknown; code?: unknown } | undefined;
    const message = typeof e?.message === 'string' && e.message !== '' ? e.message : String(error);
    const code = typeof e?.code === 'string' ? e.code : undefined;
    this.error = { message, ...(code ? { code } : {}), at: Date.now(), count: (this.error?.count ?? 0) + 1 };
  }

  /** Forgets every listener (on close). */
  clear(): void {
    this.listeners.clear();
  }
}

/**
 * One warning that may recur in a loop (an app's client reconnecting every 200 ms to a facade whose upstream is
 * down): logged at most once per `everyMs`, each line saying how many were held back since the last one.
 */
export class PacedWarning {
  private last = -Infinity;
  private held = 0;

  constructor(
    private readonly logger: { warn(detail: object, message: string): void },
    private readonly everyMs = 60_000,
  ) {}

  warn(detail: object, message: string): void {
    const now = Date.now();
    if (now - this.last < this.everyMs) {
      this.held++;
      return;
    }
    this.logger.warn(this.held > 0 ? { ...detail, heldBack: this.held } : detail, message);
    this.last = now;
    this.held = 0;
  }
}
