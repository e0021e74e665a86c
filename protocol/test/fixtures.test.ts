// Every wire fixture in protocol/test/fixtures decodes to the fields documented for it in expected.json.

import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FrameSplitter, decodeFrame, detectProtocol } from '../src/index';
import type { FrameHeader } from '../src/index';
import { decodeBody } from '../src/body';

// Compiled tests run from protocol/dist/test/; the fixtures stay in the source tree.
const FIXTURES = path.resolve(__dirname, '../../test/fixtures');
const PEER_SCRIPT = path.resolve(__dirname, '../../../scripts/make-peer-fixtures.js');

/** Header fields an expectation may name; anything else in expected.json is a typo and fails. */
const HEADER_FIELDS = new Set([
  'protocol',
  'protocolVersion',
  'kind',
  'requestId',
  'service',
  'method',
  'version',
  'dubboVersion',
  'serialization',
  'status',
  'timeoutMs',
  'className',
  'crc',
  'group',
  'interfaceName',
]);

type Expectation = Record<string, unknown> & { body?: unknown[] };

function readHexFile(name: string): Buffer {
  const text = fs.readFileSync(path.join(FIXTURES, name), 'utf8');
  assert.match(text, /^(?:[0-9a-f]{2})+\n?$/, `${name}: lowercase hex bytes, at most one trailing newline`);
  return Buffer.from(text.trim(), 'hex');
}

/** `expected` inside `actual`: objects key by key (extra keys allowed), arrays element by element and same length. */
function assertMatches(actual: unknown, expected: unknown, where: string): void {
  if (Array.isArray(expected)) {
    assert.ok(Array.isArray(actual), `${where}: expected an array, got ${JSON.stringify(actual)}`);
    assert.equal(actual.length, expected.length, `${where}: length`);
    expected.forEach((e, i) => assertMatches(actual[i], e, `${where}[${i}]`));
  } else if (expected !== null && typeof expected === 'object') {
    assert.ok(
      actual !== null && typeof actual === 'object',
      `${where}: expected an object, got ${JSON.stringify(actual)}`,
    );
    for (const [k, v] of Object.entries(expected))
      assertMatches((actual as Record<string, unknown>)[k], v, `${where}.${k}`);
  } else {
    assert.equal(actual, expected, where);
  }
}

const hexFiles = fs
  .readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.hex'))
  .sort();
const expected = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8')) as Record<
  string,
  Expectation
>;

describe('fixtures (protocol/test/fixtures)', () => {
  it('has fixtures at all', () => {
    assert.ok(hexFiles.length >= 20, `found ${hexFiles.length} .hex files in ${FIXTURES}`);
  });

  it('every .hex file has expectations in expected.json and every expectation has a file', () => {
    const missing = hexFiles.filter((f) => !Object.hasOwn(expected, f));
    assert.deepEqual(missing, [], `fixtures without expectations in expected.json: ${missing.join(', ')}`);
    const orphans = Object.keys(expected).filter((f) => !hexFiles.includes(f));
    assert.deepEqual(orphans, [], `expected.json entries without a .hex file: ${orphans.join(', ')}`);
  });

  it('every .hex file is listed in the README table', () => {
    const readme = fs.readFileSync(path.join(FIXTURES, 'README.md'), 'utf8');
    const unlisted = hexFiles.filter((f) => !readme.includes(`| \`${f}\` |`));
    assert.deepEqual(unlisted, [], `fixtures missing from README.md: ${unlisted.join(', ')}`);
  });

  for (const name of hexFiles) {
    describe(name, () => {
      it('is exactly one frame whose decoded fields are the documented ones', () => {
        const want = expected[name];
        assert.ok(want, `no expectations for ${name} in expected.json`);
        const frame = readHexFile(name);
        const header: FrameHeader = decodeFrame(frame);
        assert.equal(detectProtocol(frame), header.protocol);
        assert.equal(header.frameLength, frame.length, 'one whole frame per file, nothing after it');
        assert.equal(
          header.bodyOffset + header.bodyLength + (header.protocol === 'bolt' && header.crc ? 4 : 0),
          frame.length,
        );
        const fields = Object.keys(want).filter((k) => k !== 'body');
        assert.ok(
          fields.includes('protocol') && fields.includes('kind') && fields.includes('requestId'),
          'protocol, kind and requestId are always documented',
        );
        for (const key of fields) {
          assert.ok(HEADER_FIELDS.has(key), `${name}: unknown field "${key}" in expected.json`);
          const actual = (header as unknown as Record<string, unknown>)[key];
          assert.deepEqual(actual ?? null, want[key], `${name}: ${key}`);
        }
        if (header.protocol === 'bolt' && header.crc !== undefined) assert.equal(header.crc, 'ok', `${name}: CRC32`);
        // Every Dubbo request here is well-formed to its end: the attachments scan must read all of it.
        if (header.protocol === 'dubbo') assert.equal(header.attachmentsError, undefined, `${name}: attachments`);
        if (want.body !== undefined) assertMatches(decodeBody(frame, header), want.body, `${name} body`);
      });

      it('comes out of a FrameSplitter byte-identical, whole and byte by byte', () => {
        const frame = readHexFile(name);
        for (const chunks of [[frame], [...frame].map((b) => Buffer.from([b]))]) {
          const out: Buffer[] = [];
          const splitter = new FrameSplitter((f) => out.push(Buffer.from(f)));
          for (const c of chunks) splitter.write(c);
          splitter.end();
          assert.equal(out.length, 1);
          assert.ok(out[0].equals(frame));
        }
      });
    });
  }

  it('peer-made fixtures are what scripts/make-peer-fixtures.js makes today (byte for byte)', () => {
    const { makePeerFixtures } = require(PEER_SCRIPT) as { makePeerFixtures(): Record<string, Buffer> };
    const made = makePeerFixtures();
    assert.ok(Object.keys(made).length >= 10);
    for (const [name, frame] of Object.entries(made)) {
      assert.ok(
        hexFiles.includes(name),
        `${name} is made by the script but missing: run node scripts/make-peer-fixtures.js`,
      );
      assert.equal(
        readHexFile(name).toString('hex'),
        frame.toString('hex'),
        `${name} differs from what the peers make now`,
      );
    }
  });
});
