// meshport.yaml: parsing, validation with the key and line of every mistake, and the documented defaults.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type YAMLError } from 'yaml';
import { allowList, type AllowRemote } from '@meshport/registry-core';
import {
  ACCESS_LOG_DEFAULTS,
  CLUSTER_LIMIT_DEFAULTS,
  LABEL_CAP_DEFAULTS,
  ROUTER_DEFAULTS,
  TRACE_DEFAULTS,
  type AccessLogSampling,
  type AuthzPolicy,
  type EngineName,
  type LabelCaps,
  type TlsMode,
} from '@meshport/router';
import { SidecarError } from './errors';

export interface HostPort {
  host: string;
  port: number;
}

/** The registry types built into meshport; any other `type` names a plugin (a path or an npm package). */
export const BUILTIN_REGISTRY_TYPES = ['file', 'zookeeper', 'redis', 'sofa-registry', 'sofa-mesh'] as const;

/** One entry of `registries`. */
export interface RegistryConfig {
  /** Unique; what `via` refers to and what logs and /routes show. */
  name: string;
  /** A built-in type, or a plugin: a path (starting with `.` or `/`, relative to the config file) or a package name. */
  type: string;
  /** The real registry: `host:port[,host:port][/chroot]` (zookeeper), `host:port` (redis, sofa-registry), a path (file). */
  upstream?: string;
  /** Where the app's SDK finds this registry on localhost: meshport serves the registry's own protocol there. */
  facade?: HostPort;
  /** sofa-mesh only: the name of the registry that the mesh API publishes through and subscribes from. */
  via?: string;
  /** sofa-mesh only: the app's own server address, since a mesh publish request carries no port. */
  app?: HostPort;
  /**
   * Services the sidecar routes without the app asking (keys as the wire carries them, `interface:version`). A facade
   * learns the services the app reads by itself; a registry without a facade needs this list (a `file` registry
   * defaults to every service in its file).
   */
  services?: string[];
  /** Passed to the adapter as is (e.g. zookeeper `layout`, `root`, `sessionTimeoutMs`; plugin options). */
  options: Record<string, unknown>;
  /** Non-loopback clients the facade accepts: `true` any, a list of addresses/CIDRs; absent: loopback only. */
  allowRemote?: AllowRemote;
}

export interface SidecarConfig {
  /** The directory relative paths in the config resolve against: the config file's. */
  baseDir: string;
  node: {
    /** The address published upstream for this sidecar's inbound listener: the pod IP in a cluster. */
    ip: string;
  };
  listeners: {
    outbound: HostPort;
    inbound: HostPort;
    /** Non-loopback callers each listener accepts (see SIDECAR_DEFAULTS.allowRemote). */
    allowRemote: { outbound: AllowRemote; inbound: AllowRemote };
  };
  admin: HostPort;
  registries: RegistryConfig[];
  /** Router settings (timeouts, pool size, frame cap, slow-frame limits), see ROUTER_DEFAULTS, and the cluster limits. */
  router: Partial<Record<RouterKey, number>>;
  /** `router.engine`: which engine carries requests (the native loop thread or the TypeScript one); absent: the default. */
  engine: EngineName | undefined;
  log: { level: string };
  /** Transparent capture: the listeners the kernel rules (`meshport hijack apply`) send connections to. */
  hijack: HijackConfig | undefined;
  /** Mutual TLS between sidecars: mode `off` (no `tls` block) is plaintext everywhere, as before. */
  tls: TlsConfig;
  /** Who may call the services this pod serves (applied on the inbound side when `tls.mode` is not `off`). */
  authz: AuthzConfig;
  /** Access logs, traces and the per-service metrics' label caps; logs and traces are off without their keys. */
  telemetry: TelemetryConfig;
}

/** `telemetry`: what the sidecar writes about the calls it carries beyond its counters (docs/observability.md). */
export interface TelemetryConfig {
  /** One JSON line per sampled call; absent: no access log. */
  accessLog?: AccessLogConfig;
  /** A span per call of a sampled trace, to an OTLP/HTTP collector, a file, or both; absent: no spans. */
  tracing?: TracingConfig;
  /** Caps on the method and caller labels of the per-service metrics (a restart applies a change). */
  labelCaps: LabelCaps;
}

export interface AccessLogConfig extends AccessLogSampling {
  /** `stdout`, or the absolute path of a file rotated by size. */
  to: string;
  /** A file's size past which it is renamed `.1` (and `.1` to `.2`...) and a new one started. @default 104857600 */
  maxBytes: number;
  /** Rotated files kept (`file.1` ... `file.<keep>`); 0 keeps none. @default 5 */
  keep: number;
}

export interface TracingConfig {
  /** An OTLP/HTTP collector's base URL; spans are POSTed to `<otlp>/v1/traces` as JSON. */
  otlp?: string;
  /** The absolute path of a file of ExportTraceServiceRequest JSON lines (the Collector file exporter's format). */
  file?: string;
  /** A trace is sampled when its id's low 64 bits are a multiple of everyN. @default 1 */
  everyN: number;
}

