// The Redis facade's RESP codec on its own: every fixture fed whole, byte by byte and split at every boundary; errors
// as Redis words them; big bulks in chunks; and a claimed size that costs nothing before its bytes arrive.

import { strict as assert } from 'node:assert';
import { encodeCommand, encodeValue, RespParser, type RespInlineCommand, type RespValue } from '../src/index';

/** A value in a form assert.deepEqual can compare: bulks as strings, aggregates as { type: [items] }. */
type Plain = string | null | { [type: string]: Plain | Plain[] | null };

function plain(value: RespValue | RespInlineCommand): Plain {
  switch (value.type) {
    case 'inline':
      return { inline: value.args.map((a) => a.toString('latin1')) };
    case '$':
    case '!':
    case '=':
      return value.type === '$'
        ? value.data === null
          ? null
          : value.data.toString('utf8')
        : { [value.type]: value.data?.toString('utf8') ?? null };
    case '*':
    case '%':
    case '~':
    case '>':
    case '|':
      return { [value.type]: value.items === null ? null : value.items.map(plain) };
    default:
      return { [value.type]: value.text };
  }
}

interface Fed {
  values: Plain[];
  raws: Buffer[];
  errors: string[];
}

function feed(mode: 'request' | 'reply', chunks: Buffer[], maxBulkBytes?: number): Fed {
  const fed: Fed = { values: [], raws: [], errors: [] };
  const parser = new RespParser({
    mode,
    maxBulkBytes,
    onValue: (value, raw) => {
      fed.values.push(plain(value));
      fed.raws.push(Buffer.from(raw));
    },
    onError: (error) => {
      assert.equal(error.code, 'MESHPORT_REGISTRY_BAD_RESP');
      fed.errors.push(error.message);
    },
  });
  for (const chunk of chunks) parser.write(chunk);
  return fed;
}

/** Whole, byte by byte, and in two pieces at every boundary. */
function splits(bytes: Buffer): [string, Buffer[]][] {
  const out: [string, Buffer[]][] = [
    ['whole', [bytes]],
    ['byte by byte', [...bytes].map((b) => Buffer.from([b]))],
  ];
  for (let i = 1; i < bytes.length; i++) out.push([`split at ${i}`, [bytes.subarray(0, i), bytes.subarray(i)]]);
  return out;
}

const REPLY_FIXTURES: [string, string, Plain[]][] = [
  ['simple string', '+OK\r\n', [{ '+': 'OK' }]],
  ['error', "-ERR unknown command 'FOO'\r\n", [{ '-': "ERR unknown command 'FOO'" }]],
  ['integer', ':1000\r\n', [{ ':': '1000' }]],
  ['negative integer', ':-42\r\n', [{ ':': '-42' }]],
  ['bulk', '$5\r\nhello\r\n', ['hello']],
  ['empty bulk', '$0\r\n\r\n', ['']],
  ['bulk holding CRLF', '$6\r\na\r\nb\r\n\r\n', ['a\r\nb\r\n']],
  ['nil bulk', '$-1\r\n', [null]],
  ['nil array', '*-1\r\n', [{ '*': null }]],
  ['empty array', '*0\r\n', [{ '*': [] }]],
  [
    'HGETALL reply',
    '*4\r\n$3\r\nf:1\r\n$13\r\n1700000060000\r\n$3\r\nf:2\r\n$1\r\n0\r\n',
    [{ '*': ['f:1', '1700000060000', 'f:2', '0'] }],
  ],
  [
    'nested arrays with every RESP2 type',
    '*3\r\n*2\r\n:1\r\n*0\r\n*3\r\n$-1\r\n*-1\r\n-ERR x\r\n+end\r\n',
    [{ '*': [{ '*': [{ ':': '1' }, { '*': [] }] }, { '*': [null, { '*': null }, { '-': 'ERR x' }] }, { '+': 'end' }] }],
  ],
  [
    'a pub/sub message and several values in a row',
    '*4\r\n$8\r\npmessage\r\n$7\r\n/dubbo*\r\n$3\r\nkey\r\n$8\r\nregister\r\n+PONG\r\n:0\r\n',
    [{ '*': ['pmessage', '/dubbo*', 'key', 'register'] }, { '+': 'PONG' }, { ':': '0' }],
  ],
  [
    'RESP3 map, set, push, null, double, boolean, big number, verbatim, blob error',
    '%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n_\r\n~1\r\n,3.14\r\n>2\r\n#t\r\n(12345678901234567890\r\n=7\r\ntxt:abc\r\n!3\r\nERR\r\n',
    [
      { '%': ['a', { ':': '1' }, 'b', { _: '' }] },
      { '~': [{ ',': '3.14' }] },
      { '>': [{ '#': 't' }, { '(': '12345678901234567890' }] },
      { '=': 'txt:abc' },
      { '!': 'ERR' },
    ],
  ],
];

