// Free ports for servers that bind them a moment later: picked where no connect() takes its local port from, and a
// server that still finds its port taken is started again on new ones.

import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import {
  freePorts,
  HOST,
  isPortTaken,
  onFreePorts,
  PortTakenError,
  portRefuses,
  startRedis,
  startZooKeeper,
} from '../src/index';

const [ephemeralLow, ephemeralHigh] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
  .trim()
  .split(/\s+/)
  .map(Number);

describe('testkit: free ports', () => {
  it('are distinct, refuse connections, and lie below the ephemeral range a client socket takes its port from', async () => {
    const ports = await freePorts(20);
    assert.equal(new Set(ports).size, 20, `distinct: ${ports}`);
    for (const port of ports) {
      assert.ok(port < ephemeralLow!, `${port} is below the ephemeral range ${ephemeralLow}-${ephemeralHigh}`);
      assert.equal(await portRefuses(port), true, `nothing listens on ${port}`);
    }
  });

  it('onFreePorts starts again on new ports when the server found its port taken, and only then', async () => {
    const tried: number[][] = [];
    const result = await onFreePorts(2, async (ports) => {
      tried.push(ports);
      if (tried.length === 1) throw new PortTakenError('taken meanwhile');
      return 'started';
    });
    assert.equal(result, 'started');
    assert.equal(tried.length, 2);
    assert.notDeepEqual(tried[1], tried[0], 'the second start got new ports');

    let calls = 0;
    await assert.rejects(
      onFreePorts(1, async () => {
        calls++;
        throw new Error('config error');
      }),
      /config error/,
    );
    assert.equal(calls, 1, 'any other failure is not retried');
    assert.equal(isPortTaken(Object.assign(new Error('listen EADDRINUSE'), { code: 'EADDRINUSE' })), true);
  });

  it('a real redis-server or ZooKeeper whose port was taken fails as PortTakenError: what makes onFreePorts pick new ports', async function () {
    this.timeout(60_000);
    // Another process's listener: it hangs up on the start-up probes, which would otherwise keep it from closing.
    const held = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => held.listen(0, HOST, resolve));
    const { port } = held.address() as net.AddressInfo;
    try {
      await assert.rejects(startRedis({ port }), (e) => isPortTaken(e) && /Address already in use/.test(String(e)));
      await assert.rejects(
        startZooKeeper({ port }),
        (e) => isPortTaken(e) && /BindException|Address already in use/.test(String(e)),
      );
    } finally {
      await new Promise((resolve) => held.close(resolve));
    }
  });
});
