// The registry plugin example in docs/examples/registry-plugin-dir, loaded by path as the sidecar would load it: the
// shared conformance suite, its files on disk, hand-dropped files, and a root directory that goes away.

import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  describeRegistryConformance,
  formatProviderUrl,
  type ConnectionState,
  type ProviderUrl,
  type RegistryAdapter,
  type RegistryPlugin,
} from '@meshport/registry-core';
import { connected, eventually } from '@meshport/testkit';
import { startSidecar, stopSidecars } from './support/sidecars';

// From test/dist at run time: the example is plain JavaScript that tsc does not copy.
const plugin: RegistryPlugin = require(path.resolve(__dirname, '../../docs/examples/registry-plugin-dir'));

const ECHO = 'com.example.Echo:1.0';
const GREETER = 'org.example.Greeter:2.0';
const P1 = 'bolt://198.18.0.1:12200?interface=com.example.Echo&uniqueId=&weight=100';
const P2 = 'bolt://198.18.0.2:12200?interface=com.example.Echo&uniqueId=&weight=50';
const G1 = 'dubbo://198.18.0.3:20880/org.example.Greeter?interface=org.example.Greeter&version=2.0';
const POLL_MS = 20;

const sha1 = (text: string) => createHash('sha1').update(text).digest('hex');
const quiet = { warn: () => {} };

/** Every temp root made here; the last test checks that each one was removed. */
const tempRoots: string[] = [];

async function tempRoot(): Promise<string> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'meshport-registry-dir-'));
  tempRoots.push(root);
  return root;
}

async function removeRoot(root: string): Promise<void> {
  await rm(root, { recursive: true, force: true });
  await rm(`${root}.away`, { recursive: true, force: true });
}

async function create(root: string, options: Record<string, unknown> = { pollMs: POLL_MS }): Promise<RegistryAdapter> {
  return plugin.createRegistryAdapter({ name: 'dir', upstream: root, options, logger: quiet });
}

/** The service directory name the example uses; spelled out here so a change of layout is a visible test change. */
const serviceDir = (service: string) => encodeURIComponent(service);

class Recorder {
  readonly pushes: string[][] = [];
  readonly listener = (urls: ProviderUrl[]) => void this.pushes.push(urls.map(formatProviderUrl));

  last(): string[] {
    assert.ok(this.pushes.length > 0, 'nothing was pushed');
    return this.pushes.at(-1)!;
  }

  async until(expected: string[]): Promise<void> {
    const want = JSON.stringify([...expected].sort());
    const got = () => JSON.stringify([...(this.pushes.at(-1) ?? ['nothing yet'])].sort());
    await eventually(`the list ${want}`, async () => (got() === want ? true : undefined), 5000).catch(() =>
      assert.fail(`expected ${want}; pushes ${JSON.stringify(this.pushes)}`),
    );
  }

  assertNeverEmptyAfterFirst(): void {
    assert.ok(
      !this.pushes.some((list, i) => i > 0 && list.length === 0),
      `an empty list was pushed: ${JSON.stringify(this.pushes)}`,
    );
  }
}

