// What a request says beyond its route key: the method a SofaRequest body names (boltBodyMethod) and the trace
// context it carries (readTraceContext), on frames the npm peers make, the committed fixtures, hand-built shapes at
// every limit, and truncated or mutated frames (never an error, never a wrong answer from a frame read halfway).

import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import path from 'node:path';
import { boltBodyMethod, decodeFrame, hessianString, MAX_TRACE_VALUE, readTraceContext } from '../src/index';
import { bolt, headerMap } from './helpers/build';
import { Rng } from './helpers/fuzz-engine';
import { TRACEPARENT, traceFrames } from './helpers/trace-frames';

const SERVICE = 'com.example.EchoService:1.0';
const SOFA_CLASS = 'com.alipay.sofa.rpc.core.request.SofaRequest';
const raw = (...b: number[]) => Buffer.from(b);
/** A draft-grammar string (short form, or 'S'/'s' chunks). */
const ds = (s: string) => hessianString(s, 'draft');

function fixture(name: string): Buffer {
  return Buffer.from(fs.readFileSync(path.join(__dirname, '..', '..', 'test', 'fixtures', name), 'utf8').trim(), 'hex');
}

/**
 * A SofaRequest body by hand: the class definition 'O' (name length, name, field count, names), the instance 'o' 0,
 * the field values as given (already encoded).
 */
function sofaBody(fields: [string, Buffer][], className = SOFA_CLASS): Buffer {
  const name = Buffer.from(className);
  return Buffer.concat([
    raw(0x4f, 0x90 + name.length), // names under 48 bytes: a one-byte int
    name,
    raw(0x90 + fields.length),
    ...fields.map(([f]) => ds(f)),
    raw(0x6f, 0x90),
    ...fields.map(([, v]) => v),
  ]);
}
/** A draft map 'M' (untyped) of string entries. */
function dmap(entries: [string, Buffer][]): Buffer {
  return Buffer.concat([raw(0x4d), ...entries.flatMap(([k, v]) => [ds(k), v]), raw(0x7a)]);
}
const request = (content: Buffer, headers: Record<string, string | null> = { service: SERVICE }) =>
  bolt({ headers, content });

