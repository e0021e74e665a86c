// The embedded `file` registry: provider URLs in a local JSON file, watched, so a sidecar runs with nothing else.

import { watch, type FSWatcher } from 'node:fs';
import { access, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ConnectionStateCell } from './connection-state';
import type { ConnectionState, ProvidersListener, RegistryAdapter, Unsubscribe } from './adapter';
import { RegistryError } from './errors';
import { ProviderLists } from './provider-lists';
import { routeKeyOf } from './takeover';
import { formatProviderUrl, parseProviderUrl, providerUrlText, withServiceKey, type ProviderUrl } from './url';

/** Where a registry reports what it will not throw: a bad file, a throwing listener. pino loggers fit. */
export interface RegistryLogger {
  warn(detail: object, message: string): void;
}

export interface FileRegistryOptions {
  /**
   * The JSON file: `{ "services": { "<service key>": ["bolt://10.0.0.7:12220?weight=100", ...] } }`. A URL that names
   * no interface is a provider of the key it is filed under, and is handed to subscribers with that identity.
   */
  path: string;
  /**
   * How long to wait after the last change event before reading; editors and `rename` writes fire several events.
   * @default 50
   */
  debounceMs?: number;
  /** @default warnings on the console */
  logger?: RegistryLogger;
}

export const FILE_REGISTRY_DEFAULTS = {
  debounceMs: 50,
  logger: { warn: (detail: object, message: string) => console.warn(`meshport file registry: ${message}`, detail) },
} satisfies Required<Omit<FileRegistryOptions, 'path'>>;

type RegistryDocument = { services: Record<string, string[]> } & Record<string, unknown>;

/**
 * Writers of one file in this process take turns, so two FileRegistry instances on the same file (the conformance
 * pair, or a facade and a CLI) never lose each other's edits. Writers in other processes can still race: the file is
 * meant to be edited by one sidecar and the operator.
 */
const editQueues = new Map<string, Promise<void>>();

/**
 * A RegistryAdapter over a local JSON file. The file is authoritative while it is valid: a service missing from it has
 * no providers. While it is missing (after having existed), unreadable or not valid, the last known lists stay and
 * nothing is pushed: editors that truncate or replace the file pass through exactly such moments. Publications are
 * not ephemeral: they stay in the file after `close()`, because the file belongs to the operator.
 */
export class FileRegistry implements RegistryAdapter {
  private readonly file: string;
  private readonly debounceMs: number;
  private readonly logger: RegistryLogger;
  private readonly lists: ProviderLists;
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private started: Promise<void> | undefined;
  private closed = false;
  private readonly connection = new ConnectionStateCell('disconnected');
  /** The providers of the last valid read; undefined until one succeeds. */
  private lastKnown: Map<string, string[]> | undefined;
  private readsStarted = 0;
  private newestApplied = 0;
  /** The ignored entries already logged (`key NUL url NUL reason`), kept while they stand in the file. */
  private ignoredLogged = new Set<string>();
  /** Whether the missing file was reported; reset once it is read. */
  private missingLogged = false;

  constructor(options: FileRegistryOptions) {
    this.file = path.resolve(options.path);
    this.debounceMs = options.debounceMs ?? FILE_REGISTRY_DEFAULTS.debounceMs;
    this.logger = options.logger ?? FILE_REGISTRY_DEFAULTS.logger;
    this.lists = new ProviderLists((error, service) =>
      this.logger.warn({ service, error }, 'a providers listener threw'),
    );
    // Watched from the first subscription or write, but a missing file is said at once: a sidecar that finds nothing
    // in it subscribes nothing, and would otherwise run silent on a wrong path.
    access(this.file).catch((error: unknown) => {
      if (isMissing(error) && !this.closed && this.lastKnown === undefined) this.reportMissing();
    });
  }

  get state(): ConnectionState {
    return this.connection.value;
  }

  async publish(service: string, url: ProviderUrl | string): Promise<void> {
    const text = providerUrlText(url);
    await this.edit((services) => {
      const list = services[service] ?? [];
      if (list.some((u) => sameUrl(u, text))) return false;
      services[service] = [...list, text];
      return true;
    });
  }

  async unpublish(service: string, url: ProviderUrl | string): Promise<void> {
    const text = providerUrlText(url);
    await this.edit((services) => {
      const list = services[service];
      if (!list?.some((u) => sameUrl(u, text))) return false;
      const rest = list.filter((u) => !sameUrl(u, text));
      // Removing the last provider is an explicit deletion: the key goes, and subscribers see an empty list.
      if (rest.length === 0) delete services[service];
      else services[service] = rest;
      return true;
    });
  }

  async subscribe(service: string, onChange: ProvidersListener): Promise<Unsubscribe> {
    await this.start();
    this.assertOpen();
    const { remove, push } = this.lists.add(service, onChange);
    if (this.lastKnown) push(this.lastKnown.get(service) ?? []);
    return remove;
  }

