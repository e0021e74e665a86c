// Provider URLs as registries carry them: parse, format, rewrite host:port, read weights, build service keys, and
// encode/decode the ZooKeeper node names that hold them.

import { RegistryError } from './errors';

/**
 * One query parameter exactly as written: `name` and `value` are still percent-encoded, so formatting a parsed URL
 * gives back the same bytes. `value` is undefined for a bare `name` (no `=`), and '' for `name=`; SOFA writes
 * `uniqueId=` and `protocol=` and some clients tell those apart from an absent parameter.
 */
export interface UrlParam {
  readonly name: string;
  readonly value: string | undefined;
}

/**
 * A provider URL in one of the three shapes the SDKs publish: `bolt://host:port?params` (sofa-rpc-node on
 * ZooKeeper), `dubbo://host:port/path?params` (Apache Dubbo) and scheme-less `host:port?params` (SOFA Registry data
 * and the SOFA mesh HTTP API).
 */
export interface ProviderUrl {
  /** 'bolt', 'dubbo', ... ; undefined for SOFA's scheme-less form. */
  readonly scheme: string | undefined;
  /** Without brackets, also for IPv6 (`::1`). */
  readonly host: string;
  readonly port: number;
  /** '' or the path with its leading '/', as written (Dubbo puts the interface there). */
  readonly path: string;
  /** Every parameter in its original order, duplicates included. */
  readonly params: readonly UrlParam[];
}

/** Where a provider can be reached; structurally the router's `Endpoint`, which this package must not import. */
export interface ProviderEndpoint {
  host: string;
  port: number;
  weight: number;
}

/** Weight when a URL carries none, or one that is not a non-negative integer: the SOFA and Dubbo default. */
export const DEFAULT_PROVIDER_WEIGHT = 100;
/** SOFA's version when a service names none. */
export const DEFAULT_SOFA_VERSION = '1.0';

