// The route book and the sidecar's Takeover: what the app publishes and reads against what the router routes.

import { strict as assert } from 'node:assert';
import { setTimeout as sleep } from 'node:timers/promises';
import { formatProviderUrl, parseProviderUrl } from '@meshport/registry-core';
import { RouteBook, SidecarTakeover } from '../src/routes';

const INBOUND = { host: '10.0.0.5', port: 12201 };
const OUTBOUND = { host: '127.0.0.1', port: 12220 };
const bolt = (host: string, port: number, extra = '') =>
  parseProviderUrl(`bolt://${host}:${port}?interface=com.example.Echo&version=1.0&weight=50${extra}`);

describe('sidecar routes', () => {
  it('the app publishes at the sidecar inbound address; the app address becomes the inbound route', async () => {
    const book = new RouteBook({ emptyGraceMs: 10 });
    const takeover = new SidecarTakeover(book, 'zk', INBOUND, OUTBOUND);
    const upstream = takeover.providerPublished(bolt('192.168.1.9', 12200, '&appName=echo'));
    assert.equal(
      formatProviderUrl(upstream),
      'bolt://10.0.0.5:12201?interface=com.example.Echo&version=1.0&weight=50&appName=echo',
    );
    assert.deepEqual(book.table.inbound('com.example.Echo:1.0'), { host: '192.168.1.9', port: 12200 });
    const withdrawn = takeover.providerWithdrawn(bolt('192.168.1.9', 12200, '&appName=echo'));
    assert.equal(formatProviderUrl(withdrawn), formatProviderUrl(upstream));
    assert.ok(book.table.inbound('com.example.Echo:1.0'), 'kept through the grace');
    await sleep(30);
    assert.equal(book.table.inbound('com.example.Echo:1.0'), undefined);
  });

  it('one URL per identity is handed out; identities reported per service by one registry each keep their route', async () => {
    const book = new RouteBook({ emptyGraceMs: 10 });
    const takeover = new SidecarTakeover(book, 'file', INBOUND, OUTBOUND);
    const v2 = parseProviderUrl('bolt://10.0.0.9:12201?interface=com.example.Echo&version=2.0');
    const blue = parseProviderUrl('bolt://10.0.0.6:12201?interface=com.example.Echo&version=1.0&uniqueId=blue');
    const seen = takeover.providersRead('com.example.Echo', [
      bolt('10.0.0.7', 12201),
      v2,
      bolt('10.0.0.8', 12201),
      blue,
    ]);
    assert.deepEqual(seen.map(formatProviderUrl), [
      'bolt://127.0.0.1:12220?interface=com.example.Echo&version=1.0&weight=50',
      'bolt://127.0.0.1:12220?interface=com.example.Echo&version=2.0',
      'bolt://127.0.0.1:12220?interface=com.example.Echo&version=1.0&uniqueId=blue',
    ]);
    assert.deepEqual(Object.keys(book.snapshot().outbound).sort(), [
      'com.example.Echo:1.0',
      'com.example.Echo:1.0:blue',
      'com.example.Echo:2.0',
    ]);
    // A registry that answers per service (a file registry, SOFA Registry) reports each service on its own: the
    // second answer must not replace the first.
    const perService = new RouteBook({ emptyGraceMs: 10 });
    const file = new SidecarTakeover(perService, 'file', INBOUND, OUTBOUND);
    file.providersRead('com.example.Echo:1.0', [bolt('10.0.0.7', 12201)]);
    file.providersRead('com.example.Echo:2.0', [v2]);
    await sleep(30);
    assert.deepEqual(Object.keys(perService.snapshot().outbound).sort(), [
      'com.example.Echo:1.0',
      'com.example.Echo:2.0',
    ]);
  });

  it('the app reads one outbound endpoint; the real ones become the outbound route, with weights', async () => {
    const book = new RouteBook({ emptyGraceMs: 10 });
    const takeover = new SidecarTakeover(book, 'zk', INBOUND, OUTBOUND);
    const seen = takeover.providersRead('com.example.Echo', [bolt('10.0.0.7', 12201), bolt('10.0.0.8', 12201)]);
    assert.deepEqual(seen.map(formatProviderUrl), [
      'bolt://127.0.0.1:12220?interface=com.example.Echo&version=1.0&weight=50',
    ]);
    assert.deepEqual(book.table.outbound('com.example.Echo:1.0')?.endpoints, [
      { host: '10.0.0.7', port: 12201, weight: 50 },
      { host: '10.0.0.8', port: 12201, weight: 50 },
    ]);
    // An explicit empty answer: the app is told at once (an empty list, not the outbound port); the route goes once
    // the grace for a delete-then-create re-registration has passed.
    assert.deepEqual(takeover.providersRead('com.example.Echo', []), []);
    assert.ok(book.table.outbound('com.example.Echo:1.0'));
    await sleep(30);
    assert.equal(book.table.outbound('com.example.Echo:1.0'), undefined);
  });

  it('a provider that comes back within the grace keeps its route without a gap', async () => {
    const book = new RouteBook({ emptyGraceMs: 20 });
    const takeover = new SidecarTakeover(book, 'zk', INBOUND, OUTBOUND);
    takeover.providersRead('com.example.Echo', [bolt('10.0.0.7', 12201)]);
    let deleted = false;
    book.table.onChange(() => (deleted ||= book.table.outbound('com.example.Echo:1.0') === undefined));
    takeover.providersRead('com.example.Echo', []);
    takeover.providersRead('com.example.Echo', [bolt('10.0.0.7', 12201)]);
    await sleep(40);
    assert.equal(deleted, false);
    assert.deepEqual(
      book.table.outbound('com.example.Echo:1.0')?.endpoints.map((e) => e.host),
      ['10.0.0.7'],
    );
  });

  it('two registries listing one service add up; each one replaces only what it said before', () => {
    const book = new RouteBook();
    const zk = new SidecarTakeover(book, 'zk', INBOUND, OUTBOUND);
    const redis = new SidecarTakeover(book, 'redis', INBOUND, OUTBOUND);
    let changes = 0;
    book.table.onChange(() => changes++);
    zk.providersRead('com.example.Echo', [bolt('10.0.0.7', 12201)]);
    redis.providersRead('com.example.Echo', [bolt('10.0.0.8', 12201), bolt('10.0.0.7', 12201)]);
    assert.deepEqual(
      book.table.outbound('com.example.Echo:1.0')?.endpoints.map((e) => e.host),
      ['10.0.0.7', '10.0.0.8'],
    );
    zk.providersRead('com.example.Echo', []);
    assert.deepEqual(
      book.table.outbound('com.example.Echo:1.0')?.endpoints.map((e) => e.host),
      ['10.0.0.8', '10.0.0.7'],
    );
    book.close();
    const before = changes;
    redis.providersRead('com.example.Echo', [bolt('10.0.0.8', 12201), bolt('10.0.0.7', 12201)]);
    assert.equal(changes, before, 'the same list again changes nothing');
  });

  it('keys Dubbo providers as Dubbo calls carry them, and separates uniqueIds for Bolt', () => {
    const book = new RouteBook();
    const takeover = new SidecarTakeover(book, 'zk', INBOUND, OUTBOUND);
    takeover.providersRead('com.example.Echo', [
      parseProviderUrl('dubbo://10.0.0.7:20880/com.example.Echo?version=2.0'),
      bolt('10.0.0.8', 12201, '&uniqueId=blue'),
    ]);
    assert.deepEqual(Object.keys(book.snapshot().outbound).sort(), [
      'com.example.Echo:1.0:blue',
      'com.example.Echo:2.0',
    ]);
  });

  it('never routes a service to the sidecar itself when the app publishes an address it was handed', () => {
    const book = new RouteBook();
    const takeover = new SidecarTakeover(book, 'zk', INBOUND, OUTBOUND);
    takeover.providerPublished(bolt('127.0.0.1', 12220));
    assert.equal(book.table.inbound('com.example.Echo:1.0'), undefined);
  });

  it('a closed registry takes the inbound routes its apps published through it, after the grace, and says so', async () => {
    const lines: { msg: string; fields: Record<string, unknown> }[] = [];
    const book = new RouteBook({
      emptyGraceMs: 10,
      info: (fields, msg) => void lines.push({ msg, fields: fields as Record<string, unknown> }),
    });
    new SidecarTakeover(book, 'mesh', INBOUND, OUTBOUND).providerPublished(bolt('127.0.0.1', 12200));
    new SidecarTakeover(book, 'zk', INBOUND, OUTBOUND).providerPublished(
      parseProviderUrl('bolt://127.0.0.1:12300?interface=com.example.Other&version=1.0'),
    );
    book.forget('mesh');
    assert.ok(book.table.inbound('com.example.Echo:1.0'), 'kept through the grace');
    await sleep(30);
    assert.equal(book.table.inbound('com.example.Echo:1.0'), undefined, 'gone with its registry');
    assert.deepEqual(
      book.table.inbound('com.example.Other:1.0'),
      { host: '127.0.0.1', port: 12300 },
      "another registry's route stays",
    );
    const said = lines.find((l) => l.msg === 'registry closed: the inbound routes its apps published through it go');
    assert.deepEqual(said?.fields.services, ['com.example.Echo:1.0']);
    assert.equal(said?.fields.registry, 'mesh');
    book.close();
  });

  it('an inbound route published through two registries stays until both withdraw it', async () => {
    const book = new RouteBook({ emptyGraceMs: 10 });
    new SidecarTakeover(book, 'zk', INBOUND, OUTBOUND).providerPublished(bolt('127.0.0.1', 12200));
    new SidecarTakeover(book, 'mesh', INBOUND, OUTBOUND).providerPublished(bolt('127.0.0.1', 12200));
    book.forget('mesh');
    await sleep(30);
    assert.deepEqual(book.table.inbound('com.example.Echo:1.0'), { host: '127.0.0.1', port: 12200 });
    book.forget('zk');
    await sleep(30);
    assert.equal(book.table.inbound('com.example.Echo:1.0'), undefined);
  });

  it('logs each route change with its endpoints and registry, at most once per interval per route', async () => {
    const lines: { msg: string; fields: Record<string, unknown> }[] = [];
    const book = new RouteBook({
      emptyGraceMs: 10,
      changeLogIntervalMs: 100,
      info: (fields, msg) => void lines.push({ msg, fields: fields as Record<string, unknown> }),
    });
    const takeover = new SidecarTakeover(book, 'zk', INBOUND, OUTBOUND);
    takeover.providersReported('com.example.Echo', [bolt('198.18.0.7', 12201)]);
    assert.deepEqual(lines, [
      {
        msg: 'route changed',
        fields: {
          direction: 'outbound',
          service: 'com.example.Echo:1.0',
          added: ['198.18.0.7:12201'],
          addedCount: 1,
          removed: [],
          removedCount: 0,
          registries: ['zk'],
        },
      },
    ]);
    // Within the interval: gathered into one line at its end; an endpoint that came and went cancels out.
    takeover.providersReported('com.example.Echo', [bolt('198.18.0.7', 12201), bolt('198.18.0.8', 12201)]);
    takeover.providersReported('com.example.Echo', [bolt('198.18.0.8', 12201), bolt('198.18.0.9', 12201)]);
    takeover.providersReported('com.example.Echo', [bolt('198.18.0.8', 12201)]);
    assert.equal(lines.length, 1);
    await sleep(150);
    assert.deepEqual(lines.slice(1), [
      {
        msg: 'route changed',
        fields: {
          direction: 'outbound',
          service: 'com.example.Echo:1.0',
          added: ['198.18.0.8:12201'],
          addedCount: 1,
          removed: ['198.18.0.7:12201'],
          removedCount: 1,
          registries: ['zk'],
        },
      },
    ]);
    takeover.providerPublished(bolt('127.0.0.1', 12200));
    await sleep(150);
    assert.deepEqual(lines.at(-1)?.fields, {
      direction: 'inbound',
      service: 'com.example.Echo:1.0',
      added: ['127.0.0.1:12200'],
      addedCount: 1,
      removed: [],
      removedCount: 0,
      registries: ['zk'],
    });
    book.close();
  });

  it('logs a 10k-endpoint load as a few summary lines, not a line per endpoint', async function () {
    this.timeout(20_000);
    const lines: { msg: string; fields: Record<string, unknown> }[] = [];
    const started = Date.now();
    const book = new RouteBook({
      info: (fields, msg) => void lines.push({ msg, fields: fields as Record<string, unknown> }),
    });
    const takeover = new SidecarTakeover(book, 'zk', INBOUND, OUTBOUND);
    for (let s = 0; s < 1000; s++) {
      const urls = Array.from({ length: 10 }, (_, e) =>
        parseProviderUrl(
          `bolt://198.18.${Math.floor(s / 100)}.${(s % 100) + 1}:${12200 + e}?interface=com.example.S${s}&version=1.0`,
        ),
      );
      // One provider at a time, as registrations arrive.
      for (let n = 1; n <= urls.length; n++) takeover.providersReported(`com.example.S${s}`, urls.slice(0, n));
    }
    const loadMs = Date.now() - started;
    await sleep(1100);
    // The first change at once, then one summary per second the load lasted.
    assert.ok(
      lines.length <= 2 + Math.ceil(loadMs / 1000),
      `${lines.length} lines in ${loadMs} ms: ${JSON.stringify(lines.slice(0, 3))}`,
    );
    const summary = lines.find((l) => l.msg === 'routes changed');
    assert.ok(summary, 'a summary line');
    const total = lines.reduce((sum, l) => sum + (l.fields.addedCount as number), 0);
    assert.equal(total, 10_000, 'every endpoint counted');
    assert.equal(lines[0]!.msg, 'route changed', 'the first change is logged at once');
    book.close();
  });
});
