// The set-up script every entry point runs: idempotent, and helpful when it cannot install.

import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const root = path.resolve(__dirname, '../..');
const script = path.join(root, 'scripts/bootstrap.sh');

function run(env: NodeJS.ProcessEnv) {
  const r = spawnSync('bash', [script], { cwd: root, env, encoding: 'utf8' });
  return { code: r.status, out: r.stdout + r.stderr };
}

describe('scripts/bootstrap.sh', function () {
  this.timeout(120_000);

  it('run again on a set-up tree, installs nothing and exits 0', () => {
    const r = run(process.env);
    assert.equal(r.code, 0, r.out);
    assert.doesNotMatch(r.out, /installing Debian packages|npm ci/);
  });

  it('not root and packages missing: names them, prints the exact command to run, and stops', () => {
    const stubs = mkdtempSync(path.join(tmpdir(), 'meshport-bootstrap-'));
    try {
      // A machine where nothing is installed and we are uid 1000.
      const stub = (name: string, body: string) => {
        writeFileSync(path.join(stubs, name), `#!/bin/sh\n${body}\n`);
        chmodSync(path.join(stubs, name), 0o755);
      };
      stub('dpkg-query', 'exit 1');
      stub('id', 'echo 1000');
      stub('apt-get', 'echo "apt-get must not run" >&2; exit 99');
      const r = run({ ...process.env, PATH: `${stubs}:${process.env.PATH}` });
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /missing Debian packages: zookeeper redis-server haproxy/);
      assert.match(r.out, /sudo sh -c "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends zookeeper redis-server .*bpftool"/);
      assert.doesNotMatch(r.out, /apt-get must not run/);
    } finally {
      rmSync(stubs, { recursive: true, force: true });
    }
  });
});
