// A broken registry file is logged with where it is broken (line and column) and JSON.parse's own words: as pino
// writes the warning, not `"error":{"code":...,"cause":{}}`.

import { strict as assert } from 'node:assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FileRegistry, type RegistryError } from '../src/index';

const P1 = 'bolt://198.18.0.1:12200?interface=com.example.Echo&uniqueId=&weight=100';

describe('FileRegistry: a file that is not valid JSON', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'meshport-file-parse-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  for (const [what, text, at] of [
    [
      'a trailing comma (JSON.parse names no position in Node 20)',
      `{\n  "services": {\n    "com.example.Echo:1.0": ["${P1}",]\n  }\n}\n`,
      '3:',
    ],
    ['a missing comma', `{\n  "services": {\n    "a": []\n    "b": []\n  }\n}\n`, '4:5'],
    ['a cut-off file', `{\n  "services": {\n    "a": [`, '3:11'],
  ] as const) {
    it(`${what}: the warning names the file, line and column, and is readable as JSON`, async () => {
      const file = path.join(dir, 'registry.json');
      await writeFile(file, text);
      const lines: string[] = [];
      const registry = new FileRegistry({
        path: file,
        // What pino does with the fields: JSON.stringify.
        logger: { warn: (detail, message) => void lines.push(JSON.stringify({ ...detail, msg: message })) },
      });
      try {
        await assert.rejects(
          registry.subscribe('a', () => {}).then(() => registry.publish('a', P1)),
          (err: RegistryError) => {
            assert.equal(err.code, 'MESHPORT_REGISTRY_FILE_INVALID');
            return true;
          },
        );
      } catch {
        // subscribe alone may not reject: the warning is what this test is about
      } finally {
        await registry.close();
      }
      const warning = lines
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.code === 'MESHPORT_REGISTRY_FILE_INVALID');
      assert.ok(warning, `a warning with the code in: ${lines.join('\n')}`);
      assert.match(
        String(warning.error),
        new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:${at}\\d*: not valid JSON: .+`),
      );
      assert.doesNotMatch(lines.join('\n'), /"cause":\{\}/);
    });
  }
});
