// Registry governance rules as the SDKs applied them client-side (Dubbo configurators and condition routers, Java
// sofa-rpc configs and overrides, provider warm-up), compiled into plain data a route book or a native engine applies.

import { encodeNodeName, parseProviderUrl, providerUrlText, type ProviderUrl } from './url';

// ---------------------------------------------------------------------------------------------------------------
// Public shapes. Everything here is plain JSON: no Map, Set, class or closure, so a CompiledRoute can be shown on an
// admin page as is and handed to a native engine.

/**
 * Whose client-side rules apply. 'dubbo': Apache Dubbo 2.7's RegistryDirectory (configurators, condition routers,
 * disabled providers, timestamp warm-up). 'sofa': Java sofa-rpc's ZookeeperRegistry (overrides, configs,
 * warmupTime/warmupWeight), plus sofa-rpc-node's one rule, skipping a provider whose `enabled` is not `true`.
 * sofa-rpc-node itself ignores weights, warm-up and overrides.
 */
export type RulesDialect = 'dubbo' | 'sofa';

/** The rule texts of one interface as the registry holds them; a layout fills only its own two fields. */
export interface RuleUrls {
  /** Dubbo `/dubbo/<iface>/configurators` children, decoded: `override://`, `absent://` (and `empty://`) URLs. */
  configurators: string[];
  /** Dubbo `/dubbo/<iface>/routers` children, decoded: `condition://` URLs. */
  routers: string[];
  /** sofa-rpc `/sofa-rpc/<iface>/configs`: child name -> its node data as UTF-8 (interface-level attributes). */
  configs: Record<string, string>;
  /** sofa-rpc `/sofa-rpc/<iface>/overrides` children, decoded: `bolt://<consumer ip>?timeout=..` URLs. */
  overrides: string[];
}

/** No rules at all: what a missing rule directory means. */
export function emptyRuleUrls(): RuleUrls {
  return { configurators: [], routers: [], configs: {}, overrides: [] };
}

/** The consumer the rules are evaluated for: the app behind this sidecar, as its own SDK would describe itself. */
export interface RuleConsumer {
  /**
   * The consumer's IP as its SDK registers it (Dubbo NetUtils.getLocalHost, sofa-rpc SystemInfo.getLocalHost): the
   * app's pod IP, not the sidecar's loopback.
   */
  host: string;
  /** The consumer's application name; Dubbo matches an override's `application` against it. */
  application?: string;
  /** The interface, version and group the consumer subscribed with: rules naming other ones are not for it (Dubbo). */
  interface?: string;
  version?: string;
  group?: string;
  /**
   * Any other parameter of the consumer's URL (timeout, loadbalance, ...). Dubbo merges them into every provider URL
   * before rules see it, so `=> application = x` and override matching compare the consumer's values.
   */
  params?: Readonly<Record<string, string>>;
}

export interface CompileRulesOptions {
  /**
   * Dubbo's warm-up curve: 'linear' (2.7.0-2.7.14 and 3.x) or 'quadratic' (2.7.15-2.7.23, apache/dubbo#9104).
   * @default 'linear'
   */
  dubboWarmupCurve?: 'linear' | 'quadratic';
}

export const COMPILE_RULES_DEFAULTS = {
  dubboWarmupCurve: 'linear',
  /** Dubbo's `warmup` when a provider URL names none (DEFAULT_WARMUP). */
  dubboWarmupMs: 600_000,
  /** SOFA and Dubbo weight when a URL names none, or one that is not an integer. */
  weight: 100,
} as const;

export interface CompileRulesInput {
  dialect: RulesDialect;
  /** The service's current providers, as the adapter pushed them. */
  providers: readonly (ProviderUrl | string)[];
  rules: RuleUrls;
  consumer: RuleConsumer;
  /** Wall-clock ms (Date.now()): warm-up compares it with the providers' start times. */
  nowMs: number;
  options?: CompileRulesOptions;
}

/** A rule and why it was not used. */
export interface RuleNote {
  rule: string;
  reason: string;
}

/** How a provider's weight grows after it starts; see weightAt. */
export interface WarmUp {
  /**
   * 'sofa': the weight is `weight` until nowMs passes endMs (sofa-rpc ProviderInfo.getWeight/getStatus).
   * 'dubbo-linear' / 'dubbo-quadratic': AbstractLoadBalance.getWeight's ramp from startMs (the `timestamp`) to endMs.
   */
  curve: 'sofa' | 'dubbo-linear' | 'dubbo-quadratic';
  startMs: number;
  endMs: number;
  /** sofa only: `warmupWeight`. */
  weight?: number;
}

/** Values a Dubbo rule set for one method (`<method>.weight`, `<method>.timeout`). */
export interface MethodValues {
  weight?: number;
  timeoutMs?: number;
}

export interface CompiledProvider {
  /** The provider URL, as providerUrlText spells it. */
  url: string;
  host: string;
  port: number;
  /** Weight at compile time for a call with no method-level weight; 0 = never selected. */
  weight: number;
  /** Weight after rules and before warm-up; never negative. */
  baseWeight: number;
  /** Excluded whatever its weight, by `disabledBy`. */
  disabled: boolean;
  disabledBy?: string;
  /** A timeout a rule imposed (ms): the SDK would have used it instead of the one the request carries. */
  timeoutMs?: number;
  /** Dubbo method-level weight (from any source) and timeout (from rules only), by method name. */
  methods?: Record<string, MethodValues>;
  /** Present while the provider is still warming up (or its clock is ahead of ours). */
  warmup?: WarmUp;
  /** Every parameter rules set on this provider, as the SDK would then read it (loadbalance, retries, mock, ...). */
  ruleParams: Record<string, string>;
  /** The rule texts that changed this provider, in the order they were applied. */
  appliedRules: string[];
}

