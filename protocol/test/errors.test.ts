// The error table, its document and the code that raises each error stay in step.

import { strict as assert } from 'node:assert';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { PROTOCOL_ERROR_CODES, ProtocolError } from '../src/index';

// docs/errors.md is checked against every package's table in test/errors-doc.test.ts.

const root = path.resolve(__dirname, '../../..');

describe('error codes', () => {
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