const REQUEST_FIXTURES: [string, string, Plain[]][] = [
  ['a command', '*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n', [{ '*': ['ECHO', 'hello'] }]],
  [
    'a field ending in CR',
    // An 18-byte field ending in CR: the length decides where a bulk ends, not the bytes.
    '*4\r\n$4\r\nHSET\r\n$5\r\n/d/i/\r\n$18\r\ndubbo://h:1/i?a=b\r\r\n$2\r\n60\r\n',
    [{ '*': ['HSET', '/d/i/', 'dubbo://h:1/i?a=b\r', '60'] }],
  ],
  ['inline', 'PING\r\n', [{ inline: ['PING'] }]],
  ['inline, LF only, several spaces', 'SET  a \tb\n', [{ inline: ['SET', 'a', 'b'] }]],
  ['empty inline line and empty arrays', '\r\n*0\r\n*-1\r\n', [{ inline: [] }, { '*': [] }, { '*': [] }]],
  [
    'a pipeline mixing both forms',
    '*1\r\n$4\r\nPING\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n',
    [{ '*': ['PING'] }, { inline: ['PING'] }, { '*': ['SET', 'k', ''] }],
  ],
];

const ERROR_FIXTURES: [string, 'request' | 'reply', string, string][] = [
  ['a multibulk length that is no number', 'request', '*abc\r\n', 'Protocol error: invalid multibulk length'],
  ['a multibulk length over 1024*1024*1024', 'request', '*1073741825\r\n', 'Protocol error: invalid multibulk length'],
  ['an array item that is not a bulk', 'request', '*1\r\n+PING\r\n', "Protocol error: expected '$', got '+'"],
  ['a nil bulk in a request', 'request', '*1\r\n$-1\r\n', 'Protocol error: invalid bulk length'],
  ['a bulk over the maximum', 'request', '*1\r\n$1025\r\n', 'Protocol error: invalid bulk length'],
  ['a bulk not followed by CRLF', 'request', '*1\r\n$4\r\nPINGxx', 'Protocol error: expected CRLF after a bulk string'],
  ['an unknown reply type', 'reply', '?what\r\n', 'Protocol error: unknown RESP type byte 0x3f'],
  ['a reply line without CR', 'reply', '+OK\n', 'Protocol error: expected CRLF'],
  ['a bad reply bulk length', 'reply', '$x\r\n', 'Protocol error: invalid bulk length x'],
];