/**
 * One of Dubbo's condition patterns: `*` alone matches anything; one `*` at the start, end or middle is a suffix,
 * prefix or prefix+suffix test (only the last `*` counts); otherwise equality. An empty pattern matches only an empty
 * value (UrlUtils.isMatchGlobPattern).
 */
export interface MethodCondition {
  /** Non-empty: the method must match one of these (and none of `mismatches`). */
  matches: string[];
  /** The method must match none of these. Both empty never matches. */
  mismatches: string[];
}

/** The method-dependent part of one Dubbo condition router whose consumer conditions hold for this consumer. */
export interface CompiledRouter {
  rule: string;
  priority: number;
  /** When the provider conditions keep none of the candidates: true gives no provider, false keeps the candidates. */
  force: boolean;
  /** The router acts on a call only when its method satisfies every entry; [] = every call. */
  methods: MethodCondition[];
  /** Indexes into `providers` of those the provider conditions keep (disabled ones never). */
  allowed: number[];
  /** `cond =>` with nothing after it: matching calls get no provider at all, whatever `force` says. */
  blacklist: boolean;
}

export interface CompiledRoute {
  dialect: RulesDialect;
  /** The `nowMs` compiled for: endpointsFor's default clock. */
  nowMs: number;
  /** Same order as the input providers. */
  providers: CompiledProvider[];
  /** In the order Dubbo runs them (ascending priority; equal priorities by rule text). */
  routers: CompiledRouter[];
  /**
   * sofa: consumer attributes the matching overrides set (`timeout`, `serialization`, `loadBalancer`, the only keys
   * Java sofa-rpc takes from an override).
   */
  consumerOverrides: Record<string, string>;
  /** sofa: the override's `loadBalancer` (random, roundRobin, consistentHash, ...), if any. */
  loadBalancer?: string;
  /** The earliest time a warm-up ends: weights change by themselves until then, so compile again (or pass nowMs). */
  recompileAtMs?: number;
  /** Rule texts that had an effect on this consumer: applied to a provider, or a router that holds for it. */
  inForce: string[];
  /** Rules that are valid but do nothing for this consumer, and why. */
  notApplied: RuleNote[];
  /** Rules that cannot be parsed or evaluated; each is ignored, never emptying a route. */
  problems: RuleNote[];
}

/** One provider a call may go to; `index` points into CompiledRoute.providers. */
export interface RouteEndpoint {
  index: number;
  host: string;
  port: number;
  weight: number;
  timeoutMs?: number;
}

// ---------------------------------------------------------------------------------------------------------------
// Evaluation, usable on its own by whoever holds a CompiledRoute.

/** A provider's weight at `nowMs` for `method`: method-level weight, then warm-up, as the dialect's SDK computes it. */
export function weightAt(provider: CompiledProvider, nowMs: number, method?: string): number {
  if (provider.disabled) return 0;
  let weight = (method !== undefined ? methodOf(provider, method)?.weight : undefined) ?? provider.baseWeight;
  const w = provider.warmup;
  if (w?.curve === 'sofa') {
    // ProviderInfo.getStatus leaves WARMING_UP only once now > warmupEndTime.
    if (nowMs <= w.endMs && w.weight !== undefined) weight = w.weight;
  } else if (w && weight > 0) {
    const uptime = nowMs - w.startMs;
    const warmup = w.endMs - w.startMs;
    if (uptime < 0) return 1;
    if (uptime > 0 && uptime < warmup) weight = dubboWarmupWeight(uptime, warmup, weight, w.curve);
  }
  return Math.max(0, weight);
}

/**
 * The providers a call of `method` may go to, with their weights: Dubbo's routers run in order over the enabled
 * providers (each keeps a non-empty subset, empties the list when forced or blacklisting, or leaves it), then
 * providers of weight 0 are dropped. [] means the SDK would have failed the call with "no provider available".
 * Pass '' when the method is unknown. `nowMs` defaults to the compile time; pass Date.now() to follow warm-ups.
 */
export function endpointsFor(compiled: CompiledRoute, method: string, nowMs: number = compiled.nowMs): RouteEndpoint[] {
  let candidates = compiled.providers.flatMap((p, i) => (p.disabled ? [] : [i]));
  for (const router of compiled.routers) {
    // A router handed an empty list returns it as is (ConditionRouter.route).
    if (candidates.length === 0) break;
    if (!router.methods.every((c) => methodConditionHolds(c, method))) continue;
    if (router.blacklist) {
      candidates = [];
      continue;
    }
    const allowed = new Set(router.allowed);
    const kept = candidates.filter((i) => allowed.has(i));
    if (kept.length > 0 || router.force) candidates = kept;
  }
  const out: RouteEndpoint[] = [];
  for (const index of candidates) {
    const p = compiled.providers[index];
    const weight = weightAt(p, nowMs, method);
    // Dubbo's random balancer would still pick among weight-0 providers when all weigh 0; the router never does.
    if (weight <= 0) continue;
    const timeoutMs = methodOf(p, method)?.timeoutMs ?? p.timeoutMs;
    out.push(
      timeoutMs === undefined
        ? { index, host: p.host, port: p.port, weight }
        : { index, host: p.host, port: p.port, weight, timeoutMs },
    );
  }
  return out;
}

// Method names come from the wire: only own properties count (no `toString` or `__proto__` from Object.prototype).
function methodOf(provider: CompiledProvider, method: string): MethodValues | undefined {
  return provider.methods && Object.hasOwn(provider.methods, method) ? provider.methods[method] : undefined;
}

