// Rotation: the certificate files are watched, and new, valid credentials are handed to the sidecar (which gives them
// to the router: new connections use them, existing ones finish). Bad new files keep the old credentials in use.
//
// The directories are watched, not the files: cert-manager's and the kubelet's secret volumes never write a file in
// place. They write a new timestamped directory and swap a `..data` symlink onto it (the files are symlinks through
// `..data`), and other tools rename a finished file over the old one; a watch on the old file's inode would see
// neither. A directory watch sees both as an event in the directory, after which the files are re-read by path.

import { type FSWatcher, realpathSync, watch } from 'node:fs';
import path from 'node:path';
import type { TlsMaterial } from '@meshport/router';
import { SidecarError } from '../errors';
import { loadTlsMaterial, type TlsFiles } from './material';

export interface TlsWatchOptions {
  /**
   * Quiet time after the last file event before the files are read: a tool writing the certificate and then the key
   * is read once, after both.
   * @default 200
   */
  debounceMs?: number;
  /**
   * Also re-check every this many milliseconds without an event (filesystems whose changes inotify misses, such as
   * some network mounts; and a certificate that expires in place is reported). 0: never.
   * @default 60000
   */
  pollMs?: number;
  /** The credentials in use now (from loadTlsMaterial at start-up); a re-read equal to them is not a change. */
  initial?: TlsMaterial;
}

export const TLS_WATCH_DEFAULTS = { debounceMs: 200, pollMs: 60_000 } as const;

export interface TlsWatch {
  /** The credentials last handed out (or `initial`); unchanged by bad files. */
  readonly material: TlsMaterial | undefined;
  /** Stops watching; no callback runs after it. */
  close(): void;
}

/**
 * Watches the three files. After a change settles (debounceMs), they are re-read and re-checked as loadTlsMaterial
 * does: valid and different from the current credentials: `onChange(material)`; not valid: `onError(err)` (a
 * SidecarError naming the file) and the current credentials stay. A failed check is tried once more after another
 * quiet period before it is reported, since a tool may replace the certificate and the key a moment apart.
 */
export function watchTlsMaterial(
  files: TlsFiles,
  onChange: (material: TlsMaterial) => void,
  onError: (err: SidecarError) => void,
  options: TlsWatchOptions = {},
): TlsWatch {
  const debounceMs = options.debounceMs ?? TLS_WATCH_DEFAULTS.debounceMs;
  const pollMs = options.pollMs ?? TLS_WATCH_DEFAULTS.pollMs;
  let current = options.initial;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  /** The message of the last error reported, so the periodic re-check does not repeat it every minute. */
  let lastError: string | undefined;
  const watchers = new Map<string, FSWatcher>();

  const check = (origin: 'event' | 'retry' | 'poll') => {
    timer = undefined;
    if (closed) return;
    syncWatchers();
    let next: TlsMaterial;
    try {
      next = loadTlsMaterial(files);
    } catch (err) {
      const error =
        err instanceof SidecarError
          ? err
          : new SidecarError('MESHPORT_TLS_FILE_UNREADABLE', (err as Error).message, { cause: err });
      if (origin === 'event') {
        schedule('retry', debounceMs);
        return;
      }
      if (origin === 'retry' || error.message !== lastError) {
        lastError = error.message;
        onError(error);
      }
      return;
    }
    lastError = undefined;
    if (current && sameMaterial(current, next)) return;
    current = next;
    onChange(next);
  };

  /** When the pending check was first asked for: a directory that never goes quiet still gets checked. */
  let pendingSince = 0;
  const schedule = (origin: 'event' | 'retry', delay: number) => {
    const now = Date.now();
    if (timer) {
      if (origin === 'event' && now - pendingSince > 5 * debounceMs) return;
      clearTimeout(timer);
    } else pendingSince = now;
    timer = setTimeout(() => check(origin), delay);
  };

  /**
   * The names whose events matter: the files, what their links resolve to, and the kubelet's `..data` family (a
   * swap renames `..data_tmp` over `..data`). Events for other files of a shared directory (/etc/ssl) are ignored.
   */
  let names = new Set<string>();
  const relevant = (filename: string | null) => filename === null || filename.startsWith('..') || names.has(filename);

  /**
   * The directories to watch: each file's own, and the one its symlinks resolve to (a file linked from elsewhere).
   * Resolved again after every check: after a `..data` swap the old target directory is gone and a new one is live.
   */
  const syncWatchers = () => {
    const wanted = new Set<string>();
    names = new Set<string>();
    for (const file of [files.certFile, files.keyFile, files.trustBundleFile]) {
      wanted.add(path.dirname(path.resolve(file)));
      names.add(path.basename(file));
      try {
        const real = realpathSync(file);
        wanted.add(path.dirname(real));
        names.add(path.basename(real));
      } catch {
        // Missing right now (mid-swap, or not written yet): its own directory is watched, which sees it arrive.
      }
    }
    for (const [dir, watcher] of watchers)
      if (!wanted.has(dir)) {
        watcher.close();
        watchers.delete(dir);
      }
    for (const dir of wanted) {
      if (watchers.has(dir)) continue;
      try {
        const watcher = watch(dir, { persistent: false }, (_event, filename) => {
          if (!closed && relevant(filename === null ? null : String(filename))) schedule('event', debounceMs);
        });
        // A watched directory that is removed (an old ..data target) ends its watch; the next check drops it.
        watcher.on('error', () => {
          watcher.close();
          if (watchers.get(dir) === watcher) watchers.delete(dir);
        });
        watchers.set(dir, watcher);
      } catch {
        // A directory that does not exist yet: the poll finds the files once it does.
      }
    }
  };

  syncWatchers();
  const poll = pollMs > 0 ? setInterval(() => timer === undefined && check('poll'), pollMs) : undefined;
  poll?.unref();

  return {
    get material() {
      return current;
    },
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      if (poll) clearInterval(poll);
      for (const watcher of watchers.values()) watcher.close();
      watchers.clear();
    },
  };
}

function sameMaterial(a: TlsMaterial, b: TlsMaterial): boolean {
  return a.certChain === b.certChain && a.key === b.key && a.trustBundle === b.trustBundle;
}
