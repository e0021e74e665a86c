// An in-process registry: adapters sharing one MemoryRegistryStore see each other, and tests can cut the link.

import { ConnectionStateCell } from './connection-state';
import { IntendedPublications } from './intended-publications';
import type { ConnectionState, ProvidersListener, RegistryAdapter, Unsubscribe } from './adapter';
import { RegistryError } from './errors';
import { ProviderLists } from './provider-lists';
import { providerUrlText, type ProviderUrl } from './url';

/** The registry itself: provider URLs per service, each with the adapters that published it. */
export class MemoryRegistryStore {
  private readonly providers = new Map<string, Map<string, Set<object>>>();
  private readonly watchers = new Map<string, Set<() => void>>();

  /** The providers of `service`, in publish order. */
  list(service: string): string[] {
    return [...(this.providers.get(service)?.keys() ?? [])];
  }

  add(service: string, url: string, owner: object): void {
    let urls = this.providers.get(service);
    if (!urls) this.providers.set(service, (urls = new Map()));
    let owners = urls.get(url);
    if (!owners) urls.set(url, (owners = new Set()));
    if (owners.has(owner)) return;
    owners.add(owner);
    this.changed(service);
  }

  remove(service: string, url: string, owner: object): void {
    const owners = this.providers.get(service)?.get(url);
    if (!owners?.delete(owner)) return;
    // The URL stays listed while another adapter still publishes it.
    if (owners.size === 0) this.providers.get(service)!.delete(url);
    this.changed(service);
  }

  /** Every (service, url) that `owner` has published. */
  publishedBy(owner: object): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (const [service, urls] of this.providers) {
      for (const [url, owners] of urls) if (owners.has(owner)) out.push([service, url]);
    }
    return out;
  }

  /** Calls `onChange` after each change to `service`, asynchronously as a real registry would. */
  watch(service: string, onChange: () => void): Unsubscribe {
    let set = this.watchers.get(service);
    if (!set) this.watchers.set(service, (set = new Set()));
    set.add(onChange);
    return () => {
      set.delete(onChange);
      if (set.size === 0 && this.watchers.get(service) === set) this.watchers.delete(service);
    };
  }

  private changed(service: string): void {
    queueMicrotask(() => {
      for (const fn of [...(this.watchers.get(service) ?? [])]) fn();
    });
  }
}

/**
 * A RegistryAdapter over a MemoryRegistryStore. Its publications behave like ZooKeeper ephemerals: they survive a
 * disconnect, vanish on `expireSession()` or `close()`, and are restored on reconnect.
 */
export class MemoryRegistry implements RegistryAdapter {
  private connected = true;
  private closed = false;
  private readonly connection = new ConnectionStateCell('connected');
  /** What this adapter means to have published by service, and what it unpublished while cut off from the store. */
  private readonly publications = new IntendedPublications();
  private readonly lists = new ProviderLists();
  private readonly storeWatches = new Map<string, Unsubscribe>();

  constructor(readonly store: MemoryRegistryStore = new MemoryRegistryStore()) {}

  get state(): ConnectionState {
    return this.connection.value;
  }

  async publish(service: string, url: ProviderUrl | string): Promise<void> {
    this.assertOpen();
    const text = providerUrlText(url);
    this.publications.publish(service, text);
    if (this.connected) this.store.add(service, text, this);
  }

  async unpublish(service: string, url: ProviderUrl | string): Promise<void> {
    this.assertOpen();
    const text = providerUrlText(url);
    // While cut off the removal stays pending: the store still lists it until setConnected(true) replays it.
    if (this.publications.unpublish(service, text) && this.connected) this.removeFromStore(service, text);
  }

  async subscribe(service: string, onChange: ProvidersListener): Promise<Unsubscribe> {
    this.assertOpen();
    if (!this.storeWatches.has(service)) {
      this.storeWatches.set(
        service,
        this.store.watch(service, () => {
          if (this.connected && !this.closed) this.lists.push(service, this.store.list(service));
        }),
      );
    }
    const { remove, push } = this.lists.add(service, onChange);
    if (this.connected) push(this.store.list(service));
    return () => {
      remove();
      if (!this.lists.has(service)) {
        this.storeWatches.get(service)?.();
        this.storeWatches.delete(service);
      }
    };
  }

  onStateChange(listener: (state: ConnectionState) => void): Unsubscribe {
    return this.connection.onChange(listener);
  }

  /**
   * Simulates losing (false) and regaining (true) the registry. While down nothing is pushed and publish/unpublish
   * are only remembered; on regaining, publications are reconciled and every subscriber gets the current list if it
   * differs from what it last saw.
   */
  setConnected(connected: boolean): void {
    this.assertOpen();
    if (connected === this.connected) return;
    this.connected = connected;
    if (!connected) {
      this.connection.set('disconnected');
      return;
    }
    this.publications.replay(
      (service, url) => this.removeFromStore(service, url),
      (service, url) => this.store.add(service, url, this),
    );
    for (const service of this.lists.services()) this.lists.push(service, this.store.list(service));
    this.connection.set('connected');
  }

  /** Simulates a session expiry: the registry deletes this adapter's providers; reconnecting republishes them. */
  expireSession(): void {
    this.assertOpen();
    for (const [service, url] of this.store.publishedBy(this)) this.store.remove(service, url, this);
    this.connected = false;
    this.connection.set('expired');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const unwatch of this.storeWatches.values()) unwatch();
    this.storeWatches.clear();
    this.lists.clear();
    for (const [service, url] of this.store.publishedBy(this)) this.store.remove(service, url, this);
    this.publications.clear();
    this.connection.clear();
  }

  private removeFromStore(service: string, url: string): void {
    this.store.remove(service, url, this);
    this.publications.removed(service, url);
  }

  private assertOpen(): void {
    if (this.closed) throw new RegistryError('MESHPORT_REGISTRY_CLOSED', 'memory registry adapter is closed');
  }
}