/** Whether a call's method satisfies one condition (ConditionRouter.MatchPair.isMatch). */
export function methodConditionHolds(condition: MethodCondition, method: string): boolean {
  return pairMatches(condition, method, undefined);
}

// ---------------------------------------------------------------------------------------------------------------
// Compilation.

/** Applies `rules` to `providers` for `consumer`; pure, never throws on a rule (bad rules land in `problems`). */
export function compileRules(input: CompileRulesInput): CompiledRoute {
  const providers = input.providers.map((p) => (typeof p === 'string' ? parseProviderUrl(p) : p));
  const notes = new Notes();
  const route =
    input.dialect === 'dubbo' ? compileDubbo(providers, input, notes) : compileSofa(providers, input, notes);
  for (const p of route.providers) {
    p.weight = weightAt(p, input.nowMs);
    if (!p.warmup) continue;
    // sofa-rpc leaves warm-up once now > end; Dubbo once uptime >= warmup.
    const end = p.warmup.curve === 'sofa' ? p.warmup.endMs + 1 : p.warmup.endMs;
    if (input.nowMs >= end) delete p.warmup;
    else if (route.recompileAtMs === undefined || end < route.recompileAtMs) route.recompileAtMs = end;
  }
  route.inForce = [...notes.inForce];
  route.notApplied = notes.notApplied;
  route.problems = notes.problems;
  return route;
}

class Notes {
  readonly inForce = new Set<string>();
  readonly notApplied: RuleNote[] = [];
  readonly problems: RuleNote[] = [];
  skip(rule: string, reason: string): void {
    this.notApplied.push({ rule, reason });
  }
  problem(rule: string, reason: string): void {
    this.problems.push({ rule, reason });
  }
}

function newRoute(dialect: RulesDialect, nowMs: number, providers: CompiledProvider[]): CompiledRoute {
  return { dialect, nowMs, providers, routers: [], consumerOverrides: {}, inForce: [], notApplied: [], problems: [] };
}

// ---------------------------------------------------------------------------------------------------------------
// Java sofa-rpc.

/** The only attributes ZookeeperRegistryHelper.convertOverrideToAttribute takes from an override URL. */
const SOFA_OVERRIDE_KEYS = ['timeout', 'serialization', 'loadBalancer'];

function compileSofa(providers: ProviderUrl[], input: CompileRulesInput, notes: Notes): CompiledRoute {
  const route = newRoute(
    'sofa',
    input.nowMs,
    providers.map((url) => sofaProvider(url)),
  );
  const { rules, consumer } = input;
  for (const rule of [...rules.configurators, ...rules.routers])
    notes.skip(rule, 'a Dubbo rule; the sofa dialect reads configs and overrides');
  for (const [name, value] of Object.entries(rules.configs)) {
    // ZookeeperConfigObserver hands these to ConfigListener.configChanged, which both of sofa-rpc's bootstraps leave empty.
    notes.skip(
      `${name}=${value}`,
      'interface-level config: Java sofa-rpc passes it to configChanged, which its consumer ignores',
    );
  }
  // PathChildrenCache lists children sorted by path, and each later override's attributes replace earlier ones.
  const overrides = [...rules.overrides].sort((a, b) =>
    compareStrings(encodeNodeName(a, 'java'), encodeNodeName(b, 'java')),
  );
  for (const text of overrides) {
    if (!text.includes(`://${consumer.host}?`)) {
      notes.skip(text, `for another consumer (sofa-rpc applies an override whose URL holds "://${consumer.host}?")`);
      continue;
    }
    const attrs: Record<string, string> = {};
    let bad: string | undefined;
    for (const pair of text.slice(text.indexOf('?') + 1).split('&')) {
      const parts = javaSplit(pair, '=');
      if (!SOFA_OVERRIDE_KEYS.includes(parts[0])) continue;
      if (parts.length < 2) bad = `${parts[0]} has no value`;
      else if (parts[0] === 'timeout' && parseJavaInt(parts[1]) === undefined)
        bad = `timeout=${parts[1]} is not an integer`;
      else attrs[parts[0]] = parts[1];
    }
    // The SDK fails (and rolls back) the whole update when one attribute cannot be read.
    if (bad) notes.problem(text, bad);
    else if (Object.keys(attrs).length === 0) notes.skip(text, `sets none of ${SOFA_OVERRIDE_KEYS.join(', ')}`);
    else {
      Object.assign(route.consumerOverrides, attrs);
      notes.inForce.add(text);
    }
  }
  const timeout = route.consumerOverrides.timeout;
  if (timeout !== undefined) {
    const ms = parseJavaInt(timeout)!;
    // The consumer's timeout, whichever provider serves the call; 0 or less would mean "no override".
    if (ms > 0) for (const p of route.providers) p.timeoutMs = ms;
  }
  if (route.consumerOverrides.loadBalancer) route.loadBalancer = route.consumerOverrides.loadBalancer;
  return route;
}

