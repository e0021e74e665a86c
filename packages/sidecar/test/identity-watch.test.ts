// Rotation of the sidecar's certificate files as the tools that rotate them do it: rewritten in place, a new file
// renamed over the old one (meshport ca issue, most tools), and the kubelet's `..data` symlink swap (cert-manager and
// every Kubernetes secret volume). Bad new files keep the old credentials and are reported.

import { strict as assert } from 'node:assert';
import { cpSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TlsMaterial } from '@meshport/router';
import {
  initCa,
  issueCertificate,
  loadTlsMaterial,
  type SidecarError,
  type TlsFiles,
  type TlsWatch,
  watchTlsMaterial,
} from '@meshport/sidecar';
import { makeTestPki, type TestPki } from '@meshport/testkit';

const A = 'spiffe://cluster.local/ns/default/sa/app';
const B = 'spiffe://cluster.local/ns/default/sa/app-rotated';

/** Collects the watcher's callbacks and waits for them. */
class Recorder {
  changes: TlsMaterial[] = [];
  errors: SidecarError[] = [];
  onChange = (m: TlsMaterial) => this.changes.push(m);
  onError = (e: SidecarError) => this.errors.push(e);

  async until(what: () => boolean, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!what()) {
      if (Date.now() > deadline)
        throw new Error(
          `timed out: ${this.changes.length} change(s), errors: ${this.errors.map((e) => e.message).join('; ')}`,
        );
      await sleep(20);
    }
  }
}