/** `tls`: this sidecar's identity files and what its inbound listener accepts. */
export interface TlsConfig {
  /**
   * `off`: plaintext only (the default without a `tls` block); `permissive`: TLS and plaintext on the inbound port
   * (the default with one); `strict`: TLS only.
   */
  mode: TlsMode;
  /** PEM: the leaf certificate (its URI SAN is this sidecar's identity), then any intermediates. Absolute. */
  certFile?: string;
  /** PEM: the leaf's private key. Absolute. */
  keyFile?: string;
  /** PEM: the CA certificates peers' certificates must chain to. Absolute. */
  trustBundleFile?: string;
  /** The trust domain of `authz.default: allow-trust-domain`; absent: the one of this sidecar's own identity. */
  trustDomain?: string;
}

/** `authz`: the inbound authorization policy, as AuthzPolicy without its trust domain (that comes from `tls`). */
export interface AuthzConfig {
  default: AuthzPolicy['default'];
  services: AuthzPolicy['services'];
}

/** `router.*` keys: the router's settings, plus the per-cluster request limits (applied to every cluster). */
export type RouterKey = keyof typeof ROUTER_DEFAULTS | keyof typeof CLUSTER_LIMIT_DEFAULTS;

export type HijackMode = 'redirect' | 'tproxy' | 'connect-hook';

export interface HijackConfig {
  /** How connections arrive: REDIRECT (SO_ORIGINAL_DST), TPROXY inbound (the local address), the eBPF connect hook. */
  mode: HijackMode;
  /** Where outbound connections are captured (loopback). @default 15001 */
  outboundCapturePort: number;
  /** Where inbound connections are captured (all addresses, as the rules deliver them). @default 15006 */
  inboundCapturePort: number;
  /** The uid meshport runs as, which the rules exclude so its own connections are not captured. @default 1337 */
  uid: number;
  /** Same-host shortcut through SOCKHASH + sk_msg (connect-hook mode). @default false */
  sockmap: boolean;
}

export const SIDECAR_DEFAULTS = {
  nodeIp: '127.0.0.1',
  /** The mesh data port sofa-rpc dials in mesh mode, so a mesh-mode SDK needs no port setting. */
  outbound: { host: '127.0.0.1', port: 12220 },
  /** Loopback like every meshport server; a pod sets `0.0.0.0:PORT` so other pods reach it. */
  inbound: { host: '127.0.0.1', port: 12201 },
  admin: { host: '127.0.0.1', port: 15000 },
  /** With no `registries`, the embedded file registry, next to the config file. */
  fileRegistryPath: 'meshport-registry.json',
  /** Where sofa-rpc's MeshApiClient looks by default. */
  meshApiFacade: { host: '127.0.0.1', port: 13330 },
  /** SOFA's default server port. */
  meshApp: { host: '127.0.0.1', port: 12200 },
  logLevel: 'info',
  hijack: { outboundCapturePort: 15001, inboundCapturePort: 15006, uid: 1337, sockmap: false },
  /**
   * Which non-loopback peers a listener accepts: the outbound listener is the app's (in the pod, on loopback), so
   * none; the inbound listener is where other pods call, so any. Facades default to none (see RegistryConfig).
   */
  allowRemote: { outbound: false, inbound: true },
  /**
   * router.startupHoldMs: a restarted sidecar's apps reconnect at once, before its registries have reported; their
   * calls wait up to this long for a route instead of failing with no-route.
   */
  startupHoldMs: 3000,
  /** tls.mode with no `tls` block, and with one that names no mode. */
  tlsMode: { absent: 'off', present: 'permissive' },
  /** authz.default: every caller of this sidecar's trust domain (and, in permissive mode, plaintext callers). */
  authzDefault: 'allow-trust-domain',
  /** telemetry.accessLog's rotation: 100 MiB files, five old ones kept (the trace file rotates alike). */
  accessLogFiles: { maxBytes: 104_857_600, keep: 5 },
} as const;

const TOP_KEYS = ['node', 'listeners', 'admin', 'registries', 'router', 'log', 'hijack', 'tls', 'authz', 'telemetry'];
const TLS_MODES: TlsMode[] = ['off', 'permissive', 'strict'];
const AUTHZ_DEFAULTS: AuthzPolicy['default'][] = ['allow-trust-domain', 'allow-all', 'deny'];
/**
 * A caller identity in a policy: `spiffe://<trust domain>/<path>`, or a prefix of such ending in `/*`
 * (`spiffe://cluster.local/ns/shop/*`).
 */