describe('boltBodyMethod and readTraceContext (protocol/src/trace-context.ts)', () => {
  describe('frames real clients send', () => {
    for (const f of traceFrames()) {
      it(f.name, () => {
        assert.equal(boltBodyMethod(f.frame), f.method);
        assert.deepEqual(readTraceContext(f.frame), f.trace);
        // With the frame's header already decoded (what the engine passes), the same answers.
        const h = decodeFrame(f.frame);
        assert.equal(boltBodyMethod(f.frame, h), f.method);
        assert.deepEqual(readTraceContext(f.frame, h), f.trace);
      });
    }

    it('the committed fixtures: the seed request (method echo, sofaTraceId abc123), a Unicode method, no context elsewhere', () => {
      const seed = fixture('bolt-v1-request.hex');
      assert.equal(boltBodyMethod(seed), 'echo');
      assert.deepEqual(readTraceContext(seed), { sofaTraceId: 'abc123' });
      assert.equal(boltBodyMethod(fixture('bolt-unicode-service.hex')), '回显😀');
      assert.equal(boltBodyMethod(fixture('captured-sofa-bolt-03-request.hex')), 'fail');
      for (const name of ['bolt-v1-response.hex', 'bolt-v1-heartbeat.hex', 'dubbo-request.hex', 'dubbo-response.hex']) {
        assert.equal(boltBodyMethod(fixture(name)), undefined, name);
        assert.equal(readTraceContext(fixture(name)), undefined, name);
      }
    });

    it('trace keys leave the routing read of a Dubbo request as it was (group, service, no error)', () => {
      const f = traceFrames().find((t) => t.name === 'dubbo-remoting: trace attachments');
      assert.ok(f);
      const h = decodeFrame(f.frame);
      assert.equal(h.protocol, 'dubbo');
      if (h.protocol !== 'dubbo') return;
      assert.equal(h.attachmentsError, undefined);
      assert.equal(h.service, 'com.example.EchoService');
      assert.equal(h.group, undefined); // dubbo-remoting writes group '', which is no group
    });
  });

  describe('what is read and what is not', () => {
    const echoBody = sofaBody([
      ['methodName', ds('echo')],
      ['requestProps', dmap([['traceparent', ds(TRACEPARENT)]])],
    ]);

    it('the header names the method (even as ""): the body is not read for it', () => {
      assert.equal(boltBodyMethod(request(echoBody, { service: SERVICE, sofa_head_method_name: 'hi' })), undefined);
      assert.equal(boltBodyMethod(request(echoBody, { service: SERVICE, sofa_head_method_name: '' })), undefined);
      // A null value unsets the key: the body is read.
      assert.equal(boltBodyMethod(request(echoBody, { service: SERVICE, sofa_head_method_name: null })), 'echo');
    });

    it('only a hessian SofaRequest: another class, the protobuf codec, a response, a heartbeat say nothing', () => {
      assert.equal(boltBodyMethod(request(echoBody)), 'echo');
      assert.equal(boltBodyMethod(bolt({ className: 'com.example.Other', content: echoBody })), undefined);
      assert.equal(readTraceContext(bolt({ className: 'com.example.Other', content: echoBody })), undefined);
      assert.equal(boltBodyMethod(bolt({ codec: 11, content: echoBody })), undefined);
      assert.equal(readTraceContext(bolt({ codec: 11, content: echoBody })), undefined);
      assert.equal(boltBodyMethod(bolt({ type: 0, content: echoBody })), undefined);
      assert.equal(readTraceContext(bolt({ type: 0, headers: { traceparent: TRACEPARENT } })), undefined);
      assert.equal(boltBodyMethod(bolt({ type: 2, content: echoBody })), 'echo'); // oneway
      // The body's own class must be SofaRequest too.
      assert.equal(boltBodyMethod(request(sofaBody([['methodName', ds('echo')]], 'com.example.Fake'))), undefined);
    });

    it('a methodName that is not a string, or empty, is no method', () => {
      assert.equal(boltBodyMethod(request(sofaBody([['methodName', raw(0x4e)]]))), undefined);
      assert.equal(boltBodyMethod(request(sofaBody([['methodName', raw(0x91)]]))), undefined);
      assert.equal(boltBodyMethod(request(sofaBody([['methodName', ds('')]]))), undefined);
      assert.equal(boltBodyMethod(request(sofaBody([['other', ds('x')]]))), undefined);
    });

    it('a method in chunks and CESU-8 reads as the whole string; one over 1024 units does not', () => {
      const chunked = Buffer.concat([raw(0x73, 0, 3), Buffer.from('say'), raw(0x53, 0, 5), Buffer.from('Hello')]);
      assert.equal(boltBodyMethod(request(sofaBody([['methodName', chunked]]))), 'sayHello');
      assert.equal(boltBodyMethod(request(sofaBody([['methodName', ds('问候😀')]]))), '问候😀');
      assert.equal(boltBodyMethod(request(sofaBody([['methodName', ds('m'.repeat(1024))]]))), 'm'.repeat(1024));
      assert.equal(boltBodyMethod(request(sofaBody([['methodName', ds('m'.repeat(1025))]]))), undefined);
    });

    it('fields before methodName are stepped over in every draft form', () => {
      const before: Buffer[] = [
        raw(0x4e, 0x54, 0x46), // null, true, false (three fields)
        raw(0x49, 0, 0, 1, 0), // int
        raw(0x4c, 0, 0, 0, 0, 0, 0, 0, 1, 0x77, 0, 0, 0, 1), // long, long as int32
        raw(0x44, 0, 0, 0, 0, 0, 0, 0, 0, 0x67, 0x69, 1, 0x6a, 0, 1, 0x6b, 0, 0, 0, 0), // doubles
        raw(0x64, 0, 0, 0, 0, 0, 0, 0, 0), // date
        Buffer.concat([raw(0x62, 0, 2, 1, 2, 0x42, 0, 1, 3)]), // chunked binary
        Buffer.concat([raw(0x56, 0x74, 0, 1), Buffer.from('x'), raw(0x6e, 2), ds('a'), ds('b'), raw(0x7a)]), // typed list
        Buffer.concat([raw(0x56, 0x6c, 0, 0, 0, 1, 0x91, 0x7a)]), // list, int32 length
        Buffer.concat([raw(0x56), ds('a'), raw(0x7a)]), // list to 'z'
        Buffer.concat([raw(0x76, 0x90, 0x92), ds('a'), ds('b')]), // compact list
        Buffer.concat([raw(0x48), ds('k'), ds('v'), raw(0x7a)]), // hash map
        Buffer.concat([raw(0x4f, 0x91), Buffer.from('X'), raw(0x91), ds('f'), raw(0x6f, 0x91), ds('v')]), // nested object
        raw(0x52, 0, 0, 0, 0, 0x4a, 0, 0x4b, 0, 0), // refs
      ];
      const fields: [string, Buffer][] = before.map((v, i) => [`f${i}`, v]);
      // Several values in one field's bytes: a field is one value, so split them into as many fields.
      const split: [string, Buffer][] = [];
      for (const [name, v] of fields) {
        if (name === 'f0') split.push(['n', raw(0x4e)], ['t', raw(0x54)], ['f', raw(0x46)]);
        else if (name === 'f2') split.push(['l1', v.subarray(0, 9)], ['l2', v.subarray(9)]);
        else if (name === 'f3')
          split.push(
            ['d1', v.subarray(0, 9)],
            ['d2', raw(0x67)],
            ['d3', raw(0x69, 1)],
            ['d4', raw(0x6a, 0, 1)],
            ['d5', raw(0x6b, 0, 0, 0, 0)],
          );
        else if (name === 'f12')
          split.push(['r1', raw(0x52, 0, 0, 0, 0)], ['r2', raw(0x4a, 0)], ['r3', raw(0x4b, 0, 0)]);
        else split.push([name, v]);
      }
      const body = sofaBody([
        ...split,
        ['methodName', ds('late')],
        ['requestProps', dmap([['traceparent', ds(TRACEPARENT)]])],
      ]);
      assert.equal(boltBodyMethod(request(body)), 'late');
      assert.deepEqual(readTraceContext(request(body)), { traceparent: TRACEPARENT });
    });

    it('values nested past 64 levels, or more than 256 class definitions, end the read', () => {
      const nest = (n: number) => Buffer.concat([...Array(n).fill(raw(0x56)), ds('x'), ...Array(n).fill(raw(0x7a))]);
      assert.equal(
        boltBodyMethod(
          request(
            sofaBody([
              ['deep', nest(62)],
              ['methodName', ds('ok')],
            ]),
          ),
        ),
        'ok',
      );
      assert.equal(
        boltBodyMethod(
          request(
            sofaBody([
              ['deep', nest(64)],
              ['methodName', ds('ok')],
            ]),
          ),
        ),
        undefined,
      );
      // Objects in objects: class X has one field, each instance's field the next instance.
      const objects = (n: number) =>
        Buffer.concat([
          raw(0x4f, 0x91),
          Buffer.from('X'),
          raw(0x91),
          ds('next'),
          ...Array(n).fill(raw(0x6f, 0x91)),
          raw(0x4e),
        ]);
      const lateMethod = (v: Buffer) =>
        boltBodyMethod(
          request(
            sofaBody([
              ['deep', v],
              ['methodName', ds('ok')],
            ]),
          ),
        );
      assert.equal(lateMethod(objects(63)), 'ok');
      assert.equal(lateMethod(objects(64)), undefined);
      const defs = (n: number) =>
        Buffer.concat([
          raw(0x56),
          ...Array.from({ length: n }, () => Buffer.concat([raw(0x4f, 0x91), Buffer.from('C'), raw(0x90, 0x6f, 0x91)])),
          raw(0x7a),
        ]);
      assert.equal(
        boltBodyMethod(
          request(
            sofaBody([
              ['defs', defs(255)],
              ['methodName', ds('ok')],
            ]),
          ),
        ),
        'ok',
      );
      assert.equal(
        boltBodyMethod(
          request(
            sofaBody([
              ['defs', defs(256)],
              ['methodName', ds('ok')],
            ]),
          ),
        ),
        undefined,
      );
    });

    it('trace values: printable ASCII of 1 to 256 characters; others are not there', () => {
      const props = (v: Buffer) => request(sofaBody([['requestProps', dmap([['rpc_trace_context.sofaTraceId', v]])]]));
      assert.deepEqual(readTraceContext(props(ds('t'.repeat(MAX_TRACE_VALUE)))), { sofaTraceId: 't'.repeat(256) });
      assert.equal(readTraceContext(props(ds('t'.repeat(MAX_TRACE_VALUE + 1)))), undefined);
      assert.equal(readTraceContext(props(ds('跟踪'))), undefined);
      assert.equal(readTraceContext(props(ds('a\nb'))), undefined);
      assert.equal(readTraceContext(props(ds(''))), undefined);
      assert.equal(readTraceContext(props(raw(0x91))), undefined);
      const headers = (v: string | null) => bolt({ headers: { service: SERVICE, traceparent: v } });
      assert.deepEqual(readTraceContext(headers(TRACEPARENT)), { traceparent: TRACEPARENT });
      assert.equal(readTraceContext(headers('x'.repeat(257))), undefined);
      assert.equal(readTraceContext(headers('é')), undefined);
      assert.equal(readTraceContext(headers(null)), undefined);
    });

    it('header keys: the last entry wins and a null unsets; the SOFA pair comes from one place', () => {
      const twice = Buffer.concat([
        headerMap({ service: SERVICE, 'rpc_trace_context.sofaTraceId': 'first' }),
        headerMap({ 'rpc_trace_context.sofaTraceId': 'second', 'rpc_trace_context.sofaRpcId': '0.1' }),
      ]);
      assert.deepEqual(readTraceContext(bolt({ rawHeader: twice })), { sofaTraceId: 'second', sofaRpcId: '0.1' });
      const unset = Buffer.concat([
        headerMap({ service: SERVICE, 'rpc_trace_context.sofaTraceId': 'first' }),
        headerMap({ 'rpc_trace_context.sofaTraceId': null }),
      ]);
      assert.equal(readTraceContext(bolt({ rawHeader: unset })), undefined);
      // A rpc id alone is no context; a header trace id takes its rpc id from the header only.
      assert.equal(
        readTraceContext(bolt({ headers: { service: SERVICE, 'rpc_trace_context.sofaRpcId': '0.1' } })),
        undefined,
      );
      const body = sofaBody([
        [
          'requestProps',
          dmap([
            ['rpc_trace_context.sofaTraceId', ds('body')],
            ['rpc_trace_context.sofaRpcId', ds('0.9')],
          ]),
        ],
      ]);
      assert.deepEqual(readTraceContext(request(body, { service: SERVICE, 'rpc_trace_context.sofaTraceId': 'head' })), {
        sofaTraceId: 'head',
      });
    });

    it('requestProps: flattened keys win over a nested rpc_trace_context map; a nested map of another name is not read', () => {
      const body = (entries: [string, Buffer][]) => request(sofaBody([['requestProps', dmap(entries)]]));
      const nested = dmap([
        ['sofaTraceId', ds('nested')],
        ['sofaRpcId', ds('0.5')],
      ]);
      assert.deepEqual(readTraceContext(body([['rpc_trace_context', nested]])), {
        sofaTraceId: 'nested',
        sofaRpcId: '0.5',
      });
      assert.deepEqual(
        readTraceContext(
          body([
            ['rpc_trace_context', nested],
            ['rpc_trace_context.sofaTraceId', ds('flat')],
          ]),
        ),
        { sofaTraceId: 'flat' },
      );
      assert.equal(readTraceContext(body([['other_context', nested]])), undefined);
      // A typed map ('M' 't' type) and an untyped hash map ('H') both read.
      const typed = Buffer.concat([
        raw(0x4d, 0x74, 0, 3),
        Buffer.from('Map'),
        ds('traceparent'),
        ds(TRACEPARENT),
        raw(0x7a),
      ]);
      assert.deepEqual(readTraceContext(request(sofaBody([['requestProps', typed]]))), { traceparent: TRACEPARENT });
      const hash = Buffer.concat([raw(0x48), ds('traceparent'), ds(TRACEPARENT), raw(0x7a)]);
      assert.deepEqual(readTraceContext(request(sofaBody([['requestProps', hash]]))), { traceparent: TRACEPARENT });
    });

    it('Dubbo: only a hessian2 request whose attachments read to the end; keys as one short ASCII string', () => {
      const f = traceFrames().find((t) => t.name === 'dubbo-remoting: trace attachments');
      assert.ok(f);
      // Another serialization id: nothing.
      const other = Buffer.from(f.frame);
      other[2] = (other[2] & 0xe0) | 3;
      assert.equal(readTraceContext(other), undefined);
      // A response: nothing.
      const response = Buffer.from(f.frame);
      response[2] = 0x02;
      assert.equal(readTraceContext(response), undefined);
      const h2 = (x: string) => hessianString(x);
      const frame = (attachments: Buffer) => {
        const body = Buffer.concat([
          h2('2.0.2'),
          h2('org.example.Svc'),
          h2('1.0'),
          h2('call'),
          h2('Ljava/lang/String;'),
          h2('arg'),
          attachments,
        ]);
        const head = Buffer.alloc(16);
        head.writeUInt16BE(0xdabb, 0);
        head[2] = 0xc2;
        head.writeInt32BE(body.length, 12);
        return Buffer.concat([head, body]);
      };
      const map = (...e: Buffer[]) => Buffer.concat([raw(0x48), ...e, raw(0x5a)]);
      assert.deepEqual(readTraceContext(frame(map(h2('traceparent'), h2(TRACEPARENT)))), { traceparent: TRACEPARENT });
      // The same key in two chunks ('R' then a short final one), or a value that is not a string: not read.
      const chunkedKey = Buffer.concat([raw(0x52, 0, 5), Buffer.from('trace'), raw(6), Buffer.from('parent')]);
      assert.equal(readTraceContext(frame(map(chunkedKey, h2(TRACEPARENT)))), undefined);
      assert.equal(readTraceContext(frame(map(h2('traceparent'), raw(0x91)))), undefined);
      const long = (n: number) => readTraceContext(frame(map(h2('traceparent'), h2('t'.repeat(n)))));
      assert.deepEqual(long(256), { traceparent: 't'.repeat(256) });
      assert.equal(long(257), undefined);
      // Last entry wins; attachments that cannot be read to their end say nothing.
      assert.deepEqual(
        readTraceContext(
          frame(map(h2('rpc_trace_context.sofaTraceId'), h2('a'), h2('rpc_trace_context.sofaTraceId'), h2('b'))),
        ),
        { sofaTraceId: 'b' },
      );
      assert.equal(readTraceContext(frame(Buffer.concat([raw(0x48), h2('traceparent'), h2(TRACEPARENT)]))), undefined);
    });
  });

  describe('never an error, never unbounded', () => {
    it('every truncation and thousands of mutations of the trace frames: undefined or a value, never a throw', function () {
      this.timeout(60_000);
      const rng = new Rng(0x74726163);
      const seeds = [...traceFrames().map((f) => f.frame), fixture('bolt-v1-request.hex')];
      let read = 0;
      for (const seed of seeds) {
        for (let n = 0; n <= seed.length; n++) {
          const cut = seed.subarray(0, n);
          boltBodyMethod(cut);
          readTraceContext(cut);
        }
        for (let i = 0; i < 2000; i++) {
          const m = Buffer.from(seed);
          const flips = 1 + (rng.next() % 4);
          for (let k = 0; k < flips; k++) m[rng.next() % m.length] = rng.next() & 0xff;
          const method = boltBodyMethod(m);
          const trace = readTraceContext(m);
          if (method !== undefined) assert.ok(method.length > 0 && method.length <= 1024);
          if (trace !== undefined) {
            read++;
            for (const v of Object.values(trace)) assert.match(v as string, /^[\x20-\x7e]{1,256}$/);
            assert.ok(trace.traceparent !== undefined || trace.sofaTraceId !== undefined);
          }
        }
      }
      assert.ok(read > 0, 'some mutated frames still carry context');
    });
  });
});
