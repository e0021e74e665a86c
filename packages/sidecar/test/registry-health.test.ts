// RegistryHealth: what an operator is told about one registry's connection (warnings at a bounded pace, the
// /registries state, readiness), driven by a stand-in adapter whose state the test sets.

import { strict as assert } from 'node:assert';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConnectionStateCell, type RegistryAdapter } from '@meshport/registry-core';
import { redactUrl, RegistryHealth } from '../src/registries';
import type { RegistryConfig } from '../src/config';

/** An adapter that only has a connection: the test moves it. */
function standIn() {
  const cell = new ConnectionStateCell('disconnected');
  const adapter = {
    get state() {
      return cell.value;
    },
    get lastError() {
      return cell.lastError;
    },
    onStateChange: (l: Parameters<RegistryAdapter['onStateChange']>[0]) => cell.onChange(l),
  } as unknown as RegistryAdapter;
  return { cell, adapter };
}

const entry: RegistryConfig = { name: 'zk', type: 'zookeeper', upstream: '127.0.0.1:2999', options: {} };

describe('RegistryHealth', function () {
  this.timeout(20_000);
  const healths: RegistryHealth[] = [];
  afterEach(() => healths.splice(0).forEach((h) => h.close()));

  function watch(options: { warnAfterMs?: number; warnEveryMs?: number } = {}) {
    const logs: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
    const logger = {
      warn: (fields: object, msg: string) =>
        logs.push({ level: 'warn', msg, fields: fields as Record<string, unknown> }),
      info: (fields: object, msg: string) =>
        logs.push({ level: 'info', msg, fields: fields as Record<string, unknown> }),
    };
    const { cell, adapter } = standIn();
    const health = new RegistryHealth(entry, adapter, { logger, ...options });
    healths.push(health);
    return { cell, health, logs };
  }

  it('warns once an upstream cannot connect, with the error, then at a bounded pace, and once when it is back', async () => {
    const { cell, health, logs } = watch({ warnEveryMs: 1_500 });
    assert.equal(health.status(undefined).state, 'connecting');
    cell.fail(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:2999'), { code: 'ECONNREFUSED' }));
    await sleep(800);
    assert.deepEqual(
      logs.map((l) => l.msg),
      ['registry cannot connect'],
    );
    assert.equal(logs[0]!.fields.error, 'connect ECONNREFUSED 127.0.0.1:2999');
    // Errors every few ms (a client retrying) are not lines every few ms.
    for (let i = 0; i < 20; i++) {
      cell.fail(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:2999'), { code: 'ECONNREFUSED' }));
      await sleep(50);
    }
    assert.equal(logs.length, 1);
    await sleep(1_000);
    assert.deepEqual(
      logs.map((l) => l.msg),
      ['registry cannot connect', 'registry still cannot connect'],
    );
    const status = health.status(undefined);
    assert.equal(status.state, 'connecting');
    assert.equal(status.lastError?.code, 'ECONNREFUSED');
    assert.equal(status.lastError?.count, 21);
    assert.equal(status.ready, false);

    cell.set('connected');
    assert.equal(logs.at(-1)!.level, 'info');
    assert.equal(logs.at(-1)!.msg, 'registry connected again');
    assert.equal(health.status(undefined).state, 'connected');
    assert.ok(health.status(undefined).lastConnected);
  });

  it('warns after warnAfterMs when no error says why (a connection that hangs)', async () => {
    const { logs } = watch({ warnAfterMs: 300 });
    await sleep(1_200);
    assert.deepEqual(
      logs.map((l) => l.msg),
      ['registry cannot connect'],
    );
  });

  it('is ready once connected and every service it routes is reported, and stays ready through an outage', async () => {
    const { cell, health, logs } = watch();
    health.expect(['com.example.A:1.0', 'com.example.B:1.0']);
    cell.set('connected');
    assert.equal(health.ready, false, 'no list reported yet');
    health.reported('com.example.A:1.0');
    assert.deepEqual(health.status(undefined).services, {
      routed: ['com.example.A:1.0', 'com.example.B:1.0'],
      waiting: ['com.example.B:1.0'],
    });
    assert.equal(health.ready, false);
    health.reported('com.example.B:1.0');
    assert.equal(health.ready, true);

    const before = Date.now();
    cell.set('disconnected');
    assert.equal(logs.at(-1)!.msg, 'registry connection lost; routing on the last known providers while reconnecting');
    const status = health.status(undefined);
    assert.equal(status.state, 'reconnecting');
    assert.ok(Date.parse(status.since) >= before - 5);
    assert.equal(status.ready, true, 'an outage after the routes are known keeps the sidecar ready');
    assert.deepEqual(health.metrics().changes, { connected: 1, disconnected: 1 });
    assert.equal(health.metrics().up, false);
  });

  it('does not count a registry that never connected as ready, whatever was reported', () => {
    const { health } = watch();
    health.expect([]);
    assert.equal(health.ready, false);
  });

  it('redacts passwords in upstream URLs', () => {
    assert.equal(redactUrl('redis://:s3cret@10.0.0.1:6379/0'), 'redis://:***@10.0.0.1:6379/0');
    assert.equal(redactUrl('rediss://user:s3cret@h:6380'), 'rediss://user:***@h:6380');
    assert.equal(redactUrl('user:s3cret@h:6379'), 'user:***@h:6379');
    assert.equal(redactUrl('zk-1:2181,zk-2:2181/chroot'), 'zk-1:2181,zk-2:2181/chroot');
  });
});
