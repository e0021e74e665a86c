// Example meshport registry plugin: a registry kept as a directory tree, one file per provider (see README.md).
// @ts-check
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs/promises');
const path = require('node:path');
// The only meshport package a plugin needs; a peer dependency, so the plugin shares the sidecar's copy.
const { ConnectionStateCell, ProviderLists, RegistryError, providerUrlText } = require('@meshport/registry-core');

/**
 * @typedef {import('@meshport/registry-core').RegistryAdapter} RegistryAdapter
 * @typedef {import('@meshport/registry-core').RegistryPluginConfig} RegistryPluginConfig
 * @typedef {import('@meshport/registry-core').RegistryLogger} RegistryLogger
 * @typedef {import('@meshport/registry-core').ConnectionState} ConnectionState
 * @typedef {import('@meshport/registry-core').ProviderUrl} ProviderUrl
 * @typedef {import('@meshport/registry-core').ProvidersListener} ProvidersListener
 * @typedef {import('@meshport/registry-core').Unsubscribe} Unsubscribe
 */

/**
 * The `options` of a `registries` entry of this type.
 * @typedef {object} DirectoryRegistryOptions
 * @property {number} [pollMs] How often the tree is read, in milliseconds. Default 200. Polling rather than
 *   fs.watch: a watch does not see other hosts' writes on NFS-like volumes, and behaves differently per platform.
 */
const DIRECTORY_REGISTRY_DEFAULTS = { pollMs: 200 };

/**
 * Polls to wait, after the root comes back, before pushing lists again. Other sidecars on the same root notice it
 * within a poll and re-write their own files; a list read before that may lack their providers or even be empty,
 * and SOFA answers an empty list by closing every connection.
 */
const QUIET_POLLS_AFTER_RECONNECT = 3;

/**
 * A RegistryAdapter over `<root>/<service dir>/<sha1 of the URL>.url` files, each holding one provider URL. Any
 * `*.url` file counts, so an operator can drop one in by hand. Publications are not ephemeral: a file stays until it
 * is unpublished or removed, also after `close()`, because the tree belongs to the operator, as with meshport's own
 * `file` registry.
 * @implements {RegistryAdapter}
 */
class DirectoryRegistry {
  /**
   * @param {string} root
   * @param {{ pollMs: number, logger: RegistryLogger, name: string }} settings
   */
  constructor(root, { pollMs, logger, name }) {
    this.root = path.resolve(root);
    this.pollMs = pollMs;
    this.logger = logger;
    this.name = name;
    this.connection = new ConnectionStateCell('disconnected');
    this.lists = new ProviderLists((error, service) => this.logger.warn({ registry: name, service, error }, 'a providers listener threw'));
    /** @type {Map<string, Set<string>>} service -> URLs this adapter published and has not unpublished */
    this.published = new Map();
    /** @type {Set<string>} files unpublished while the root was away; the root may come back holding them */
    this.pendingRemovals = new Set();
    /** @type {Map<string, string[]>} the last list read of each subscribed service */
    this.lastKnown = new Map();
    /** @type {string | undefined} `dev:ino` of the root as of the last good poll */
    this.rootId = undefined;
    this.quietPolls = 0;
    this.closed = false;
    /** @type {NodeJS.Timeout | undefined} */
    this.timer = undefined;
    /** @type {Promise<void>} the tail of this adapter's writes; see `exclusive` */
    this.writes = Promise.resolve();
    /** @type {Set<string>} what was already warned about; a poll would repeat it every pollMs */
    this.warned = new Set();
    /** @type {Promise<void>} the poll in progress */
    this.inFlight = Promise.resolve();
    this.firstPoll = this.loop();
  }

  /** @returns {ConnectionState} */
  get state() {
    return this.connection.value;
  }

  /** @param {string} service @param {ProviderUrl | string} url */
  async publish(service, url) {
    await this.ready();
    const text = providerUrlText(url);
    await this.exclusive(async () => {
      this.pendingRemovals.delete(this.fileOf(service, text));
      try {
        await this.writeProvider(service, text);
      } catch (error) {
        // The root is away: remember the provider, and `restore` writes it once the root is back.
        if (!isMissing(error)) throw error;
        this.connection.set('disconnected');
      }
      let urls = this.published.get(service);
      if (!urls) this.published.set(service, (urls = new Set()));
      urls.add(text);
    });
  }

  /** @param {string} service @param {ProviderUrl | string} url */
  async unpublish(service, url) {
    await this.ready();
    const text = providerUrlText(url);
    await this.exclusive(async () => {
      // A file this adapter did not write belongs to another sidecar or to the operator.
      if (!this.published.get(service)?.has(text)) return;
      const file = this.fileOf(service, text);
      try {
        await fs.unlink(file);
      } catch (error) {
        if (!isMissing(error)) throw error;
        if ((await this.rootIdentity()) === undefined) this.pendingRemovals.add(file);
      }
      this.published.get(service)?.delete(text);
    });
  }

