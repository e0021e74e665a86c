// FileRegistry beyond the shared suite: editors that replace or truncate the file, bad files, deletions, writes.

import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, readdir, rename, rm, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FileRegistry, formatProviderUrl, routeKeyOf, type ConnectionState, type ProviderUrl } from '../src/index';

const ECHO = 'com.example.Echo:1.0';
const GREETER = 'org.example.Greeter:2.0';
const P1 = 'bolt://198.18.0.1:12200?interface=com.example.Echo&uniqueId=&weight=100';
const P2 = 'bolt://198.18.0.2:12200?interface=com.example.Echo&uniqueId=&weight=50';
const G1 = 'dubbo://198.18.0.3:20880/org.example.Greeter?interface=org.example.Greeter&version=2.0';

class Recorder {
  readonly pushes: string[][] = [];
  readonly listener = (urls: ProviderUrl[]) => void this.pushes.push(urls.map(formatProviderUrl));

  async until(expected: string[], timeoutMs = 3000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (JSON.stringify(this.pushes.at(-1)) !== JSON.stringify(expected)) {
      if (Date.now() > deadline)
        assert.fail(`expected ${JSON.stringify(expected)}; pushes ${JSON.stringify(this.pushes)}`);
      await sleep(10);
    }
  }
}

/** Longer than the debounce plus fs.watch latency: "nothing happened" is asserted after this. */
const SETTLE_MS = 250;