function sofaProvider(url: ProviderUrl): CompiledProvider {
  // ProviderHelper.toProviderInfo: the last occurrence of a parameter wins.
  const params = javaParams(url);
  const rawWeight = params.get('weight') || params.get('_WEIGHT');
  const weight = (rawWeight ? parseJavaInt(rawWeight) : undefined) ?? COMPILE_RULES_DEFAULTS.weight;
  const provider = baseProvider(url, weight);
  // sofa-rpc-node's ZooKeeper client skips such providers (Java sofa-rpc's does not), and so does providerDisabled.
  const enabled = params.get('enabled');
  if (enabled && enabled !== 'true') {
    provider.disabled = true;
    provider.disabledBy = `enabled=${enabled} on the provider URL`;
  }
  // RegistryUtils.processWarmUpWeight: all three must be present and not blank; unreadable numbers fall back.
  const [time, warmWeight, start] = ['warmupTime', 'warmupWeight', 'startTime'].map((k) => params.get(k));
  if (isNotBlank(time) && isNotBlank(warmWeight) && isNotBlank(start)) {
    const startMs = parseJavaInt(start, 64) ?? 0;
    const endMs = startMs + (parseJavaInt(time, 64) ?? 0);
    provider.warmup = { curve: 'sofa', startMs, endMs, weight: parseJavaInt(warmWeight) ?? weight };
  }
  return provider;
}