describe('docs/examples/registry-plugin-dir', () => {
  describeRegistryConformance('the directory registry example (two adapters on one root)', async () => {
    const root = await tempRoot();
    const a = await create(root);
    const b = await create(root);
    return {
      a,
      b,
      // A volume unmounted and mounted again, files intact: the root is renamed away and back.
      outage: {
        begin: () => rename(root, `${root}.away`),
        end: async () => {
          await rename(`${root}.away`, root);
          await connected(a);
          await connected(b);
        },
      },
      settleMs: 250,
      cleanup: () => removeRoot(root),
    };
  });

  describe('beyond the conformance suite', () => {
    let root: string;
    let a: RegistryAdapter;
    let b: RegistryAdapter;

    beforeEach(async () => {
      root = await tempRoot();
      a = await create(root);
      b = await create(root);
    });
    afterEach(async () => {
      await a.close();
      await b.close();
      await removeRoot(root);
    });

    it('writes one file per provider, named by the sha1 of the URL and holding the URL, and no temp file', async () => {
      await a.publish(ECHO, P1);
      await a.publish(ECHO, P1);
      await b.publish(ECHO, P2);
      await a.publish(GREETER, G1);
      assert.deepEqual((await readdir(root)).sort(), [serviceDir(ECHO), serviceDir(GREETER)].sort());
      assert.deepEqual(
        (await readdir(path.join(root, serviceDir(ECHO)))).sort(),
        [`${sha1(P1)}.url`, `${sha1(P2)}.url`].sort(),
      );
      assert.equal(await readFile(path.join(root, serviceDir(ECHO), `${sha1(P1)}.url`), 'utf8'), P1);
      assert.equal(await readFile(path.join(root, serviceDir(GREETER), `${sha1(G1)}.url`), 'utf8'), G1);
      await a.unpublish(ECHO, P1);
      assert.deepEqual(await readdir(path.join(root, serviceDir(ECHO))), [`${sha1(P2)}.url`]);
      // Only its own: a's unpublish of b's provider is a no-op.
      await a.unpublish(ECHO, P2);
      assert.deepEqual(await readdir(path.join(root, serviceDir(ECHO))), [`${sha1(P2)}.url`]);
    });

    it('a file dropped in by hand reaches subscribers, and removing it withdraws the provider', async () => {
      const log = new Recorder();
      await b.subscribe(ECHO, log.listener);
      assert.deepEqual(log.pushes, [[]]);
      await a.publish(ECHO, P1);
      await log.until([P1]);
      // Any name ending in .url, a trailing newline as `echo` writes it, written aside and moved in as an operator would.
      await writeFile(path.join(root, 'by-hand.tmp'), `${P2}\n`);
      await rename(path.join(root, 'by-hand.tmp'), path.join(root, serviceDir(ECHO), 'by-hand.url'));
      await log.until([P1, P2]);
      await rm(path.join(root, serviceDir(ECHO), 'by-hand.url'));
      await log.until([P1]);
      log.assertNeverEmptyAfterFirst();
    });

    it('a file that is not a provider URL keeps the last list instead of shrinking it', async () => {
      const log = new Recorder();
      await a.publish(ECHO, P1);
      await b.subscribe(ECHO, log.listener);
      await writeFile(path.join(root, serviceDir(ECHO), 'broken.url'), 'not a url');
      await sleep(5 * POLL_MS);
      assert.deepEqual(log.pushes, [[P1]]);
      await writeFile(path.join(root, serviceDir(ECHO), 'broken.url'), P2);
      await log.until([P1, P2]);
    });

    it('a root that becomes unreadable keeps the lists, reports disconnected, and remembers publishes and unpublishes', async () => {
      const log = new Recorder();
      await b.subscribe(ECHO, log.listener);
      // After subscribe, which waits for the first poll: from here on every change is the outage's.
      const states: ConnectionState[] = [];
      b.onStateChange((s) => states.push(s));
      await a.publish(ECHO, P1);
      await a.publish(ECHO, P2);
      await log.until([P1, P2]);
      assert.equal(b.state, 'connected');

      // Running as root, chmod 000 does not stop reads; a plain file where the directory was does.
      await rename(root, `${root}.away`);
      await writeFile(root, 'not a directory');
      await eventually('b to disconnect', async () => (b.state === 'disconnected' ? true : undefined));
      await eventually('a to disconnect', async () => (a.state === 'disconnected' ? true : undefined));
      await a.unpublish(ECHO, P1);
      await a.publish(GREETER, G1);
      const seen = log.pushes.length;
      await sleep(10 * POLL_MS);
      assert.equal(log.pushes.length, seen, `pushed during the outage: ${JSON.stringify(log.pushes.slice(seen))}`);
      assert.deepEqual([...log.last()].sort(), [P1, P2].sort());

      await rm(root);
      await rename(`${root}.away`, root);
      await connected(a);
      await connected(b);
      assert.deepEqual(states, ['disconnected', 'connected']);
      await log.until([P2]);
      log.assertNeverEmptyAfterFirst();
      assert.equal(await readFile(path.join(root, serviceDir(GREETER), `${sha1(G1)}.url`), 'utf8'), G1);
      assert.ok(
        !existsSync(path.join(root, serviceDir(ECHO), `${sha1(P1)}.url`)),
        'the unpublish during the outage was lost',
      );
    });

    it('a root that comes back empty gets every published file re-written, and no subscriber sees an empty list', async () => {
      const log = new Recorder();
      await b.subscribe(ECHO, log.listener);
      // b publishes nothing of its own here, so until a has re-written its files b would read an empty directory.
      await a.publish(ECHO, P1);
      await a.publish(ECHO, P2);
      await log.until([P1, P2]);
      // A shared volume mounted afresh: the old tree is gone for good.
      await rename(root, `${root}.away`);
      await eventually('b to disconnect', async () => (b.state === 'disconnected' ? true : undefined));
      await mkdir(root);
      await connected(a);
      await connected(b);
      await eventually('both files back', async () =>
        (await readdir(path.join(root, serviceDir(ECHO))).catch(() => [])).length === 2 ? true : undefined,
      );
      assert.equal(await readFile(path.join(root, serviceDir(ECHO), `${sha1(P1)}.url`), 'utf8'), P1);
      await sleep(10 * POLL_MS);
      await log.until([P1, P2]);
      log.assertNeverEmptyAfterFirst();
    });

    it('rejects a config without a root directory or with a bad pollMs', () => {
      assert.throws(
        () => plugin.createRegistryAdapter({ name: 'dir', upstream: undefined, options: {}, logger: quiet }),
        /upstream/,
      );
      for (const pollMs of [0, -1, '200', Number.NaN]) {
        assert.throws(
          () => plugin.createRegistryAdapter({ name: 'dir', upstream: root, options: { pollMs }, logger: quiet }),
          /pollMs/,
        );
      }
    });
  });

  // A hook, not a test: mocha runs a block's own tests before its nested blocks.
  after('every temp root made here was removed', () => {
    assert.ok(tempRoots.length > 0);
    for (const root of tempRoots) {
      assert.ok(!existsSync(root), `${root} is still there`);
      assert.ok(!existsSync(`${root}.away`), `${root}.away is still there`);
    }
  });
});

describe('the example plugin loaded by a sidecar from its config', function () {
  this.timeout(20_000);
  after(() => stopSidecars());

  it('routes a service the plugin lists, by the path the config names', async () => {
    const root = await tempRoot();
    const sidecar = await startSidecar(
      [
        'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
        'admin: "127.0.0.1:0"',
        'registries:',
        `  - { name: dir, type: "${path.resolve(__dirname, '../../docs/examples/registry-plugin-dir')}", upstream: "${root}", services: ["${ECHO}"], options: { pollMs: ${POLL_MS} } }`,
      ].join('\n'),
    );
    const publisher = await create(root);
    try {
      await publisher.publish(ECHO, P2);
      await eventually('the sidecar to route the plugin provider', async () =>
        sidecar.book.table.outbound(ECHO)?.endpoints.some((e) => e.host === '198.18.0.2' && e.weight === 50)
          ? true
          : undefined,
      );
    } finally {
      await publisher.close();
      await removeRoot(root);
    }
  });
});
