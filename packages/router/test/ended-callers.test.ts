// What docs/router.md promises of a caller connection the router has ended after a bad frame, on the engine
// MESHPORT_ENGINE picks: it reads and drops whatever the caller still sends, so the caller's FIN is seen, for
// frameTimeoutMs, and only then destroys the socket of a caller that never closed its side. Both ends of that window
// are asserted: not let go early (answers may still be in flight to a slow reader), and let go in the end.

import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { MemoryRouteTable, type RouterHandle } from '../src/index';
import { useRouterKit } from './helpers/kit';
import { boltRequestFrame } from './helpers/peers';

/** Caller connections open on the outbound listener, as /stats shows them. */
async function openCallers(router: RouterHandle): Promise<number> {
  const metric = await router.stats.connections.get();
  return metric.values.find((v) => v.labels.listener === 'outbound')?.value ?? 0;
}

/** Resolves when all of `bytes` (in 1 MiB writes) has been taken by the kernel, i.e. the peer read what did not fit. */
function writeAll(socket: net.Socket, bytes: number): Promise<void> {
  const chunk = Buffer.alloc(1 << 20, 0x5a);
  return new Promise((resolve, reject) => {
    for (let sent = 0; sent < bytes; sent += chunk.length) {
      const last = sent + chunk.length >= bytes;
      socket.write(chunk, (err) => (err ? reject(err) : last && resolve()));
    }
  });
}

describe('router: a caller it has ended', function () {
  this.timeout(20_000);
  const kit = useRouterKit();
  const frameTimeoutMs = 2000;

  const badFrames = [
    { what: 'garbage with no readable id', frame: Buffer.from('GET / HTTP/1.1\r\n\r\n'), answered: false },
    // An id is readable: the caller gets CODEC_EXCEPTION first, then the FIN.
    {
      what: 'a Bolt frame with a broken header map',
      frame: boltRequestFrame({ id: 9, rawHeader: Buffer.from([0, 0, 0, 99, 1]) }),
      answered: true,
    },
  ];

  for (const { what, frame, answered: answersBadFrame } of badFrames) {
    it(`after ${what}: what the caller still sends is read and dropped for frameTimeoutMs, then the socket goes`, async () => {
      const router = await kit.router(new MemoryRouteTable(), { frameTimeoutMs });
      // allowHalfOpen: this caller gets the router's FIN and never sends its own.
      const socket = net.connect({ port: router.address('outbound').port, host: '127.0.0.1', allowHalfOpen: true });
      kit.onCleanup(() => socket.destroy());
      await once(socket, 'connect');
      let received = 0;
      socket.on('data', (d: Buffer) => (received += d.length));
      let failed: NodeJS.ErrnoException | undefined;
      socket.on('error', (err) => (failed = err));
      const ended = once(socket, 'end');
      socket.write(frame);
      await ended;
      const endedAt = Date.now();
      assert.equal(await openCallers(router), 1);
      // Read, not left in a buffer: far more than loopback's socket buffers hold (32 MiB to receive, 4 MiB to send) is
      // taken, and none of it is answered.
      const answered = received;
      assert.equal(answered > 0, answersBadFrame, `${answered} bytes answered before the FIN`);
      await Promise.race([
        writeAll(socket, 64 << 20),
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error('64 MiB written after the FIN were not read')), frameTimeoutMs / 2),
        ),
      ]);
      // Shortly before frameTimeoutMs the router still holds the connection.
      const before = endedAt + frameTimeoutMs * 0.8 - Date.now();
      assert.ok(before > 0, `the writes took ${Date.now() - endedAt} ms`);
      await sleep(before);
      assert.equal(
        await openCallers(router),
        1,
        `let go ${Date.now() - endedAt} ms after its FIN, before frameTimeoutMs (${frameTimeoutMs})`,
      );
      socket.write(Buffer.from('still here'));
      await sleep(50);
      assert.equal(failed, undefined);
      assert.equal(received, answered, 'nothing sent after the FIN is answered');
      // Then it goes: the router's count drops, and the kernel answers our next bytes with a reset.
      const waitEnd = Date.now() + frameTimeoutMs + 2000;
      while ((await openCallers(router)) > 0) {
        assert.ok(Date.now() < waitEnd, `still open ${Date.now() - endedAt} ms after its FIN`);
        await sleep(10);
      }
      const heldFor = Date.now() - endedAt;
      assert.ok(heldFor >= frameTimeoutMs * 0.8, `held ${heldFor} ms`);
      for (let i = 0; i < 20 && failed === undefined; i++) {
        socket.write(Buffer.from('and now?'));
        await sleep(50);
      }
      assert.match(String((failed as NodeJS.ErrnoException | undefined)?.code), /ECONNRESET|EPIPE/);
    });
  }
});
