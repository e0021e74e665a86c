// The ZooKeeper facade's rewrites as pure functions, frame in and frame out: which requests and replies concern
// providers and what they become. No socket, timer or session lives here, so every rewrite is tested on bytes alone.

import {
  decodeNodeName,
  encodeNodeName,
  formatProviderUrl,
  parseProviderUrl,
  type NodeNameStyle,
  type ProviderUrl,
  type Takeover,
} from '@meshport/registry-core';
import {
  CREATE_FLAG,
  decodeRecord,
  encodeFrame,
  OP,
  peekString,
  RECORDS,
  REPLY_BODY_OFFSET,
  REQUEST_BODY_OFFSET,
  XID,
  type RecordClass,
} from './jute';

/** WatcherEvent codes (ZooKeeper's Watcher.Event.EventType and KeeperState). */
const WATCH_EVENT = { nodeChildrenChanged: 4 } as const;
const WATCH_STATE = { syncConnected: 3 } as const;

/**
 * `/<root...>/<interface>/providers` and a provider node under it. The root is one or more segments, which covers
 * `/sofa-rpc` (sofa-rpc-node, Java sofa-rpc), `/dubbo` or a Dubbo group, and a chroot the client put in front.
 */
const PROVIDERS_DIR = /^(?:\/[^/]+)+\/([^/]+)\/providers$/;
const PROVIDER_NODE = /^((?:\/[^/]+)+\/([^/]+)\/providers)\/([^/]+)$/;
/**
 * Dubbo's condition routers of an interface. The sidecar applies them to the real providers; the app is shown none,
 * because applied again to the one local URL it is handed, a rule naming provider hosts would leave it nothing.
 */
const ROUTERS_DIR = /^(?:\/[^/]+)+\/[^/]+\/routers$/;

/** Requests on the app's own node whose only change is the path (their replies carry no path). */
const PATH_ONLY_REQUESTS = new Map<number, RecordClass>([
  [OP.exists, RECORDS.ExistsRequest],
  [OP.getData, RECORDS.GetDataRequest],
  [OP.setData, RECORDS.SetDataRequest],
  [OP.getACL, RECORDS.GetACLRequest],
  [OP.setACL, RECORDS.SetACLRequest],
  [OP.check, RECORDS.CheckVersionRequest],
]);

/** A provider node the app created through the facade: the app's path and URL and what went upstream instead. */
export interface OwnNode {
  readonly appPath: string;
  readonly upstreamPath: string;
  readonly appUrl: ProviderUrl;
  readonly ephemeral: boolean;
}

/** The app's own provider nodes in one session, looked up by either path. */
export interface OwnNodes {
  readonly byAppPath: ReadonlyMap<string, OwnNode>;
  readonly byUpstreamPath: ReadonlyMap<string, OwnNode>;
}

/** A provider create rewritten (the frame for ZooKeeper and the node it makes), or the reason it passes as it is. */
export type ProviderCreate = { frame: Buffer; node: OwnNode } | { unreadable: unknown; path: string };

/**
 * A create of a provider node (`.../<interface>/providers/<url>`) renamed after the URL the takeover publishes
 * instead of the app's, spelled in the app's node name style. Undefined for any other create, and for a sequential
 * one (ZooKeeper appends a counter, which is no provider URL any SDK writes). `unreadable` when the name is no
 * provider URL or the takeover refused it.
 */
export function rewriteProviderCreate(
  frame: Buffer,
  type: number,
  takeover: Pick<Takeover, 'providerPublished'>,
): ProviderCreate | undefined {
  const path = peekString(frame, REQUEST_BODY_OFFSET);
  const m = path !== undefined ? PROVIDER_NODE.exec(path) : null;
  if (!m) return undefined;
  const [, dir, , name] = m as unknown as [string, string, string, string];
  const record = decodeRecord(
    type === OP.createTTL ? RECORDS.CreateTTLRequest : RECORDS.CreateRequest,
    frame,
    REQUEST_BODY_OFFSET,
  );
  if (!record) return undefined;
  const flags = record.flags as number;
  if (flags & CREATE_FLAG.sequential) return undefined;
  let appUrl: ProviderUrl;
  let upstreamPath: string;
  try {
    const text = decodeNodeName(name);
    appUrl = parseProviderUrl(text);
    const style = nodeNameStyleOf(name, text) ?? defaultStyleOf(dir);
    upstreamPath = `${dir}/${encodeNodeName(formatProviderUrl(takeover.providerPublished(appUrl)), style)}`;
  } catch (error) {
    return { unreadable: error, path: path! };
  }
  record.path = upstreamPath;
  return {
    frame: encodeFrame(frame, REQUEST_BODY_OFFSET, record),
    node: { appPath: path!, upstreamPath, appUrl, ephemeral: (flags & CREATE_FLAG.ephemeral) !== 0 },
  };
}

