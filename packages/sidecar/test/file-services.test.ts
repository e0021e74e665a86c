// A `file` registry's services as operators write them: a provider URL filed under its service key routes as that
// service, whether or not the URL repeats the identity in its own parameters.

import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { loadConfig } from '../src/config';
import { Sidecar } from '../src/sidecar';

describe('file registry services', () => {
  let dir: string;
  let sidecar: Sidecar | undefined;
  afterEach(async () => {
    await sidecar?.stop(0);
    rmSync(dir, { recursive: true, force: true });
  });

  it('routes a URL that names no interface as the service key it is filed under (SOFA and Dubbo keys)', async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-file-services-'));
    writeFileSync(
      path.join(dir, 'services.json'),
      JSON.stringify({
        services: {
          'com.example.Named:1.0:blue': ['10.0.0.7:12200?p=1&_WEIGHT=30'],
          'com.example.Named:2.0': ['bolt://10.0.0.8:12200?interface=com.example.Named&version=2.0'],
          'g1/org.example.Greeter:1.0': ['dubbo://10.0.0.9:20880?side=provider'],
        },
      }),
    );
    const config = path.join(dir, 'meshport.yaml');
    writeFileSync(
      config,
      [
        'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
        'admin: "127.0.0.1:0"',
        'registries:',
        '  - { name: static, type: file, upstream: services.json }',
      ].join('\n'),
    );
    sidecar = new Sidecar(await loadConfig(config), { logger: pino({ level: 'silent' }) });
    await sidecar.start();
    const routes = sidecar.book.snapshot().outbound;
    assert.deepEqual(routes['com.example.Named:1.0:blue']?.endpoints, [{ host: '10.0.0.7', port: 12200, weight: 30 }]);
    assert.deepEqual(routes['com.example.Named:2.0']?.endpoints, [{ host: '10.0.0.8', port: 12200, weight: 100 }]);
    assert.deepEqual(
      routes['g1/org.example.Greeter:1.0']?.endpoints.map((e) => `${e.host}:${e.port}`),
      ['10.0.0.9:20880'],
    );
  });
});