describe('identity: watchTlsMaterial', function () {
  this.timeout(20000);
  let dir: string;
  let pki: TestPki;
  let watcher: TlsWatch | undefined;
  before(() => {
    pki = makeTestPki({ trustDomain: 'cluster.local' });
  });
  after(() => pki.cleanup());
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'meshport-watch-'));
  });
  afterEach(() => {
    watcher?.close();
    watcher = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  /** A CA in dir/ca and a leaf for `id` at dir/certs/app(.pem, -key.pem); the files to watch. */
  function devPki(id: string): TlsFiles {
    initCa({ dir: path.join(dir, 'ca'), trustDomain: 'cluster.local' });
    const leaf = issueCertificate({ caDir: path.join(dir, 'ca'), id, out: path.join(dir, 'certs', 'app') });
    return { certFile: leaf.certFile, keyFile: leaf.keyFile, trustBundleFile: path.join(dir, 'ca', 'ca.pem') };
  }

  it('a new certificate renamed into place (meshport ca issue) is handed over once, with its identity', async () => {
    const files = devPki(A);
    const initial = loadTlsMaterial(files);
    const r = new Recorder();
    watcher = watchTlsMaterial(files, r.onChange, r.onError, { initial });
    issueCertificate({ caDir: path.join(dir, 'ca'), id: B, out: path.join(dir, 'certs', 'app') });
    await r.until(() => r.changes.length > 0);
    await sleep(500); // and only once: the key and the certificate were renamed a moment apart
    assert.equal(r.changes.length, 1);
    assert.equal(r.changes[0].identity, B);
    assert.notEqual(r.changes[0].key, initial.key);
    assert.deepEqual(r.errors, []);
    assert.equal(watcher.material?.identity, B);
  });

  it('files rewritten in place, certificate first and key after, are handed over once they agree', async () => {
    const files = devPki(A);
    const r = new Recorder();
    watcher = watchTlsMaterial(files, r.onChange, r.onError, { initial: loadTlsMaterial(files) });
    const next = issueCertificate({ caDir: path.join(dir, 'ca'), id: B, out: path.join(dir, 'other') });
    // Only the certificate for now: the pair disagrees, which must not be handed over.
    writeFileSync(files.certFile, next.certPem);
    await sleep(100);
    writeFileSync(files.keyFile, next.keyPem);
    await r.until(() => r.changes.length > 0);
    assert.equal(r.changes[0].identity, B);
    assert.equal(r.changes[0].key, next.keyPem);
    assert.deepEqual(r.errors, [], 'the moment between the two writes is not reported');
  });

  it('the kubelet ..data symlink swap (cert-manager, secret volumes) is seen, and the old directory can go', async () => {
    // /etc/meshport/tls/{tls.crt,tls.key,ca.crt} -> ..data/… ; ..data -> ..2026_12_06_1 ; a rotation writes
    // ..2026_12_06_2, points ..data_tmp at it, renames ..data_tmp over ..data, and removes the old directory.
    const volume = path.join(dir, 'volume');
    mkdirSync(volume);
    const generation = (n: number, id: string) => {
      const leaf = pki.issue(id);
      const g = path.join(volume, `..gen_${n}`);
      mkdirSync(g);
      cpSync(leaf.certFile, path.join(g, 'tls.crt'));
      cpSync(leaf.keyFile, path.join(g, 'tls.key'));
      cpSync(pki.trustBundleFile, path.join(g, 'ca.crt'));
      return `..gen_${n}`;
    };
    symlinkSync(generation(1, A), path.join(volume, '..data'));
    for (const f of ['tls.crt', 'tls.key', 'ca.crt']) symlinkSync(path.join('..data', f), path.join(volume, f));
    const files = {
      certFile: path.join(volume, 'tls.crt'),
      keyFile: path.join(volume, 'tls.key'),
      trustBundleFile: path.join(volume, 'ca.crt'),
    };
    const r = new Recorder();
    watcher = watchTlsMaterial(files, r.onChange, r.onError, { initial: loadTlsMaterial(files) });
    assert.equal(watcher.material?.identity, A);

    for (const [n, id] of [
      [2, B],
      [3, A],
    ] as const) {
      const before = r.changes.length;
      symlinkSync(generation(n, id), path.join(volume, '..data_tmp'));
      renameSync(path.join(volume, '..data_tmp'), path.join(volume, '..data'));
      rmSync(path.join(volume, `..gen_${n - 1}`), { recursive: true });
      await r.until(() => r.changes.length > before);
      assert.equal(r.changes[r.changes.length - 1].identity, id);
    }
    assert.deepEqual(r.errors, []);
  });

  it('bad new files (expired, another CA, a wrong key) keep the old credentials and are reported; good ones then win', async () => {
    const leaf = pki.issue(A);
    const files = {
      certFile: path.join(dir, 'tls.crt'),
      keyFile: path.join(dir, 'tls.key'),
      trustBundleFile: path.join(dir, 'ca.crt'),
    };
    const put = (cert: string, key: string) => {
      // Renamed into place, both at once, as a careful tool does.
      writeFileSync(`${files.certFile}.new`, cert);
      writeFileSync(`${files.keyFile}.new`, key);
      renameSync(`${files.keyFile}.new`, files.keyFile);
      renameSync(`${files.certFile}.new`, files.certFile);
    };
    put(leaf.certPem, leaf.keyPem);
    writeFileSync(files.trustBundleFile, pki.caPem);
    const initial = loadTlsMaterial(files);
    const r = new Recorder();
    watcher = watchTlsMaterial(files, r.onChange, r.onError, { initial });

    const expired = pki.issue(B, { expired: true });
    put(expired.certPem, expired.keyPem);
    await r.until(() => r.errors.length > 0);
    assert.equal(r.errors[0].code, 'MESHPORT_TLS_CERT_EXPIRED');
    assert.ok(r.errors[0].message.includes(files.certFile));
    assert.equal(watcher.material, initial, 'the old credentials stay');

    const foreign = makeTestPki({ trustDomain: 'cluster.local', name: 'another CA' });
    try {
      const stranger = foreign.issue(B);
      put(stranger.certPem, stranger.keyPem);
      await r.until(() => r.errors.length > 1);
      assert.equal(r.errors[1].code, 'MESHPORT_TLS_UNTRUSTED');
    } finally {
      foreign.cleanup();
    }
    const good = pki.issue(B);
    put(good.certPem, pki.issue(B).keyPem);
    await r.until(() => r.errors.length > 2);
    assert.equal(r.errors[2].code, 'MESHPORT_TLS_KEY_MISMATCH');
    assert.equal(r.changes.length, 0);
    assert.equal(watcher.material, initial);

    put(good.certPem, good.keyPem);
    await r.until(() => r.changes.length > 0);
    assert.equal(r.changes[0].identity, B);
    assert.equal(watcher.material?.identity, B);
  });

  it('in a busy shared directory, writes to other files do not hold rotation back', async () => {
    const files = devPki(A);
    const r = new Recorder();
    watcher = watchTlsMaterial(files, r.onChange, r.onError, { initial: loadTlsMaterial(files) });
    const noise = setInterval(
      () => writeFileSync(path.join(path.dirname(files.certFile), 'app.log'), `${Date.now()}\n`),
      20,
    );
    try {
      await sleep(300);
      issueCertificate({ caDir: path.join(dir, 'ca'), id: B, out: path.join(dir, 'certs', 'app') });
      const started = Date.now();
      await r.until(() => r.changes.length > 0);
      assert.ok(Date.now() - started < 2000, `seen after ${Date.now() - started} ms`);
      assert.equal(r.changes[0].identity, B);
    } finally {
      clearInterval(noise);
    }
  });

  it('the same bytes written again are no change; a new trust bundle is one; nothing after close()', async () => {
    const files = devPki(A);
    const initial = loadTlsMaterial(files);
    const r = new Recorder();
    watcher = watchTlsMaterial(files, r.onChange, r.onError, { initial });
    writeFileSync(files.certFile, initial.certChain);
    await sleep(700);
    assert.equal(r.changes.length, 0);

    // A CA rotation starts by adding the new CA to the bundle.
    const next = makeTestPki({ trustDomain: 'cluster.local', name: 'next CA' });
    try {
      writeFileSync(files.trustBundleFile, initial.trustBundle + next.caPem);
      await r.until(() => r.changes.length > 0);
      assert.equal(r.changes[0].trustBundle, initial.trustBundle + next.caPem);
    } finally {
      next.cleanup();
    }

    watcher.close();
    issueCertificate({ caDir: path.join(dir, 'ca'), id: B, out: path.join(dir, 'certs', 'app') });
    await sleep(700);
    assert.equal(r.changes.length, 1);
    assert.deepEqual(r.errors, []);
  });

  it('the periodic re-check finds changes no watched directory sees (a link between links), and reports a problem once', async () => {
    // tls.crt -> links/current.crt -> store/<generation>.crt: the watcher watches tls.crt's directory and store/, not
    // links/, so re-pointing links/current.crt makes no event it hears; only the poll notices.
    for (const d of ['pod', 'links', 'store']) mkdirSync(path.join(dir, d));
    const a = pki.issue(A);
    const b = pki.issue(B);
    const expired = pki.issue(B, { expired: true });
    for (const [name, leaf] of [
      ['a', a],
      ['b', b],
      ['expired', expired],
    ] as const) {
      cpSync(leaf.certFile, path.join(dir, 'store', `${name}.crt`));
      cpSync(leaf.keyFile, path.join(dir, 'store', `${name}.key`));
    }
    const point = (name: string) => {
      for (const ext of ['crt', 'key']) {
        symlinkSync(path.join(dir, 'store', `${name}.${ext}`), path.join(dir, 'links', `next.${ext}`));
        renameSync(path.join(dir, 'links', `next.${ext}`), path.join(dir, 'links', `current.${ext}`));
      }
    };
    point('a');
    symlinkSync(path.join(dir, 'links', 'current.crt'), path.join(dir, 'pod', 'tls.crt'));
    symlinkSync(path.join(dir, 'links', 'current.key'), path.join(dir, 'pod', 'tls.key'));
    const files = {
      certFile: path.join(dir, 'pod', 'tls.crt'),
      keyFile: path.join(dir, 'pod', 'tls.key'),
      trustBundleFile: pki.trustBundleFile,
    };
    const r = new Recorder();
    watcher = watchTlsMaterial(files, r.onChange, r.onError, { initial: loadTlsMaterial(files), pollMs: 300 });

    point('expired');
    await r.until(() => r.errors.length > 0);
    assert.equal(r.errors[0].code, 'MESHPORT_TLS_CERT_EXPIRED');
    await sleep(1000);
    assert.equal(r.errors.length, 1, 'the same problem is reported once, not at every poll');
    assert.equal(watcher.material?.identity, A);

    point('b');
    await r.until(() => r.changes.length > 0);
    assert.equal(r.changes[0].identity, B);
  });
});
