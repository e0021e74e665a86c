// The one mocha suite every registry adapter runs, against its in-process double and against the real registry.

import { strict as assert } from 'node:assert';
import type { ProvidersListener, RegistryAdapter } from './adapter';
import { formatProviderUrl } from './url';

// mocha's globals, present when a spec file calls describeRegistryConformance. Declared here with the little this file
// uses, so that the package's sources (loaded by the sidecar too) neither see mocha's types nor load mocha.
declare function describe(title: string, body: () => void): void;
declare function it(
  title: string,
  body: (this: { skip(): never; timeout(ms: number): void }) => Promise<unknown> | undefined,
): void;

/** Two adapters on the same registry, as two sidecars would be, and how to take that registry away for a while. */
export interface RegistryAdapterPair {
  a: RegistryAdapter;
  b: RegistryAdapter;
  /** Makes the registry unreachable for `b` (or for both) and back; the outage test is skipped without it. */
  outage?: { begin(): Promise<void>; end(): Promise<void> };
  /**
   * How long a change may take to reach the other adapter; "nothing arrived" is asserted after waiting this long.
   * @default 300
   */
  settleMs?: number;
  /** Removes whatever the pair made (files, servers); runs after both adapters are closed. */
  cleanup(): Promise<void>;
}

/** Real provider URLs, as sofa-rpc-node, SOFA Registry and Apache Dubbo publish them. */
const SERVICE = 'com.nodejs.test.TestService:1.0';
const SOFA_NODE_URL =
  'bolt://198.18.0.7:12200?startTime=1700000000000&pid=4242&uniqueId=&dynamic=true&appName=demo&timeout=3000' +
  '&serialization=hessian2&weight=100&accepts=100000&language=nodejs&rpcVer=50400&protocol=' +
  '&interface=com.nodejs.test.TestService&version=1.0&group=SOFA';
const SOFA_REGISTRY_DATA =
  '198.18.0.8:12200?rpcVer=50400&serialization=hessian2&weight=50&p=1&v=4.0&_SERIALIZETYPE=hessian2&_WEIGHT=50&app_name=demo';
const DUBBO_SERVICE = 'org.apache.dubbo.demo.DemoService:2.0';
const DUBBO_URL =
  'dubbo://[fd00::7]:20880/org.apache.dubbo.demo.DemoService?anyhost=true&application=demo-provider&deprecated=false' +
  '&dubbo=2.0.2&dynamic=true&generic=false&interface=org.apache.dubbo.demo.DemoService&methods=sayHello%2CsayHelloAsync' +
  '&pid=4243&release=2.7.23&revision=2.0&side=provider&timestamp=1700000000001&version=2.0';

/** Every list pushed to one listener, as URL strings. */
class PushLog {
  readonly pushes: string[][] = [];
  readonly listener: ProvidersListener = (urls) => {
    this.pushes.push(urls.map(formatProviderUrl));
  };

  get last(): string[] | undefined {
    return this.pushes.at(-1);
  }

