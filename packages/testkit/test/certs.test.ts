// The test PKI is what the mTLS suites trust: its leaves must be what they claim (identity, validity, issuer), and a
// real TLS 1.3 handshake with them must work both ways.

import { strict as assert } from 'node:assert';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { makeTestPki, type TestPki } from '../src/certs';

describe('testkit: makeTestPki', function () {
  this.timeout(30_000);
  let pki: TestPki;
  let other: TestPki;
  before(() => {
    pki = makeTestPki({ trustDomain: 'cluster.local' });
    other = makeTestPki({ trustDomain: 'cluster.local', name: 'another CA' });
  });
  after(() => {
    pki.cleanup();
    other.cleanup();
  });

  it('issues leaves with the identity as URI SAN, signed by its CA and not by another', () => {
    const leaf = new X509Certificate(pki.issue('spiffe://cluster.local/ns/default/sa/app').certPem);
    assert.equal(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/default/sa/app');
    assert.ok(leaf.verify(new X509Certificate(pki.caPem).publicKey));
    assert.ok(!leaf.verify(new X509Certificate(other.caPem).publicKey));
    assert.ok(new Date(leaf.validTo).getTime() > Date.now());
  });

  it('issues expired, not-yet-valid and identity-less leaves on request', () => {
    const expired = new X509Certificate(pki.issue('spiffe://cluster.local/ns/a/sa/b', { expired: true }).certPem);
    assert.ok(new Date(expired.validTo).getTime() < Date.now());
    const future = new X509Certificate(pki.issue('spiffe://cluster.local/ns/a/sa/c', { notYetValid: true }).certPem);
    assert.ok(new Date(future.validFrom).getTime() > Date.now());
    const bare = new X509Certificate(pki.issue('spiffe://cluster.local/ns/a/sa/d', { noIdentity: true }).certPem);
    assert.equal(bare.subjectAltName, undefined);
  });

  it('serves a mutual TLS 1.3 handshake in which each side sees the other identity', async () => {
    const server = pki.issue('spiffe://cluster.local/ns/default/sa/provider');
    const client = pki.issue('spiffe://cluster.local/ns/default/sa/consumer');
    const seen: string[] = [];
    const srv = tls.createServer(
      { cert: server.certPem, key: server.keyPem, ca: pki.caPem, requestCert: true, minVersion: 'TLSv1.3' },
      (s) => {
        seen.push(s.getPeerCertificate().subjectaltname ?? '');
        s.end('ok');
      },
    );
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    try {
      const c = tls.connect({
        host: '127.0.0.1',
        port: (srv.address() as AddressInfo).port,
        cert: client.certPem,
        key: client.keyPem,
        ca: pki.caPem,
        checkServerIdentity: () => undefined,
      });
      await once(c, 'secureConnect');
      assert.equal(c.getProtocol(), 'TLSv1.3');
      assert.equal(c.getPeerCertificate().subjectaltname, 'URI:spiffe://cluster.local/ns/default/sa/provider');
      c.resume();
      await once(c, 'end');
      assert.deepEqual(seen, ['URI:spiffe://cluster.local/ns/default/sa/consumer']);
    } finally {
      srv.close();
    }
  });
});
