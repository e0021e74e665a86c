// `meshport sidecar` as an operator runs it: the real binary with a config file, its admin port, SIGTERM, bad configs.

import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

const BIN = path.resolve(__dirname, '../../bin/meshport.js');

describe('meshport sidecar', function () {
  this.timeout(20_000);
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'meshport-cli-sidecar-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('runs on a file registry, serves its routes on the admin port, and drains on SIGTERM with exit 0', async () => {
    writeFileSync(
      path.join(dir, 'routes.json'),
      JSON.stringify({
        services: { 'com.example.Echo:1.0': ['bolt://10.0.0.7:12201?interface=com.example.Echo&version=1.0'] },
      }),
    );
    writeFileSync(
      path.join(dir, 'meshport.yaml'),
      [
        'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
        'admin: "127.0.0.1:0"',
        'log: { level: info }',
        'registries:',
        '  - { name: static, type: file, upstream: routes.json }',
      ].join('\n'),
    );
    const child = spawn(process.execPath, [BIN, 'sidecar', '--config', path.join(dir, 'meshport.yaml')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const admin = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no 'running' line in:\n${out}`)), 15_000);
        child.stdout.on('data', () => {
          const line = out.split('\n').find((l) => l.includes('meshport sidecar running'));
          if (!line) return;
          clearTimeout(timer);
          resolve((JSON.parse(line) as { admin: { port: number } }).admin.port);
        });
      });
      const routes = (await (await fetch(`http://127.0.0.1:${admin}/routes`)).json()) as {
        clusters: { listener: string; name: string; endpoints: { address: string }[] }[];
      };
      assert.deepEqual(
        routes.clusters.map((c) => [c.listener, c.name, c.endpoints.map((e) => e.address)]),
        [['outbound', 'com.example.Echo:1.0', ['10.0.0.7:12201']]],
      );
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, out);
    assert.match(out, /"msg":"drained"/);
  });

  it('reloads registries and routes on SIGHUP, keeps running, and still drains on SIGTERM with exit 0', async () => {
    const routes = (iface: string, host: string) =>
      JSON.stringify({ services: { [`${iface}:1.0`]: [`bolt://${host}:12201?interface=${iface}&version=1.0`] } });
    writeFileSync(path.join(dir, 'echo.json'), routes('com.example.Echo', '10.0.0.7'));
    writeFileSync(path.join(dir, 'other.json'), routes('com.example.Other', '10.0.0.8'));
    const config = path.join(dir, 'meshport.yaml');
    const header = [
      'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
      'admin: "127.0.0.1:0"',
      'registries:',
    ];
    writeFileSync(config, [...header, '  - { name: static, type: file, upstream: echo.json }'].join('\n'));
    const child = spawn(process.execPath, [BIN, 'sidecar', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const logged = (msg: string, after = 0) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const look = () => {
          const line = out
            .split('\n')
            .slice(after)
            .find((l) => l.includes(`"msg":"${msg}"`));
          if (!line) return false;
          clearTimeout(timer);
          child.stdout.off('data', look);
          resolve(JSON.parse(line) as Record<string, unknown>);
          return true;
        };
        const timer = setTimeout(() => reject(new Error(`no '${msg}' line in:\n${out}`)), 15_000);
        if (!look()) child.stdout.on('data', look);
      });
    const clusters = async (port: number) => {
      const body = (await (await fetch(`http://127.0.0.1:${port}/routes`)).json()) as {
        clusters: { listener: string; name: string }[];
      };
      return body.clusters
        .filter((c) => c.listener === 'outbound')
        .map((c) => c.name)
        .sort();
    };
    try {
      const admin = ((await logged('meshport sidecar running')).admin as { port: number }).port;
      assert.deepEqual(await clusters(admin), ['com.example.Echo:1.0']);

      writeFileSync(
        config,
        [
          ...header,
          '  - { name: static, type: file, upstream: echo.json }',
          '  - { name: more, type: file, upstream: other.json }',
        ].join('\n'),
      );
      const lines = out.split('\n').length - 1;
      child.kill('SIGHUP');
      const reloaded = await logged('reloaded', lines);
      assert.deepEqual(reloaded.added, ['more']);
      assert.deepEqual(await clusters(admin), ['com.example.Echo:1.0', 'com.example.Other:1.0']);

      // A broken edit: logged with its line and key, nothing changes, the process keeps running.
      writeFileSync(
        config,
        [...header, '  - { name: static, type: file, upstream: echo.json, colour: blue }'].join('\n'),
      );
      const before = out.split('\n').length - 1;
      child.kill('SIGHUP');
      const refused = await logged('reload refused: the new config is invalid; still running on the old one', before);
      assert.match(String(refused.error), /meshport\.yaml:4: registries\[0\]\.colour: unknown key/);
      assert.equal(child.exitCode, null, 'still running');
      assert.deepEqual(await clusters(admin), ['com.example.Echo:1.0', 'com.example.Other:1.0']);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, out);
    assert.match(out, /"msg":"drained"/);
  });

  it('refuses a bad config with the file, line and key, exit 2, binding nothing', () => {
    const file = path.join(dir, 'meshport.yaml');
    writeFileSync(file, 'registries:\n  - name: mesh\n    type: sofa-mesh\n    via: nowhere\n');
    const r = spawnSync(process.execPath, [BIN, 'sidecar', '--config', file], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(
      r.stderr,
      /MESHPORT_CONFIG_INVALID: .*meshport\.yaml:4: registries\[0\]\.via: names no registry in this list/,
    );
  });

  it('refuses a capture port that is taken with MESHPORT_CAPTURE_FAILED, exit 2', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', () => resolve()));
    try {
      const port = (taken.address() as net.AddressInfo).port;
      const file = path.join(dir, 'meshport.yaml');
      writeFileSync(
        file,
        `admin: "127.0.0.1:0"\nlisteners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }\nhijack: { mode: redirect, outboundCapturePort: ${port} }\n`,
      );
      const r = spawnSync(process.execPath, [BIN, 'sidecar', '--config', file], { encoding: 'utf8' });
      assert.equal(r.status, 2, r.stderr);
      // Found by the start-up check, before anything bound: the key, its line and the cause.
      assert.equal(
        r.stderr,
        `meshport sidecar: MESHPORT_CAPTURE_FAILED: ${file}:3: hijack.outboundCapturePort: 127.0.0.1:${port} is in use (another process listens there)\n`,
      );
    } finally {
      taken.close();
    }
  });

  it('names a plugin that cannot be found', () => {
    const file = path.join(dir, 'meshport.yaml');
    writeFileSync(
      file,
      'admin: "127.0.0.1:0"\nlisteners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }\nregistries:\n  - { name: mine, type: ./no-such-plugin }\n',
    );
    const r = spawnSync(process.execPath, [BIN, 'sidecar', '--config', file], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(
      r.stderr,
      /MESHPORT_PLUGIN_INVALID: .*meshport\.yaml:4: registries\[0\]\.type: registry plugin '.*no-such-plugin' cannot be found/,
    );
  });
});
