// The set-up script every entry point runs: idempotent, and helpful when it cannot install.

import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const root = path.resolve(__dirname, '../..');
const script = path.join(root, 'scripts/bootstrap.sh');

function run(env: NodeJS.ProcessEnv, args: string[] = []) {
  const r = spawnSync('bash', [script, ...args], { cwd: root, env, encoding: 'utf8' });
  return { code: r.status, out: r.stdout + r.stderr };
}

describe('scripts/bootstrap.sh', function () {
  this.timeout(120_000);

  // `npm test` ran the bootstrap before this suite; checked, not re-run, so a changed lockfile in a working tree
  // cannot make the test replace node_modules under the running suites.
  it('after a bootstrap, finds nothing left to do (it is idempotent)', () => {
    const r = run(process.env, ['--check']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /nothing to do/);
  });

  it('--check names what a stale tree would need, and changes nothing', () => {
    const stubs = mkdtempSync(path.join(tmpdir(), 'meshport-bootstrap-'));
    try {
      writeFileSync(path.join(stubs, 'dpkg-query'), '#!/bin/sh\nexit 1\n');
      chmodSync(path.join(stubs, 'dpkg-query'), 0o755);
      const r = run({ ...process.env, PATH: `${stubs}:${process.env.PATH}` }, ['--check']);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /would install Debian packages: zookeeper redis-server haproxy/);
    } finally {
      rmSync(stubs, { recursive: true, force: true });
    }
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
      assert.match(
        r.out,
        /sudo sh -c "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends zookeeper redis-server .*bpftool libclang-rt-14-dev openjdk-17-jdk-headless libhessian-java openssl libssl-dev tcpdump tmux"/,
      );
      assert.doesNotMatch(r.out, /apt-get must not run/);
    } finally {
      rmSync(stubs, { recursive: true, force: true });
    }
  });
});
