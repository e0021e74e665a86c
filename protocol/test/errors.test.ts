// The error table, its document and the code that raises each error stay in step.

import { strict as assert } from 'node:assert';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { PROTOCOL_ERROR_CODES, ProtocolError } from '../src/index';

const root = path.resolve(__dirname, '../../..');

function documentedCodes(): Map<string, string> {
  const doc = readFileSync(path.join(root, 'docs/errors.md'), 'utf8');
  const rows = new Map<string, string>();
  for (const m of doc.matchAll(/^\| `(MESHPORT_[A-Z0-9_]+)` \| (.+?) \|$/gm)) rows.set(m[1], m[2]);
  return rows;
}

describe('error codes', () => {
  it('docs/errors.md lists every protocol code with the same meaning, and no code the package lacks', () => {
    const doc = documentedCodes();
    for (const [code, meaning] of Object.entries(PROTOCOL_ERROR_CODES)) {
      assert.equal(doc.get(code), meaning, `docs/errors.md row for ${code}`);
    }
    for (const code of doc.keys()) {
      assert.ok(code in PROTOCOL_ERROR_CODES, `docs/errors.md documents ${code}, which the code does not define`);
    }
  });

  it('every code is raised somewhere in protocol/src (no dead entries)', () => {
    const srcDir = path.join(root, 'protocol/src');
    const sources = readdirSync(srcDir)
      .filter((f) => f.endsWith('.ts') && f !== 'errors.ts')
      .map((f) => readFileSync(path.join(srcDir, f), 'utf8'))
      .join('\n');
    for (const code of Object.keys(PROTOCOL_ERROR_CODES)) {
      assert.ok(sources.includes(`'${code}'`), `${code} is never raised`);
    }
  });

  it('a ProtocolError names its code, its offset, and keeps the code when moved to a stream offset', () => {
    const err = new ProtocolError('MESHPORT_BAD_MAGIC', 'first byte 0x47 is not Bolt or Dubbo', 2);
    assert.equal(err.name, 'ProtocolError');
    assert.match(err.message, /\(at byte 2\)$/);
    const moved = err.shifted(100);
    assert.equal(moved.code, 'MESHPORT_BAD_MAGIC');
    assert.equal(moved.offset, 102);
    assert.match(moved.message, /^first byte 0x47 is not Bolt or Dubbo \(at byte 102\)$/);
  });
});