  onStateChange(listener: (state: ConnectionState) => void): Unsubscribe {
    return this.connection.onChange(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watcher?.close();
    clearTimeout(this.debounce);
    this.lists.clear();
    this.connection.clear();
    // A write of ours still in flight finishes (its temp file is renamed away) before close resolves.
    await editQueues.get(this.file)?.catch(() => {});
  }

  private start(): Promise<void> {
    this.assertOpen();
    this.started ??= (async () => {
      // The directory, not the file: an editor or our own rename replaces the file's inode, which a file watch loses.
      this.watcher = watch(path.dirname(this.file), (_event, filename) => {
        if (filename === null || filename === path.basename(this.file)) this.scheduleReload();
      });
      this.watcher.on('error', (error) => {
        this.logger.warn({ file: this.file, error }, 'watching stopped; keeping the last known providers');
        this.connection.set('disconnected');
      });
      await this.reload();
    })();
    return this.started;
  }

  private scheduleReload(): void {
    if (this.closed) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.reload(), this.debounceMs);
  }

  private async reload(): Promise<void> {
    const read = ++this.readsStarted;
    let services: Map<string, string[]>;
    try {
      services = this.providersOf(parseDocument(await readFile(this.file, 'utf8'), this.file));
      this.missingLogged = false;
    } catch (error) {
      if (this.closed || read < this.newestApplied) return;
      if (isMissing(error) && this.lastKnown === undefined) {
        // No file yet and nothing known: nothing is published anywhere, which is a real (empty) answer, but most often
        // a wrong path, so it is said (once until the file appears).
        this.reportMissing();
        services = new Map();
      } else {
        // The message, not the error object: its fields would log as `{}` (an Error's message is not enumerable).
        const { code, message } = error as { code?: string; message: string };
        this.logger.warn(
          { file: this.file, code, error: message },
          'registry file unreadable or invalid; keeping the last known providers',
        );
        this.connection.set('disconnected');
        return;
      }
    }
    // Reads can finish out of order; an older read must not undo a newer one.
    if (this.closed || read < this.newestApplied) return;
    this.newestApplied = read;
    this.lastKnown = services;
    this.connection.set('connected');
    for (const service of this.lists.services()) this.lists.push(service, services.get(service) ?? []);
  }