describe('Redis facade RESP parser', () => {
  for (const [mode, fixtures] of [
    ['reply', REPLY_FIXTURES],
    ['request', REQUEST_FIXTURES],
  ] as const) {
    for (const [name, text, expected] of fixtures) {
      it(`${mode}: ${name}, whole, byte by byte and split at every boundary`, () => {
        const bytes = Buffer.from(text, 'utf8');
        for (const [how, chunks] of splits(bytes)) {
          const fed = feed(mode, chunks);
          assert.deepEqual(fed.errors, [], how);
          assert.deepEqual(fed.values, expected, how);
          // The raw ranges are exactly the input, value by value.
          assert.deepEqual(Buffer.concat(fed.raws), bytes, how);
        }
      });
    }
  }

  it('re-encodes every canonical reply fixture to its raw bytes', () => {
    for (const [name, text] of REPLY_FIXTURES) {
      const parsed: Buffer[] = [];
      const parser = new RespParser({
        mode: 'reply',
        onValue: (value, raw) => {
          assert.deepEqual(encodeValue(value as RespValue), raw, name);
          parsed.push(raw);
        },
        onError: (e) => assert.fail(e),
      });
      parser.write(Buffer.from(text));
      assert.ok(parsed.length > 0);
    }
  });

  for (const [name, mode, text, message] of ERROR_FIXTURES) {
    it(`error: ${name}, however it is split, once`, () => {
      const bytes = Buffer.from(text, 'utf8');
      for (const [how, chunks] of splits(bytes)) {
        const fed = feed(mode, [...chunks, Buffer.from('*1\r\n$4\r\nPING\r\n+OK\r\n')], 1024);
        assert.deepEqual(fed.errors, [message], how);
        assert.deepEqual(fed.values, [], `${how}: nothing after the error`);
      }
    });
  }

  it('refuses an inline request or a count line longer than 64 KiB without waiting for its end', () => {
    const inline = feed('request', [Buffer.alloc(64 * 1024, 'a'), Buffer.from('a')]);
    assert.deepEqual(inline.errors, ['Protocol error: too big inline request']);
    const count = feed('request', [Buffer.from('*'), Buffer.alloc(64 * 1024, '1')]);
    assert.deepEqual(count.errors, ['Protocol error: too big mbulk count string']);
  });

  it('collects a big bulk from many chunks into one value', () => {
    const size = 8 * 1024 * 1024 + 3;
    const body = Buffer.alloc(size);
    for (let i = 0; i < size; i++) body[i] = i % 251;
    const bytes = Buffer.concat([Buffer.from(`*2\r\n$3\r\nSET\r\n$${size}\r\n`), body, Buffer.from('\r\n')]);
    const values: RespValue[] = [];
    let held = 0;
    const parser = new RespParser({
      mode: 'request',
      onValue: (v) => values.push(v as RespValue),
      onError: (e) => assert.fail(e),
    });
    for (let off = 0; off < bytes.length; off += 65_536) {
      parser.write(bytes.subarray(off, off + 65_536));
      held = Math.max(held, parser.bufferedBytes);
    }
    assert.equal(values.length, 1);
    const items = (values[0] as { items: { data: Buffer }[] }).items;
    assert.ok(items[1]!.data.equals(body));
    assert.ok(held < bytes.length, 'nothing beyond what was received was held');
    assert.equal(parser.bufferedBytes, 0);
  });

  it('a claimed 2 GiB bulk costs only the bytes that actually arrive', () => {
    // Allowed by the limit, so only the streaming matters here.
    const parser = new RespParser({
      mode: 'request',
      maxBulkBytes: 4 * 1024 ** 3,
      onValue: () => assert.fail('no value'),
      onError: (e) => assert.fail(e),
    });
    const before = process.memoryUsage().arrayBuffers;
    parser.write(Buffer.from(`*2\r\n$3\r\nSET\r\n$${2 * 1024 ** 3}\r\n`));
    const afterClaim = process.memoryUsage().arrayBuffers;
    assert.ok(afterClaim - before < 1024 * 1024, `the claim allocated ${afterClaim - before} bytes`);
    parser.write(Buffer.alloc(1024 * 1024, 'x'));
    assert.ok(parser.bufferedBytes < 1024 * 1024 + 64, `held ${parser.bufferedBytes}`);
    assert.ok(process.memoryUsage().arrayBuffers - before < 16 * 1024 * 1024);

    // With Redis' own 512 MiB limit the claim is refused at once.
    const errors = feed('request', [Buffer.from(`*1\r\n$${2 * 1024 ** 3}\r\n`)]).errors;
    assert.deepEqual(errors, ['Protocol error: invalid bulk length']);
  });

  it('a claimed array length costs nothing either', () => {
    const fed = feed('reply', [Buffer.from('*2147483647\r\n:1\r\n')]);
    assert.deepEqual(fed.errors, []);
    assert.deepEqual(fed.values, []);
  });
});

describe('Redis facade RESP encoder', () => {
  it('encodes a command as an array of bulk strings, binary-safe', () => {
    assert.equal(
      encodeCommand(['HSET', '/dubbo/i/providers', Buffer.from([0, 13, 10]), 'é']).toString('latin1'),
      '*4\r\n$4\r\nHSET\r\n$18\r\n/dubbo/i/providers\r\n$3\r\n\x00\r\n\r\n$2\r\n\xc3\xa9\r\n',
    );
  });

  it('encodes nil bulk, nil array, maps by pairs', () => {
    assert.equal(encodeValue({ type: '$', data: null }).toString(), '$-1\r\n');
    assert.equal(encodeValue({ type: '*', items: null }).toString(), '*-1\r\n');
    assert.equal(
      encodeValue({
        type: '%',
        items: [
          { type: '$', data: Buffer.from('k') },
          { type: ':', text: '1' },
        ],
      }).toString(),
      '%1\r\n$1\r\nk\r\n:1\r\n',
    );
  });
});
