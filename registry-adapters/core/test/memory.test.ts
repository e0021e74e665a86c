// MemoryRegistry beyond the shared suite: changes during an outage, reconnect reconciliation, session expiry.

import { strict as assert } from 'node:assert';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  MemoryRegistry,
  MemoryRegistryStore,
  formatProviderUrl,
  type ConnectionState,
  type ProviderUrl,
} from '../src/index';

const SERVICE = 'com.example.Echo:1.0';
const P1 = 'bolt://198.18.0.1:12200?interface=com.example.Echo&uniqueId=&weight=100';
const P2 = 'bolt://198.18.0.2:12200?interface=com.example.Echo&uniqueId=&weight=50';

/** Lets queued store notifications run. */
const settle = () => sleep(5);

function recorder(): { pushes: string[][]; listener: (urls: ProviderUrl[]) => void } {
  const pushes: string[][] = [];
  return { pushes, listener: (urls) => pushes.push(urls.map(formatProviderUrl)) };
}

describe('MemoryRegistry', () => {
  let store: MemoryRegistryStore;
  let a: MemoryRegistry;
  let b: MemoryRegistry;
  beforeEach(() => {
    store = new MemoryRegistryStore();
    a = new MemoryRegistry(store);
    b = new MemoryRegistry(store);
  });
  afterEach(async () => {
    await a.close();
    await b.close();
  });

  it('a subscriber in an outage hears nothing, then exactly the current list once on reconnect', async () => {
    const rec = recorder();
    const states: ConnectionState[] = [];
    b.onStateChange((s) => states.push(s));
    await a.publish(SERVICE, P1);
    await b.subscribe(SERVICE, rec.listener);
    b.setConnected(false);
    await a.unpublish(SERVICE, P1);
    await settle();
    await a.publish(SERVICE, P2);
    await settle();
    assert.deepEqual(rec.pushes, [[P1]], 'nothing, and above all no empty list, during the outage');
    b.setConnected(true);
    await settle();
    assert.deepEqual(rec.pushes, [[P1], [P2]]);
    assert.deepEqual(states, ['disconnected', 'connected']);
    assert.equal(b.state, 'connected');
  });

  it('a reconnect that finds the same list pushes nothing', async () => {
    const rec = recorder();
    await a.publish(SERVICE, P1);
    await b.subscribe(SERVICE, rec.listener);
    b.setConnected(false);
    b.setConnected(true);
    await settle();
    assert.deepEqual(rec.pushes, [[P1]]);
  });

  it('a publisher in an outage publishes and unpublishes on reconnect', async () => {
    const rec = recorder();
    await a.publish(SERVICE, P1);
    await b.subscribe(SERVICE, rec.listener);
    a.setConnected(false);
    await a.unpublish(SERVICE, P1);
    await a.publish(SERVICE, P2);
    await settle();
    assert.deepEqual(store.list(SERVICE), [P1], 'the registry still holds what it had');
    a.setConnected(true);
    await settle();
    assert.deepEqual(store.list(SERVICE), [P2]);
    assert.deepEqual(rec.pushes.at(-1), [P2]);
  });

  it('a session expiry deletes the providers upstream, and the reconnect publishes them again', async () => {
    const rec = recorder();
    const states: ConnectionState[] = [];
    a.onStateChange((s) => states.push(s));
    await a.publish(SERVICE, P1);
    await b.subscribe(SERVICE, rec.listener);
    a.expireSession();
    await settle();
    // The registry deleted them: that is an explicit deletion, so the other side does see an empty list.
    assert.deepEqual(rec.pushes, [[P1], []]);
    a.setConnected(true);
    await settle();
    assert.deepEqual(rec.pushes, [[P1], [], [P1]]);
    assert.deepEqual(states, ['expired', 'connected']);
  });

  it('publications are ephemeral: close() withdraws them, unless another adapter also publishes the URL', async () => {
    await a.publish(SERVICE, P1);
    await b.publish(SERVICE, P1);
    await a.publish(SERVICE, P2);
    await a.close();
    assert.deepEqual(store.list(SERVICE), [P1]);
    assert.throws(() => a.setConnected(false), { code: 'MESHPORT_REGISTRY_CLOSED' });
  });

  it('a throwing listener does not keep the others from hearing', async () => {
    const rec = recorder();
    await b.subscribe(SERVICE, () => {
      throw new Error('listener bug');
    });
    await b.subscribe(SERVICE, rec.listener);
    await a.publish(SERVICE, P1);
    await settle();
    assert.deepEqual(rec.pushes, [[], [P1]]);
  });
});