  /** Read-modify-write through a temp file and rename, so a reader never sees half a file. */
  private async edit(change: (services: Record<string, string[]>) => boolean): Promise<void> {
    await this.start();
    this.assertOpen();
    const previous = editQueues.get(this.file) ?? Promise.resolve();
    const run = previous
      .catch(() => {})
      .then(async () => {
        let doc: RegistryDocument;
        try {
          doc = parseDocument(await readFile(this.file, 'utf8'), this.file);
        } catch (error) {
          if (!isMissing(error)) throw error;
          doc = { services: {} };
        }
        if (!change(doc.services)) return;
        const temp = `${this.file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
        try {
          await writeFile(temp, JSON.stringify(doc, null, 2) + '\n');
          await rename(temp, this.file);
        } catch (error) {
          await unlink(temp).catch(() => {});
          throw error;
        }
      });
    editQueues.set(this.file, run);
    try {
      await run;
    } finally {
      if (editQueues.get(this.file) === run) editQueues.delete(this.file);
    }
    // Our own subscribers learn of our own write now rather than after the watcher's debounce.
    if (!this.closed) await this.reload();
  }

  /**
   * Each service's providers, spelled one way, without duplicates, and named: a URL without an interface is given
   * the identity of the key it is filed under (withServiceKey), so a facade or subscriber reading it routes it as the
   * file says. An entry that still names no service identity, or repeats one already listed, is left out and logged
   * once (while it stands) with its text and why.
   */
  private providersOf(doc: RegistryDocument): Map<string, string[]> {
    const out = new Map<string, string[]>();
    const ignored = new Map<string, { service: string; entry: string; reason: string }>();
    for (const [service, entries] of Object.entries(doc.services)) {
      const urls: string[] = [];
      const seen = new Set<string>();
      for (const entry of entries) {
        const text = providerUrlText(entry);
        let named = text;
        let reason: string | undefined;
        if (!NAMES_INTERFACE.test(text)) {
          const url = withServiceKey(parseProviderUrl(text), service);
          try {
            routeKeyOf(url);
            named = formatProviderUrl(url);
          } catch {
            reason = `the URL names no interface, and its key ${JSON.stringify(service)} names no service to give it`;
          }
        }
        if (reason === undefined && seen.has(named)) reason = 'the same provider is listed twice under this key';
        if (reason !== undefined) {
          ignored.set(`${service}\u0000${entry}\u0000${reason}`, { service, entry, reason });
          continue;
        }
        seen.add(named);
        urls.push(named);
      }
      out.set(service, urls);
    }
    for (const [id, detail] of ignored) {
      if (!this.ignoredLogged.has(id)) this.logger.warn({ file: this.file, ...detail }, 'registry file entry ignored');
    }
    this.ignoredLogged = new Set(ignored.keys());
    return out;
  }

  private reportMissing(): void {
    if (this.missingLogged) return;
    this.missingLogged = true;
    this.logger.warn({ file: this.file }, 'registry file does not exist: no providers until it is created');
  }

  private assertOpen(): void {
    if (this.closed) throw new RegistryError('MESHPORT_REGISTRY_CLOSED', `file registry ${this.file} is closed`);
  }
}

/** Checks the file's shape; any flaw rejects the whole file, since a half-understood file could shrink a list. */
function parseDocument(text: string, file: string): RegistryDocument {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (cause) {
    const at = jsonErrorOffset(text);
    const where = at === undefined ? '' : `:${lineColumn(text, at)}`;
    throw new RegistryError(
      'MESHPORT_REGISTRY_FILE_INVALID',
      `${file}${where}: not valid JSON: ${(cause as Error).message}`,
      { cause },
    );
  }
  const services = (doc as { services?: unknown } | null)?.services;
  if (
    typeof doc !== 'object' ||
    doc === null ||
    Array.isArray(doc) ||
    typeof services !== 'object' ||
    services === null ||
    Array.isArray(services)
  ) {
    throw new RegistryError('MESHPORT_REGISTRY_FILE_INVALID', `${file} has no "services" object`);
  }
  for (const [service, urls] of Object.entries(services)) {
    if (!Array.isArray(urls) || !urls.every((u) => typeof u === 'string')) {
      throw new RegistryError(
        'MESHPORT_REGISTRY_FILE_INVALID',
        `${file}: services["${service}"] is not an array of URL strings`,
      );
    }
    for (const url of urls as string[]) {
      try {
        providerUrlText(url);
      } catch (cause) {
        throw new RegistryError(
          'MESHPORT_REGISTRY_FILE_INVALID',
          `${file}: services["${service}"] holds a bad URL ${JSON.stringify(url)}`,
          { cause },
        );
      }
    }
  }
  return doc as RegistryDocument;
}

/**
 * A URL text whose first `interface` parameter has a value, or that has a path (Dubbo's interface): withServiceKey
 * would keep it as it is, so the common case needs no parse (10k endpoints are read again on every change).
 */
const NAMES_INTERFACE = /^[^?]*:\d+\/[^?]|[?&]interface=[^&]/;

function sameUrl(fileEntry: string, canonical: string): boolean {
  try {
    return providerUrlText(fileEntry) === canonical;
  } catch {
    return false;
  }
}

function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}

/** `line:column` (1-based) of an offset, as editors show it. */
function lineColumn(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return `${line}:${offset - before.lastIndexOf('\n')}`;
}

/**
 * Where JSON text first goes wrong (JSON.parse does not always say: Node 20 gives a position for some mistakes and
 * only an excerpt for others); undefined when the text is valid. A plain recursive reader, used on failure only.
 */
function jsonErrorOffset(text: string): number | undefined {
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const fail = (): never => {
    throw i;
  };
  const literal = (word: string) => {
    for (const ch of word) {
      if (text[i] !== ch) fail();
      i++;
    }
  };
  const string = () => {
    i++; // the opening quote
    for (;;) {
      if (i >= text.length || text.charCodeAt(i) < 0x20) fail();
      const ch = text[i++];
      if (ch === '"') return;
      if (ch === '\\') {
        const e = text[i];
        if (e !== undefined && '"\\/bfnrt'.includes(e)) i++;
        else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) i += 5;
        else fail();
      }
    }
  };
  const value = (): void => {
    ws();
    const ch = text[i];
    if (ch === '{') {
      i++;
      ws();
      if (text[i] === '}') return void i++;
      for (;;) {
        ws();
        if (text[i] !== '"') fail();
        string();
        ws();
        if (text[i] !== ':') fail();
        i++;
        value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === '}') return void i++;
        else fail();
      }
    }
    if (ch === '[') {
      i++;
      ws();
      if (text[i] === ']') return void i++;
      for (;;) {
        value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === ']') return void i++;
        else fail();
      }
    }
    if (ch === '"') return string();
    if (ch === 't') return literal('true');
    if (ch === 'f') return literal('false');
    if (ch === 'n') return literal('null');
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (!m) fail();
    i += m![0].length;
  };
  try {
    value();
    ws();
    if (i < text.length) fail();
    return undefined;
  } catch (at) {
    if (typeof at === 'number') return at;
    throw at;
  }
}
