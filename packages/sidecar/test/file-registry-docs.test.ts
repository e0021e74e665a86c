// The `file` registry as docs/sidecar.md shows it, through a whole sidecar: the documented entry (a URL that names no
// interface, filed under its service key) reaches an app through a facade too, and a file that is not there is said.

import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { loadConfig } from '../src/config';
import { Sidecar } from '../src/sidecar';

describe('file registry as documented', function () {
  this.timeout(30_000);
  let dir: string;
  let sidecar: Sidecar | undefined;
  let logs: { msg: string; [key: string]: unknown }[];
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-file-docs-'));
    logs = [];
  });
  afterEach(async () => {
    await sidecar?.stop(0);
    sidecar = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  async function start(registries: string[]): Promise<Sidecar> {
    const config = path.join(dir, 'meshport.yaml');
    writeFileSync(
      config,
      [
        'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
        'admin: "127.0.0.1:0"',
        'registries:',
        ...registries,
      ].join('\n') + '\n',
    );
    const logger = pino(
      { level: 'info' },
      { write: (line: string) => void logs.push(JSON.parse(line) as (typeof logs)[number]) },
    );
    sidecar = new Sidecar(await loadConfig(config), { logger });
    await sidecar.start();
    return sidecar;
  }

  it("hands a sofa-rpc app in mesh mode the documented entry's service through a facade over the file", async () => {
    // docs/sidecar.md: `10.0.0.7:12200?weight=50` under `com.example.Echo:1.0`.
    writeFileSync(
      path.join(dir, 'registry.json'),
      JSON.stringify({ services: { 'com.example.Echo:1.0': ['10.0.0.7:12200?weight=50'] } }),
    );
    const running = await start([
      '  - { name: static, type: file, upstream: registry.json, services: ["com.example.Echo:1.0"] }',
      '  - { name: mesh, type: sofa-mesh, via: static, facade: "127.0.0.1:0" }',
    ]);
    const mesh = running.address({ facade: 'mesh' });
    // SubscribeServiceRequest as sofa-rpc's MeshRegistry sends it.
    const reply = await fetch(`http://${mesh.host}:${mesh.port}/services/subscribe`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        serviceName: 'com.example.Echo:1.0',
        protocolType: 'bolt',
        vipEnforce: false,
        vipOnly: false,
        localCloudFirst: false,
        properties: {},
      }),
    });
    const body = (await reply.json()) as { success: boolean; datas?: string[] };
    assert.equal(body.success, true, JSON.stringify(body));
    const outbound = running.address('outbound');
    assert.equal(body.datas?.length, 1, `one provider handed to the app: ${JSON.stringify(body)}`);
    assert.match(
      body.datas![0]!,
      new RegExp(`^${outbound.host}:${outbound.port}\\?weight=50&interface=com\\.example\\.Echo&version=1\\.0`),
    );
    assert.deepEqual(running.book.table.outbound('com.example.Echo:1.0')?.endpoints, [
      { host: '10.0.0.7', port: 12200, weight: 50 },
    ]);
    assert.deepEqual(
      logs.filter((l) => l.level === 40).map((l) => l.msg),
      [],
      'no warning',
    );
  });

  it('warns when the file does not exist', async () => {
    await start(['  - { name: static, type: file, upstream: missing.json }']);
    for (let waited = 0; waited < 2000 && !logs.some((l) => /does not exist/.test(l.msg)); waited += 20)
      await sleep(20);
    const warned = logs.find((l) => l.msg === 'registry file does not exist: no providers until it is created');
    assert.ok(warned, JSON.stringify(logs.map((l) => l.msg)));
    assert.equal(warned.level, 40);
    assert.equal(warned.file, path.join(dir, 'missing.json'));
  });
});