  /** @param {string} service @param {ProvidersListener} onChange @returns {Promise<Unsubscribe>} */
  async subscribe(service, onChange) {
    await this.ready();
    const { remove, push } = this.lists.add(service, onChange);
    // Right after a reconnect the tree may still be filling up again (see QUIET_POLLS_AFTER_RECONNECT).
    if (this.state === 'connected' && !(this.quietPolls > 0 && this.lastKnown.has(service))) {
      const lists = await this.readServices([service]);
      if (lists) this.apply(lists);
    }
    const known = this.lastKnown.get(service);
    if (known && !this.closed) push(known);
    return remove;
  }

  /** @param {(state: ConnectionState) => void} listener @returns {Unsubscribe} */
  onStateChange(listener) {
    return this.connection.onChange(listener);
  }

  async close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.lists.clear();
    this.connection.clear();
    // A poll or write still running finishes first, so no handle and no temp file outlives close().
    await Promise.all([this.inFlight, this.writes]);
  }

  /** Polls, then schedules the next poll; a timeout chain rather than an interval, so slow reads never overlap. */
  async loop() {
    this.inFlight = this.poll().catch((error) => this.warnOnce('poll', { error }, 'polling the registry failed'));
    await this.inFlight;
    if (!this.closed) this.timer = setTimeout(() => void this.loop(), this.pollMs);
  }

  async poll() {
    const id = await this.rootIdentity();
    if (id === undefined) {
      // Keep every list and push nothing: a missing or unreadable root says nothing about the providers.
      this.connection.set('disconnected');
      return;
    }
    // Back after an outage, or another directory now at the path (a volume mounted afresh): put our files back.
    if (this.state !== 'connected' || id !== this.rootId) {
      const cameBack = this.rootId !== undefined;
      try {
        await this.exclusive(() => this.restore());
      } catch (error) {
        if (!isMissing(error)) throw error;
        return; // gone again mid-way; the next poll retries
      }
      this.rootId = id;
      if (cameBack) this.quietPolls = QUIET_POLLS_AFTER_RECONNECT;
      this.connection.set('connected');
    }
    const lists = await this.readServices(this.lists.services());
    if (!lists) return;
    if (this.quietPolls > 0) {
      this.quietPolls--;
      return;
    }
    this.apply(lists);
  }

  /** Re-writes what this adapter published and the root lost; removes what was unpublished while it was away. */
  async restore() {
    for (const file of this.pendingRemovals) {
      await fs.unlink(file).catch((error) => {
        if (!isMissing(error)) throw error;
      });
      this.pendingRemovals.delete(file);
    }
    for (const [service, urls] of this.published) {
      for (const text of urls) {
        if (!(await exists(this.fileOf(service, text)))) await this.writeProvider(service, text);
      }
    }
  }

  /**
   * The providers of each service, or undefined when the answer cannot be trusted: the root is not the one the last
   * poll saw (the next poll deals with that first), or it went away while reading. A service directory that vanished
   * because the whole root did is an outage, not a deletion.
   * @param {string[]} services
   * @returns {Promise<Map<string, string[]> | undefined>}
   */
  async readServices(services) {
    if ((await this.rootIdentity()) !== this.rootId) return undefined;
    /** @type {Map<string, string[]>} */
    const lists = new Map();
    for (const service of services) {
      const urls = await this.readService(service);
      if (urls) lists.set(service, urls);
    }
    if ((await this.rootIdentity()) !== this.rootId) return undefined;
    return lists;
  }

  /**
   * One service's providers, sorted so that a different directory order is not a change; undefined when something
   * in its directory cannot be read, so its last list stays rather than shrinking.
   * @param {string} service
   * @returns {Promise<string[] | undefined>}
   */
  async readService(service) {
    const dir = path.join(this.root, serviceDirName(service));
    /** @type {string[]} */
    let names;
    try {
      names = await fs.readdir(dir);
    } catch (error) {
      // No directory: nobody publishes this service. That is the registry's answer, not an outage.
      if (isMissing(error)) return [];
      this.warnOnce(dir, { error }, 'service directory unreadable; keeping its last known providers');
      return undefined;
    }
    /** @type {Set<string>} */
    const urls = new Set();
    for (const name of names) {
      // Temp files of a write in progress and hidden entries (`..data` in a Kubernetes volume) are not providers.
      if (name.startsWith('.') || !name.endsWith('.url')) continue;
      const file = path.join(dir, name);
      try {
        urls.add(providerUrlText((await fs.readFile(file, 'utf8')).trim()));
      } catch (error) {
        if (isMissing(error)) continue; // unpublished between readdir and readFile
        // A file half-written by hand, or a bad one: one unreadable file must not drop the other providers.
        this.warnOnce(file, { error }, 'provider file unreadable or not a provider URL; keeping the last known providers');
        return undefined;
      }
    }
    return [...urls].sort();
  }

  /** @param {Map<string, string[]>} lists */
  apply(lists) {
    for (const [service, urls] of lists) {
      this.lastKnown.set(service, urls);
      this.lists.push(service, urls); // pushes only to the subscribers whose last list differs
    }
  }

  /** @param {string} service @param {string} text */
  async writeProvider(service, text) {
    const dir = path.join(this.root, serviceDirName(service));
    // Not recursive: the root belongs to the operator. When it is missing, so is the mount, and creating it would
    // publish into a directory no other sidecar reads.
    await fs.mkdir(dir).catch((error) => {
      if (error.code !== 'EEXIST') throw error;
    });
    const file = this.fileOf(service, text);
    const temp = path.join(dir, `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`);
    try {
      await fs.writeFile(temp, text);
      // rename within one directory is atomic: a reader sees no file or the whole URL, never half of it.
      await fs.rename(temp, file);
    } catch (error) {
      await fs.unlink(temp).catch(noop);
      throw error;
    }
    // An empty service directory is left behind on unpublish: removing it would race another sidecar's publish.
  }

  /** @param {string} service @param {string} text */
  fileOf(service, text) {
    const sha1 = crypto.createHash('sha1').update(text).digest('hex');
    return path.join(this.root, serviceDirName(service), `${sha1}.url`);
  }

  /** The root's `dev:ino` while it is a readable directory, else undefined. */
  async rootIdentity() {
    try {
      const stats = await fs.stat(this.root);
      if (!stats.isDirectory()) return undefined;
      await fs.access(this.root, fs.constants.R_OK | fs.constants.X_OK);
      return `${stats.dev}:${stats.ino}`;
    } catch {
      return undefined;
    }
  }

  /**
   * Runs `task` after this adapter's earlier writes, so a re-write after an outage never undoes an unpublish.
   * @template T
   * @param {() => Promise<T>} task
   * @returns {Promise<T>}
   */
  exclusive(task) {
    const run = this.writes.then(task);
    this.writes = run.then(noop, noop);
    return run;
  }

  /** Waits for the first poll, so the first subscribe already knows the lists; rejects once closed. */
  async ready() {
    if (!this.closed) await this.firstPoll;
    if (this.closed) throw new RegistryError('MESHPORT_REGISTRY_CLOSED', `directory registry "${this.name}" is closed`);
  }

  /** @param {string} key @param {object} detail @param {string} message */
  warnOnce(key, detail, message) {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.logger.warn({ registry: this.name, ...detail }, message);
  }
}

