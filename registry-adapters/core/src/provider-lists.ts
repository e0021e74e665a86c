// Per-service subscriber bookkeeping shared by adapters: who listens, what each last saw, push only on real change.

import { createHash } from 'node:crypto';
import type { ProvidersListener, Unsubscribe } from './adapter';
import { parseProviderUrl } from './url';

interface Subscriber {
  readonly listener: ProvidersListener;
  /** A digest of the list last pushed to this subscriber (see listDigest); undefined before the first push. */
  lastPushed: string | undefined;
}

/**
 * The listeners of every subscribed service. Lists go in as formatted URL strings (the identity of a provider in
 * every registry) and come out freshly parsed per listener, so one listener cannot mutate what another sees.
 */
export class ProviderLists {
  private readonly subscribers = new Map<string, Set<Subscriber>>();

  /** @param onListenerError where a throwing listener's error goes; it must not stop the other listeners. */
  constructor(private readonly onListenerError: (error: unknown, service: string) => void = () => {}) {}

  /** Registers `listener`; returns the function that removes it, and the subscriber to push a first list to. */
  add(service: string, listener: ProvidersListener): { remove: Unsubscribe; push: (urls: readonly string[]) => void } {
    const sub: Subscriber = { listener, lastPushed: undefined };
    let subs = this.subscribers.get(service);
    if (!subs) this.subscribers.set(service, (subs = new Set()));
    subs.add(sub);
    return {
      remove: () => {
        subs.delete(sub);
        if (subs.size === 0 && this.subscribers.get(service) === subs) this.subscribers.delete(service);
      },
      push: (urls) => this.pushTo(service, sub, urls),
    };
  }

  /** Pushes `urls` to every listener of `service` whose last list differs. */
  push(service: string, urls: readonly string[]): void {
    for (const sub of [...(this.subscribers.get(service) ?? [])]) this.pushTo(service, sub, urls);
  }

  /** The services with at least one listener. */
  services(): string[] {
    return [...this.subscribers.keys()];
  }

  has(service: string): boolean {
    return this.subscribers.has(service);
  }

  clear(): void {
    this.subscribers.clear();
  }

  private pushTo(service: string, sub: Subscriber, urls: readonly string[]): void {
    // A subscriber removed by an earlier listener in this same push must not hear it.
    if (!this.subscribers.get(service)?.has(sub)) return;
    const key = listDigest(urls);
    if (key === sub.lastPushed) return;
    sub.lastPushed = key;
    try {
      sub.listener(urls.map(parseProviderUrl));
    } catch (error) {
      this.onListenerError(error, service);
    }
  }
}

/**
 * What tells one pushed list from another: a SHA-1 of the URLs, each with its length. A subscriber of a service with
 * ten providers used to keep the whole list as JSON (3 KB), a second copy of every provider URL for as long as the
 * service is subscribed (3 MB at 10k endpoints), and built that string on every read.
 */
function listDigest(urls: readonly string[]): string {
  const hash = createHash('sha1');
  for (const url of urls) hash.update(`${url.length}:`).update(url);
  return hash.digest('base64');
}
