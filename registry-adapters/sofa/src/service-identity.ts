// The service a SOFA Registry datum belongs to, read from its dataId and written into each provider URL pushed for it.

import { DEFAULT_SOFA_VERSION, getParam, withParam, type ProviderUrl } from '@meshport/registry-core';

/** What a dataId names. sofa-rpc writes every part; `uniqueId` is '' for none. */
export interface ServiceIdentity {
  readonly interface: string;
  readonly version: string;
  readonly uniqueId: string;
}

/** A URL parameter that named something else than the dataId does, and what the dataId says instead. */
export interface IdentityDisagreement {
  readonly param: 'interface' | 'version' | 'uniqueId';
  readonly url: string;
  readonly dataId: string;
}

/**
 * The identity in sofa-rpc's dataId, `interface:version[:uniqueId]@protocol` (SofaRegistryHelper.buildListDataId:
 * ConfigUniqueNameGenerator's unique name, `@DEFAULT` for Bolt and TR). Undefined when no interface can be read.
 */
export function identityOfDataId(dataId: string): ServiceIdentity | undefined {
  const at = dataId.lastIndexOf('@');
  const [iface, version, ...rest] = (at < 0 ? dataId : dataId.slice(0, at)).split(':');
  if (!iface) return undefined;
  // sofa-rpc never leaves the version out ("1.0" when unset); one that did means the same 1.0 to every SOFA client.
  return { interface: iface, version: version || DEFAULT_SOFA_VERSION, uniqueId: rest.join(':') };
}

/**
 * `url` naming `identity` in its own parameters. Java sofa-rpc publishes `host:port?rpcVer=..&p=1&v=4.0&..` with no
 * interface, version or uniqueId, because SOFA Registry keeps those in the dataId; a URL handed on without them says
 * nothing of the service it serves, and whatever routes by URL (sofaServiceKeyOf) cannot place it. A parameter the URL
 * has and that agrees is left as written (so the text of a URL that already says it all is unchanged); a missing one
 * is appended; one that disagrees is overwritten, since the dataId is what the registry filed the provider under,
 * and reported so the caller can log it.
 */
export function withIdentity(
  url: ProviderUrl,
  identity: ServiceIdentity,
): { url: ProviderUrl; disagreements: IdentityDisagreement[] } {
  const disagreements: IdentityDisagreement[] = [];
  const wanted: Array<[IdentityDisagreement['param'], string, (have: string) => boolean]> = [
    ['interface', identity.interface, (have) => have === identity.interface],
    // `version=` reads as 1.0 to SOFA (sofaServiceKey), so it agrees with a dataId of version 1.0.
    ['version', identity.version, (have) => (have || DEFAULT_SOFA_VERSION) === identity.version],
    ['uniqueId', identity.uniqueId, (have) => have === identity.uniqueId],
  ];
  for (const [param, want, agrees] of wanted) {
    const have = getParam(url, param);
    if (have !== undefined && agrees(have)) continue;
    // An empty `interface=` names nothing, so filling it in contradicts nothing.
    if (have !== undefined && !(param === 'interface' && have === ''))
      disagreements.push({ param, url: have, dataId: want });
    url = withParam(url, param, want);
  }
  return { url, disagreements };
}
