// The sidecar with `hijack` says at start when it runs under a uid the hijack rules do not exclude (a capture loop).

import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePorts } from '@meshport/testkit';
import pino from 'pino';
import { loadConfig } from '../src/config';
import { Sidecar } from '../src/sidecar';

describe('sidecar with hijack: the uid it runs as', function () {
  this.timeout(30_000);
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-hijack-uid-'));
    writeFileSync(path.join(dir, 'registry.json'), '{ "services": {} }');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  async function startWith(uid: number): Promise<{ msg: string; [key: string]: unknown }[]> {
    const file = path.join(dir, 'meshport.yaml');
    // Ports nothing listens on (the capture ports cannot be 0).
    const [outboundCapture, inboundCapture] = await freePorts(2);
    writeFileSync(
      file,
      [
        'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
        'admin: "127.0.0.1:0"',
        `hijack: { mode: redirect, outboundCapturePort: ${outboundCapture}, inboundCapturePort: ${inboundCapture}, uid: ${uid} }`,
        'registries:',
        '  - { name: static, type: file, upstream: registry.json }',
      ].join('\n') + '\n',
    );
    const logs: { msg: string; [key: string]: unknown }[] = [];
    const logger = pino(
      { level: 'info' },
      { write: (line: string) => void logs.push(JSON.parse(line) as (typeof logs)[number]) },
    );
    const sidecar = new Sidecar(await loadConfig(file), { logger });
    await sidecar.start();
    await sidecar.stop(0);
    return logs;
  }

  it('warns when it runs as another uid than hijack.uid, naming both', async function () {
    const uid = process.getuid?.();
    if (uid === undefined) this.skip();
    const other = uid === 1337 ? 1338 : 1337;
    const warned = (await startWith(other)).filter((l) => /not hijack\.uid/.test(l.msg));
    assert.equal(warned.length, 1, 'one warning');
    assert.equal(warned[0]!.uid, uid);
    assert.equal(warned[0]!.hijackUid, other);
    assert.match(warned[0]!.msg, new RegExp(`runs as uid ${uid}, not hijack\\.uid ${other}: .*\\(a loop\\)`));
  });

  it('says nothing when it runs as hijack.uid', async function () {
    const uid = process.getuid?.();
    if (uid === undefined) this.skip();
    assert.deepEqual(
      (await startWith(uid)).filter((l) => /hijack\.uid/.test(l.msg)),
      [],
    );
  });
});
