// Turns the `registries` list of the config into running adapters, facades and subscriptions, built-in or plugin.

import { readFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import {
  FileRegistry,
  withServiceKey,
  type RegistryAdapter,
  type RegistryFacade,
  type RegistryLogger,
  type ProviderUrl,
  type RegistryPlugin,
  type RuleUrls,
  type RulesDialect,
  type Takeover,
  type Unsubscribe,
} from '@meshport/registry-core';
import type { ZooKeeperLayout } from '@meshport/registry-zookeeper';
import type { RegistryConfig } from './config';
import { SidecarError } from './errors';

/** One running `registries` entry. */
export interface RunningRegistry {
  readonly config: RegistryConfig;
  /** The upstream adapter, when something needs it: `services`, a sofa-mesh `via`, or no facade. */
  readonly adapter: RegistryAdapter | undefined;
  readonly facade: RegistryFacade | undefined;
}

export interface RegistryWiring {
  logger: RegistryLogger;
  /**
   * The Takeover for one entry (facades rewrite through it; subscriptions report through it). `rules` watches an
   * interface's governance rules in that entry's registry, when the registry keeps any.
   */
  takeoverFor(name: string, rules: RuleSource | undefined): Takeover | ReportingTakeover;
}

/**
 * A Takeover that also takes a subscription's answer on its own: what the sidecar subscribes itself (`services`, a
 * file registry) goes to the route book only, without the per-identity list a facade would hand its app, which
 * nobody reads there (at 10k endpoints that list was a rewritten copy of every URL on every change).
 */
export interface ReportingTakeover extends Takeover {
  providersReported(iface: string, real: ProviderUrl[]): void;
}

/** Where the rules of the interfaces an entry routes come from: `watch` starts watching (once per interface). */
export interface RuleSource {
  watch(iface: string, dialect: RulesDialect, onChange: (rules: RuleUrls) => void): void;
}

/** The running registries of one sidecar, closed together. */
export class RegistrySet {
  constructor(
    readonly entries: RunningRegistry[],
    private readonly unsubscribes: Unsubscribe[],
    private readonly adapters: RegistryAdapter[],
  ) {}

  get(name: string): RunningRegistry | undefined {
    return this.entries.find((r) => r.config.name === name);
  }

  /** Subscriptions, then facades (the apps stop talking), then adapters (ephemeral registrations go with them). */
  async close(): Promise<void> {
    this.unsubscribes.splice(0).forEach((u) => u());
    await Promise.allSettled(this.entries.map((r) => r.facade?.close()));
    await Promise.allSettled(this.adapters.map((a) => a.close()));
  }
}

/**
 * Starts every entry: adapters first, so a sofa-mesh entry's `via` is running whatever its position in the list,
 * then facades and subscriptions. On any failure, what was started is closed again and the error is thrown.
 */
export async function startRegistries(entries: RegistryConfig[], wiring: RegistryWiring): Promise<RegistrySet> {
  const adapters = new Map<string, RegistryAdapter>();
  const running: RunningRegistry[] = [];
  const unsubscribes: Unsubscribe[] = [];
  const opened: RegistryAdapter[] = [];
  const set = new RegistrySet(running, unsubscribes, opened);
  try {
    const needed = new Set(entries.filter((e) => e.type === 'sofa-mesh').map((e) => e.via!));
    for (const entry of entries) {
      if (entry.type === 'sofa-mesh') continue;
      if (entry.facade && !entry.services && !needed.has(entry.name)) continue; // the facade passes through; no session of our own
      const adapter = await createAdapter(entry, wiring.logger);
      adapters.set(entry.name, adapter);
      opened.push(adapter);
    }
    for (const entry of entries) {
      const adapter = adapters.get(entry.name);
      const rules = entry.type === 'zookeeper' ? ruleSource(entry, adapter, wiring.logger, opened, unsubscribes) : undefined;
      const takeover = wiring.takeoverFor(entry.name, rules);
      const facade = entry.facade ? createFacade(entry, takeover, adapters, wiring.logger) : undefined;
      running.push({ config: entry, adapter, facade });
      await facade?.start();
      if (adapter) {
        for (const service of await servicesToRoute(entry)) {
          // Reported per service: two identities of one interface subscribed here are two answers, not one. A URL
          // filed under the service without naming it is that service's provider.
          const report = 'providersReported' in takeover ? takeover.providersReported.bind(takeover) : takeover.providersRead.bind(takeover);
          unsubscribes.push(await adapter.subscribe(service, (urls) => void report(service, urls.map((u) => withServiceKey(u, service)))));
        }
      }
    }
    return set;
  } catch (err) {
    await set.close();
    throw err;
  }
}

/**
 * The rules of a ZooKeeper entry, watched through its adapter; a facade-only entry, which needs no session of its own
 * for the app's traffic, gets one for the rules when the first interface is routed. Watch failures are logged: rules
 * are then missing, never the route.
 */
function ruleSource(
  entry: RegistryConfig,
  existing: RegistryAdapter | undefined,
  logger: RegistryLogger,
  opened: RegistryAdapter[],
  unsubscribes: Unsubscribe[],
): RuleSource {
  let adapter: Promise<RegistryAdapter> | undefined = existing && Promise.resolve(existing);
  const watched = new Set<string>();
  let closed = false;
  unsubscribes.push(() => {
    closed = true;
  });
  return {
    watch(iface, dialect, onChange) {
      const id = `${iface} ${dialect}`;
      if (closed || watched.has(id)) return;
      watched.add(id);
      adapter ??= createAdapter(entry, logger).then((created) => {
        // Made after the set closed: nobody else will close it.
        if (closed) void created.close();
        else opened.push(created);
        return created;
      });
      adapter
        .then(async (a) => {
          if (closed || !a.watchRules) return;
          const stop = await a.watchRules(iface, (rules) => !closed && onChange(rules), dialect);
          if (closed) stop();
          else unsubscribes.push(stop);
        })
        .catch((error: Error) => {
          watched.delete(id);
          logger.warn({ registry: entry.name, iface, dialect, err: error.message }, 'cannot watch the registry rules of this interface; routing without them');
        });
    },
  };
}

// Registry packages load when the config names their type: a sidecar on ZooKeeper alone does not carry ioredis or the
// SOFA codecs in memory (about 9 MB of the 80 MB budget).
const zookeeperPackage = () => require('@meshport/registry-zookeeper') as typeof import('@meshport/registry-zookeeper');
const redisPackage = () => require('@meshport/registry-redis') as typeof import('@meshport/registry-redis');
const sofaPackage = () => require('@meshport/registry-sofa') as typeof import('@meshport/registry-sofa');

async function createAdapter(entry: RegistryConfig, logger: RegistryLogger): Promise<RegistryAdapter> {
  const o = entry.options;
  switch (entry.type) {
    case 'file':
      return new FileRegistry({ path: entry.upstream!, logger });
    case 'zookeeper':
      return new (zookeeperPackage().ZooKeeperRegistry)({
        connectString: entry.upstream!,
        layout: o.layout as ZooKeeperLayout | undefined,
        root: o.root as string | undefined,
        sessionTimeoutMs: o.sessionTimeoutMs as number | undefined,
        logger,
      });
    case 'redis':
      return new (redisPackage().RedisRegistry)({ url: redisUrl(entry.upstream!), root: o.root as string | undefined, logger });
    case 'sofa-registry':
      return new (sofaPackage().SofaRegistryClient)({ ...(o as object), servers: entry.upstream!, logger });
    default:
      return (await loadPlugin(entry.type)).createRegistryAdapter({
        name: entry.name,
        upstream: entry.upstream,
        options: o,
        logger,
      });
  }
}

function createFacade(
  entry: RegistryConfig,
  takeover: Takeover,
  adapters: Map<string, RegistryAdapter>,
  logger: RegistryLogger,
): RegistryFacade {
  const listen = entry.facade!;
  // Loopback clients only unless the entry says otherwise (the facade closes other peers at accept).
  const allowRemote = entry.allowRemote;
  switch (entry.type) {
    case 'zookeeper':
      // The app's own client applies any chroot to the paths it sends; the facade only needs the servers.
      return new (zookeeperPackage().ZooKeeperFacade)({ listen, upstream: entry.upstream!.replace(/\/.*$/, ''), takeover, logger, allowRemote });
    case 'redis':
      return new (redisPackage().RedisFacade)({ listen, upstream: entry.upstream!.replace(/^redis:\/\//, ''), takeover, logger, allowRemote });
    case 'sofa-mesh':
      return new (sofaPackage().SofaMeshApiFacade)({ listen, via: adapters.get(entry.via!)!, takeover, app: entry.app, logger, allowRemote });
    default:
      throw new SidecarError('MESHPORT_CONFIG_INVALID', `registry '${entry.name}': type ${entry.type} has no facade`);
  }
}

/** The services subscribed without the app asking: the entry's list, or everything in a file registry. */
async function servicesToRoute(entry: RegistryConfig): Promise<string[]> {
  if (entry.services) return entry.services;
  if (entry.type !== 'file') return [];
  try {
    const doc = JSON.parse(await readFile(entry.upstream!, 'utf8')) as { services?: Record<string, unknown> };
    return Object.keys(doc.services ?? {});
  } catch {
    return []; // a missing or broken file: the file registry itself reports it
  }
}

function redisUrl(upstream: string): string {
  return upstream.startsWith('redis://') || upstream.startsWith('rediss://') ? upstream : `redis://${upstream}`;
}

/** Loads a plugin by absolute path (the config resolved relative ones) or package name, CommonJS or ES module. */
export async function loadPlugin(type: string): Promise<RegistryPlugin> {
  let resolved: string;
  try {
    resolved = require.resolve(type, { paths: [process.cwd(), __dirname] });
  } catch (err) {
    throw new SidecarError('MESHPORT_PLUGIN_INVALID', `registry plugin '${type}' cannot be found: ${(err as Error).message.split('\n')[0]}`, {
      cause: err,
    });
  }
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(resolved).href)) as Record<string, unknown>;
  } catch (err) {
    throw new SidecarError('MESHPORT_PLUGIN_INVALID', `registry plugin '${type}' failed to load: ${(err as Error).message}`, { cause: err });
  }
  const plugin = (typeof mod.createRegistryAdapter === 'function' ? mod : mod.default) as Partial<RegistryPlugin> | undefined;
  if (typeof plugin?.createRegistryAdapter !== 'function') {
    throw new SidecarError('MESHPORT_PLUGIN_INVALID', `registry plugin '${type}' (${resolved}) does not export createRegistryAdapter(config)`);
  }
  return plugin as RegistryPlugin;
}
