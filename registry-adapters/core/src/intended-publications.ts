// Why this exists: every adapter must remember what it means to have published, and what it took back while the
// registry could not hear it, so that a reconnect (or a registry that restarted empty) can be made to match. Kept once.

/**
 * What an adapter means to have published, whatever the registry holds right now, and the removals the registry has
 * not confirmed yet. Publications are grouped by where the registry keeps them (a service, a providers hash key, a
 * providers directory); an entry is what is written there (a URL, a hash field, a node path).
 *
 * It does no I/O: the adapter writes and removes, tells this what the registry confirmed (`removed`), and on each
 * (re)connection calls `replay` to redo both.
 */
export class IntendedPublications {
  private readonly intended = new Map<string, Set<string>>();
  private readonly pendingRemovals = new Map<string, Set<string>>();

  /** Marks `entry` as published; a removal of it that was still pending is dropped (the registry is to keep it). */
  publish(group: string, entry: string): void {
    addTo(this.intended, group, entry);
    deleteFrom(this.pendingRemovals, group, entry);
  }

  /**
   * Marks `entry` as no longer published and its removal as pending until `removed` confirms it. False when it was
   * not published, so there is nothing to remove.
   */
  unpublish(group: string, entry: string): boolean {
    if (!deleteFrom(this.intended, group, entry)) return false;
    addTo(this.pendingRemovals, group, entry);
    return true;
  }

  /** The registry confirmed `entry` is gone: its removal is no longer pending. */
  removed(group: string, entry: string): void {
    deleteFrom(this.pendingRemovals, group, entry);
  }

  /** Whether `entry` is meant to be published: a write that finishes after an unpublish must be taken back. */
  has(group: string, entry: string): boolean {
    return this.intended.get(group)?.has(entry) ?? false;
  }

  /** Every intended publication, as [group, entry]. */
  *published(): IterableIterator<[string, string]> {
    for (const [group, entries] of this.intended) for (const entry of entries) yield [group, entry];
  }

  /** Every removal not yet confirmed, as [group, entry]. */
  *pending(): IterableIterator<[string, string]> {
    for (const [group, entries] of this.pendingRemovals) for (const entry of entries) yield [group, entry];
  }

  /**
   * Makes a registry that was out of reach match: every pending removal, then every intended publication, as they
   * stand when called (the callbacks may change them). Returns what the callbacks returned, removals first, so an
   * async adapter can wait for all of them.
   */
  replay<T>(remove: (group: string, entry: string) => T, write: (group: string, entry: string) => T): T[] {
    const removals = [...this.pending()];
    const writes = [...this.published()];
    return [
      ...removals.map(([group, entry]) => remove(group, entry)),
      ...writes.map(([group, entry]) => write(group, entry)),
    ];
  }

  /** Forgets everything: the adapter is closing. */
  clear(): void {
    this.intended.clear();
    this.pendingRemovals.clear();
  }
}

function addTo(map: Map<string, Set<string>>, group: string, entry: string): void {
  let entries = map.get(group);
  if (!entries) map.set(group, (entries = new Set()));
  entries.add(entry);
}

/** Deletes `entry`, and its group once empty; false when it was not there. */
function deleteFrom(map: Map<string, Set<string>>, group: string, entry: string): boolean {
  const entries = map.get(group);
  if (!entries?.delete(entry)) return false;
  if (entries.size === 0) map.delete(group);
  return true;
}
