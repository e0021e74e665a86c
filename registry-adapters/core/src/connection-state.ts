// An adapter's connection state and its listeners: the bookkeeping behind RegistryAdapter.state and onStateChange.

import type { ConnectionState, Unsubscribe } from './adapter';

export class ConnectionStateCell {
  private readonly listeners = new Set<(state: ConnectionState) => void>();

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

  /** Forgets every listener (on close). */
  clear(): void {
    this.listeners.clear();
  }
}