function baseProvider(url: ProviderUrl, weight: number): CompiledProvider {
  return {
    url: providerUrlText(url),
    host: url.host,
    port: url.port,
    weight: 0,
    baseWeight: Math.max(0, weight),
    disabled: false,
    ruleParams: {},
    appliedRules: [],
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Apache Dubbo 2.7.

/** Keys an override matches on rather than sets (AbstractConfigurator.configureIfMatch). */
const CONDITION_KEYS = new Set([
  'category',
  'check',
  'dynamic',
  'enabled',
  'group',
  'version',
  'application',
  'side',
  'configVersion',
  'compatible_config',
  'interfaces',
]);
const VALID_CATEGORIES = new Set([
  'routers',
  'providers',
  'configurators',
  'dynamicconfigurators',
  'appdynamicconfigurators',
]);
const ANY_HOST = '0.0.0.0';

/** A Dubbo URL as org.apache.dubbo.common.URL holds it: path without its leading '/', parameters raw. */
interface DubboUrl {
  protocol: string;
  host: string;
  port: number;
  path: string;
  params: Map<string, string>;
}

interface Configurator {
  text: string;
  url: DubboUrl;
  priority: number;
  absent: boolean;
}

function compileDubbo(providerUrls: ProviderUrl[], input: CompileRulesInput, notes: Notes): CompiledRoute {
  const { consumer, rules } = input;
  for (const rule of rules.overrides)
    notes.skip(rule, 'a sofa-rpc override; the dubbo dialect reads configurators and routers');
  for (const [name, value] of Object.entries(rules.configs))
    notes.skip(`${name}=${value}`, 'a sofa-rpc config; the dubbo dialect reads configurators and routers');

  const consumerUrl = dubboConsumerUrl(consumer);
  // RegistryDirectory.notify sorts every URL by what it is, not by the directory it came from.
  const configuratorRules: { text: string; url: DubboUrl }[] = [];
  const routerRules: { text: string; url: DubboUrl }[] = [];
  for (const text of [...new Set([...rules.configurators, ...rules.routers])]) {
    let url: DubboUrl;
    try {
      url = parseDubboUrl(text);
    } catch (error) {
      notes.problem(text, (error as Error).message);
      continue;
    }
    const mismatch = ruleConsumerMismatch(url, consumerUrl);
    if (mismatch) {
      notes.skip(text, mismatch);
      continue;
    }
    const category = url.params.get('category') || 'providers';
    if (url.params.get('compatible_config'))
      notes.skip(text, 'compatible_config is set: Dubbo 2.7 leaves such URLs to 2.6 consumers');
    else if (!VALID_CATEGORIES.has(category) && url.protocol !== 'route')
      notes.skip(text, `category ${category} is not one a consumer reads`);
    else if (url.protocol === 'override' || category === 'configurators') configuratorRules.push({ text, url });
    else if (url.protocol === 'route' || category === 'routers') routerRules.push({ text, url });
    else
      notes.skip(
        text,
        `neither a configurator nor a router (category ${category}): Dubbo would read it as a provider URL`,
      );
  }

  const configurators = toConfigurators(configuratorRules, notes);
  const applied = new Set<string>();
  const merged: Map<string, string>[] = [];
  const compiled = providerUrls.map((url, i) => {
    const params = mergeUrlParams(javaParams(url), consumerUrl.params);
    merged[i] = params;
    return dubboProvider(url, params, configurators, consumer, applied, input.options);
  });
  for (const c of configurators) {
    if (applied.has(c.text)) notes.inForce.add(c.text);
    else notes.skip(c.text, configuratorMissReason(c, consumer, consumerUrl));
  }

  const route = newRoute('dubbo', input.nowMs, compiled);
  const providerViews: DubboUrl[] = providerUrls.map((url, i) => ({
    protocol: url.scheme ?? '',
    host: url.host,
    port: url.port,
    path: url.path.replace(/^\//, ''),
    params: merged[i],
  }));
  route.routers = toRouters(routerRules, consumerUrl, providerViews, compiled, notes);
  for (const r of route.routers) notes.inForce.add(r.rule);
  return route;
}

/** The consumer's URL as Dubbo builds it for routing and merging: `consumer://host/interface?...&side=consumer`. */
function dubboConsumerUrl(consumer: RuleConsumer): DubboUrl {
  const params = new Map(Object.entries(consumer.params ?? {}));
  const named: [string, string | undefined][] = [
    ['interface', consumer.interface],
    ['application', consumer.application],
    ['version', consumer.version],
    ['group', consumer.group],
  ];
  // Dubbo's URL builder drops empty values, so '' and absent are one thing.
  for (const [k, v] of named) if (v) params.set(k, v);
  for (const [k, v] of params) if (v === '') params.delete(k);
  params.set('side', 'consumer');
  return { protocol: 'consumer', host: consumer.host, port: 0, path: params.get('interface') ?? '', params };
}

/** UrlUtils.isMatch(consumer, rule) as ZookeeperRegistry applies it to every child: undefined when it matches. */
function ruleConsumerMismatch(rule: DubboUrl, consumer: DubboUrl): string | undefined {
  const ruleIface = rule.params.get('interface') || rule.path;
  const consumerIface = consumer.params.get('interface');
  if (consumerIface !== undefined && !(consumerIface === '*' || ruleIface === '*' || ruleIface === consumerIface)) {
    return `for interface ${ruleIface}`;
  }
  if (!javaBoolean(rule.params.get('enabled'), true) && consumer.params.get('enabled') !== '*') return 'enabled=false';
  const cg = consumer.params.get('group');
  const rg = rule.params.get('group');
  if (
    !(
      cg === '*' ||
      cg === rg ||
      (cg !== undefined && rg !== undefined && rg !== '' && cg.split(/\s*,+\s*/).includes(rg))
    )
  ) {
    return `for group ${rg ?? '(none)'}, the consumer's is ${cg ?? '(none)'}`;
  }
  const cv = consumer.params.get('version');
  const rv = rule.params.get('version');
  if (!(cv === '*' || cv === rv)) return `for version ${rv ?? '(none)'}, the consumer's is ${cv ?? '(none)'}`;
  return undefined;
}

/** Configurator.toConfigurators: empty:// clears them all, a rule setting nothing is dropped, then the sort. */
function toConfigurators(rules: { text: string; url: DubboUrl }[], notes: Notes): Configurator[] {
  const empty = rules.find((r) => r.url.protocol === 'empty');
  if (empty) {
    for (const r of rules) if (r !== empty) notes.skip(r.text, `cleared by ${empty.text}`);
    return [];
  }
  const out: Configurator[] = [];
  for (const { text, url } of rules) {
    if (url.protocol !== 'override' && url.protocol !== 'absent') {
      notes.problem(text, `configurator type ${url.protocol}:// is not override:// or absent://`);
      continue;
    }
    if ([...url.params.keys()].every((k) => k === 'anyhost')) {
      notes.skip(text, 'sets nothing');
      continue;
    }
    const priority = rulePriority(text, url, notes);
    if (priority === undefined) continue;
    out.push({ text, url, priority, absent: url.protocol === 'absent' });
  }
  // Configurator.compareTo: by host as a string (so 0.0.0.0 runs before specific hosts and they win), then priority.
  return out.sort(
    (a, b) => compareStrings(a.url.host, b.url.host) || a.priority - b.priority || compareStrings(a.text, b.text),
  );
}

/** ProviderURLMergeProcessor's default: the consumer's parameters win, except those that describe the provider. */
function mergeUrlParams(provider: Map<string, string>, consumer: Map<string, string>): Map<string, string> {
  const map = new Map(provider);
  const local = new Map(consumer);
  for (const k of ['group', 'version', 'generic']) if (map.has(k)) local.delete(k);
  for (const k of ['release', 'dubbo', 'methods', 'timestamp', 'dubbo.tag']) local.delete(k);
  for (const [k, v] of local) map.set(k, v);
  const app = provider.get('application');
  if (app !== undefined) map.set('remote.application', app);
  return map;
}

function dubboProvider(
  url: ProviderUrl,
  params: Map<string, string>,
  configurators: Configurator[],
  consumer: RuleConsumer,
  applied: Set<string>,
  options: CompileRulesOptions | undefined,
): CompiledProvider {
  const provider = baseProvider(url, COMPILE_RULES_DEFAULTS.weight);
  const providerParams = javaParams(url);
  const category = providerParams.get('category') || 'providers';
  const byRule = new Map<string, string>();
  const setBy = new Map<string, string>();
  for (const c of configurators) {
    if (!configuratorApplies(c, url, params, consumer)) continue;
    for (const [k, v] of c.url.params) {
      if (CONDITION_KEYS.has(k) || k.startsWith('~')) continue;
      if (c.absent && params.has(k)) continue;
      params.set(k, v);
      byRule.set(k, v);
      setBy.set(k, c.text);
    }
    provider.appliedRules.push(c.text);
    applied.add(c.text);
  }
  provider.ruleParams = Object.fromEntries(byRule);

  // RegistryDirectory.toInvokers: a non-empty `disabled` decides, else `enabled`.
  const disabled = params.get('disabled');
  const enabled = disabled ? !javaBoolean(disabled, false) : javaBoolean(params.get('enabled'), true);
  if (url.scheme === 'empty' || url.scheme === 'override' || url.scheme === 'route' || category !== 'providers') {
    provider.disabled = true;
    provider.disabledBy = `not a provider URL (${url.scheme ?? 'no scheme'}://, category ${category})`;
  } else if (!javaBoolean(providerParams.get('enabled'), true)) {
    provider.disabled = true;
    provider.disabledBy = 'enabled=false on the provider URL';
  } else if (!enabled) {
    provider.disabled = true;
    provider.disabledBy = setBy.has('disabled')
      ? `disabled=${disabled} set by ${setBy.get('disabled')}`
      : 'disabled on the provider URL';
  }

  const weight = params.get('weight');
  provider.baseWeight = Math.max(0, (weight ? parseJavaInt(weight) : undefined) ?? COMPILE_RULES_DEFAULTS.weight);
  const timeout = positive(byRule.get('timeout'));
  if (timeout !== undefined) provider.timeoutMs = timeout;
  const methods = methodValues(params, byRule);
  if (methods) provider.methods = methods;

  // AbstractLoadBalance.getWeight reads `timestamp` and `warmup` from the invoker's (merged) URL.
  const timestamp = parseJavaInt(params.get('timestamp') ?? '', 64);
  if (timestamp !== undefined && timestamp > 0) {
    const warmup = parseJavaInt(params.get('warmup') ?? '') ?? COMPILE_RULES_DEFAULTS.dubboWarmupMs;
    const curve =
      (options?.dubboWarmupCurve ?? COMPILE_RULES_DEFAULTS.dubboWarmupCurve) === 'quadratic'
        ? 'dubbo-quadratic'
        : 'dubbo-linear';
    provider.warmup = { curve, startMs: timestamp, endMs: timestamp + warmup };
  }
  return provider;
}

/** AbstractConfigurator.configure + configureIfMatch, at a consumer (the merged URL's side is always consumer). */
function configuratorApplies(
  c: Configurator,
  provider: ProviderUrl,
  merged: Map<string, string>,
  consumer: RuleConsumer,
): boolean {
  const rule = c.url;
  if (!javaBoolean(rule.params.get('enabled'), true)) return false;
  let host: string;
  if (rule.params.get('configVersion')) {
    // 2.7 config-center rules: a consumer applies only side=consumer ones without a port; provider-side ones reach
    // it through the provider's re-registered URL.
    if (rule.params.get('side') !== 'consumer' || rule.port !== 0) return false;
    host = consumer.host;
  } else if (rule.port !== 0) {
    if (provider.port !== rule.port) return false;
    host = provider.host;
  } else {
    // No port: the host names a consumer (or 0.0.0.0), never a provider.
    host = consumer.host;
  }
  if (rule.host !== ANY_HOST && rule.host !== host) return false;
  const addresses = rule.params.get('providerAddresses');
  // A substring test, as in Dubbo ("TODO, to support wildcards").
  if (addresses && !addresses.includes(`${provider.host}:${provider.port}`) && !addresses.includes(ANY_HOST))
    return false;
  const app = rule.params.get('application');
  if (app !== undefined && app !== '*' && app !== merged.get('application')) return false;
  for (const [k, v] of rule.params) {
    if (!(k.startsWith('~') || k === 'application' || k === 'side')) continue;
    if (v !== '*' && v !== merged.get(k.startsWith('~') ? k.slice(1) : k)) return false;
  }
  return true;
}

/** Why a configurator changed no provider, for the admin page. */
function configuratorMissReason(c: Configurator, consumer: RuleConsumer, consumerUrl: DubboUrl): string {
  const rule = c.url;
  if (!javaBoolean(rule.params.get('enabled'), true)) return 'enabled=false';
  const side = rule.params.get('side');
  if (side && side !== '*' && side !== 'consumer') return `side=${side}: the provider applies it and re-registers`;
  if (rule.params.get('configVersion') && (side !== 'consumer' || rule.port !== 0))
    return 'a 2.7 config-center rule for the provider side';
  if (rule.port === 0 && rule.host !== ANY_HOST && rule.host !== consumer.host) {
    return `no port, so ${rule.host} names a consumer, and this consumer is ${consumer.host}`;
  }
  const app = rule.params.get('application');
  if (
    app !== undefined &&
    app !== '*' &&
    consumerUrl.params.has('application') &&
    app !== consumerUrl.params.get('application')
  ) {
    return `for application ${app}, the consumer's is ${consumerUrl.params.get('application')}`;
  }
  return 'matches none of the current providers';
}

/** Dubbo method-level weights (any source) and timeouts (rules only), by URL.toMethodParameters' reading of keys. */
function methodValues(
  params: Map<string, string>,
  byRule: Map<string, string>,
): Record<string, MethodValues> | undefined {
  const out = new Map<string, MethodValues>();
  const entry = (method: string) => out.get(method) ?? out.set(method, {}).get(method)!;
  const add = (method: string, realKey: string, key: string) => {
    const value = params.get(key);
    if (!value) return;
    if (realKey === 'weight') {
      const w = parseJavaInt(value);
      if (w !== undefined) entry(method).weight = Math.max(0, w);
    } else if (realKey === 'timeout' && byRule.has(key)) {
      const t = positive(value);
      if (t !== undefined) entry(method).timeoutMs = t;
    }
  };
  const methods = params.get('methods');
  if (methods) {
    for (const method of methods.split(','))
      for (const realKey of ['weight', 'timeout']) add(method, realKey, `${method}.${realKey}`);
  } else {
    for (const key of params.keys()) {
      const dot = key.indexOf('.');
      if (dot > 0) add(key.slice(0, dot), key.slice(dot + 1), key);
    }
  }
  return out.size > 0 ? Object.fromEntries(out) : undefined;
}

/** Dubbo's two warm-up curves, with Java's float and int arithmetic. */
function dubboWarmupWeight(
  uptime: number,
  warmup: number,
  weight: number,
  curve: 'dubbo-linear' | 'dubbo-quadratic',
): number {
  const ww =
    curve === 'dubbo-linear'
      ? Math.trunc(Math.fround(Math.fround(uptime) / Math.fround(Math.fround(warmup) / Math.fround(weight))))
      : Math.trunc(Math.round((uptime / warmup) ** 2 * weight));
  return ww < 1 ? 1 : Math.min(ww, weight);
}

// ---------------------------------------------------------------------------------------------------------------
// Dubbo condition routers.

interface MatchPair {
  matches: string[];
  mismatches: string[];
}

/** Java's `\s`, not JavaScript's (which also takes Unicode spaces). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: Java's \s class, spelled out (\x0B is vertical tab)
const ROUTE_PATTERN = /([&!=,]*)[ \t\n\x0B\f\r]*([^&!=, \t\n\x0B\f\r]+)/g;

function toRouters(
  rules: { text: string; url: DubboUrl }[],
  consumer: DubboUrl,
  providers: DubboUrl[],
  compiled: CompiledProvider[],
  notes: Notes,
): CompiledRouter[] {
  const out: CompiledRouter[] = [];
  for (const { text, url } of rules) {
    // RegistryDirectory.toRouters skips empty:// and takes the type from `router`, else the protocol.
    if (url.protocol === 'empty') continue;
    const type = url.params.get('router') || url.protocol;
    if (type !== 'condition') {
      notes.problem(text, `router type ${type} is not supported (only condition routers are)`);
      continue;
    }
    const priority = rulePriority(text, url, notes);
    if (priority === undefined) continue;
    if (!javaBoolean(url.params.get('enabled'), true)) {
      notes.skip(text, 'enabled=false');
      continue;
    }
    let when: Map<string, MatchPair>;
    let then: Map<string, MatchPair> | null;
    try {
      ({ when, then } = parseConditionRule(javaUrlDecode(url.params.get('rule') ?? '')));
    } catch (error) {
      notes.problem(text, (error as Error).message);
      continue;
    }
    const methods: MethodCondition[] = [];
    const consumerSide = new Map<string, MatchPair>();
    let needsArguments = false;
    for (const [key, pair] of when) {
      if (key.startsWith('arguments')) needsArguments = true;
      else if (key === 'method' || key === 'methods')
        methods.push({ matches: [...pair.matches], mismatches: [...pair.mismatches] });
      else consumerSide.set(key, pair);
    }
    if (needsArguments) {
      notes.problem(text, 'its consumer conditions test call arguments, which meshport does not decode');
      continue;
    }
    if (consumerSide.size > 0 && !matchCondition(consumerSide, consumer, undefined)) {
      notes.skip(text, 'its consumer conditions do not hold for this consumer');
      continue;
    }
    const allowed: number[] = [];
    const provided = then;
    if (provided) {
      providers.forEach((p, i) => {
        if (!compiled[i].disabled && provided.size > 0 && matchCondition(provided, p, consumer)) allowed.push(i);
      });
    }
    out.push({
      rule: text,
      priority,
      force: javaBoolean(url.params.get('force'), false),
      methods,
      allowed,
      blacklist: then === null,
    });
  }
  // RouterChain sorts by Router.compareTo: ascending priority (Dubbo's docs say the opposite; the code decides).
  return out.sort((a, b) => a.priority - b.priority || compareStrings(a.rule, b.rule));
}

/** ConditionRouter.init: `when => then`; empty or `true` when = every consumer, empty or `false` then = blacklist. */
function parseConditionRule(raw: string): { when: Map<string, MatchPair>; then: Map<string, MatchPair> | null } {
  if (javaTrim(raw) === '') throw new Error('no rule: the `rule` parameter is missing or blank');
  const rule = raw.replaceAll('consumer.', '').replaceAll('provider.', '');
  const i = rule.indexOf('=>');
  const whenRule = i < 0 ? '' : javaTrim(rule.slice(0, i));
  const thenRule = javaTrim(i < 0 ? rule : rule.slice(i + 2));
  return {
    when: whenRule === '' || whenRule === 'true' ? new Map() : parseConditions(whenRule),
    then: thenRule === '' || thenRule === 'false' ? null : parseConditions(thenRule),
  };
}

/** ConditionRouter.parseRule, including its quirks (a repeated key started afresh replaces the earlier one). */
function parseConditions(rule: string): Map<string, MatchPair> {
  const condition = new Map<string, MatchPair>();
  let pair: MatchPair | undefined;
  let values: string[] | undefined;
  const fail = (separator: string, at: number, content: string) =>
    new Error(`illegal route rule "${rule}": the error char '${separator}' at index ${at} before "${content}"`);
  for (const m of rule.matchAll(ROUTE_PATTERN)) {
    const [, separator, content] = m;
    if (separator === '') {
      pair = { matches: [], mismatches: [] };
      condition.set(content, pair);
    } else if (separator === '&') {
      pair = condition.get(content);
      if (!pair) condition.set(content, (pair = { matches: [], mismatches: [] }));
    } else if (separator === '=' || separator === '!=') {
      if (!pair) throw fail(separator, m.index!, content);
      values = separator === '=' ? pair.matches : pair.mismatches;
      if (!values.includes(content)) values.push(content);
    } else if (separator === ',') {
      if (!values || values.length === 0) throw fail(separator, m.index!, content);
      if (!values.includes(content)) values.push(content);
    } else {
      throw fail(separator, m.index!, content);
    }
  }
  return condition;
}

/** ConditionRouter.matchCondition without an invocation: method keys are read from the URL like any parameter. */
function matchCondition(condition: Map<string, MatchPair>, url: DubboUrl, param: DubboUrl | undefined): boolean {
  let result = false;
  for (const [key, pair] of condition) {
    // Provider conditions on arguments: matchArguments has no invocation there and answers false.
    if (key.startsWith('arguments')) return false;
    let sample: string | undefined;
    if (key === 'address') sample = url.port > 0 ? `${url.host}:${url.port}` : url.host;
    else if (key === 'host') sample = url.host;
    else sample = urlToMap(url).get(key);
    if (sample !== undefined ? !pairMatches(pair, sample, param) : pair.matches.length > 0) return false;
    result = true;
  }
  return result;
}

function pairMatches(pair: MatchPair, value: string, param: DubboUrl | undefined): boolean {
  const hit = (pattern: string) => isMatchGlobPattern(pattern, value, param);
  if (pair.matches.length > 0 && pair.mismatches.length === 0) return pair.matches.some(hit);
  if (pair.mismatches.length > 0 && pair.matches.length === 0) return !pair.mismatches.some(hit);
  if (pair.matches.length > 0 && pair.mismatches.length > 0)
    return !pair.mismatches.some(hit) && pair.matches.some(hit);
  return false;
}

/** UrlUtils.isMatchGlobPattern; `$name` reads the consumer URL's parameter (provider conditions only). */
function isMatchGlobPattern(rawPattern: string, value: string, param: DubboUrl | undefined): boolean {
  const pattern = param && rawPattern.startsWith('$') ? rawParameter(param, rawPattern.slice(1)) : rawPattern;
  if (pattern === '*') return true;
  if (!pattern && !value) return true;
  if (!pattern || !value) return false;
  const i = pattern.lastIndexOf('*');
  if (i === -1) return value === pattern;
  if (i === pattern.length - 1) return value.startsWith(pattern.slice(0, i));
  if (i === 0) return value.endsWith(pattern.slice(1));
  return value.startsWith(pattern.slice(0, i)) && value.endsWith(pattern.slice(i + 1));
}

function rawParameter(url: DubboUrl, key: string): string | undefined {
  if (key === 'protocol') return url.protocol;
  if (key === 'host') return url.host;
  if (key === 'port') return String(url.port);
  if (key === 'path') return url.path;
  return url.params.get(key);
}

/** URL.toMap: the parameters plus protocol, host, port (when set) and path. */
function urlToMap(url: DubboUrl): Map<string, string> {
  const map = new Map(url.params);
  map.set('protocol', url.protocol);
  map.set('host', url.host);
  if (url.port > 0) map.set('port', String(url.port));
  map.set('path', url.path);
  return map;
}

// ---------------------------------------------------------------------------------------------------------------
// Java's readings of URLs, numbers and booleans.

const RULE_URL_SHAPE =
  /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(?:[^@/?#]*@)?(\[[0-9A-Fa-f:.]+\]|[^/?#:[\]@]*)(?::(\d{1,5}))?(\/[^?#]*)?(?:\?([^#]*))?$/;

/** A rule URL (`override://0.0.0.0/iface?...`): unlike a provider URL its port is optional. */
function parseDubboUrl(text: string): DubboUrl {
  const m = RULE_URL_SHAPE.exec(text);
  if (!m) throw new Error('not a URL of the form scheme://host[:port][/path][?params]');
  const [, protocol, rawHost, rawPort, path, query] = m;
  if (!rawHost) throw new Error('no host (0.0.0.0 means every host)');
  const port = rawPort === undefined ? 0 : Number(rawPort);
  if (port > 65535) throw new Error(`port ${port} is out of range`);
  const params = new Map<string, string>();
  for (const segment of query ? query.split('&') : []) {
    const part = javaTrim(segment);
    if (part === '') continue;
    const eq = part.indexOf('=');
    // URL.valueOf keeps a bare name as name=name, and a repeated name's last value.
    if (eq < 0) params.set(part, part);
    else params.set(part.slice(0, eq), part.slice(eq + 1));
  }
  return { protocol, host: rawHost.replace(/^\[|\]$/g, ''), port, path: (path ?? '').replace(/^\//, ''), params };
}

/** Parameters of a provider URL as Java reads them: raw values, the last of a repeated name, a bare name as itself. */
function javaParams(url: ProviderUrl): Map<string, string> {
  const map = new Map<string, string>();
  for (const p of url.params) map.set(p.name, p.value ?? p.name);
  return map;
}

/**
 * A rule's `priority` (0 when absent). One that is not an integer is reported and the rule dropped: Java's sort would
 * throw on it and lose the whole notification, so dropping the one rule is the safe reading.
 */
function rulePriority(text: string, url: DubboUrl, notes: Notes): number | undefined {
  const raw = url.params.get('priority');
  const priority = raw ? parseJavaInt(raw) : 0;
  if (priority === undefined) notes.problem(text, `priority=${raw} is not an integer`);
  return priority;
}

/** Integer.parseInt / Long.parseLong: optional sign and digits only, within range; undefined where Java throws. */
function parseJavaInt(text: string, bits: 32 | 64 = 32): number | undefined {
  if (!/^[+-]?\d+$/.test(text)) return undefined;
  const n = Number(text);
  const limit = bits === 32 ? 2 ** 31 : 2 ** 63;
  return n >= -limit && n < limit && Number.isSafeInteger(n) ? n : undefined;
}

function positive(text: string | undefined): number | undefined {
  const n = text ? parseJavaInt(text) : undefined;
  return n !== undefined && n > 0 ? n : undefined;
}

/** URL.getParameter(key, boolean): empty or absent gives the default, else Boolean.parseBoolean. */
function javaBoolean(text: string | undefined, fallback: boolean): boolean {
  return text ? text.toLowerCase() === 'true' : fallback;
}

/** URLDecoder.decode: '+' is a space; a bad escape throws. */
function javaUrlDecode(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    throw new Error(`the rule is not valid URL encoding: ${JSON.stringify(text)}`);
  }
}

/** String.trim: strips every char up to U+0020. */
function javaTrim(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: Java's String.trim() drops every char <= U+0020
  return text.replace(/^[\x00-\x20]+|[\x00-\x20]+$/g, '');
}

function isNotBlank(text: string | undefined): text is string {
  return text !== undefined && javaTrim(text) !== '';
}

/** String.split(sep): trailing empty strings are removed. */
function javaSplit(text: string, separator: string): string[] {
  const parts = text.split(separator);
  while (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  return parts;
}

/** String.compareTo: UTF-16 code units, as JavaScript's `<` compares strings. */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
