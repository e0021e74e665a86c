// The start-up check: a config whose addresses or plugins cannot work is refused before anything binds, with the key,
// the line and the cause of every problem.

import { strict as assert } from 'node:assert';
import net from 'node:net';
import pino from 'pino';
import { parseConfig } from '../src/config';
import { SidecarError } from '../src/errors';
import { preflight } from '../src/preflight';
import { Sidecar } from '../src/sidecar';

async function holdPort(): Promise<{ port: number; close: () => Promise<void> }> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

async function problems(text: string): Promise<{ code: string; messages: string[] }> {
  try {
    await preflight(parseConfig(text, 'meshport.yaml', {}));
  } catch (err) {
    assert.ok(err instanceof SidecarError, String(err));
    return { code: err.code, messages: err.problems.map((p) => `${p.code}: ${p.message}`) };
  }
  assert.fail('expected the start-up check to refuse the config');
}

describe('sidecar start-up check', () => {
  it('refuses an admin port another process holds, naming the key, the line and the cause', async () => {
    const held = await holdPort();
    try {
      const r = await problems(
        `listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }\nadmin: 127.0.0.1:${held.port}\n`,
      );
      assert.equal(r.code, 'MESHPORT_ADDRESS_UNAVAILABLE');
      assert.deepEqual(r.messages, [
        `MESHPORT_ADDRESS_UNAVAILABLE: meshport.yaml:2: admin: 127.0.0.1:${held.port} is in use (another process listens there)`,
      ]);
    } finally {
      await held.close();
    }
  });

  it('finds addresses the config gives twice without binding, and host names that do not resolve, all at once', async () => {
    const text = [
      'admin: 127.0.0.1:0',
      'listeners:',
      '  outbound: 127.0.0.1:0',
      '  inbound: nowhere.invalid:12201',
      'registries:',
      '  - { name: zk, type: zookeeper, upstream: "127.0.0.1:1", facade: "127.0.0.1:2181" }',
      '  - { name: zk2, type: zookeeper, upstream: "127.0.0.1:1", facade: "2181" }',
      '  - { name: redis, type: redis, upstream: "127.0.0.1:1", facade: "0.0.0.0:2181" }',
    ].join('\n');
    const r = await problems(text);
    assert.deepEqual(r.messages, [
      'MESHPORT_ADDRESS_UNAVAILABLE: meshport.yaml:4: listeners.inbound: nowhere.invalid:12201: the host name nowhere.invalid does not resolve (ENOTFOUND)',
      'MESHPORT_ADDRESS_UNAVAILABLE: meshport.yaml:7: registries[1].facade: 127.0.0.1:2181 is also meshport.yaml:6: registries[0].facade (127.0.0.1:2181); each listener needs its own port',
      'MESHPORT_ADDRESS_UNAVAILABLE: meshport.yaml:8: registries[2].facade: 0.0.0.0:2181 is also meshport.yaml:6: registries[0].facade (127.0.0.1:2181); each listener needs its own port',
    ]);
  });

  it('refuses inbound = outbound and admin = a facade', async () => {
    const r = await problems(
      [
        'admin: 127.0.0.1:17000',
        'listeners: { outbound: "127.0.0.1:17001", inbound: "17001" }',
        'registries:',
        '  - { name: zk, type: zookeeper, upstream: "127.0.0.1:1", facade: "17000" }',
      ].join('\n'),
    );
    assert.deepEqual(r.messages, [
      'MESHPORT_ADDRESS_UNAVAILABLE: meshport.yaml:2: listeners.inbound: 127.0.0.1:17001 is also meshport.yaml:2: listeners.outbound (127.0.0.1:17001); each listener needs its own port',
      'MESHPORT_ADDRESS_UNAVAILABLE: meshport.yaml:4: registries[0].facade: 127.0.0.1:17000 is also meshport.yaml:1: admin (127.0.0.1:17000); each listener needs its own port',
    ]);
  });

  it('refuses a registry type with a typo before anything starts, and says which type was meant', async () => {
    const r = await problems('registries:\n  - name: zk\n    type: zookeper\n    upstream: "127.0.0.1:1"\n');
    assert.equal(r.code, 'MESHPORT_PLUGIN_INVALID');
    assert.equal(r.messages.length, 1);
    assert.match(
      r.messages[0]!,
      /^MESHPORT_PLUGIN_INVALID: meshport\.yaml:3: registries\[0\]\.type: registry plugin 'zookeper' cannot be found: .* \(did you mean type: zookeeper\?\)$/,
    );
  });

  it('Sidecar.start() runs the check first: nothing is bound, nothing logged as started', async () => {
    const held = await holdPort();
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(line) });
    try {
      const config = parseConfig(
        `admin: 127.0.0.1:${held.port}\nlisteners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }\nregistries:\n  - { name: f, type: fiel }\n`,
      );
      const sidecar = new Sidecar(config, { logger });
      await assert.rejects(sidecar.start(), (err: SidecarError) => {
        assert.deepEqual(
          err.problems.map((p) => p.code),
          ['MESHPORT_ADDRESS_UNAVAILABLE', 'MESHPORT_PLUGIN_INVALID'],
        );
        assert.match(err.message, /meshport\.yaml:1: admin: .* is in use/);
        assert.match(err.message, /meshport\.yaml:4: registries\[0\]\.type: .*did you mean type: file\?/);
        return true;
      });
      assert.deepEqual(lines, [], 'nothing started, so nothing drained');
    } finally {
      await held.close();
    }
  });
});