  /** Waits until the latest push satisfies `ok`; fails naming `what` and the pushes seen. */
  async until(ok: (list: string[]) => boolean, what: string, timeoutMs = 5000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const last = this.last;
      if (last && ok(last)) return last;
      if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; pushes: ${JSON.stringify(this.pushes)}`);
      await sleep(10);
    }
  }

  assertNeverEmptyAfterFirst(): void {
    const i = this.pushes.findIndex((list, n) => n > 0 && list.length === 0);
    assert.equal(i, -1, `an empty list was pushed: ${JSON.stringify(this.pushes)}`);
  }
}

const exactly =
  (...urls: string[]) =>
  (list: string[]) =>
    sameSet(list, urls);

function sameSet(list: string[], urls: string[]): boolean {
  return list.length === urls.length && [...list].sort().every((u, i) => u === [...urls].sort()[i]);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function assertClosedError(p: Promise<unknown>): Promise<void> {
  await assert.rejects(p, (e: { code?: string }) => e.code === 'MESHPORT_REGISTRY_CLOSED');
}

/** Handles that keep a process alive: what close() must give back. */
function liveResources(): string[] {
  return process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap');
}

/**
 * Defines a mocha `describe` block that checks `makeAdapterPair`'s adapters against the RegistryAdapter contract.
 * Each test gets a fresh pair and closes and cleans it up afterwards.
 */
export function describeRegistryConformance(name: string, makeAdapterPair: () => Promise<RegistryAdapterPair>): void {
  describe(`RegistryAdapter conformance: ${name}`, () => {
    async function withPair(body: (pair: RegistryAdapterPair, settleMs: number) => Promise<void>): Promise<void> {
      const pair = await makeAdapterPair();
      try {
        await body(pair, pair.settleMs ?? 300);
      } finally {
        await pair.a.close();
        await pair.b.close();
        await pair.cleanup();
      }
    }

    it('publish on a is seen by a subscriber on b with every parameter intact', () =>
      withPair(async ({ a, b }) => {
        const sofa = new PushLog();
        const dubbo = new PushLog();
        await b.subscribe(SERVICE, sofa.listener);
        await b.subscribe(DUBBO_SERVICE, dubbo.listener);
        await a.publish(SERVICE, SOFA_NODE_URL);
        await a.publish(DUBBO_SERVICE, DUBBO_URL);
        // Byte-equal text: parameter order, `uniqueId=`, `protocol=`, %2C and the IPv6 brackets all survive.
        assert.deepEqual(await sofa.until((l) => l.length > 0, 'the SOFA provider'), [SOFA_NODE_URL]);
        assert.deepEqual(await dubbo.until((l) => l.length > 0, 'the Dubbo provider'), [DUBBO_URL]);
      }));

    it('unpublish removes the provider, and an explicit removal of the last one empties the list', () =>
      withPair(async ({ a, b }) => {
        const log = new PushLog();
        await b.subscribe(SERVICE, log.listener);
        await a.publish(SERVICE, SOFA_NODE_URL);
        await log.until(exactly(SOFA_NODE_URL), 'the provider');
        await a.unpublish(SERVICE, SOFA_NODE_URL);
        await log.until(exactly(), 'the empty list after unpublish');
      }));

    it('lists two providers published from two adapters, and publishing one twice lists it once', () =>
      withPair(async ({ a, b }) => {
        const log = new PushLog();
        await b.subscribe(SERVICE, log.listener);
        await a.publish(SERVICE, SOFA_NODE_URL);
        await b.publish(SERVICE, SOFA_REGISTRY_DATA);
        await a.publish(SERVICE, SOFA_NODE_URL);
        await log.until(exactly(SOFA_NODE_URL, SOFA_REGISTRY_DATA), 'both providers');
        const onA = new PushLog();
        await a.subscribe(SERVICE, onA.listener);
        await onA.until(exactly(SOFA_NODE_URL, SOFA_REGISTRY_DATA), 'both providers, seen from a');
      }));

    it('a subscriber arriving after the publish gets the current list before subscribe resolves', () =>
      withPair(async ({ a, b }) => {
        await a.publish(SERVICE, SOFA_NODE_URL);
        const log = new PushLog();
        await b.subscribe(SERVICE, log.listener);
        assert.deepEqual(log.pushes, [[SOFA_NODE_URL]]);
      }));

    it('unsubscribe stops notifications, and calling it twice is harmless', () =>
      withPair(async ({ a, b }, settleMs) => {
        const log = new PushLog();
        const stay = new PushLog();
        const unsubscribe = await b.subscribe(SERVICE, log.listener);
        await b.subscribe(SERVICE, stay.listener);
        await a.publish(SERVICE, SOFA_NODE_URL);
        await log.until(exactly(SOFA_NODE_URL), 'the provider');
        unsubscribe();
        unsubscribe();
        const seen = log.pushes.length;
        await a.publish(SERVICE, SOFA_REGISTRY_DATA);
        // The other subscriber of the same service still hears, so the silence is the unsubscribe's doing.
        await stay.until(exactly(SOFA_NODE_URL, SOFA_REGISTRY_DATA), 'both providers on the remaining subscriber');
        await sleep(settleMs);
        assert.equal(log.pushes.length, seen, `pushes after unsubscribe: ${JSON.stringify(log.pushes.slice(seen))}`);
      }));

    it('an outage never pushes an empty list, and the list afterwards is right', function () {
      return withPair(async ({ a, b, outage }, settleMs) => {
        if (!outage) return this.skip();
        const log = new PushLog();
        await b.subscribe(SERVICE, log.listener);
        await a.publish(SERVICE, SOFA_NODE_URL);
        await a.publish(SERVICE, SOFA_REGISTRY_DATA);
        await log.until(exactly(SOFA_NODE_URL, SOFA_REGISTRY_DATA), 'both providers');
        await outage.begin();
        await sleep(settleMs);
        log.assertNeverEmptyAfterFirst();
        assert.ok(
          sameSet(log.last!, [SOFA_NODE_URL, SOFA_REGISTRY_DATA]),
          `during the outage: ${JSON.stringify(log.last)}`,
        );
        await outage.end();
        await sleep(settleMs);
        log.assertNeverEmptyAfterFirst();
        assert.ok(
          sameSet(log.last!, [SOFA_NODE_URL, SOFA_REGISTRY_DATA]),
          `after the outage: ${JSON.stringify(log.last)}`,
        );
        // And the subscription is live again, not merely frozen.
        await a.unpublish(SERVICE, SOFA_NODE_URL);
        await log.until(exactly(SOFA_REGISTRY_DATA), 'the remaining provider after the outage');
        log.assertNeverEmptyAfterFirst();
      });
    });

    it('close() stops every listener, rejects further use, is idempotent and leaves no handle behind', async () => {
      // After one turn of the loop, so mocha's own test timer is already counted.
      await sleep(1);
      const before = liveResources();
      let remaining: string[] = [];
      await withPair(async ({ a, b }, settleMs) => {
        const log = new PushLog();
        await b.subscribe(SERVICE, log.listener);
        await a.subscribe(SERVICE, () => {});
        await b.close();
        await b.close();
        await a.publish(SERVICE, SOFA_NODE_URL);
        await sleep(settleMs);
        assert.deepEqual(log.pushes, [[]], 'a closed adapter pushed');
        await assertClosedError(b.publish(SERVICE, SOFA_NODE_URL));
        await assertClosedError(b.unpublish(SERVICE, SOFA_NODE_URL));
        await assertClosedError(b.subscribe(SERVICE, () => {}));
      });
      await sleep(50);
      remaining = liveResources();
      for (const r of before) {
        const i = remaining.indexOf(r);
        if (i >= 0) remaining.splice(i, 1);
      }
      assert.deepEqual(remaining, [], 'handles still open after close() and cleanup()');
    });
  });
}
