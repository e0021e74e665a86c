// FrameSplitter: any chunking gives the same frames; the cap holds before buffering; errors carry stream offsets.

import { strict as assert } from 'node:assert';
import {
  FrameSplitter,
  ProtocolError,
  encodeBoltHeartbeat,
  encodeBoltHeartbeatAck,
  encodeDubboHeartbeat,
  peekFrameIdentity,
} from '../src/index';
import { bolt, chunkings, dubbo } from './helpers/build';

function split(chunks: Buffer[], maxFrameSize?: number): Buffer[] {
  const out: Buffer[] = [];
  const splitter = new FrameSplitter((f) => out.push(Buffer.from(f)), { maxFrameSize });
  for (const c of chunks) splitter.write(c);
  splitter.end();
  return out;
}

const cases: Record<string, Buffer> = {
  'bolt v1 request': bolt(),
  'bolt v1 response': bolt({ type: 0 }),
  'bolt v2 request with CRC': bolt({ version: 2, ver1: 2, switchFlags: 1 }),
  'bolt v2 response': bolt({ version: 2, type: 0 }),
  'bolt v1 heartbeat ack (20 bytes, shortest frame)': encodeBoltHeartbeatAck(3),
  'dubbo request': dubbo(),
  'dubbo heartbeat': encodeDubboHeartbeat(5),
};

describe('FrameSplitter', () => {
  for (const [name, frame] of Object.entries(cases)) {
    it(`${name}: whole, byte by byte and split at every boundary give the frame back`, () => {
      for (const { name: how, chunks } of chunkings(frame)) {
        const out = split(chunks);
        assert.equal(out.length, 1, how);
        assert.ok(out[0].equals(frame), how);
      }
    });
  }

  it('a stream of every protocol and kind, cut at every boundary, gives every frame back in order', () => {
    const frames = Object.values(cases);
    const stream = Buffer.concat(frames);
    for (const { name: how, chunks } of chunkings(stream)) {
      const out = split(chunks);
      assert.equal(out.length, frames.length, how);
      out.forEach((f, i) => assert.ok(f.equals(frames[i]), `${how}: frame ${i}`));
    }
  });

  it('hands out frames that lie in one chunk as subarrays of it, without copying', () => {
    const stream = Buffer.concat([bolt(), dubbo(), encodeBoltHeartbeat(1)]);
    const seen: Buffer[] = [];
    new FrameSplitter((f) => seen.push(f)).write(stream);
    assert.equal(seen.length, 3);
    for (const f of seen) assert.equal(f.buffer, stream.buffer);
  });

  it('rejects an oversize frame from its header alone, before buffering anything', () => {
    const head = bolt().subarray(0, 22);
    head.writeInt32BE(100 * 1024 * 1024, 18); // content length 100 MiB
    const splitter = new FrameSplitter(() => assert.fail('no frame expected'), { maxFrameSize: 1024 * 1024 });
    assert.throws(
      () => splitter.write(head),
      (err: unknown) => err instanceof ProtocolError && err.code === 'MESHPORT_FRAME_OVERSIZE' && err.offset === 0,
    );
    assert.equal(splitter.buffered, 0);
  });

  it('counts the default cap as 16 MiB: a frame of exactly the cap passes its header check, one byte more does not', () => {
    const cap = 16 * 1024 * 1024;
    const at = (total: number) => {
      const head = dubbo({ body: Buffer.alloc(0) });
      head.writeInt32BE(total - 16, 12);
      const splitter = new FrameSplitter(() => {});
      splitter.write(head);
      return splitter.buffered;
    };
    assert.equal(at(cap), 16);
    assert.throws(() => at(cap + 1), /MESHPORT_FRAME_OVERSIZE|more than/);
  });

  it('reports errors at stream offsets: a bad byte after two good frames is at their combined length', () => {
    const good = Buffer.concat([bolt(), dubbo()]);
    const stream = Buffer.concat([good, Buffer.from([0x47, 0x45, 0x54])]);
    for (const { name: how, chunks } of chunkings(stream)) {
      const out: Buffer[] = [];
      const splitter = new FrameSplitter((f) => out.push(f));
      assert.throws(
        () => chunks.forEach((c) => splitter.write(c)),
        (err: unknown) =>
          err instanceof ProtocolError && err.code === 'MESHPORT_BAD_MAGIC' && err.offset === good.length,
        how,
      );
      assert.equal(out.length, 2, `${how}: the good frames before the error still come out`);
    }
  });

  it('keeps the head of a frame that failed, so its request id can still be answered', () => {
    const oversize = bolt({ id: 4242 });
    oversize.writeInt32BE(1 << 30, 18);
    for (const { name: how, chunks } of chunkings(Buffer.concat([dubbo(), oversize.subarray(0, 22)]))) {
      const splitter = new FrameSplitter(() => {}, { maxFrameSize: 1 << 20 });
      assert.throws(() => chunks.forEach((c) => splitter.write(c)), ProtocolError, how);
      const who = peekFrameIdentity(splitter.failedFrameHead!);
      assert.deepEqual(who && [who.protocol, who.requestId, who.expectsResponse], ['bolt', 4242, true], how);
    }
    const dubboHead = dubbo({ id: 2n ** 40n });
    dubboHead.writeInt32BE(-7, 12);
    const splitter = new FrameSplitter(() => {});
    assert.throws(() => splitter.write(dubboHead), /MESHPORT_DUBBO_BAD_LENGTH|negative/);
    assert.equal(peekFrameIdentity(splitter.failedFrameHead!)?.requestId, String(2n ** 40n));
    assert.equal(peekFrameIdentity(Buffer.from([0x01, 0x01, 0x00])), undefined);
  });

  it('stays failed after an error: later writes throw the same error', () => {
    const splitter = new FrameSplitter(() => {});
    assert.throws(() => splitter.write(Buffer.from([0x00])), ProtocolError);
    assert.throws(
      () => splitter.write(bolt()),
      (err: unknown) => err instanceof ProtocolError && err.offset === 0,
    );
  });

  it('end() inside a frame is a truncation at the end of the stream', () => {
    const frame = bolt();
    const splitter = new FrameSplitter(() => {});
    splitter.write(frame.subarray(0, 30));
    assert.equal(splitter.buffered, 30);
    assert.throws(
      () => splitter.end(),
      (err: unknown) => err instanceof ProtocolError && err.code === 'MESHPORT_FRAME_TRUNCATED' && err.offset === 30,
    );
  });

  it("passes an onFrame callback's own error through untouched and does not fail the stream", () => {
    const mine = new ProtocolError('MESHPORT_BOLT_BAD_CRC', 'the caller rejected it', 3);
    let calls = 0;
    const splitter = new FrameSplitter(() => {
      calls++;
      if (calls === 1) throw mine;
    });
    assert.throws(
      () => splitter.write(bolt()),
      (err: unknown) => err === mine,
    );
    splitter.write(bolt());
    assert.equal(calls, 2);
  });
});
