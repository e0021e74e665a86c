// decodeFrame, detectProtocol, setRequestId and the proxy-made frames, on hand-built bytes.

import { strict as assert } from 'node:assert';
import {
  BoltStatus,
  DubboStatus,
  ProtocolError,
  decodeFrame,
  detectProtocol,
  encodeBoltErrorResponse,
  encodeBoltHeartbeat,
  encodeBoltHeartbeatAck,
  encodeDubboErrorResponse,
  encodeDubboHeartbeat,
  encodeDubboHeartbeatAck,
  peek,
  restoreRequestId,
  savedId,
  setRequestId,
  type ProtocolErrorCode,
} from '../src/index';
import { HessianStringReader } from '../src/hessian';
import { bolt, dubbo, headerMap } from './helpers/build';

function throwsCode(fn: () => unknown, code: ProtocolErrorCode, offset?: number): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ProtocolError, `expected a ProtocolError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (offset !== undefined) assert.equal(err.offset, offset, `offset of ${code}`);
    return true;
  });
}

describe('detectProtocol', () => {
  it('tells Bolt v1, Bolt v2 and Dubbo from the first byte(s)', () => {
    assert.equal(detectProtocol(Buffer.from([0x01])), 'bolt');
    assert.equal(detectProtocol(Buffer.from([0x02, 0x01])), 'bolt');
    assert.equal(detectProtocol(Buffer.from([0xda])), 'dubbo');
    assert.equal(detectProtocol(Buffer.from([0xda, 0xbb, 0xc2])), 'dubbo');
  });
  it('answers null for nothing, HTTP, TLS and a wrong Dubbo second byte', () => {
    assert.equal(detectProtocol(Buffer.alloc(0)), null);
    assert.equal(detectProtocol(Buffer.from('GET / HTTP/1.1')), null);
    assert.equal(detectProtocol(Buffer.from([0x16, 0x03, 0x01])), null);
    assert.equal(detectProtocol(Buffer.from([0xda, 0xbc])), null);
  });
});

describe('decodeFrame: Bolt', () => {
  it('reads a v1 request: id, service, timeout, class, headers, lengths', () => {
    const frame = bolt({
      id: 123456,
      timeout: 2500,
      headers: { service: 'com.acme.Pay:2.0:blue', sofa_head_method_name: 'charge', x: null },
    });
    const h = decodeFrame(frame);
    assert.equal(h.protocol, 'bolt');
    if (h.protocol !== 'bolt') return;
    assert.equal(h.protocolVersion, 1);
    assert.equal(h.kind, 'request');
    assert.equal(h.requestId, 123456);
    assert.equal(h.service, 'com.acme.Pay:2.0:blue');
    assert.equal(h.method, 'charge');
    assert.equal(h.timeoutMs, 2500);
    assert.equal(h.status, undefined);
    assert.equal(h.serialization, 'hessian2');
    assert.equal(h.className, 'com.alipay.sofa.rpc.core.request.SofaRequest');
    assert.deepEqual({ ...h.headers }, { service: 'com.acme.Pay:2.0:blue', sofa_head_method_name: 'charge', x: null });
    assert.equal(h.frameLength, frame.length);
    assert.equal(h.bodyLength, 'content-bytes'.length);
    assert.equal(h.crc, undefined);
  });

  it('falls back to sofa_head_target_service when service is absent, and prefers service when both are there', () => {
    const old = decodeFrame(bolt({ headers: { sofa_head_target_service: 'com.old.Api:1.0' } }));
    assert.equal(old.service, 'com.old.Api:1.0');
    const both = decodeFrame(bolt({ headers: { sofa_head_target_service: 'b:1.0', service: 'a:1.0' } }));
    assert.equal(both.service, 'a:1.0');
    const none = decodeFrame(bolt({ headers: {} }));
    assert.equal(none.service, undefined);
  });

  it('reads unicode service names as UTF-8, and the same name twice gives equal strings', () => {
    const name = 'com.例子.服务😀:1.0';
    const a = decodeFrame(bolt({ headers: { service: name } }));
    const b = decodeFrame(bolt({ id: 8, headers: { service: name } }));
    assert.equal(a.service, name);
    assert.equal(b.service, name);
  });

  it('classifies oneway, response, heartbeat and heartbeat-ack', () => {
    assert.equal(decodeFrame(bolt({ type: 2 })).kind, 'oneway');
    const res = decodeFrame(bolt({ type: 0, status: BoltStatus.SERVER_THREADPOOL_BUSY }));
    assert.equal(res.kind, 'response');
    assert.equal(res.status, 4);
    assert.equal(
      decodeFrame(bolt({ type: 1, cmd: 0, headers: {}, className: '', content: Buffer.alloc(0) })).kind,
      'heartbeat',
    );
    assert.equal(decodeFrame(bolt({ type: 0, cmd: 0, className: '', content: Buffer.alloc(0) })).kind, 'heartbeat-ack');
  });

  it('reads v2 fields after the ver1 and switch bytes, and checks the CRC when ver1=2 and switch bit 0 is set', () => {
    const plain = decodeFrame(bolt({ version: 2, ver1: 1, id: 99, timeout: 1234 }));
    assert.equal(plain.protocol === 'bolt' && plain.protocolVersion, 2);
    assert.equal(plain.requestId, 99);
    assert.equal(plain.protocol === 'bolt' && plain.timeoutMs, 1234);
    assert.equal(plain.protocol === 'bolt' && plain.crc, undefined);

    const withCrc = bolt({ version: 2, ver1: 2, switchFlags: 1, id: 5 });
    const good = decodeFrame(withCrc);
    assert.equal(good.protocol === 'bolt' && good.crc, 'ok');
    assert.equal(good.frameLength, withCrc.length);
    const corrupted = Buffer.from(withCrc);
    corrupted[corrupted.length - 6] ^= 0x55; // a content byte
    assert.equal((decodeFrame(corrupted) as { crc?: string }).crc, 'bad');
    throwsCode(() => decodeFrame(corrupted, { crc: 'reject' }), 'MESHPORT_BOLT_BAD_CRC', corrupted.length - 4);
    assert.equal((decodeFrame(corrupted, { crc: 'skip' }) as { crc?: string }).crc, undefined);
  });

  it('has no CRC when the switch byte asks for one but ver1 is 1 (Java semantics, unlike sofa-bolt-node)', () => {
    const frame = bolt({ version: 2, ver1: 1, switchFlags: 1 });
    const h = decodeFrame(frame);
    assert.equal(h.frameLength, frame.length);
    assert.equal(h.protocol === 'bolt' && h.crc, undefined);
  });

  it('rejects bad bytes with stable codes and the offset of the bad field', () => {
    throwsCode(() => decodeFrame(Buffer.from([0x05, 0, 0])), 'MESHPORT_BAD_MAGIC', 0);
    throwsCode(() => decodeFrame(Buffer.from([0x01, 0x07, 0, 1])), 'MESHPORT_BOLT_BAD_TYPE', 1);
    throwsCode(() => decodeFrame(Buffer.from([0x02, 0x09, 0x01])), 'MESHPORT_BOLT_BAD_VERSION', 1);
    const badCmd = bolt();
    badCmd.writeUInt16BE(9, 2);
    throwsCode(() => decodeFrame(badCmd), 'MESHPORT_BOLT_BAD_CMDCODE', 2);
    const responseAsRequest = bolt({ type: 1, cmd: 2 });
    throwsCode(() => decodeFrame(responseAsRequest), 'MESHPORT_BOLT_BAD_CMDCODE', 2);
    const negative = bolt();
    negative.writeInt32BE(-5, 18);
    throwsCode(() => decodeFrame(negative), 'MESHPORT_BOLT_BAD_LENGTH', 18);
    const full = bolt();
    throwsCode(() => decodeFrame(full.subarray(0, 10)), 'MESHPORT_FRAME_TRUNCATED', 10);
    throwsCode(() => decodeFrame(full.subarray(0, full.length - 1)), 'MESHPORT_FRAME_TRUNCATED', full.length - 1);
  });

  it('rejects a header map whose lengths do not fit, at the bad length field', () => {
    const good = headerMap({ service: 'a:1.0' });
    const tooLong = Buffer.from(good);
    tooLong.writeInt32BE(1000, 11); // value length of `service`
    const frame = bolt({ rawHeader: tooLong });
    const headerStart = 22 + 'com.alipay.sofa.rpc.core.request.SofaRequest'.length;
    throwsCode(() => decodeFrame(frame), 'MESHPORT_BOLT_BAD_HEADER_MAP', headerStart + 11);
    const below = Buffer.from(good);
    below.writeInt32BE(-2, 0);
    throwsCode(() => decodeFrame(bolt({ rawHeader: below })), 'MESHPORT_BOLT_BAD_HEADER_MAP', headerStart);
    throwsCode(() => decodeFrame(bolt({ rawHeader: good.subarray(0, 6) })), 'MESHPORT_BOLT_BAD_HEADER_MAP');
  });
});

describe('decodeFrame: Dubbo', () => {
  it('reads a hessian2 request: id as a decimal string, service, version, method, dubbo version', () => {
    const frame = dubbo({ id: 42n, service: 'org.acme.Echo', version: '2.1', method: 'echo', dubboVersion: '2.0.2' });
    const h = decodeFrame(frame);
    assert.equal(h.protocol, 'dubbo');
    if (h.protocol !== 'dubbo') return;
    assert.equal(h.kind, 'request');
    assert.equal(h.requestId, '42');
    assert.equal(h.service, 'org.acme.Echo');
    assert.equal(h.version, '2.1');
    assert.equal(h.method, 'echo');
    assert.equal(h.dubboVersion, '2.0.2');
    assert.equal(h.serialization, 'hessian2');
    assert.equal(h.frameLength, frame.length);
    assert.equal(h.bodyLength, frame.length - 16);
  });

  it('keeps int64 ids exact, negative ones included', () => {
    assert.equal(decodeFrame(dubbo({ id: 2n ** 53n + 1n })).requestId, '9007199254740993');
    assert.equal(decodeFrame(dubbo({ id: -2n })).requestId, '-2');
    assert.equal(decodeFrame(dubbo({ id: 2n ** 32n })).requestId, '4294967296');
  });

  it('takes a null version, medium, chunked and unicode strings (lengths in UTF-16 units)', () => {
    assert.equal((decodeFrame(dubbo({ version: null })) as { version?: unknown }).version, null);
    const long = 'org.acme.' + 'x'.repeat(2000); // > 1023 units: an `S` chunk
    assert.equal(decodeFrame(dubbo({ service: long })).service, long);
    const medium = 'org.acme.' + 'y'.repeat(100); // 0x30-0x33 form
    assert.equal(decodeFrame(dubbo({ service: medium })).service, medium);
    const huge = 'z'.repeat(70000); // more than one chunk: `R` then a final chunk
    assert.equal(decodeFrame(dubbo({ method: huge })).method, huge);
    const unicode = 'com.例子.服务😀';
    assert.equal(decodeFrame(dubbo({ service: unicode })).service, unicode);
  });

  it('classifies oneway, response, heartbeat and heartbeat-ack from the flag byte', () => {
    assert.equal(decodeFrame(dubbo({ flag: 0x82 })).kind, 'oneway');
    const res = decodeFrame(dubbo({ flag: 0x02, status: 20, body: Buffer.from([0x91, 0x4e]) }));
    assert.equal(res.kind, 'response');
    assert.equal(res.status, 20);
    assert.equal(res.service, undefined);
    assert.equal(decodeFrame(dubbo({ flag: 0xe2, body: Buffer.from([0x4e]) })).kind, 'heartbeat');
    assert.equal(decodeFrame(dubbo({ flag: 0x22, status: 20, body: Buffer.from([0x4e]) })).kind, 'heartbeat-ack');
  });

  it('reports other serializations by name and reads no route key from their bodies', () => {
    const h = decodeFrame(dubbo({ flag: 0xc0 | 8, body: Buffer.from('kryo bytes') }));
    assert.equal(h.serialization, 'kryo');
    assert.equal(h.service, undefined);
  });

  it('rejects a bad second magic byte, a negative length, truncation and malformed leading strings', () => {
    const frame = dubbo();
    const magic = Buffer.from(frame);
    magic[1] = 0xbc;
    throwsCode(() => decodeFrame(magic), 'MESHPORT_BAD_MAGIC', 1);
    const negative = Buffer.from(frame);
    negative.writeInt32BE(-1, 12);
    throwsCode(() => decodeFrame(negative), 'MESHPORT_DUBBO_BAD_LENGTH', 12);
    throwsCode(() => decodeFrame(frame.subarray(0, 12)), 'MESHPORT_FRAME_TRUNCATED', 12);
    throwsCode(() => decodeFrame(dubbo({ body: Buffer.from([0x05, 0x41]) })), 'MESHPORT_DUBBO_BAD_BODY');
    throwsCode(() => decodeFrame(dubbo({ body: Buffer.from([0x91]) })), 'MESHPORT_DUBBO_BAD_BODY', 16);
    throwsCode(() => decodeFrame(dubbo({ body: Buffer.from([0x02, 0x41, 0x80]) })), 'MESHPORT_DUBBO_BAD_BODY', 18);
  });
});

describe('HessianStringReader', () => {
  it('reads CESU-8 surrogate pairs as Java writes them (two 3-byte sequences)', () => {
    // U+1F600 as the surrogates D83D DE00, each CESU-8 encoded
    const body = Buffer.from([0x02, 0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80]);
    const reader = new HessianStringReader();
    reader.reset(body, 0, body.length);
    assert.equal(reader.readString(), '😀');
  });
});

describe('setRequestId', () => {
  it('rewrites Bolt v1 and v2 ids in place and keeps a v2 CRC valid', () => {
    for (const frame of [bolt(), bolt({ version: 2 }), bolt({ version: 2, ver1: 2, switchFlags: 1 })]) {
      setRequestId(frame, 0x7fff0001);
      const h = decodeFrame(frame);
      assert.equal(h.requestId, 0x7fff0001);
      assert.equal(h.service, 'com.example.EchoService:1.0');
      assert.notEqual(h.protocol === 'bolt' && h.crc, 'bad');
    }
  });
  it('rewrites Dubbo ids given as number, bigint and decimal string, beyond 2^53 too', () => {
    const frame = dubbo();
    setRequestId(frame, 77);
    assert.equal(decodeFrame(frame).requestId, '77');
    setRequestId(frame, 2n ** 40n);
    assert.equal(decodeFrame(frame).requestId, String(2n ** 40n));
    setRequestId(frame, '9223372036854775807');
    assert.equal(decodeFrame(frame).requestId, '9223372036854775807');
    assert.equal(decodeFrame(frame).service, 'org.apache.dubbo.demo.DemoService');
  });
  it('refuses a Bolt id that is not a 32-bit integer', () => {
    assert.throws(() => setRequestId(bolt(), 2 ** 33), RangeError);
    assert.throws(() => setRequestId(bolt(), '5'), RangeError);
  });
});

describe('proxy-made frames', () => {
  it('Bolt heartbeat and ack, v1 and v2 with CRC, decode back with the same id', () => {
    for (const opts of [{}, { protocolVersion: 2 as const, ver1: 2 as const, switchFlags: 1 }]) {
      const hb = decodeFrame(encodeBoltHeartbeat(31, opts));
      assert.equal(hb.kind, 'heartbeat');
      assert.equal(hb.requestId, 31);
      const ack = decodeFrame(encodeBoltHeartbeatAck(31, opts));
      assert.equal(ack.kind, 'heartbeat-ack');
      assert.equal(ack.status, BoltStatus.SUCCESS);
      assert.equal(ack.bodyLength, 0);
      if (opts.protocolVersion) assert.equal(ack.protocol === 'bolt' && ack.crc, 'ok');
    }
  });
  it('Bolt error response carries the status and the id', () => {
    const frame = encodeBoltErrorResponse({
      requestId: 9,
      status: BoltStatus.NO_PROCESSOR,
      message: 'no route to com.x.Y:1.0',
    });
    const h = decodeFrame(frame);
    assert.equal(h.kind, 'response');
    assert.equal(h.status, BoltStatus.NO_PROCESSOR);
    assert.equal(h.requestId, 9);
    assert.ok(frame.includes(Buffer.from('no route to com.x.Y:1.0')));
  });
  it('Dubbo heartbeat, ack and error response', () => {
    assert.equal(decodeFrame(encodeDubboHeartbeat('123')).kind, 'heartbeat');
    const ack = decodeFrame(encodeDubboHeartbeatAck(123n));
    assert.equal(ack.kind, 'heartbeat-ack');
    assert.equal(ack.status, DubboStatus.OK);
    const err = encodeDubboErrorResponse({
      requestId: '18446744073709551615',
      status: DubboStatus.SERVICE_NOT_FOUND,
      message: 'no provider',
    });
    const h = decodeFrame(err);
    assert.equal(h.status, 60);
    assert.equal(h.requestId, '-1'); // int64 wraps as Java's long does
    const reader = new HessianStringReader();
    reader.reset(err, 16, err.length);
    assert.equal(reader.readString(), 'no provider');
  });
});

describe('peek, savedId and restoreRequestId (the proxy fast path)', () => {
  it('peek reads kind, small id and status from the fixed header, as decodeFrame does', () => {
    const frames = [
      bolt({ id: -7 }),
      bolt({ type: 2, id: 8 }),
      bolt({ type: 0, status: BoltStatus.TIMEOUT, id: 9 }),
      bolt({ version: 2, ver1: 2, switchFlags: 1, type: 0, status: 4, id: 10 }),
      encodeBoltHeartbeat(11),
      encodeBoltHeartbeatAck(12, { protocolVersion: 2 }),
      dubbo({ id: 13n }),
      dubbo({ id: -14n }),
      dubbo({ flag: 0x02, status: 70, id: 15n, body: Buffer.from([0x4e]) }),
      encodeDubboHeartbeat(16),
      encodeDubboHeartbeatAck(17),
    ];
    for (const f of frames) {
      const h = decodeFrame(f);
      assert.equal(peek.kind(f), h.kind);
      assert.equal(peek.smallRequestId(f), Number(h.requestId));
      if (h.kind === 'response') assert.equal(peek.status(f), h.status);
    }
    assert.ok(Number.isNaN(peek.smallRequestId(dubbo({ id: 2n ** 32n }))));
    assert.equal(peek.kind(bolt({ type: 1, cmd: 2 })), undefined);
  });

  it('restores a saved id into another frame of the protocol, int64 and v2 CRC included', () => {
    const request = dubbo({ id: 2n ** 62n + 3n });
    const [high, low] = [savedId.high(request), savedId.low(request)];
    setRequestId(request, 5);
    const answer = encodeDubboHeartbeatAck(5);
    restoreRequestId(answer, high, low);
    assert.equal(decodeFrame(answer).requestId, String(2n ** 62n + 3n));
    const negative = dubbo({ id: -(2n ** 40n) - 1n });
    const answer2 = encodeDubboHeartbeatAck(1);
    restoreRequestId(answer2, savedId.high(negative), savedId.low(negative));
    assert.equal(decodeFrame(answer2).requestId, String(-(2n ** 40n) - 1n));
    const boltReq = bolt({ id: -99 });
    const boltSaved = savedId.low(boltReq);
    assert.equal(savedId.high(boltReq), 0);
    setRequestId(boltReq, 1);
    const boltAnswer = bolt({ version: 2, ver1: 2, switchFlags: 1, type: 0, id: 1 });
    restoreRequestId(boltAnswer, 0, boltSaved);
    const h = decodeFrame(boltAnswer);
    assert.equal(h.requestId, -99);
    assert.equal(h.protocol === 'bolt' && h.crc, 'ok');
  });
});
