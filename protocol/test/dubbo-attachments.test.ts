// The Dubbo group from the attachments map, read by stepping over the arguments without building them: requests
// made by dubbo-remoting 2.1.4 and by hessian.js 2.11.0 EncoderV2, grammar forms hessian.js never writes, bodies that
// end early or hold garbage, and hessian.js DecoderV2 reading the same bodies in full as the reference.

import { strict as assert } from 'node:assert';
import * as dubboPeer from 'dubbo-remoting/lib/protocol';
import * as dubboUtils from 'dubbo-remoting/lib/utils';
import * as hessian from 'hessian.js';
import { ProtocolError, decodeFrame } from '../src/index';
import type { DubboFrameHeader } from '../src/index';
import { hessianString } from '../src/hessian';
import { MAX_HESSIAN_DEPTH } from '../src/hessian-skip';
import { dubbo } from './helpers/build';
import { Rng, randomArgText, randomHessianValue } from './helpers/fuzz-engine';

const SERVICE = 'org.apache.dubbo.demo.DemoService';

// ---------------------------------------------------------------------------------------------------------------
// Frames

function frameOf(body: Buffer, flag = 0xc2): Buffer {
  const head = Buffer.alloc(16);
  head.writeUInt16BE(0xdabb, 0);
  head[2] = flag;
  head.writeBigInt64BE(7n, 4);
  head.writeInt32BE(body.length, 12);
  return Buffer.concat([head, body]);
}

const str = (s: string) => hessianString(s);
const bytes = (...b: number[]) => Buffer.from(b);
/** The four leading strings every request starts with. */
const LEADING = Buffer.concat([str('2.0.2'), str(SERVICE), str('1.0.0'), str('call')]);

/** A frame of the leading strings, then `rest` (descriptor, arguments, attachments) as raw bytes. */
function handBuilt(...rest: Buffer[]): Buffer {
  return frameOf(Buffer.concat([LEADING, ...rest]));
}

/** 'H' key value ... 'Z' of raw entries. */
function map(...entries: Buffer[]): Buffer {
  return Buffer.concat([bytes(0x48), ...entries, bytes(0x5a)]);
}

/** A request as dubbo-remoting's requestEncode writes it; `props` are merged into its attachments. */
function peerFrame(args: unknown[], group: string, props?: Record<string, unknown>): Buffer {
  // Copied: the encoder's output shares memory with its next output.
  return Buffer.from(
    dubboPeer.requestEncode(
      7,
      { serverSignature: `${SERVICE}:1.0.0`, methodName: 'call', args, group, requestProps: props },
      {},
    ),
  );
}

/** A request written value by value with one hessian.js EncoderV2: class definitions and refs span the whole body. */
function encoderFrame(args: unknown[], attachments: unknown, desc = dubboUtils.getJavaArgsDesc(args)): Buffer {
  const e = new hessian.EncoderV2({ size: 1024 });
  for (const s of ['2.0.2', SERVICE, '1.0.0', 'call', desc]) e.writeString(s);
  for (const a of args) e.write(a);
  e.write(attachments);
  return frameOf(Buffer.from(e.get()));
}

function decode(frame: Buffer): DubboFrameHeader {
  const h = decodeFrame(frame);
  assert.equal(h.protocol, 'dubbo');
  return h as DubboFrameHeader;
}

/** Java Dubbo's ReflectUtils.DESC_PATTERN: how many arguments the provider reads for a descriptor. */
const IDENT = '[_$a-zA-Z][_$a-zA-Z0-9]*';
const CLASS_DESC = `L${IDENT}(?:/${IDENT})*;`;
const JAVA_DESC = new RegExp(`(?:[VZBCDFIJS]|${CLASS_DESC}|\\[+(?:[VZBCDFIJS]|${CLASS_DESC}))`, 'g');

/**
 * What hessian.js DecoderV2 reads, as Dubbo's decoder drives it: five leading strings, as many arguments as Java's
 * pattern finds in the descriptor, then the attachments value if anything is left.
 */
function hessianReadAll(frame: Buffer): { args: unknown[]; attachments: unknown } {
  const d = new hessian.DecoderV2(frame);
  d.position(16);
  const leading = Array.from({ length: 5 }, () => d.read());
  const count = String(leading[4]).match(JAVA_DESC)?.length ?? 0;
  const args = Array.from({ length: count }, () => d.read());
  return { args, attachments: d.byteBuffer.position() < frame.length ? d.read() : null };
}

