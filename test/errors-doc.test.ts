// docs/errors.md and every package's error table stay in step: one section per package, same codes, same meanings.

import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PROTOCOL_ERROR_CODES } from '@meshport/protocol';
import { REGISTRY_ERROR_CODES } from '@meshport/registry-core';
import { SIDECAR_ERROR_CODES } from '@meshport/sidecar';
import { SOCKET_ERROR_CODES } from '@meshport/socket';
import { HIJACK_ERROR_CODES } from '@meshport/hijack';

const doc = readFileSync(path.resolve(__dirname, '../../docs/errors.md'), 'utf8');

/** The rows of one package's section (`## @meshport/NAME` up to the next `## `). */
function section(pkg: string): Map<string, string> {
  const start = doc.indexOf(`## ${pkg}\n`);
  assert.ok(start >= 0, `docs/errors.md has no section ## ${pkg}`);
  const end = doc.indexOf('\n## ', start + 1);
  const rows = new Map<string, string>();
  for (const m of doc.slice(start, end < 0 ? undefined : end).matchAll(/^\| `(MESHPORT_[A-Z0-9_]+)` \| (.+?) \|$/gm)) {
    rows.set(m[1], m[2]);
  }
  return rows;
}

const tables: Record<string, Record<string, string>> = {
  '@meshport/protocol': PROTOCOL_ERROR_CODES,
  '@meshport/registry-core': REGISTRY_ERROR_CODES,
  '@meshport/sidecar': SIDECAR_ERROR_CODES,
  '@meshport/socket': SOCKET_ERROR_CODES,
  '@meshport/hijack': HIJACK_ERROR_CODES,
};

describe('docs/errors.md', () => {
  for (const [pkg, table] of Object.entries(tables)) {
    it(`documents every code of ${pkg} with its meaning, and no code the package lacks`, () => {
      const rows = section(pkg);
      for (const [code, meaning] of Object.entries(table)) assert.equal(rows.get(code), meaning, `row for ${code}`);
      for (const code of rows.keys()) assert.ok(code in table, `${pkg} section documents ${code}, which the code does not define`);
    });
  }

  it('never uses one code in two packages', () => {
    const all = Object.values(tables).flatMap((t) => Object.keys(t));
    assert.equal(new Set(all).size, all.length);
  });
});