describe('FileRegistry', () => {
  let dir: string;
  let file: string;
  let registry: FileRegistry;
  let warnings: string[];
  let details: object[];

  const writeRegistry = (services: Record<string, string[]>, extra: object = {}) =>
    writeFile(file, JSON.stringify({ ...extra, services }, null, 2));

  /** What vim and many tools do: write a new file beside it, rename it over the old one. */
  async function replaceRegistry(services: Record<string, string[]>): Promise<void> {
    await writeFile(`${file}.swp`, JSON.stringify({ services }));
    await rename(`${file}.swp`, file);
  }

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'meshport-file-registry-'));
    file = path.join(dir, 'registry.json');
    warnings = [];
    details = [];
    registry = new FileRegistry({
      path: file,
      debounceMs: 20,
      logger: {
        warn: (detail, message) => {
          warnings.push(message);
          details.push(detail);
        },
      },
    });
  });
  afterEach(async () => {
    await registry.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('reads the file an operator wrote and follows in-place edits', async () => {
    await writeRegistry({ [ECHO]: [P1] });
    const rec = new Recorder();
    await registry.subscribe(ECHO, rec.listener);
    assert.deepEqual(rec.pushes, [[P1]]);
    assert.equal(registry.state, 'connected');
    await writeRegistry({ [ECHO]: [P1, P2] });
    await rec.until([P1, P2]);
  });

  it('follows an editor that replaces the file by rename, again and again', async () => {
    await writeRegistry({ [ECHO]: [P1] });
    const rec = new Recorder();
    await registry.subscribe(ECHO, rec.listener);
    await replaceRegistry({ [ECHO]: [P2] });
    await rec.until([P2]);
    await replaceRegistry({ [ECHO]: [P1, P2] });
    await rec.until([P1, P2]);
  });

  it('keeps the last known lists through invalid JSON, a wrong shape, a bad URL and a missing file', async () => {
    await writeRegistry({ [ECHO]: [P1, P2] });
    const rec = new Recorder();
    const states: ConnectionState[] = [];
    registry.onStateChange((s) => states.push(s));
    await registry.subscribe(ECHO, rec.listener);
    for (const broken of [
      '',
      '{ "services": { "com.example',
      '{ "services": [] }',
      '{ "services": { "x": "bolt://h:1" } }',
      `{ "services": { "${ECHO}": ["not a url"] } }`,
    ]) {
      await writeFile(file, broken);
      await sleep(SETTLE_MS);
      assert.equal(registry.state, 'disconnected', `state for ${JSON.stringify(broken)}`);
    }
    await unlink(file);
    await sleep(SETTLE_MS);
    assert.deepEqual(rec.pushes, [[P1, P2]], 'no push at all, and never an empty one');
    assert.ok(warnings.length >= 5, `a warning per bad file: ${JSON.stringify(warnings)}`);
    // A late subscriber during the outage gets the last known list, not nothing and not an empty one.
    const late = new Recorder();
    await registry.subscribe(ECHO, late.listener);
    assert.deepEqual(late.pushes, [[P1, P2]]);
    await writeRegistry({ [ECHO]: [P2] });
    await rec.until([P2]);
    assert.equal(registry.state, 'connected');
    assert.equal(states.at(-1), 'connected');
  });

  it('empties a list only when its entry is deleted from a valid file, and leaves other services alone', async () => {
    await writeRegistry({ [ECHO]: [P1], [GREETER]: [G1] });
    const echo = new Recorder();
    const greeter = new Recorder();
    await registry.subscribe(ECHO, echo.listener);
    await registry.subscribe(GREETER, greeter.listener);
    await writeRegistry({ [GREETER]: [G1] });
    await echo.until([]);
    await sleep(SETTLE_MS);
    assert.deepEqual(greeter.pushes, [[G1]], 'an unchanged list is not pushed again');
  });

  it('publishes atomically, keeps what else the file holds, and leaves no temp file behind', async () => {
    await writeRegistry(
      { [GREETER]: ['dubbo://198.18.0.3:20880/org.example.Greeter?a=1&&b=2'] },
      { comment: 'owned by ops' },
    );
    await registry.publish(ECHO, P1);
    await registry.publish(ECHO, P2);
    await registry.unpublish(ECHO, P1);
    const doc = JSON.parse(await readFile(file, 'utf8'));
    assert.deepEqual(doc, {
      comment: 'owned by ops',
      services: { [GREETER]: ['dubbo://198.18.0.3:20880/org.example.Greeter?a=1&&b=2'], [ECHO]: [P2] },
    });
    await registry.unpublish(ECHO, P2);
    assert.equal(
      JSON.parse(await readFile(file, 'utf8')).services[ECHO],
      undefined,
      'the last unpublish removes the entry',
    );
    assert.deepEqual(await readdir(dir), ['registry.json']);
  });

  it('refuses to publish into an invalid file rather than overwrite it', async () => {
    await writeFile(file, '{ not json');
    await assert.rejects(registry.publish(ECHO, P1), { code: 'MESHPORT_REGISTRY_FILE_INVALID' });
    assert.equal(await readFile(file, 'utf8'), '{ not json');
  });

  it('loses no publish when two registries on one file publish at once', async () => {
    const other = new FileRegistry({ path: file, logger: { warn: () => {} } });
    try {
      const urls = Array.from({ length: 10 }, (_, i) => `bolt://198.18.0.${i + 1}:12200?weight=${i}`);
      await Promise.all(urls.map((u, i) => (i % 2 ? registry : other).publish(ECHO, u)));
      const listed: string[] = JSON.parse(await readFile(file, 'utf8')).services[ECHO];
      assert.deepEqual([...listed].sort(), [...urls].sort());
    } finally {
      await other.close();
    }
  });

  it('starts from nothing when the file does not exist yet', async () => {
    const rec = new Recorder();
    await registry.subscribe(ECHO, rec.listener);
    assert.deepEqual(rec.pushes, [[]]);
    await writeRegistry({ [ECHO]: [P1] });
    await rec.until([P1]);
  });

  it('logs a throwing listener and still tells the others', async () => {
    await writeRegistry({ [ECHO]: [P1] });
    await registry.subscribe(ECHO, () => {
      throw new Error('listener bug');
    });
    const rec = new Recorder();
    await registry.subscribe(ECHO, rec.listener);
    await writeRegistry({ [ECHO]: [P2] });
    await rec.until([P2]);
    assert.ok(warnings.includes('a providers listener threw'));
  });

  it('serves the documented entry that names no interface as a provider of the key it is filed under', async () => {
    // docs/sidecar.md: `10.0.0.7:12200?weight=50` under `com.example.Echo:1.0`.
    await writeRegistry({
      [ECHO]: ['10.0.0.7:12200?weight=50'],
      'g1/org.example.Greeter:2.0': ['dubbo://198.18.0.3:20880?side=provider'],
    });
    const echo: ProviderUrl[][] = [];
    const greeter: ProviderUrl[][] = [];
    await registry.subscribe(ECHO, (urls) => void echo.push(urls));
    await registry.subscribe('g1/org.example.Greeter:2.0', (urls) => void greeter.push(urls));
    assert.deepEqual(echo.at(-1)!.map(formatProviderUrl), [
      '10.0.0.7:12200?weight=50&interface=com.example.Echo&version=1.0',
    ]);
    assert.deepEqual(echo.at(-1)!.map(routeKeyOf), [ECHO]);
    assert.deepEqual(greeter.at(-1)!.map(routeKeyOf), ['g1/org.example.Greeter:2.0']);
    assert.ok(!warnings.includes('registry file entry ignored'), `nothing ignored: ${JSON.stringify(warnings)}`);
  });

  it('logs every entry it leaves out once, with its text and the reason', async () => {
    const services = { ':': ['198.18.0.9:12200?weight=1'], [ECHO]: [P1, P1] };
    await writeRegistry(services);
    const rec = new Recorder();
    await registry.subscribe(ECHO, rec.listener);
    assert.deepEqual(rec.pushes, [[P1]]);
    await writeRegistry(services, { touched: 1 });
    await sleep(SETTLE_MS);
    const ignored = details.filter((_d, i) => warnings[i] === 'registry file entry ignored') as {
      service: string;
      entry: string;
      reason: string;
    }[];
    assert.deepEqual(
      ignored.map((d) => [d.service, d.entry]),
      [
        [':', '198.18.0.9:12200?weight=1'],
        [ECHO, P1],
      ],
      `once each, across two reads: ${JSON.stringify(ignored)}`,
    );
    assert.match(ignored[0]!.reason, /names no interface/);
    assert.match(ignored[1]!.reason, /listed twice/);
  });

  it('warns when the file does not exist, without waiting for a subscriber', async () => {
    await sleep(SETTLE_MS);
    assert.deepEqual(warnings, ['registry file does not exist: no providers until it is created']);
    assert.equal((details[0] as { file: string }).file, file);
    await writeRegistry({ [ECHO]: [P1] });
    const rec = new Recorder();
    await registry.subscribe(ECHO, rec.listener);
    await rec.until([P1]);
    assert.equal(warnings.length, 1, 'said once');
  });
});
