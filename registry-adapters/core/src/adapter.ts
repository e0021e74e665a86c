// The two small contracts every registry package implements: the upstream RegistryAdapter and the local facade.

import type { RuleUrls, RulesDialect } from './rules';
import type { ProviderUrl } from './url';

/**
 * How the adapter's link to its registry stands. `expired` means the registry has forgotten this client (a
 * ZooKeeper session expiry): everything it published is gone upstream until the adapter publishes it again.
 */
export type ConnectionState = 'connected' | 'disconnected' | 'expired';

/** The last failure of an adapter to connect or stay connected to its registry, as operators are shown it. */
export interface ConnectionError {
  message: string;
  /** The error's code, when it has one (`ECONNREFUSED`, `ENOTFOUND`). */
  code?: string;
  /** When it happened, in ms since the epoch. */
  at: number;
  /** Failures recorded since the adapter started, this one included. */
  count: number;
}

/** Receives the whole provider list of one service each time it changes; never a diff, so a lost call heals. */
export type ProvidersListener = (urls: ProviderUrl[]) => void;

/** Removes what registered it; calling it twice is harmless. */
export type Unsubscribe = () => void;

/**
 * The upstream side of a registry: what the sidecar publishes its local providers to and learns remote providers
 * from. Services are keyed as the wire carries them (SOFA `interface:version[:uniqueId]`, Dubbo `interface:version`
 * or `interface`); see `sofaServiceKey` and `dubboServiceKey`.
 *
 * Safety rules every implementation keeps, because SOFA RPC closes every connection on an empty list and Dubbo drops
 * all providers on an `empty://` push:
 * - After a reconnect or a session expiry it publishes again everything published and not unpublished, and
 *   subscribes again to everything subscribed and not unsubscribed, without being asked.
 * - Through an outage it keeps the last known provider lists and pushes nothing; afterwards it pushes a list only if
 *   it differs from the last one pushed.
 * - Only an explicit deletion in the registry (an unpublish, a removed node or entry) empties a list. A list that is
 *   empty the first time it is read is pushed as empty: that is the registry's answer, not an outage.
 * - After `close()` no listener is called again and every other method rejects with MESHPORT_REGISTRY_CLOSED.
 */
export interface RegistryAdapter {
  /** The current connection state. */
  readonly state: ConnectionState;
  /** Announces `url` as a provider of `service`; publishing the same URL twice is one provider. */
  publish(service: string, url: ProviderUrl | string): Promise<void>;
  /** Withdraws a provider published by this adapter; withdrawing one it does not know is a no-op. */
  unpublish(service: string, url: ProviderUrl | string): Promise<void>;
  /**
   * Watches the providers of `service`. Resolves once the subscription is registered; when the registry is
   * reachable, `onChange` has by then been called once with the current list.
   */
  subscribe(service: string, onChange: ProvidersListener): Promise<Unsubscribe>;
  /**
   * Watches the governance rules of interface `iface` (a service key of either SDK names its interface) where this
   * registry's SDKs keep them, and calls `onChange` with the whole set every time it changes; compileRules applies
   * them. The provider-list safety rules hold here too: through an outage the last set stands and nothing is
   * pushed, only a deletion in the registry removes a rule, and a missing rule directory is an empty set. Resolves
   * once the watch is registered; when the registry is reachable, `onChange` has by then been called once.
   * `dialect` says whose rules (the Dubbo or the sofa-rpc kind), when the registry keeps both.
   * Optional: registries whose SDKs apply no client-side rules leave it out.
   */
  watchRules?(iface: string, onChange: (rules: RuleUrls) => void, dialect?: RulesDialect): Promise<Unsubscribe>;
  /**
   * The last failure to connect or stay connected, kept after a reconnect. Optional: the sidecar shows it on its
   * `/registries` page and in its warnings when an adapter has it.
   */
  readonly lastError?: ConnectionError;
  /** Calls `listener` on every state change (not with the current state). */
  onStateChange(listener: (state: ConnectionState) => void): Unsubscribe;
  /** Releases every connection, watcher and timer; idempotent. */
  close(): Promise<void>;
}

/**
 * A localhost server that speaks one registry's own protocol to the app's SDK and passes everything through to a
 * RegistryAdapter, rewriting endpoints in both directions.
 */
export interface RegistryFacade {
  /** Binds and starts serving; resolves once `address()` is valid. */
  start(): Promise<void>;
  /** Stops accepting, ends every client session, and releases the port; idempotent. */
  close(): Promise<void>;
  /** Where the SDK should point; throws before `start()` has resolved. */
  address(): { host: string; port: number };
}