/**
 * A delete of one of the app's own provider nodes, aimed at its upstream path. Undefined for any other delete:
 * deleting someone else's provider node is not the app withdrawing a service of its own.
 */
export function rewriteOwnNodeDelete(frame: Buffer, own: OwnNodes): { frame: Buffer; node: OwnNode } | undefined {
  if (own.byAppPath.size === 0) return undefined;
  const path = peekString(frame, REQUEST_BODY_OFFSET);
  const node = path !== undefined ? own.byAppPath.get(path) : undefined;
  if (!node) return undefined;
  const record = decodeRecord(RECORDS.DeleteRequest, frame, REQUEST_BODY_OFFSET);
  if (!record) return undefined;
  record.path = node.upstreamPath;
  return { frame: encodeFrame(frame, REQUEST_BODY_OFFSET, record), node };
}

/** exists, getData, setData, getACL, setACL or check on one of the app's own nodes, aimed at its upstream path. */
export function rewriteOwnNodePath(frame: Buffer, type: number, own: OwnNodes): Buffer | undefined {
  const cls = PATH_ONLY_REQUESTS.get(type);
  if (!cls || own.byAppPath.size === 0) return undefined;
  const path = peekString(frame, REQUEST_BODY_OFFSET);
  const node = path !== undefined ? own.byAppPath.get(path) : undefined;
  if (!node) return undefined;
  const record = decodeRecord(cls, frame, REQUEST_BODY_OFFSET);
  if (!record) return undefined;
  record.path = node.upstreamPath;
  return encodeFrame(frame, REQUEST_BODY_OFFSET, record);
}

/** On reconnect the client re-arms its watches by path: watches on its own nodes name the app paths. */
export function rewriteSetWatches(frame: Buffer, own: OwnNodes): Buffer | undefined {
  if (own.byAppPath.size === 0) return undefined;
  const record = decodeRecord(RECORDS.SetWatches, frame, REQUEST_BODY_OFFSET);
  if (!record) return undefined;
  let changed = false;
  for (const field of ['dataWatches', 'existWatches', 'childWatches']) {
    const paths = record[field] as string[] | undefined;
    if (!paths) continue;
    record[field] = paths.map((p) => {
      const node = own.byAppPath.get(p);
      if (!node) return p;
      changed = true;
      return node.upstreamPath;
    });
  }
  return changed ? encodeFrame(frame, REQUEST_BODY_OFFSET, record) : undefined;
}

/** A children read whose reply the facade rewrites: a providers dir (shown through the takeover) or a routers dir. */
export type ListRead =
  | { kind: 'providers'; type: number; iface: string; path: string }
  | { kind: 'routers'; type: number };

/** What a getChildren or getChildren2 request reads, when its reply is one the facade rewrites. */
export function listReadOf(frame: Buffer, type: number): ListRead | undefined {
  const path = peekString(frame, REQUEST_BODY_OFFSET);
  if (path === undefined) return undefined;
  const m = PROVIDERS_DIR.exec(path);
  if (m) return { kind: 'providers', type, iface: m[1]!, path };
  return ROUTERS_DIR.test(path) ? { kind: 'routers', type } : undefined;
}

/** ZooKeeper's OK to a provider create (create or create2), naming the app's path: the node it deletes and watches. */
export function rewriteCreateReply(frame: Buffer, type: number, node: OwnNode): Buffer | undefined {
  const record = decodeRecord(
    type === OP.create ? RECORDS.CreateResponse : RECORDS.Create2Response,
    frame,
    REPLY_BODY_OFFSET,
  );
  if (!record) return undefined;
  record.path = node.appPath;
  return encodeFrame(frame, REPLY_BODY_OFFSET, record);
}

/** A provider list reply rewritten: `frame` undefined when it passes through as ZooKeeper sent it. */
export interface ProviderListRewrite {
  frame?: Buffer;
  /** Children that are not provider URLs: left out of the list shown, or the reason none is shown when all are. */
  unreadable: string[];
  /** The takeover threw; the list passes through. */
  takeoverError?: unknown;
}

/**
 * A provider list read: every child that is a provider URL goes to the takeover, whose answer the app gets, named
 * in the style the children use, followed by the app's own nodes under the names it created (sofa-rpc-node's
 * publish() waits until its own URL shows up in the list it reads, and an app that calls itself may as well skip both
 * hops). Children that are not provider URLs are left out of the reply as well as the takeover's input: the app must
 * see only what the sidecar routes, and something the facade cannot read might still be an endpoint an SDK dials
 * around the mesh. When no child at all is readable, the reply passes through rather than turning a non-empty list
 * into an empty one (which makes SOFA RPC drop every connection). `show` may replace the names (the empty-list hold).
 * The Stat (GetChildren2) stays ZooKeeper's: its numChildren may then differ from the list, which no SDK reads.
 */