const SPIFFE_ID = /^spiffe:\/\/[a-z0-9][a-z0-9._-]*(\/[A-Za-z0-9._~!$&'()+,;=:@%-]+)*(\/\*)?$/;
const TRUST_DOMAIN = /^[a-z0-9][a-z0-9._-]*$/;
const HIJACK_MODES: HijackMode[] = ['redirect', 'tproxy', 'connect-hook'];
const REGISTRY_KEYS = ['name', 'type', 'upstream', 'facade', 'via', 'app', 'services', 'options', 'allowRemote'];
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Reads and validates a config file. */
export async function loadConfig(file: string): Promise<SidecarConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new SidecarError('MESHPORT_CONFIG_INVALID', `${file}: cannot read: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return parseConfig(text, file);
}

/** Validates config text; `file` names it in errors and anchors relative paths. Empty text is a valid config. */
export function parseConfig(text: string, file = 'meshport.yaml', env: NodeJS.ProcessEnv = process.env): SidecarConfig {
  // Every mistake of the file is reported at once (an operator fixing one per run would need as many runs as typos);
  // each names its line, where the key is written.
  const problems: Problem[] = [];
  text = substituteEnv(text, file, env, problems);
  const lines = new LineCounter();
  const lineAt = (offset: number) => lines.linePos(offset).line;
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    // Past a syntax error the document is a guess: its keys are not checked, or the guess would be reported too.
    problems.push(...yamlProblems(doc, file, lineAt));
    throw configInvalid(problems);
  }
  const reader = new ConfigReader(doc, file, (keyPath) => {
    const offset = keyOffset(doc, keyPath);
    return offset === undefined ? undefined : lineAt(offset);
  });
  const config = reader.read(path.dirname(path.resolve(file)));
  const unsetLines = new Set(problems.map((p) => p.line));
  problems.push(...reader.problems.filter((p) => !unsetLines.has(p.line)));
  if (problems.length > 0) throw configInvalid(problems);
  sources.set(config, { file, lineOf: reader.lineOf });
  return config;
}

/** One mistake: the line it is on (for ordering) and the text `file:line: key: what`. */
interface Problem {
  line: number;
  text: string;
}

/** Every problem in one error, in the order of the file; `problems` keeps them one a line for printing. */
function configInvalid(problems: Problem[]): SidecarError {
  const sorted = [...problems].sort((a, b) => a.line - b.line).map((p) => p.text);
  return new SidecarError('MESHPORT_CONFIG_INVALID', sorted.join('\n'), {
    problems: sorted.map((message) => ({ code: 'MESHPORT_CONFIG_INVALID' as const, message })),
  });
}

/**
 * The parser's errors as an operator reads them. A line indented deeper than the key above it is reported by the
 * yaml package as two errors at the key above (the line it then reads as a multi-line key); the line at fault is
 * the one where that key ends. An unclosed `[` or `{` is reported where the parser gave up, often the next key's
 * line; the line at fault is the one where it opened.
 */
function yamlProblems(doc: Document, file: string, lineAt: (offset: number) => number): Problem[] {
  const errors: readonly YAMLError[] = doc.errors;
  // Flow collections (`[...]`, `{...}`) by where they open: an unclosed one is reported where the parser gave up.
  const flows: { start: number; open: string }[] = [];
  visit(doc, {
    Collection(_key, node) {
      if (node.flow && node.range) flows.push({ start: node.range[0], open: isSeq(node) ? '[' : '{' });
    },
  });
  const out: Problem[] = [];
  for (let i = 0; i < errors.length; i++) {
    const e = errors[i]!;
    const next = errors[i + 1];
    if (e.code === 'BLOCK_AS_IMPLICIT_KEY' && next?.code === 'MULTILINE_IMPLICIT_KEY' && next.pos[0] === e.pos[0]) {
      const line = lineAt(next.pos[1]);
      out.push({
        line,
        text: `${file}:${line}: not valid YAML: this line is indented deeper than the key above it (keys of one mapping line up)`,
      });
      i++;
      continue;
    }
    if (/^Flow (sequence|map)\b.*end with a [\]}]/.test(e.message)) {
      const open = e.message.startsWith('Flow sequence') ? '[' : '{';
      const flow = flows.filter((f) => f.open === open && f.start <= e.pos[0]).sort((a, b) => b.start - a.start)[0];
      if (flow) {
        const line = lineAt(flow.start);
        const close = flow.open === '[' ? ']' : '}';
        out.push({
          line,
          text: `${file}:${line}: not valid YAML: the ${flow.open} opened on this line is not closed with ${close}`,
        });
        continue;
      }
    }
    const line = lineAt(e.pos[0]);
    out.push({ line, text: `${file}:${line}: not valid YAML: ${e.message.split('\n')[0]}` });
  }
  return out;
}

/** Where each key of a parsed config is written (`admin`, `registries[0].facade`...), for checks made later (preflight). */
export interface ConfigSource {
  file: string;
  /** The 1-based line of a key path (`['registries', 0, 'facade']`), or of the nearest part of it in the file. */
  lineOf(keyPath: (string | number)[]): number | undefined;
}

const sources = new WeakMap<SidecarConfig, ConfigSource>();

/** The file and key lines of a config that parseConfig made; undefined for one built in code. */
export function configSource(config: SidecarConfig): ConfigSource | undefined {
  return sources.get(config);
}

/** A key path as errors print it: `registries[0].facade`. */
export function keyName(at: (string | number)[]): string {
  return at.map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? k : `.${k}`)).join('') || '(top level)';
}

/**
 * `${NAME}` anywhere in the text takes the value of environment variable NAME, so one config serves every pod
 * (`node: { ip: ${POD_IP} }` with POD_IP from the Downward API). An unset variable is an error naming its line (a
 * placeholder stands in, so the rest of the file is still checked; what it makes of its own line is not reported); `$${` writes a literal `${`.
 */
function substituteEnv(text: string, file: string, env: NodeJS.ProcessEnv, problems: Problem[]): string {
  return text.replace(
    /\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}/g,
    (match, escaped: string, name: string, offset: number) => {
      if (escaped) return match.slice(1);
      const value = env[name];
      if (value === undefined) {
        const line = text.slice(0, offset).split('\n').length;
        problems.push({ line, text: `${file}:${line}: \${${name}}: the environment variable ${name} is not set` });
        return `unset-${name}`;
      }
      return value;
    },
  );
}

/**
 * Where the key at keyPath is written: the key itself for a mapping entry (a block value starts on the line after
 * its key, which is not where an operator looks), the item for a list entry; for a path that is not in the file,
 * the nearest part of it that is.
 */
function keyOffset(doc: Document, keyPath: KeyPath): number | undefined {
  let node: unknown = doc.contents;
  let found = (node as { range?: [number, number, number] } | null)?.range?.[0];
  for (const key of keyPath) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === key);
      if (!pair) break;
      found = (pair.key as { range?: [number, number, number] } | null)?.range?.[0] ?? found;
      node = pair.value;
    } else if (isSeq(node) && typeof key === 'number') {
      const item = node.items[key] as { range?: [number, number, number] } | undefined;
      if (!item) break;
      found = item.range?.[0] ?? found;
      node = item;
    } else break;
  }
  return found;
}

type KeyPath = (string | number)[];

/** Thrown by fail() to abandon the value being read; guard() catches it, so the other keys are still checked. */
class Abandoned {}

class ConfigReader {
  readonly problems: Problem[] = [];
  private readonly root: Record<string, unknown>;

  constructor(
    private readonly doc: Document,
    private readonly file: string,
    readonly lineOf: (keyPath: KeyPath) => number | undefined,
  ) {
    const contents = doc.contents;
    this.root = {};
    if (contents !== null && !isMap(contents)) {
      this.note([], 'the config must be a mapping of keys');
      return;
    }
    this.root = (doc.toJS() ?? {}) as Record<string, unknown>;
  }

  read(baseDir: string): SidecarConfig {
    this.onlyKeys([], this.root, TOP_KEYS);
    const node = this.guard({}, () => this.mapping(['node']));
    this.onlyKeys(['node'], node, ['ip']);
    const listeners = this.guard({}, () => this.mapping(['listeners']));
    this.onlyKeys(['listeners'], listeners, ['outbound', 'inbound', 'allowRemote']);
    const allowRemote = this.guard({}, () => this.mapping(['listeners', 'allowRemote'], listeners.allowRemote));
    this.onlyKeys(['listeners', 'allowRemote'], allowRemote, ['outbound', 'inbound']);
    const admin = this.guard({ ...SIDECAR_DEFAULTS.admin }, () => {
      const value = this.hostPort(['admin'], this.root.admin, SIDECAR_DEFAULTS.admin);
      if (!isLoopback(value.host))
        this.fail(['admin'], `the admin port serves loopback only; ${value.host} is not a loopback address`);
      return value;
    });
    const listener = (key: 'outbound' | 'inbound') =>
      this.guard({ ...SIDECAR_DEFAULTS[key] }, () =>
        this.hostPort(['listeners', key], listeners[key], SIDECAR_DEFAULTS[key]),
      );
    const allow = (key: 'outbound' | 'inbound') =>
      this.guard(undefined, () => this.allowRemote(['listeners', 'allowRemote', key], allowRemote[key])) ??
      SIDECAR_DEFAULTS.allowRemote[key];
    return {
      baseDir,
      node: { ip: this.guard(undefined, () => this.string(['node', 'ip'], node.ip)) ?? SIDECAR_DEFAULTS.nodeIp },
      listeners: {
        outbound: listener('outbound'),
        inbound: listener('inbound'),
        allowRemote: { outbound: allow('outbound'), inbound: allow('inbound') },
      },
      admin,
      registries: this.guard([], () => this.registries(baseDir)),
      router: this.routerSettings(),
      engine: this.guard(undefined, () => this.engine()),
      log: this.guard({ level: SIDECAR_DEFAULTS.logLevel }, () => this.log()),
      hijack: this.guard(undefined, () => this.hijack()),
      tls: this.guard({ mode: 'off' as TlsMode }, () => this.tls(baseDir)),
      authz: this.guard({ default: SIDECAR_DEFAULTS.authzDefault, services: {} }, () => this.authz()),
      telemetry: this.guard({ labelCaps: { ...LABEL_CAP_DEFAULTS } }, () => this.telemetry(baseDir)),
    };
  }

  private telemetry(baseDir: string): TelemetryConfig {
    const raw = this.mapping(['telemetry']);
    const before = this.problems.length;
    this.onlyKeys(['telemetry'], raw, ['accessLog', 'tracing', 'labelCaps']);
    const accessLog = this.guard(undefined, () => this.accessLog(baseDir, raw.accessLog));
    const tracing = this.guard(undefined, () => this.tracing(baseDir, raw.tracing));
    const caps = this.guard({}, () => this.mapping(['telemetry', 'labelCaps'], raw.labelCaps));
    this.onlyKeys(['telemetry', 'labelCaps'], caps, ['methods', 'callers']);
    const labelCaps = {
      methods: this.count(['telemetry', 'labelCaps', 'methods'], caps.methods, LABEL_CAP_DEFAULTS.methods, 1),
      callers: this.count(['telemetry', 'labelCaps', 'callers'], caps.callers, LABEL_CAP_DEFAULTS.callers, 1),
    };
    if (this.problems.length > before) throw new Abandoned();
    return { ...(accessLog ? { accessLog } : {}), ...(tracing ? { tracing } : {}), labelCaps };
  }

  private accessLog(baseDir: string, value: unknown): AccessLogConfig | undefined {
    if (value === undefined || value === null) return undefined;
    const at = ['telemetry', 'accessLog'];
    const raw = this.mapping(at, value);
    const before = this.problems.length;
    this.onlyKeys(at, raw, ['to', 'everyN', 'errors', 'slowMs', 'maxBytes', 'keep']);
    const to = this.guard(undefined, () => this.string([...at, 'to'], raw.to));
    if (!to && (raw.to === undefined || raw.to === null || raw.to === ''))
      this.note([...at, 'to'], 'is required: stdout, or the path of a file');
    const errors = raw.errors ?? ACCESS_LOG_DEFAULTS.errors;
    if (typeof errors !== 'boolean') this.note([...at, 'errors'], 'must be true or false');
    const files = SIDECAR_DEFAULTS.accessLogFiles;
    const config: AccessLogConfig = {
      to: !to || to === 'stdout' ? 'stdout' : path.resolve(baseDir, to),
      everyN: this.count([...at, 'everyN'], raw.everyN, ACCESS_LOG_DEFAULTS.everyN, 1),
      errors: errors as boolean,
      slowMs: this.count([...at, 'slowMs'], raw.slowMs, ACCESS_LOG_DEFAULTS.slowMs, 0),
      maxBytes: this.count([...at, 'maxBytes'], raw.maxBytes, files.maxBytes, 1),
      keep: this.count([...at, 'keep'], raw.keep, files.keep, 0),
    };
    if (this.problems.length > before) throw new Abandoned();
    return config;
  }

  private tracing(baseDir: string, value: unknown): TracingConfig | undefined {
    if (value === undefined || value === null) return undefined;
    const at = ['telemetry', 'tracing'];
    const raw = this.mapping(at, value);
    const before = this.problems.length;
    this.onlyKeys(at, raw, ['otlp', 'file', 'everyN']);
    const otlp = this.guard(undefined, () => this.string([...at, 'otlp'], raw.otlp));
    if (otlp !== undefined && !isHttpUrl(otlp))
      this.note([...at, 'otlp'], `must be an http:// or https:// URL like http://127.0.0.1:4318, not '${otlp}'`);
    const file = this.guard(undefined, () => this.string([...at, 'file'], raw.file));
    if (file === '') this.note([...at, 'file'], 'must be a path');
    if (otlp === undefined && file === undefined && raw.otlp === undefined && raw.file === undefined)
      this.note(at, 'names no target: give otlp (a collector URL), file (a path), or both');
    const everyN = this.count([...at, 'everyN'], raw.everyN, TRACE_DEFAULTS.everyN, 1);
    if (this.problems.length > before) throw new Abandoned();
    return {
      ...(otlp ? { otlp } : {}),
      ...(file ? { file: path.resolve(baseDir, file) } : {}),
      everyN,
    };
  }

  /** An integer of at least `min`, or `fallback` when absent; a mistake is noted and the fallback stands in. */
  private count(at: KeyPath, value: unknown, fallback: number, min: number): number {
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
      this.note(at, `must be an integer of at least ${min}, not ${JSON.stringify(value)}`);
      return fallback;
    }
    return value;
  }

  private tls(baseDir: string): TlsConfig {
    if (this.root.tls === undefined || this.root.tls === null) return { mode: SIDECAR_DEFAULTS.tlsMode.absent };
    const raw = this.mapping(['tls']);
    const before = this.problems.length;
    this.onlyKeys(['tls'], raw, ['mode', 'certFile', 'keyFile', 'trustBundleFile', 'trustDomain']);
    const mode =
      this.guard(undefined, () => this.string(['tls', 'mode'], raw.mode)) ?? SIDECAR_DEFAULTS.tlsMode.present;
    if (!(TLS_MODES as string[]).includes(mode)) this.note(['tls', 'mode'], `must be one of ${TLS_MODES.join(', ')}`);
    const file = (key: 'certFile' | 'keyFile' | 'trustBundleFile') => {
      const value = this.guard(undefined, () => this.string(['tls', key], raw[key]));
      if (value === '') this.note(['tls', key], 'must be a path');
      else if (
        value === undefined &&
        raw[key] === undefined &&
        mode !== 'off' &&
        (TLS_MODES as string[]).includes(mode)
      )
        this.note(['tls', key], `is required with mode ${mode}`);
      return value ? path.resolve(baseDir, value) : undefined;
    };
    const certFile = file('certFile');
    const keyFile = file('keyFile');
    const trustBundleFile = file('trustBundleFile');
    const trustDomain = this.guard(undefined, () => this.string(['tls', 'trustDomain'], raw.trustDomain));
    if (trustDomain !== undefined && !TRUST_DOMAIN.test(trustDomain))
      this.note(['tls', 'trustDomain'], `must be a trust domain like cluster.local (lowercase), not '${trustDomain}'`);
    if (this.problems.length > before) throw new Abandoned();
    return {
      mode: mode as TlsMode,
      ...(certFile ? { certFile } : {}),
      ...(keyFile ? { keyFile } : {}),
      ...(trustBundleFile ? { trustBundleFile } : {}),
      ...(trustDomain ? { trustDomain } : {}),
    };
  }

  private authz(): AuthzConfig {
    const raw = this.mapping(['authz']);
    const before = this.problems.length;
    this.onlyKeys(['authz'], raw, ['default', 'services']);
    const fallback =
      this.guard(undefined, () => this.string(['authz', 'default'], raw.default)) ?? SIDECAR_DEFAULTS.authzDefault;
    if (!(AUTHZ_DEFAULTS as string[]).includes(fallback))
      this.note(['authz', 'default'], `must be one of ${AUTHZ_DEFAULTS.join(', ')}`);
    const services: AuthzConfig['services'] = {};
    const rawServices = this.guard({}, () => this.mapping(['authz', 'services'], raw.services));
    for (const [service, value] of Object.entries(rawServices)) {
      const at = ['authz', 'services', service];
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        this.note(at, 'must be a mapping with allow (a list of identities) and optionally methods');
        continue;
      }
      const rule = value as Record<string, unknown>;
      this.onlyKeys(at, rule, ['allow', 'methods']);
      const allow = this.identities([...at, 'allow'], rule.allow ?? []);
      const methods: Record<string, string[]> = {};
      const rawMethods = this.guard({}, () => this.mapping([...at, 'methods'], rule.methods));
      for (const [method, list] of Object.entries(rawMethods))
        methods[method] = this.identities([...at, 'methods', method], list);
      services[service] = { allow, ...(Object.keys(rawMethods).length > 0 ? { methods } : {}) };
    }
    if (this.problems.length > before) throw new Abandoned();
    return { default: fallback as AuthzPolicy['default'], services };
  }

  /** A list of caller identities: each a spiffe:// URI, or a prefix of one ending in `/*`. */
  private identities(at: KeyPath, value: unknown): string[] {
    if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
      this.note(
        at,
        'must be a list of identities like spiffe://cluster.local/ns/default/sa/app (or a prefix ending in /*)',
      );
      return [];
    }
    value.forEach((id: string, i) => {
      if (!SPIFFE_ID.test(id))
        this.note(
          [...at, i],
          `'${id}' is not an identity: spiffe://<trust domain>/<path>, or a prefix of one ending in /*`,
        );
    });
    return value as string[];
  }

  private registries(baseDir: string): RegistryConfig[] {
    const raw = this.root.registries;
    if (raw === undefined || raw === null) {
      return [
        { name: 'file', type: 'file', upstream: path.join(baseDir, SIDECAR_DEFAULTS.fileRegistryPath), options: {} },
      ];
    }
    if (!Array.isArray(raw) || !isSeq(this.doc.get('registries', true))) this.fail(['registries'], 'must be a list');
    // An entry with a mistake is left out of the checks across entries (names, via), which would only add noise.
    const entries = (raw as unknown[]).map((entry, i) =>
      this.guard(undefined, () => this.registry(['registries', i], entry)),
    );
    const names = new Set<string>();
    entries.forEach((entry, i) => {
      if (!entry) return;
      if (names.has(entry.name)) this.note(['registries', i, 'name'], `'${entry.name}' is used twice`);
      names.add(entry.name);
    });
    const valid = entries.filter((e): e is RegistryConfig => e !== undefined);
    entries.forEach((entry, i) => {
      if (entry?.type !== 'sofa-mesh') return;
      const via = valid.find((e) => e.name === entry.via);
      if (!via && !(raw as { name?: unknown }[]).some((e, j) => entries[j] === undefined && e?.name === entry.via)) {
        this.note(['registries', i, 'via'], `names no registry in this list (have: ${[...names].join(', ')})`);
      } else if (via?.type === 'sofa-mesh')
        this.note(['registries', i, 'via'], 'must name a registry, not another sofa-mesh facade');
    });
    for (const entry of valid) {
      if (entry.type === 'file' && entry.upstream !== undefined) entry.upstream = path.resolve(baseDir, entry.upstream);
      if (/^\.{0,2}\//.test(entry.type)) entry.type = path.resolve(baseDir, entry.type);
    }
    return valid;
  }

  /** One entry; every independent mistake in it is noted before the entry is given up. */
  private registry(at: KeyPath, raw: unknown): RegistryConfig {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      this.fail(at, 'each registry is a mapping with name and type');
    const entry = raw as Record<string, unknown>;
    const before = this.problems.length;
    this.onlyKeys(at, entry, REGISTRY_KEYS);
    const name = this.guard(undefined, () => this.string([...at, 'name'], entry.name));
    if (entry.name === undefined || entry.name === null || entry.name === '') this.note([...at, 'name'], 'is required');
    const type = this.guard(undefined, () => this.string([...at, 'type'], entry.type));
    if (!type) {
      if (entry.type === undefined || entry.type === null || entry.type === '')
        this.note(
          [...at, 'type'],
          `is required: one of ${BUILTIN_REGISTRY_TYPES.join(', ')}, or a plugin path or package`,
        );
      throw new Abandoned();
    }
    const builtin = (BUILTIN_REGISTRY_TYPES as readonly string[]).includes(type);
    if (!builtin && !/^(\.{0,2}\/|@?[a-z0-9])/i.test(type))
      this.note([...at, 'type'], `'${type}' is neither a built-in type nor a plugin`);
    const upstream = entry.upstream === undefined ? undefined : String(entry.upstream);
    const needsUpstream = ['zookeeper', 'redis', 'sofa-registry'].includes(type);
    if (needsUpstream && !upstream) this.note([...at, 'upstream'], `is required for a ${type} registry`);
    if (type === 'sofa-mesh' && upstream)
      this.note([...at, 'upstream'], 'a sofa-mesh facade has no upstream of its own; name one with via');
    if (type === 'sofa-mesh' && entry.via === undefined)
      this.note([...at, 'via'], 'is required for sofa-mesh: the registry it publishes through');
    if (type !== 'sofa-mesh' && entry.via !== undefined) this.note([...at, 'via'], 'is only for sofa-mesh');
    if (type !== 'sofa-mesh' && entry.app !== undefined) this.note([...at, 'app'], 'is only for sofa-mesh');
    const hasFacade = ['zookeeper', 'redis', 'sofa-mesh'].includes(type);
    if (!hasFacade && entry.facade !== undefined) this.note([...at, 'facade'], `a ${type} registry has no facade`);
    if (!hasFacade && entry.allowRemote !== undefined)
      this.note([...at, 'allowRemote'], `a ${type} registry has no facade to allow clients on`);
    const allowRemote = this.guard(undefined, () => this.allowRemote([...at, 'allowRemote'], entry.allowRemote));
    const services = entry.services;
    if (services !== undefined && (!Array.isArray(services) || services.some((s) => typeof s !== 'string' || !s))) {
      this.note([...at, 'services'], 'must be a list of service keys like com.example.Echo:1.0');
    }
    const options = entry.options ?? {};
    if (typeof options !== 'object' || options === null || Array.isArray(options))
      this.note([...at, 'options'], 'must be a mapping');
    const facade = this.guard(undefined, () =>
      type === 'sofa-mesh'
        ? this.hostPort([...at, 'facade'], entry.facade, SIDECAR_DEFAULTS.meshApiFacade)
        : entry.facade === undefined
          ? undefined
          : this.hostPort([...at, 'facade'], entry.facade, undefined),
    );
    const via = this.guard(undefined, () =>
      entry.via === undefined ? undefined : this.string([...at, 'via'], entry.via),
    );
    const app = this.guard(undefined, () =>
      type === 'sofa-mesh' ? this.hostPort([...at, 'app'], entry.app, SIDECAR_DEFAULTS.meshApp) : undefined,
    );
    if (this.problems.length > before || !name) throw new Abandoned();
    return {
      name,
      type,
      upstream,
      facade,
      via,
      app,
      services: services as string[] | undefined,
      options: options as Record<string, unknown>,
      ...(allowRemote === undefined ? {} : { allowRemote }),
    };
  }

  private routerSettings(): SidecarConfig['router'] {
    const raw = this.guard({}, () => this.mapping(['router']));
    const known = ['engine', ...Object.keys(ROUTER_DEFAULTS), ...Object.keys(CLUSTER_LIMIT_DEFAULTS)];
    this.onlyKeys(['router'], raw, known);
    const out: SidecarConfig['router'] = {};
    for (const [key, value] of Object.entries(raw)) {
      if (key === 'engine' || !known.includes(key)) continue;
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0)
        this.note(['router', key], 'must be a non-negative integer');
      else out[key as RouterKey] = value;
    }
    return out;
  }

  private engine(): EngineName | undefined {
    const value = this.mapping(['router']).engine;
    if (value === undefined) return undefined;
    if (value !== 'native' && value !== 'js') this.fail(['router', 'engine'], "must be 'native' or 'js'");
    return value as EngineName;
  }

  private hijack(): HijackConfig | undefined {
    if (this.root.hijack === undefined || this.root.hijack === null) return undefined;
    const raw = this.mapping(['hijack']);
    const before = this.problems.length;
    this.onlyKeys(['hijack'], raw, ['mode', 'outboundCapturePort', 'inboundCapturePort', 'uid', 'sockmap']);
    const mode = this.guard(undefined, () => this.string(['hijack', 'mode'], raw.mode));
    if (!mode || !(HIJACK_MODES as string[]).includes(mode))
      this.note(['hijack', 'mode'], `must be one of ${HIJACK_MODES.join(', ')}`);
    const d = SIDECAR_DEFAULTS.hijack;
    const port = (key: 'outboundCapturePort' | 'inboundCapturePort') => {
      const value = raw[key] ?? d[key];
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535)
        this.note(['hijack', key], 'must be a port, 1-65535');
      return value as number;
    };
    const outboundCapturePort = port('outboundCapturePort');
    const inboundCapturePort = port('inboundCapturePort');
    const uid = raw.uid ?? d.uid;
    if (typeof uid !== 'number' || !Number.isInteger(uid) || uid < 0)
      this.note(['hijack', 'uid'], 'must be a uid, a non-negative integer');
    const sockmap = raw.sockmap ?? d.sockmap;
    if (typeof sockmap !== 'boolean') this.note(['hijack', 'sockmap'], 'must be true or false');
    else if (sockmap && mode !== 'connect-hook')
      this.note(['hijack', 'sockmap'], 'needs mode connect-hook (sockops puts the sockets in the map)');
    if (this.problems.length > before) throw new Abandoned();
    return {
      mode: mode as HijackMode,
      outboundCapturePort,
      inboundCapturePort,
      uid: uid as number,
      sockmap: sockmap as boolean,
    };
  }

  private log(): SidecarConfig['log'] {
    const raw = this.mapping(['log']);
    this.onlyKeys(['log'], raw, ['level']);
    const level = this.string(['log', 'level'], raw.level) ?? SIDECAR_DEFAULTS.logLevel;
    if (!LOG_LEVELS.includes(level)) this.fail(['log', 'level'], `must be one of ${LOG_LEVELS.join(', ')}`);
    return { level };
  }

  /** `true`, `false`, or a list of addresses and CIDRs (checked here, so a typo names its line). */
  private allowRemote(at: KeyPath, value: unknown): AllowRemote | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value === 'boolean') return value;
    if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
      this.fail(at, 'must be true, false, or a list of addresses and CIDRs like ["10.0.0.0/8"]');
    }
    try {
      allowList(value as string[]);
    } catch (err) {
      this.fail(at, (err as Error).message);
    }
    return value as string[];
  }

  private mapping(at: KeyPath, given?: unknown): Record<string, unknown> {
    const value = given !== undefined ? given : at.length === 1 ? this.root[at[0] as string] : undefined;
    if (value === undefined || value === null) return {};
    if (typeof value !== 'object' || Array.isArray(value)) this.fail(at, 'must be a mapping');
    return value as Record<string, unknown>;
  }

  private string(at: KeyPath, value: unknown): string | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string') this.fail(at, `must be a string, not ${JSON.stringify(value)}`);
    return value;
  }

  /** `HOST:PORT`, `[v6]:PORT` or a bare port (loopback). */
  private hostPort(at: KeyPath, value: unknown, fallback: HostPort): HostPort;
  private hostPort(at: KeyPath, value: unknown, fallback: HostPort | undefined): HostPort | undefined;
  private hostPort(at: KeyPath, value: unknown, fallback: HostPort | undefined): HostPort | undefined {
    if (value === undefined || value === null) return fallback && { ...fallback };
    // A list or mapping is a mistake even when its text would read as a port (`[15000]`).
    const text = typeof value === 'string' || typeof value === 'number' ? String(value) : '';
    const m = /^(?:\[([0-9a-f:.]+)\]|([^:\s]+)):(\d{1,5})$/i.exec(text) ?? /^()()(\d{1,5})$/.exec(text);
    const port = m ? Number(m[3]) : NaN;
    if (!m || port > 65535) this.fail(at, `must be HOST:PORT (or a port), not ${JSON.stringify(value)}`);
    return { host: m[1] || m[2] || '127.0.0.1', port };
  }

  private onlyKeys(at: KeyPath, value: Record<string, unknown>, allowed: string[]): void {
    for (const key of Object.keys(value)) {
      if (!allowed.includes(key)) this.note([...at, key], `unknown key (known here: ${allowed.join(', ')})`);
    }
  }

  /** Runs one read; a mistake in it is already noted, and `fallback` stands in so the rest can be checked. */
  private guard<T>(fallback: T, read: () => T): T {
    try {
      return read();
    } catch (err) {
      if (err instanceof Abandoned) return fallback;
      throw err;
    }
  }

  /** Notes a mistake and goes on. */
  private note(at: KeyPath, message: string): void {
    const line = this.lineOf(at);
    this.problems.push({
      line: line ?? 0,
      text: `${this.file}${line === undefined ? '' : `:${line}`}: ${keyName(at)}: ${message}`,
    });
  }

  /** Notes a mistake and abandons the value being read (see guard). */
  private fail(at: KeyPath, message: string): never {
    this.note(at, message);
    throw new Abandoned();
  }
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
  } catch {
    return false;
  }
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^(::ffff:)?127\.\d+\.\d+\.\d+$/.test(host);
}