const URL_SHAPE =
  /^(?:([A-Za-z][A-Za-z0-9+.-]*):\/\/)?(\[[0-9A-Za-z:.%_-]+\]|[^/?#:[\]@\s]+):(\d{1,5})(\/[^?#]*)?(?:\?([^#]*))?$/;

/** Parses a provider URL; throws RegistryError MESHPORT_REGISTRY_BAD_URL when it is none of the known shapes. */
export function parseProviderUrl(text: string): ProviderUrl {
  const m = URL_SHAPE.exec(text);
  if (!m) throw new RegistryError('MESHPORT_REGISTRY_BAD_URL', `not a provider URL: ${JSON.stringify(text)}`);
  const [, scheme, rawHost, rawPort, path, query] = m;
  const port = Number(rawPort);
  if (port > 65535)
    throw new RegistryError('MESHPORT_REGISTRY_BAD_URL', `port out of range in ${JSON.stringify(text)}`);
  const host = rawHost.startsWith('[') ? rawHost.slice(1, -1) : rawHost;
  const params: UrlParam[] = [];
  // Empty segments (`a=1&&b=2`) carry no parameter; dropping them changes bytes but not meaning.
  for (const segment of query ? query.split('&') : []) {
    if (segment === '') continue;
    const eq = segment.indexOf('=');
    params.push(
      eq < 0 ? { name: segment, value: undefined } : { name: segment.slice(0, eq), value: segment.slice(eq + 1) },
    );
  }
  return { scheme, host, port, path: path ?? '', params };
}

/** The URL as text again: byte-identical to what was parsed, apart from empty `&&` segments. */
export function formatProviderUrl(url: ProviderUrl): string {
  const host = url.host.includes(':') ? `[${url.host}]` : url.host;
  const parts = [url.scheme !== undefined ? `${url.scheme}://` : '', host, ':', String(url.port), url.path];
  url.params.forEach((p, i) => {
    parts.push(i === 0 ? '?' : '&', p.name);
    if (p.value !== undefined) parts.push('=', p.value);
  });
  // Joined, the text is one flat string; built with `+` it was a tree of its pieces (V8 cons strings), half as large
  // again for as long as it is kept (the route book keeps one per endpoint).
  return parts.join('');
}

/**
 * The same URL pointing at another host:port, every other part kept exactly: this is how meshport publishes a local
 * provider upstream as `node.ip:inbound-port` and hands a consumer `127.0.0.1:outbound-port`.
 */
export function rewriteEndpoint(url: ProviderUrl, to: { host: string; port: number }): ProviderUrl;
export function rewriteEndpoint(url: string, to: { host: string; port: number }): string;
export function rewriteEndpoint(url: ProviderUrl | string, to: { host: string; port: number }): ProviderUrl | string {
  if (typeof url === 'string') return formatProviderUrl(rewriteEndpoint(parseProviderUrl(url), to));
  if (!Number.isInteger(to.port) || to.port < 0 || to.port > 65535) {
    throw new RegistryError('MESHPORT_REGISTRY_BAD_URL', `cannot rewrite to port ${to.port}`);
  }
  const host = to.host.startsWith('[') ? to.host.slice(1, -1) : to.host;
  return { ...url, host, port: to.port };
}

/** The decoded value of the first `name` parameter: '' for `name=` or bare `name`, undefined when absent. */
export function getParam(url: ProviderUrl, name: string): string | undefined {
  const p = url.params.find((q) => q.name === name);
  if (!p) return undefined;
  return p.value === undefined ? '' : decodeLenient(p.value);
}

/** The URL with the first `name` set to `value` (encoded here) in place, or appended when it had none. */
export function withParam(url: ProviderUrl, name: string, value: string): ProviderUrl {
  const encoded = encodeURIComponent(value);
  const i = url.params.findIndex((q) => q.name === name);
  const params = [...url.params];
  if (i < 0) params.push({ name, value: encoded });
  else params[i] = { name, value: encoded };
  return { ...url, params };
}

/**
 * The provider's load-balancing weight: `weight` (sofa-rpc-node, Dubbo), else `_WEIGHT` (SOFA Registry data), else
 * 100. A value that is not a non-negative integer falls back to 100 rather than silently starving the provider.
 */
export function providerWeight(url: ProviderUrl): number {
  for (const name of ['weight', '_WEIGHT']) {
    const raw = getParam(url, name);
    if (raw !== undefined && /^\d+$/.test(raw)) return Number(raw);
  }
  return DEFAULT_PROVIDER_WEIGHT;
}

/** host, port and weight, for a route table. */
export function providerEndpoint(url: ProviderUrl): ProviderEndpoint {
  return { host: url.host, port: url.port, weight: providerWeight(url) };
}

/** SOFA's service key as the Bolt header carries it: `interface:version[:uniqueId]`, version defaulting to 1.0. */
export function sofaServiceKey(iface: string, version?: string, uniqueId?: string): string {
  const key = `${iface}:${version || DEFAULT_SOFA_VERSION}`;
  return uniqueId ? `${key}:${uniqueId}` : key;
}

/**
 * Dubbo's service key, which is the identity a Dubbo consumer selects providers by: `group/interface:version`, each
 * part left out when empty, as Dubbo itself writes it. The group travels only in the request's attachments.
 */
export function dubboServiceKey(iface: string, version?: string | null, group?: string | null): string {
  const key = version ? `${iface}:${version}` : iface;
  return group ? `${group}/${key}` : key;
}

/**
 * The interface a service key names, whichever SDK's key it is: `interface`, `interface:version[:uniqueId]` (SOFA) or
 * `group/interface:version` (Dubbo). Java interface names hold neither '/' nor ':'.
 */
export function interfaceOfServiceKey(key: string): string {
  return key.slice(key.indexOf('/') + 1).split(':')[0]!;
}

/**
 * `url` as the answer to a subscription of service `key`, from a registry that files providers under their service
 * (the `file` registry, a plugin): a URL that names no interface is given the key's identity (interface, version, and
 * Dubbo's group or SOFA's uniqueId), as SOFA Registry's data ids do for theirs; a URL that names one is kept as it is.
 */
export function withServiceKey(url: ProviderUrl, key: string): ProviderUrl {
  if (getParam(url, 'interface') || url.path.replace(/^\//, '')) return url;
  const slash = url.scheme === 'dubbo' ? key.indexOf('/') : -1;
  const [iface, version, ...rest] = key.slice(slash + 1).split(':');
  if (!iface) return url;
  let named = withParam(url, 'interface', iface);
  if (version) named = withParam(named, 'version', version);
  if (slash > 0) named = withParam(named, 'group', key.slice(0, slash));
  else if (url.scheme !== 'dubbo' && rest.length > 0) named = withParam(named, 'uniqueId', rest.join(':'));
  return named;
}

/** The SOFA service key a provider URL serves: `interface` parameter (else the path), `version`, `uniqueId`. */
export function sofaServiceKeyOf(url: ProviderUrl): string {
  return sofaServiceKey(interfaceOf(url), getParam(url, 'version'), getParam(url, 'uniqueId'));
}

/**
 * The Dubbo service key a provider URL serves: `interface` parameter (else the path), `version` and `group` (each
 * falling back to its `default.` form, which older Dubbo providers write).
 */
export function dubboServiceKeyOf(url: ProviderUrl): string {
  const version = getParam(url, 'version') || getParam(url, 'default.version');
  const group = getParam(url, 'group') || getParam(url, 'default.group');
  return dubboServiceKey(interfaceOf(url), version, group);
}

function interfaceOf(url: ProviderUrl): string {
  const iface = getParam(url, 'interface') || url.path.replace(/^\//, '');
  if (!iface) throw new RegistryError('MESHPORT_REGISTRY_BAD_URL', `no interface in ${formatProviderUrl(url)}`);
  return iface;
}

/** Who wrote a node name: sofa-rpc-node (encodeURIComponent) or Java (java.net.URLEncoder, UTF-8). */
export type NodeNameStyle = 'js' | 'java';

/** A high surrogate with no low one after it, or a low one with no high one before it. */
const UNPAIRED_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
/** The bytes URLEncoder writes as themselves (its dontNeedEncoding set, space aside). */
const JAVA_KEPT_BYTE = Array.from({ length: 256 }, (_, b) => /^[A-Za-z0-9.\-*_]$/.test(String.fromCharCode(b)));
const HEX_ESCAPE = Array.from({ length: 256 }, (_, b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`);

/**
 * A URL as a ZooKeeper node name, exactly as that SDK writes it. Java's URLEncoder keeps only `A-Za-z0-9.-*_`, writes
 * space as '+', and escapes `!~'()` which encodeURIComponent keeps; both use upper-case hex over UTF-8 bytes. An
 * unpaired surrogate is '?' to Java (String.getBytes replaces it) and a URIError to encodeURIComponent, so to
 * sofa-rpc-node too. Checked against java.net.URLEncoder and sofa-rpc-node themselves in the ZooKeeper package's tests.
 */
export function encodeNodeName(url: string, style: NodeNameStyle): string {
  if (style === 'js') return encodeURIComponent(url);
  let out = '';
  for (const byte of Buffer.from(url.replace(UNPAIRED_SURROGATE, '?'), 'utf8')) {
    if (JAVA_KEPT_BYTE[byte]) out += String.fromCharCode(byte);
    else if (byte === 0x20) out += '+';
    else out += HEX_ESCAPE[byte];
  }
  return out;
}

/**
 * A node name back to the URL, whichever SDK wrote it. '+' can only mean space: encodeURIComponent never leaves a
 * literal '+' (it writes %2B), so reading '+' as space is right for both styles.
 */
export function decodeNodeName(name: string): string {
  try {
    return decodeURIComponent(name.replace(/\+/g, ' '));
  } catch (cause) {
    throw new RegistryError(
      'MESHPORT_REGISTRY_BAD_NODE_NAME',
      `bad percent-encoding in node name ${JSON.stringify(name)}`,
      { cause },
    );
  }
}

// A parameter value with a stray '%' is still worth reading as written; registries do carry such values.
function decodeLenient(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/**
 * The texts formatProviderUrl(parseProviderUrl(text)) gives back unchanged: an unbracketed host, a port of 0-65535
 * without leading zeros, and a query (if any) with no empty segment. Almost every URL a registry returns.
 */
const CANONICAL_URL_SHAPE =
  /^(?:[A-Za-z][A-Za-z0-9+.-]*:\/\/)?[^/?#:[\]@\s]+:(?:0|[1-9]\d{0,3}|[1-5]\d{4}|6[0-4]\d{3}|65[0-4]\d{2}|655[0-2]\d|6553[0-5])(?:\/[^?#]*)?(?:\?[^#&]+(?:&[^#&]+)*)?$/;

/**
 * One spelling per provider, so the same URL given as text or parsed is the same provider in every registry. A text
 * already in that spelling is returned as it is: a ZooKeeper watch re-reads every provider of a service on each change,
 * and parsing and formatting each again made most of a sidecar's garbage at 10k endpoints (the old generation it
 * was promoted to held 60-90 MB for 21 MB live).
 */
export function providerUrlText(url: ProviderUrl | string): string {
  if (typeof url === 'string' && CANONICAL_URL_SHAPE.test(url)) return url;
  return formatProviderUrl(typeof url === 'string' ? parseProviderUrl(url) : url);
}