export function rewriteProviderList(
  frame: Buffer,
  read: Extract<ListRead, { kind: 'providers' }>,
  takeover: Pick<Takeover, 'providersRead'>,
  own: OwnNodes,
  show: (names: string[]) => string[] = (names) => names,
): ProviderListRewrite {
  const record = decodeRecord(childrenResponseOf(read.type), frame, REPLY_BODY_OFFSET);
  if (!record) return { unreadable: [] };
  const children = (record.children as string[] | undefined) ?? [];
  const real: ProviderUrl[] = [];
  let style: NodeNameStyle | undefined;
  const unreadable: string[] = [];
  for (const name of children) {
    try {
      const text = decodeNodeName(name);
      real.push(parseProviderUrl(text));
      style ??= nodeNameStyleOf(name, text);
    } catch {
      unreadable.push(name);
    }
  }
  if (unreadable.length > 0 && real.length === 0) return { unreadable };
  let shown: ProviderUrl[];
  try {
    shown = takeover.providersRead(read.iface, real);
  } catch (takeoverError) {
    return { unreadable, takeoverError };
  }
  const nameStyle = style ?? defaultStyleOf(read.path);
  const ownNames = children.flatMap((name) => {
    const node = own.byUpstreamPath.get(`${read.path}/${name}`);
    return node ? [node.appPath.slice(read.path.length + 1)] : [];
  });
  record.children = show([...shown.map((url) => encodeNodeName(formatProviderUrl(url), nameStyle)), ...ownNames]);
  return { frame: encodeFrame(frame, REPLY_BODY_OFFSET, record), unreadable };
}

/** A children reply with no children; the Stat (GetChildren2) stays ZooKeeper's: no SDK compares it with the list. */
export function hideChildren(frame: Buffer, type: number): Buffer | undefined {
  const record = decodeRecord(childrenResponseOf(type), frame, REPLY_BODY_OFFSET);
  if (!record) return undefined;
  record.children = [];
  return encodeFrame(frame, REPLY_BODY_OFFSET, record);
}

/** A watch notification on one of the app's own nodes, naming the app's path instead of the upstream one. */
export function rewriteNotification(frame: Buffer, own: OwnNodes): Buffer | undefined {
  if (own.byUpstreamPath.size === 0) return undefined;
  // WatcherEvent: type int | state int | path ustring
  const path = peekString(frame, REPLY_BODY_OFFSET + 8);
  const node = path !== undefined ? own.byUpstreamPath.get(path) : undefined;
  if (!node) return undefined;
  const record = decodeRecord(RECORDS.WatcherEvent, frame, REPLY_BODY_OFFSET);
  if (!record) return undefined;
  record.path = node.appPath;
  return encodeFrame(frame, REPLY_BODY_OFFSET, record);
}

/**
 * A NodeChildrenChanged notification for `path` (xid -1, zxid -1) that the app's client handles like ZooKeeper's
 * own: it reads the list again. Notifications may come between any two replies, so one never breaks the reply order.
 */
export function childrenChangedNotification(path: string): Buffer {
  const header = Buffer.alloc(REPLY_BODY_OFFSET);
  header.writeInt32BE(XID.notification, 4);
  header.writeBigInt64BE(-1n, 8);
  const event = new RECORDS.WatcherEvent();
  Object.assign(event, { type: WATCH_EVENT.nodeChildrenChanged, state: WATCH_STATE.syncConnected, path });
  return encodeFrame(header, REPLY_BODY_OFFSET, event);
}

function childrenResponseOf(type: number): RecordClass {
  return type === OP.getChildren2 ? RECORDS.GetChildren2Response : RECORDS.GetChildrenResponse;
}

/**
 * Which SDK spelled a node name: sofa-rpc-node (encodeURIComponent) or Java (URLEncoder). Undefined when both spell
 * it the same, which is the usual case: they differ only on space and `!~'()`.
 */
function nodeNameStyleOf(name: string, text: string): NodeNameStyle | undefined {
  const js = encodeNodeName(text, 'js');
  const java = encodeNodeName(text, 'java');
  if (js === java) return undefined;
  if (name === js) return 'js';
  if (name === java) return 'java';
  // Spelled by neither exactly (lower-case hex, say): '+' is only ever URLEncoder's space.
  return name.includes('+') ? 'java' : 'js';
}

/** When the names do not tell: Dubbo's tree is written by Java, the rest by sofa-rpc-node's default. */
function defaultStyleOf(path: string): NodeNameStyle {
  return path.startsWith('/dubbo/') ? 'java' : 'js';
}
