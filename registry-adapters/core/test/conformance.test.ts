// The shared RegistryAdapter conformance suite, run against the two registries this package ships.

import { mkdtemp, readFile, rm, writeFile, rename } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FileRegistry, MemoryRegistry, MemoryRegistryStore, describeRegistryConformance } from '../src/index';

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
  const a = new FileRegistry({ path: file, logger: quiet });
  const b = new FileRegistry({ path: file, logger: quiet });
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