/**
 * A service key as one directory name: percent-encoded, so it stays readable in `ls` yet holds no `/` or `:` (which
 * Windows and some volume drivers reject), and never `.`, `..` or a hidden name.
 * @param {string} service
 */
function serviceDirName(service) {
  return encodeURIComponent(service).replace(/\*/g, '%2A').replace(/^\./, '%2E');
}

function noop() {}

/** @param {string} file */
async function exists(file) {
  try {
    await fs.access(file);
    return true;
  } catch (error) {
    if (isMissing(error)) return false;
    throw error;
  }
}

/**
 * Not there: ENOENT, or ENOTDIR when something other than a directory stands where the root should be.
 * @param {unknown} error
 */
function isMissing(error) {
  const code = /** @type {NodeJS.ErrnoException | null} */ (error)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * What meshport calls for each `registries` entry whose `type` names this plugin.
 * @param {RegistryPluginConfig} config
 * @returns {DirectoryRegistry}
 */
function createRegistryAdapter(config) {
  // Config mistakes throw here, so the sidecar refuses to start instead of running with no registry.
  if (!config.upstream) throw new Error(`registry "${config.name}": upstream must name the root directory`);
  /** @type {DirectoryRegistryOptions} */
  const options = config.options ?? {};
  const pollMs = options.pollMs ?? DIRECTORY_REGISTRY_DEFAULTS.pollMs;
  if (typeof pollMs !== 'number' || !Number.isFinite(pollMs) || pollMs <= 0) {
    throw new Error(`registry "${config.name}": options.pollMs must be a positive number of milliseconds`);
  }
  const logger = config.logger ?? { warn: (detail, message) => console.warn(`meshport-registry-dir: ${message}`, detail) };
  return new DirectoryRegistry(config.upstream, { pollMs, logger, name: config.name });
}

module.exports = { createRegistryAdapter, DirectoryRegistry, DIRECTORY_REGISTRY_DEFAULTS };