/** The route fields the reference reading implies: a string that is not '' or undefined. */
function referenceRoute(frame: Buffer): { group: string | undefined; interfaceName: string | undefined } {
  const a = hessianReadAll(frame).attachments as Record<string, unknown> | null;
  const pick = (k: string) => {
    const v = a !== null && Object.hasOwn(a, k) ? a[k] : undefined;
    return typeof v === 'string' && v !== '' ? v : undefined;
  };
  return { group: pick('group'), interfaceName: pick('interface') };
}

/**
 * The frame decodes with the group and interface sent, and hessian.js reading everything agrees (`reference: false`
 * for forms hessian.js cannot read: it lacks 0x55 and 0x57, and a class definition before a map).
 */
function assertRoute(
  frame: Buffer,
  group: string | undefined,
  interfaceName?: string,
  reference = true,
): DubboFrameHeader {
  const h = decode(frame);
  assert.equal(h.attachmentsError, undefined);
  assert.equal(h.group, group);
  assert.equal(h.interfaceName, interfaceName);
  if (reference) assert.deepEqual(referenceRoute(frame), { group, interfaceName });
  return h;
}

function assertUnreadable(frame: Buffer, pattern: RegExp): string {
  const h = decode(frame);
  assert.ok(h.attachmentsError !== undefined, `expected an attachmentsError, got group ${JSON.stringify(h.group)}`);
  assert.match(h.attachmentsError, pattern);
  const at = Number(/\(at byte (\d+)\)$/.exec(h.attachmentsError)?.[1]);
  assert.ok(at >= 16 && at <= frame.length, `the offset ${at} lies in the body (${frame.length} bytes)`);
  assert.equal(h.group, undefined);
  assert.equal(h.interfaceName, undefined);
  // The leading strings are read as before.
  assert.equal(h.service, SERVICE);
  return h.attachmentsError;
}

// ---------------------------------------------------------------------------------------------------------------
// Arguments of every kind

const order = (id: number) => ({
  $class: 'org.example.Order',
  $: {
    id: { $class: 'long', $: id },
    customer: 'alice',
    amount: 99.5,
    items: ['a', 'b'],
    created: new Date(1700000000000),
  },
});
const shared = { note: 'the same object twice' };
const manyClasses = Array.from({ length: 18 }, (_, i) => ({ $class: `org.example.C${i}`, $: { n: i } }));

const ARG_CASES: Array<{ name: string; args: unknown[] }> = [
  { name: 'no arguments', args: [] },
  {
    name: 'ints of every width',
    args: [0, -16, 47, -17, 48, -2048, 2047, 2048, -262144, 262143, 262144, 2 ** 31 - 1, -(2 ** 31)],
  },
  {
    name: 'longs of every width',
    args: [
      0,
      15,
      -8,
      16,
      2047,
      -2048,
      262143,
      -262144,
      2 ** 31 - 1,
      2 ** 40,
      '9007199254740993',
      '-9223372036854775808',
    ].map((v) => ({
      $class: 'long',
      $: v,
    })),
  },
  { name: 'doubles of every form', args: [0, 1, 1.5, -128, 127, -32768, 32767, 99.5, 0.001, 1e300, -0.25, Math.PI] },
  { name: 'booleans and nulls', args: [true, false, null, null] },
  { name: 'dates in ms and in minutes', args: [new Date(1700000000123), new Date(1699999980000), new Date(0)] },
  {
    name: 'strings of 0, 31, 32, 1023, 1024 and 70000 units (R chunks)',
    args: ['', 'a'.repeat(31), 'b'.repeat(32), 'c'.repeat(1023), 'd'.repeat(1024), 'e'.repeat(70000)],
  },
  {
    name: 'non-ASCII strings: 2- and 3-byte characters, surrogate pairs, one on a chunk edge',
    args: [
      'é',
      '中文',
      '😀',
      '\u0800\uffff',
      `${'x'.repeat(0x7fff)}😀${'y'.repeat(100)}`,
      '𝄞'.repeat(600),
      'Z'.repeat(40),
    ],
  },
  {
    name: 'byte buffers: short, medium and chunked, with bytes that look like codes',
    args: [
      Buffer.alloc(0),
      Buffer.alloc(15, 0x5a),
      Buffer.alloc(16, 0x48),
      Buffer.alloc(1023, 0x80),
      Buffer.alloc(1024, 0xff),
      Buffer.alloc(4093, 0x43),
      Buffer.alloc(9000, 0x4d),
    ],
  },
  {
    name: 'nested arrays and maps',
    args: [[1, [2, [3, [4, []]]]], { a: { b: { c: [1, 'x', { group: 'not-this-one', d: null }] } } }, [], {}],
  },
  {
    name: 'java objects, the same class twice (the second by class-definition index)',
    args: [order(1), order(2), [order(3)]],
  },
  { name: 'the same object three times (references)', args: [shared, shared, [shared, { again: shared }]] },
  {
    name: 'objects of 18 classes, the last class again (O + int)',
    args: [...manyClasses, { $class: 'org.example.C17', $: { n: 99 } }],
  },
];

describe('Dubbo attachments: group from requests made by dubbo-remoting 2.1.4', () => {
  for (const c of ARG_CASES) {
    it(c.name, () => {
      const group = `g-${c.name.length}`;
      const frame = peerFrame(c.args, group, { interface: SERVICE });
      const h = assertRoute(frame, group, SERVICE);
      assert.equal(h.method, 'call');
      // The arguments are what went in, read back by the peer: the scan stepped over real values.
      assert.equal(hessianReadAll(frame).args.length, c.args.length);
    });
  }

  it('no group: dubbo-remoting writes group "", which is no group', () => {
    const frame = peerFrame(['x'], '');
    assertRoute(frame, undefined);
  });

  it('non-ASCII and long group values', () => {
    for (const group of ['组-😀', 'g'.repeat(31), 'h'.repeat(32), 'i'.repeat(2000), 'j'.repeat(70000)]) {
      assertRoute(peerFrame([order(1)], group), group);
    }
  });
});

describe('Dubbo attachments: group from requests written with hessian.js EncoderV2', () => {
  const attachments = (group: unknown, extra: Record<string, unknown> = {}) => ({
    path: SERVICE,
    interface: SERVICE,
    version: '1.0.0',
    group,
    ...extra,
  });

  for (const c of ARG_CASES) {
    it(c.name, () => {
      assertRoute(encoderFrame(c.args, attachments('enc')), 'enc', SERVICE);
    });
  }

  it('typed lists (the second one names its type by index) and a typed map', () => {
    const args = [
      { $class: '[java.lang.String', $: ['a', 'b'] },
      { $class: '[java.lang.String', $: ['c'] },
      { $class: '[int', $: [1, 2, 3, 4, 5, 6, 7, 8, 9] },
      { $class: 'com.alibaba.fastjson.JSONObject', $: { group: 'not-this-one' } },
    ];
    assertRoute(
      encoderFrame(
        args,
        attachments('typed'),
        '[Ljava/lang/String;[Ljava/lang/String;[ILcom/alibaba/fastjson/JSONObject;',
      ),
      'typed',
      SERVICE,
    );
  });

  it('attachments as a typed map (M + type)', () => {
    const typed = { $class: 'com.alibaba.fastjson.JSONObject', $: { group: 'm-typed', interface: SERVICE } };
    assertRoute(encoderFrame(['x'], typed), 'm-typed', SERVICE);
  });

  it('attachments as null: no group, and no error', () => {
    const h = decode(encoderFrame(['x'], null));
    assert.equal(h.attachmentsError, undefined);
    assert.equal(h.group, undefined);
  });

  it('a group that is not a string, or null, or empty, is no group', () => {
    for (const g of [5, null, '', { $class: 'java.lang.Object', $: {} }, ['g']]) {
      assertRoute(encoderFrame(['x'], attachments(g)), undefined, SERVICE);
    }
  });

  it('a group key inside an argument is not the group', () => {
    assertRoute(encoderFrame([{ group: 'arg-map' }], { path: SERVICE }), undefined);
    assertRoute(encoderFrame([{ group: 'arg-map' }], { group: 'real' }), 'real');
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Forms hessian.js does not write, built byte by byte

describe('Dubbo attachments: Hessian 2.0 forms built by hand', () => {
  const desc = (n: number) => str('Ljava/lang/Object;'.repeat(n));
  const groupIs = (v: Buffer) => map(str('group'), v);
  const int = (n: number) => bytes(0x90 + n); // -16..47

  it('variable-length lists (0x55 typed, 0x57 untyped) up to Z', () => {
    const typed = Buffer.concat([bytes(0x55), str('java.util.ArrayList'), int(1), str('x'), bytes(0x5a)]);
    const untyped = Buffer.concat([bytes(0x57), int(2), bytes(0x57, 0x5a), bytes(0x5a)]);
    assertRoute(handBuilt(desc(2), typed, untyped, groupIs(str('v-lists'))), 'v-lists', undefined, false);
  });

  it("fixed lists with an int length ('V' typed, 'X' untyped), and a type given by index", () => {
    const v = Buffer.concat([
      bytes(0x56),
      str('[string'),
      bytes(0xc8, 0x02),
      ...Array.from({ length: 2 }, () => str('s')),
    ]);
    const x = Buffer.concat([bytes(0x58), bytes(0x49, 0, 0, 0, 3), int(1), int(2), int(3)]);
    const byIndex = Buffer.concat([bytes(0x71), int(0), str('again')]); // type 0: '[string'
    assertRoute(handBuilt(desc(3), v, x, byIndex, groupIs(str('fixed'))), 'fixed');
  });

  it('every int, long, double and date form', () => {
    const values = [
      bytes(0x49, 0x80, 0, 0, 0), // int -2^31
      bytes(0xd7, 0xff, 0xff), // int, three bytes
      bytes(0x59, 0x7f, 0xff, 0xff, 0xff), // long as int32
      bytes(0x4c, 0, 0, 0, 0, 0, 0, 0, 1),
      bytes(0x3f, 0xff, 0xff), // long, three bytes
      bytes(0x5b), // 0.0
      bytes(0x5c), // 1.0
      bytes(0x5d, 0x80), // double from a byte
      bytes(0x5e, 0x7f, 0xff), // double from a short
      bytes(0x5f, 0, 0, 0x03, 0xe8), // double from mills
      bytes(0x44, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18),
      bytes(0x4a, 0, 0, 1, 0x8b, 0xcf, 0xe5, 0x68, 0), // date, ms
      bytes(0x4b, 0, 0x1b, 0x07, 0x0c), // date, minutes
    ];
    assertRoute(handBuilt(desc(values.length), ...values, groupIs(str('numbers'))), 'numbers');
  });

  it("binary in 'A' chunks ending in a 'B', short or medium chunk", () => {
    const chunkA = Buffer.concat([bytes(0x41, 0, 3), Buffer.from('abc')]);
    const endings = [
      Buffer.concat([bytes(0x42, 0, 2), Buffer.from('de')]),
      bytes(0x21, 0x5a),
      Buffer.concat([bytes(0x34, 3), Buffer.from('xyz')]),
    ];
    const args = endings.map((e) => Buffer.concat([chunkA, chunkA, e]));
    assertRoute(handBuilt(desc(3), ...args, groupIs(str('binary'))), 'binary');
  });

  it("strings in 'R' chunks ending in a short, medium or 'S' chunk, and an empty 'S'", () => {
    const r = Buffer.concat([bytes(0x52, 0, 2), Buffer.from('ab')]);
    const args = [
      Buffer.concat([r, str('c')]),
      Buffer.concat([r, bytes(0x30, 0x02), Buffer.from('cd')]),
      Buffer.concat([r, bytes(0x53, 0, 0)]),
      bytes(0x53, 0, 0),
    ];
    assertRoute(handBuilt(desc(4), ...args, groupIs(str('chunks'))), 'chunks');
  });

  it("an object by 'O' + int, and class definitions right before a key, a value and the map", () => {
    const def = (name: string, ...fields: string[]) =>
      Buffer.concat([bytes(0x43), str(name), int(fields.length), ...fields.map(str)]);
    const arg = Buffer.concat([def('a.B', 'x', 'y'), bytes(0x4f, 0x90), int(1), str('two')]);
    const attachments = Buffer.concat([
      def('a.Map'),
      bytes(0x48),
      def('a.K'),
      str('group'),
      def('a.V', 'f'),
      str('after-defs'),
      bytes(0x5a),
    ]);
    assertRoute(handBuilt(desc(1), arg, attachments), 'after-defs', undefined, false);
  });

  it('the group key in R chunks, in the medium form and in an S chunk; the value in R chunks', () => {
    const keys = [
      Buffer.concat([bytes(0x52, 0, 2), Buffer.from('gr'), bytes(0x53, 0, 3), Buffer.from('oup')]),
      Buffer.concat([bytes(0x30, 5), Buffer.from('group')]),
      Buffer.concat([bytes(0x53, 0, 5), Buffer.from('group')]),
      Buffer.concat([bytes(0x52, 0, 0), bytes(0x05), Buffer.from('group')]),
    ];
    const value = Buffer.concat([bytes(0x52, 0, 3), Buffer.from('chu'), bytes(0x03), Buffer.from('nk!')]);
    for (const key of keys) assertRoute(handBuilt(desc(0), map(key, value)), 'chunk!');
    // Near misses are other keys.
    for (const near of ['groups', 'grou', 'Group', 'interfaces', 'group\u0000']) {
      assertRoute(handBuilt(desc(0), map(str(near), str('no'))), undefined);
    }
  });

  it("a key spelled in overlong UTF-8 is the key Java's reader decodes: 0xc1 0xa7 is 'g'", () => {
    const overlongG = bytes(0xc1, 0xa7);
    const overlongP = bytes(0xe0, 0x81, 0xb0); // 'p' in three bytes
    const key = Buffer.concat([bytes(0x05), overlongG, Buffer.from('rou'), overlongP]);
    assertRoute(handBuilt(desc(0), map(key, str('smuggled'))), 'smuggled');
    const iface = Buffer.concat([bytes(0x09), Buffer.from('interfac'), bytes(0xc1, 0xa5)]);
    assertRoute(handBuilt(desc(0), map(iface, str('a.B'))), undefined, 'a.B');
    // A supplementary character is no ASCII letter, whatever its bits.
    assertRoute(
      handBuilt(desc(0), map(Buffer.concat([bytes(0x05), Buffer.from('grou'), Buffer.from('😀')]), str('no'))),
      undefined,
      undefined,
      false,
    );
  });

  it('a repeated key: the last entry wins, as in the HashMap the provider fills', () => {
    assertRoute(handBuilt(desc(0), map(str('group'), str('first'), str('group'), str('second'))), 'second');
    assertRoute(handBuilt(desc(0), map(str('group'), str('first'), str('group'), bytes(0x4e))), undefined);
    assertRoute(handBuilt(desc(0), map(str('group'), str('first'), str('group'), int(5))), undefined);
    assertRoute(handBuilt(desc(0), map(str('interface'), str('a.A'), str('interface'), str('a.B'))), undefined, 'a.B');
  });

  it('keys that are not strings, and values that are containers, are stepped over', () => {
    const entries = [
      int(1),
      str('one'),
      bytes(0x4e),
      bytes(0x57, 0x5a),
      map(str('group'), str('inner')),
      str('v'),
      str('group'),
      str('outer'),
    ];
    assertRoute(handBuilt(desc(0), map(...entries)), 'outer', undefined, false);
  });

  it('attachments as a typed map whose type is a string, then one whose type is an index', () => {
    const list = Buffer.concat([bytes(0x71), str('t.Map'), str('x')]); // type 0 = t.Map
    const typedByIndex = Buffer.concat([bytes(0x4d), int(0), str('group'), str('by-index'), bytes(0x5a)]);
    assertRoute(handBuilt(desc(1), list, typedByIndex), 'by-index');
    const typedByName = Buffer.concat([
      bytes(0x4d),
      str('java.util.HashMap'),
      str('group'),
      str('by-name'),
      bytes(0x5a),
    ]);
    assertRoute(handBuilt(desc(0), typedByName), 'by-name');
  });

  it('references to earlier lists, maps and objects', () => {
    const args = [bytes(0x79, 0x90), bytes(0x48, 0x5a), bytes(0x51, 0x90), bytes(0x51, 0x91)];
    assertRoute(handBuilt(desc(4), ...args, groupIs(str('refs'))), 'refs');
  });

  it(`nesting up to ${MAX_HESSIAN_DEPTH} lists and maps deep is read`, () => {
    const lists = Buffer.concat([Buffer.alloc(MAX_HESSIAN_DEPTH, 0x79), int(0)]);
    const maps = Buffer.concat([
      ...Array.from({ length: MAX_HESSIAN_DEPTH }, () => Buffer.concat([bytes(0x48), int(0)])),
      int(0),
      Buffer.alloc(MAX_HESSIAN_DEPTH, 0x5a),
    ]);
    assertRoute(handBuilt(desc(2), lists, maps, groupIs(str('deep'))), 'deep');
  });

  it('a descriptor seen before is recognized only by all of its bytes', () => {
    const args = [str('a'), groupIs(str('memo'))];
    for (let round = 0; round < 3; round++) {
      assertRoute(handBuilt(str('Ljava/lang/String;'), ...args), 'memo');
      // Same length, same last byte, one byte apart: counted afresh, and refused.
      assertUnreadable(handBuilt(str('Ljava/lang/Strin.;'), ...args), /byte 0x2e cannot be part of a class name/);
      assertRoute(handBuilt(str('Ljava/lang/Strin;I'), str('a'), bytes(0x91), groupIs(str('memo2'))), 'memo2');
      // A medium-form descriptor (more than 31 characters).
      const long = 'Lorg/example/a/very/long/pkg/Order;';
      assertRoute(handBuilt(str(long), bytes(0x4e), groupIs(str('memo3'))), 'memo3');
      assertRoute(handBuilt(str(long.replace(';', ';I')), bytes(0x4e, 0x90), groupIs(str('memo4'))), 'memo4');
    }
  });

  it('descriptors of every JVM type form count their arguments', () => {
    const d = 'BCDFIJSZ[I[[Ljava/lang/String;Lcom/x$y/_Z9;';
    const args = Array.from({ length: 11 }, () => bytes(0x4e));
    assertRoute(handBuilt(str(d), ...args, groupIs(str('desc'))), 'desc');
    assertRoute(
      handBuilt(
        Buffer.concat([bytes(0x52, 0, 3), Buffer.from('BCD'), bytes(0x02), Buffer.from('IJ')]),
        ...args.slice(0, 5),
        groupIs(str('desc-chunks')),
      ),
      'desc-chunks',
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Bodies that end early, cleanly or not

describe('Dubbo attachments: where the body ends', () => {
  it('a body of the leading strings alone (the test helpers build those) decodes with no group and no error', () => {
    const frame = dubbo({ body: LEADING });
    const h = decode(frame);
    assert.equal(h.method, 'call');
    assert.equal(h.group, undefined);
    assert.equal(h.attachmentsError, undefined);
  });

  it("the helpers' default body (descriptor, one argument, an empty map) has no group and no error", () => {
    const h = decode(dubbo());
    assert.equal(h.group, undefined);
    assert.equal(h.attachmentsError, undefined);
  });

  it('ending right after a descriptor of no arguments, or right after the arguments, is clean', () => {
    for (const frame of [
      handBuilt(str('')),
      handBuilt(str('I'), bytes(0x91)),
      handBuilt(str('IJ'), bytes(0x91, 0xe1)),
    ]) {
      const h = decode(frame);
      assert.equal(h.attachmentsError, undefined);
      assert.equal(h.group, undefined);
    }
  });

  it('ending before the last argument is not', () => {
    assertUnreadable(
      handBuilt(str('II'), bytes(0x91)),
      /^the body ends before it, in argument 2 of 2 \(at byte \d+\)$/,
    );
    assertUnreadable(handBuilt(str('I')), /^the body ends before it, in argument 1 of 1/);
  });

  it('a frame cut at every byte: framing errors from a short frame; inside the body, only the leading strings throw', () => {
    const frames = [
      peerFrame([order(1), 'é😀', Buffer.alloc(20, 1), [shared, shared]], 'cut', { interface: SERVICE }),
      encoderFrame(
        [order(2), { $class: '[java.lang.String', $: ['a'] }, 3.5, new Date(0)],
        { group: 'cut2', path: SERVICE },
        'Lorg/example/Order;[Ljava/lang/String;DLjava/util/Date;',
      ),
    ];
    for (const frame of frames) {
      const full = decode(frame);
      assert.ok(full.group?.startsWith('cut'));
      const leadingEnd = 16 + LEADING.length;
      let clean = 0;
      for (let cut = 0; cut < frame.length; cut++) {
        // As the frame arrived: shorter than its header declares.
        assert.throws(
          () => decodeFrame(frame.subarray(0, cut)),
          (e: unknown) => e instanceof ProtocolError && e.code === 'MESHPORT_FRAME_TRUNCATED',
        );
        if (cut < 16) continue;
        // As a frame whose body really is that short.
        const short = Buffer.from(frame.subarray(0, cut));
        short.writeInt32BE(cut - 16, 12);
        let h: DubboFrameHeader;
        try {
          h = decode(short);
        } catch (e) {
          assert.ok(e instanceof ProtocolError && e.code === 'MESHPORT_DUBBO_BAD_BODY', `cut at ${cut}: ${String(e)}`);
          assert.ok(cut < leadingEnd, `cut at ${cut}: only the leading strings may throw`);
          continue;
        }
        assert.ok(cut >= leadingEnd, `cut at ${cut}: the leading strings are incomplete, yet decoded`);
        if (h.attachmentsError === undefined) {
          clean++;
          assert.equal(h.group, undefined, `cut at ${cut}`);
        } else {
          assert.equal(h.group, undefined, `cut at ${cut}`);
          const at = Number(/\(at byte (\d+)\)$/.exec(h.attachmentsError)?.[1]);
          assert.ok(at >= leadingEnd && at <= cut, `cut at ${cut}: offset ${at}`);
        }
      }
      // Exactly two cuts end cleanly: after the leading strings and after the last argument.
      assert.equal(clean, 2);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Unreadable bodies

describe('Dubbo attachments: unreadable bodies are reported in attachmentsError, never thrown', () => {
  const cases: Array<{ name: string; rest: Buffer[]; error: RegExp }> = [
    {
      name: 'a null descriptor',
      rest: [bytes(0x4e)],
      error: /^the descriptor is null, in the parameter-types descriptor/,
    },
    {
      name: 'an int where the descriptor goes',
      rest: [bytes(0x91)],
      error: /expected a hessian2 string, found byte 0x91/,
    },
    { name: 'V (void) as a parameter type', rest: [str('V')], error: /byte 0x56 is not a JVM parameter type/ },
    { name: 'dots in a class name', rest: [str('Lcom.x.Y;')], error: /byte 0x2e cannot be part of a class name/ },
    { name: 'an empty class name', rest: [str('L;')], error: /class name/ },
    { name: 'a class name part starting with a digit', rest: [str('Lcom/9x;')], error: /class name/ },
    { name: 'a non-ASCII class name (Java would not match it)', rest: [str('Lcom/例/X;')], error: /class name/ },
    {
      name: 'a descriptor ending inside a class name',
      rest: [str('Ljava/lang/String')],
      error: /the descriptor ends inside a type/,
    },
    { name: 'a descriptor ending after [', rest: [str('I[')], error: /the descriptor ends inside a type/ },
    {
      name: 'Z where a value goes',
      rest: [str('I'), bytes(0x5a)],
      error: /^byte 0x5a cannot start a hessian2 value, in argument 1 of 1/,
    },
    ...[0x40, 0x45, 0x47, 0x50].map((b) => ({
      name: `reserved byte 0x${b.toString(16)}`,
      rest: [str('I'), bytes(b)],
      error: /cannot start a hessian2 value/,
    })),
    {
      name: 'an int where the attachments go',
      rest: [str(''), bytes(0x91)],
      error: /^expected the attachments map \(H, M or N\), found byte 0x91, in the attachments/,
    },
    {
      name: 'a reference where the attachments go',
      rest: [str('Ljava/util/Map;'), bytes(0x48, 0x5a), bytes(0x51, 0x90)],
      error: /expected the attachments map/,
    },
    {
      name: 'attachments without Z',
      rest: [str(''), bytes(0x48), str('group'), str('g')],
      error: /ends inside a value, in the attachments/,
    },
    {
      name: 'a group value cut short',
      rest: [str(''), bytes(0x48), str('group'), bytes(0x05, 0x61)],
      error: /ends inside a value, in the attachments/,
    },
    {
      name: 'a string longer than the body',
      rest: [str('I'), bytes(0x1e), Buffer.from('short')],
      error: /ends inside a value, in argument 1 of 1/,
    },
    {
      name: 'a byte that starts no character',
      rest: [str('I'), bytes(0x02, 0x41, 0x80)],
      error: /byte 0x80 cannot start a character/,
    },
    {
      name: 'a continuation that is no string chunk',
      rest: [str('I'), bytes(0x52, 0, 1, 0x41, 0x91)],
      error: /expected a hessian2 string, found byte 0x91/,
    },
    {
      name: 'a continuation that is no binary chunk',
      rest: [str('I'), bytes(0x41, 0, 1, 0x41, 0x91)],
      error: /byte 0x91 cannot continue a chunked binary/,
    },
    {
      name: 'an object before any class definition',
      rest: [str('I'), bytes(0x60)],
      error: /an object of class definition 0, of 0 defined/,
    },
    {
      name: "an 'O' object of a class not defined",
      rest: [str('I'), bytes(0x43, 0x01, 0x61, 0x90, 0x4f, 0x95)],
      error: /class definition 5, of 1 defined/,
    },
    { name: 'a reference to nothing', rest: [str('I'), bytes(0x51, 0x90)], error: /a reference to value 0 of 0/ },
    { name: 'a type index to nothing', rest: [str('I'), bytes(0x71, 0x90, 0x4e)], error: /a reference to type 0 of 0/ },
    { name: 'a negative list length', rest: [str('I'), bytes(0x58, 0x8f)], error: /a list has a negative length/ },
    {
      name: 'a negative field count',
      rest: [str('I'), bytes(0x43, 0x01, 0x61, 0x8f)],
      error: /a negative field count/,
    },
    {
      name: 'a length that is no int',
      rest: [str('I'), bytes(0x58, 0x4e)],
      error: /expected a hessian2 int, found byte 0x4e/,
    },
    {
      name: 'a list claiming 2^31 - 1 items',
      rest: [str('I'), bytes(0x58, 0x49, 0x7f, 0xff, 0xff, 0xff, 0x90)],
      error: /ends inside a value/,
    },
    {
      name: 'a class claiming 2^31 - 1 fields',
      rest: [str('I'), bytes(0x43, 0x01, 0x61, 0x49, 0x7f, 0xff, 0xff, 0xff, 0x01, 0x62)],
      error: /ends inside a value/,
    },
    {
      name: `lists ${MAX_HESSIAN_DEPTH + 1} deep`,
      rest: [str('I'), Buffer.alloc(MAX_HESSIAN_DEPTH + 1, 0x79), bytes(0x90)],
      error: new RegExp(
        `values nest deeper than ${MAX_HESSIAN_DEPTH}, in argument 1 of 1 \\(at byte ${16 + LEADING.length + 2 + MAX_HESSIAN_DEPTH}\\)`,
      ),
    },
    { name: 'maps 100000 deep', rest: [str('I'), Buffer.alloc(100_000, 0x48)], error: /values nest deeper than/ },
    {
      name: 'attachments nesting too deep',
      rest: [str(''), bytes(0x48), str('k'), Buffer.alloc(MAX_HESSIAN_DEPTH, 0x57)],
      error: /nest deeper than \d+, in the attachments/,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assertUnreadable(handBuilt(...c.rest), c.error);
    });
  }

  it('a 16 MiB body of the cheapest values to write and the dearest to step over is read in linear time', function () {
    this.timeout(20_000);
    // Empty lists and empty strings: one byte each, one value each.
    const n = 16 * 1024 * 1024 - 256;
    for (const fill of [0x78, 0x00, 0x4e]) {
      const frame = handBuilt(str('I'), bytes(0x57), Buffer.alloc(n, fill), bytes(0x5a), map(str('group'), str('big')));
      const t0 = process.hrtime.bigint();
      const h = decode(frame);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      assert.equal(h.group, 'big');
      assert.ok(ms < 2000, `0x${fill.toString(16)} x ${n}: ${ms.toFixed(0)} ms`);
    }
  });

  it('only hessian2 bodies are scanned: another serialization leaves group and error unset', () => {
    const frame = handBuilt(bytes(0xff, 0xff));
    frame[2] = 0xc0 | 6; // fastjson
    const h = decode(frame);
    assert.equal(h.serialization, 'fastjson');
    assert.equal(h.group, undefined);
    assert.equal(h.attachmentsError, undefined);
  });

  it('garbage after the leading strings: an attachmentsError, or what hessian.js reads from the same bytes', () => {
    const rng = new Rng(0x6a7b);
    const valid = peerFrame([order(1), 'x'], 'real-group', { interface: SERVICE });
    const descAt = 16 + LEADING.length;
    let errors = 0;
    const runs = 3000;
    for (let i = 0; i < runs; i++) {
      let frame: Buffer;
      if (i % 2 === 0) {
        // Random bytes in place of everything after the leading strings.
        frame = handBuilt(rng.bytes(rng.range(1, 64)));
      } else {
        // A real request with a few bytes past the leading strings overwritten.
        frame = Buffer.from(valid);
        for (let k = rng.range(1, 4); k > 0; k--) frame[rng.range(descAt, frame.length - 1)] = rng.int(256);
      }
      const h = decode(frame);
      if (h.attachmentsError !== undefined) {
        errors++;
        assert.equal(h.group, undefined);
        continue;
      }
      // Read without error: the bytes are a request. Whatever group it names must be the one hessian.js reads.
      let ref: { group: string | undefined; interfaceName: string | undefined };
      try {
        ref = referenceRoute(frame);
      } catch {
        continue; // forms hessian.js does not read (it lacks 0x55 and 0x57, for one)
      }
      assert.equal(h.group, ref.group, `garbage ${frame.subarray(descAt).toString('hex')}`);
    }
    assert.ok(errors > runs * 0.8, `only ${errors} of ${runs} garbage bodies were reported`);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Differential against hessian.js on generated requests

describe('Dubbo attachments: differential against hessian.js DecoderV2 reading every value', () => {
  it('generated requests (dubbo-remoting and EncoderV2, every kind of argument): the same group and interface', function () {
    this.timeout(60_000);
    const rng = new Rng(0xd1ff);
    let withGroup = 0;
    const runs = 400;
    for (let i = 0; i < runs; i++) {
      const pool: object[] = [];
      const args = Array.from({ length: rng.size(6) }, () => randomHessianValue(rng, 0, pool));
      const group = rng.pick([randomArgText(rng), 'g1', '', 'SOFA']);
      const extra: Record<string, unknown> = {};
      if (rng.bool(0.5)) extra.interface = rng.bool(0.8) ? SERVICE : randomArgText(rng);
      if (rng.bool(0.2)) extra.group = rng.pick([null, 7, randomArgText(rng)]);
      if (rng.bool(0.3)) extra.timeout = rng.int(5000);
      const frame = rng.bool(0.5)
        ? peerFrame(args, group, extra)
        : encoderFrame(args, { path: SERVICE, group, ...extra });
      const h = decode(frame);
      assert.equal(h.attachmentsError, undefined, `request ${i}`);
      const ref = referenceRoute(frame);
      assert.equal(hessianReadAll(frame).args.length, args.length, `request ${i}: hessian.js reads as many arguments`);
      assert.equal(h.group, ref.group, `request ${i}: group`);
      assert.equal(h.interfaceName, ref.interfaceName, `request ${i}: interface`);
      if (h.group !== undefined) withGroup++;
    }
    assert.ok(withGroup > runs / 2, `only ${withGroup} of ${runs} requests carried a group`);
  });
});
