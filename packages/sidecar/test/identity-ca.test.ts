// The development CA, checked by tools that did not write it: openssl verifies and prints the certificates, node's
// X509Certificate checks issuer and signature, and a real mutual TLS 1.3 handshake runs with two issued leaves.

import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { initCa, issueCertificate, readCa, type SidecarError } from '@meshport/sidecar';
import * as der from '../src/identity/der';

const openssl = (args: string[]) => spawnSync('openssl', args, { encoding: 'utf8' });

describe('identity: the DER writer', () => {
  it('writes lengths in the fewest bytes: short form below 128, 0x81 and 0x82 forms above', () => {
    assert.deepEqual([...der.tlv(0x04, Buffer.alloc(127)).subarray(0, 2)], [0x04, 127]);
    assert.deepEqual([...der.tlv(0x04, Buffer.alloc(128)).subarray(0, 3)], [0x04, 0x81, 128]);
    assert.deepEqual([...der.tlv(0x04, Buffer.alloc(256)).subarray(0, 4)], [0x04, 0x82, 0x01, 0x00]);
  });

  it('writes INTEGERs minimally: no redundant 0x00, and a 0x00 before a high bit', () => {
    assert.equal(der.smallInteger(2).toString('hex'), '020102');
    assert.equal(der.smallInteger(0).toString('hex'), '020100');
    assert.equal(der.smallInteger(128).toString('hex'), '02020080');
    assert.equal(der.unsignedInteger(Buffer.from('00007f', 'hex')).toString('hex'), '02017f');
    assert.equal(der.unsignedInteger(Buffer.from('80', 'hex')).toString('hex'), '02020080');
  });

  it('writes OIDs in base 128 (ecdsa-with-SHA256 as openssl does) and reads them back', () => {
    const encoded = der.oid('1.2.840.10045.4.3.2');
    assert.equal(encoded.toString('hex'), '06082a8648ce3d040302');
    assert.equal(der.oidText(der.readElement(encoded).value), '1.2.840.10045.4.3.2');
  });

  it('writes named bit strings without trailing zero bits (keyUsage)', () => {
    assert.equal(der.namedBits([0]).toString('hex'), '03020780'); // digitalSignature
    assert.equal(der.namedBits([5, 6]).toString('hex'), '03020106'); // keyCertSign, cRLSign
    assert.equal(der.namedBits([0, 8]).toString('hex'), '0303078080');
  });

  it('writes UTCTime through 2049 and GeneralizedTime from 2050 (RFC 5280 §4.1.2.5)', () => {
    assert.equal(der.time(new Date('2049-12-31T23:59:59Z')).toString('latin1').slice(2), '491231235959Z');
    assert.equal(der.time(new Date('2049-12-31T23:59:59Z'))[0], der.Tag.UTC_TIME);
    assert.equal(der.time(new Date('2050-01-01T00:00:00Z')).toString('latin1').slice(2), '20500101000000Z');
    assert.equal(der.time(new Date('2050-01-01T00:00:00Z'))[0], der.Tag.GENERALIZED_TIME);
  });

  it('sorts a SET OF by encoding, and refuses a URI that is not ASCII', () => {
    assert.equal(der.set(der.smallInteger(5), der.smallInteger(1)).toString('hex'), '3106020101020105');
    assert.throws(() => der.ia5('spiffe://tëst/x'), RangeError);
  });
});

describe('identity: the development CA', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'meshport-ca-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('init writes ca.pem (0644) and ca-key.pem (0600): a critical CA:TRUE, keyCertSign, the trust domain URI', () => {
    const ca = initCa({ dir: path.join(dir, 'ca'), trustDomain: 'cluster.local', days: 10 });
    assert.equal(statSync(ca.certFile).mode & 0o777, 0o644);
    assert.equal(statSync(ca.keyFile).mode & 0o777, 0o600);
    const text = openssl(['x509', '-noout', '-text', '-in', ca.certFile]).stdout;
    assert.match(text, /Version: 3 \(0x2\)/);
    assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
    assert.match(text, /NIST CURVE: P-256/);
    assert.match(text, /Basic Constraints: critical\s+CA:TRUE/);
    assert.match(text, /Key Usage: critical\s+Certificate Sign, CRL Sign/);
    assert.match(text, /URI:spiffe:\/\/cluster\.local\b/);
    assert.match(text, /Subject: O = cluster\.local, CN = meshport development CA \(cluster\.local\)/);
    const x = new X509Certificate(ca.certPem);
    assert.ok(x.ca);
    assert.ok(x.verify(x.publicKey), 'self-signed');
    assert.equal(openssl(['verify', '-x509_strict', '-CAfile', ca.certFile, ca.certFile]).status, 0);
  });

  it('init refuses to overwrite a CA (either file), and leaves it as it was', () => {
    const ca = initCa({ dir, trustDomain: 'cluster.local' });
    const before = readFileSync(ca.keyFile, 'utf8');
    assert.throws(
      () => initCa({ dir, trustDomain: 'cluster.local' }),
      (err: SidecarError) => err.code === 'MESHPORT_CA_EXISTS' && err.message.includes(ca.certFile),
    );
    assert.equal(readFileSync(ca.keyFile, 'utf8'), before);
    rmSync(ca.certFile);
    assert.throws(() => initCa({ dir, trustDomain: 'cluster.local' }), { code: 'MESHPORT_CA_EXISTS' });
    assert.equal(readFileSync(ca.keyFile, 'utf8'), before);
  });

  it('init refuses a malformed trust domain', () => {
    for (const td of ['Cluster.Local', 'a/b', '', 'x y'])
      assert.throws(() => initCa({ dir, trustDomain: td }), { code: 'MESHPORT_CA_BAD_IDENTITY' }, td);
    assert.equal(existsSync(path.join(dir, 'ca.pem')), false);
  });

  it('issue: a leaf that openssl verifies against ca.pem, with the URI SAN, serverAuth+clientAuth, key 0600', () => {
    const ca = initCa({ dir: path.join(dir, 'ca'), trustDomain: 'cluster.local' });
    const id = 'spiffe://cluster.local/ns/default/sa/echo-provider';
    const leaf = issueCertificate({ caDir: ca.dir, id, out: path.join(dir, 'certs', 'provider') });
    assert.equal(leaf.certFile, path.join(dir, 'certs', 'provider.pem'));
    assert.equal(leaf.keyFile, path.join(dir, 'certs', 'provider-key.pem'));
    assert.equal(statSync(leaf.keyFile).mode & 0o777, 0o600);
    assert.equal(statSync(leaf.certFile).mode & 0o777, 0o644);
    assert.equal(
      readFileSync(leaf.certFile, 'utf8').match(/BEGIN CERTIFICATE/g)?.length,
      1,
      'the leaf and nothing else',
    );

    for (const purpose of ['sslserver', 'sslclient']) {
      const v = openssl(['verify', '-x509_strict', '-purpose', purpose, '-CAfile', ca.certFile, leaf.certFile]);
      assert.equal(v.status, 0, v.stdout + v.stderr);
      assert.match(v.stdout, /: OK/);
    }
    const text = openssl(['x509', '-noout', '-text', '-in', leaf.certFile]).stdout;
    assert.match(text, new RegExp(`X509v3 Subject Alternative Name: \\n\\s+URI:${id.replace(/[/.]/g, '\\$&')}\\n`));
    assert.match(text, /Basic Constraints: critical\s+CA:FALSE/);
    assert.match(text, /Key Usage: critical\s+Digital Signature\n/);
    assert.match(text, /Extended Key Usage: \s*\n\s+TLS Web Server Authentication, TLS Web Client Authentication/);
    assert.match(text, /Subject: O = cluster\.local, CN = echo-provider/);
    // The leaf's authority key id is the CA's subject key id.
    const caText = openssl(['x509', '-noout', '-text', '-in', ca.certFile]).stdout;
    const ski = /Subject Key Identifier: \n\s+([0-9A-F:]+)/.exec(caText)![1];
    assert.match(text, new RegExp(`Authority Key Identifier: \\n\\s+(keyid:)?${ski}`));
    // Serial: 16 random bytes, positive.
    const serial = /Serial Number:\s*\n\s+([0-9a-f:]+)/.exec(text)![1].replace(/:/g, '');
    assert.equal(serial.length, 32);
    assert.ok(Number.parseInt(serial[0], 16) < 8, 'positive without a leading 00');

    const x = new X509Certificate(leaf.certPem);
    const caX = new X509Certificate(ca.certPem);
    assert.ok(x.checkIssued(caX));
    assert.ok(x.verify(caX.publicKey));
    assert.equal(x.subjectAltName, `URI:${id}`);
    assert.equal(x.ca, false);
  });

  it('issue: two leaves get different serials and keys; issuing again replaces the files (a rotation)', () => {
    const ca = initCa({ dir, trustDomain: 'td.example' });
    const out = path.join(dir, 'app');
    const a = issueCertificate({ caDir: dir, id: 'spiffe://td.example/ns/a/sa/app', out });
    const b = issueCertificate({ caDir: dir, id: 'spiffe://td.example/ns/a/sa/app', out: `${out}.pem` });
    assert.equal(b.certFile, a.certFile, 'a trailing .pem of --out is dropped');
    assert.notEqual(new X509Certificate(a.certPem).serialNumber, new X509Certificate(b.certPem).serialNumber);
    assert.notEqual(a.keyPem, b.keyPem);
    assert.equal(readFileSync(b.keyFile, 'utf8'), b.keyPem);
    assert.equal(statSync(b.keyFile).mode & 0o777, 0o600);
    assert.equal(openssl(['verify', '-CAfile', ca.certFile, b.certFile]).status, 0);
    // No temporary file left beside them.
    assert.deepEqual(
      execFileSync('ls', ['-a', dir], { encoding: 'utf8' })
        .split('\n')
        .filter((f) => f.endsWith('.tmp')),
      [],
    );
  });

  it('issue refuses an identity outside the trust domain or not a workload SPIFFE ID', () => {
    initCa({ dir, trustDomain: 'cluster.local' });
    for (const id of [
      'spiffe://other.domain/ns/a/sa/b',
      'https://cluster.local/ns/a/sa/b',
      'spiffe://cluster.local',
      'spiffe://cluster.local/',
      'spiffe://cluster.local/ns//sa/b',
      'spiffe://cluster.local/ns/a/sa/b/',
      'spiffe://cluster.local/ns/../sa/b',
      'spiffe://cluster.local/ns/a b/sa/c',
      'spiffe://cluster.local/ns/a/sa/b?x=1',
    ])
      assert.throws(
        () => issueCertificate({ caDir: dir, id, out: path.join(dir, 'x') }),
        { code: 'MESHPORT_CA_BAD_IDENTITY' },
        id,
      );
    assert.equal(existsSync(path.join(dir, 'x.pem')), false);
  });

  it('issue from a directory without a CA, or with a key not the CA’s, is MESHPORT_CA_INVALID naming the file', () => {
    assert.throws(
      () => issueCertificate({ caDir: dir, id: 'spiffe://cluster.local/ns/a/sa/b', out: path.join(dir, 'x') }),
      (err: SidecarError) => err.code === 'MESHPORT_CA_INVALID' && err.message.includes(path.join(dir, 'ca.pem')),
    );
    const one = initCa({ dir: path.join(dir, 'one'), trustDomain: 'cluster.local' });
    const two = initCa({ dir: path.join(dir, 'two'), trustDomain: 'cluster.local' });
    writeFileSync(one.keyFile, readFileSync(two.keyFile));
    assert.throws(() => readCa(one.dir), /is not the key of/);
  });

  it('a leaf never outlives its CA; dates from 2050 on are GeneralizedTime and still verify', () => {
    const ca = initCa({ dir, trustDomain: 'cluster.local', days: 30 });
    const leaf = issueCertificate({
      caDir: dir,
      id: 'spiffe://cluster.local/ns/a/sa/b',
      out: path.join(dir, 'b'),
      days: 90,
    });
    assert.ok(leaf.endsWithCa);
    assert.ok(leaf.notAfter.getTime() <= ca.notAfter.getTime());
    assert.equal(openssl(['verify', '-CAfile', ca.certFile, leaf.certFile]).status, 0);

    const longDir = path.join(dir, 'long');
    const longCa = initCa({ dir: longDir, trustDomain: 'cluster.local', days: 36500 });
    assert.ok(longCa.notAfter.getUTCFullYear() >= 2050);
    const longLeaf = issueCertificate({
      caDir: longDir,
      id: 'spiffe://cluster.local/ns/a/sa/c',
      out: path.join(dir, 'c'),
      days: 36000,
    });
    assert.equal(
      new Date(new X509Certificate(longLeaf.certPem).validTo).getTime(),
      Math.floor(longLeaf.notAfter.getTime() / 1000) * 1000,
    );
    const v = openssl(['verify', '-x509_strict', '-CAfile', longCa.certFile, longLeaf.certFile]);
    assert.equal(v.status, 0, v.stderr);
    assert.match(openssl(['asn1parse', '-in', longLeaf.certFile]).stdout, /GENERALIZEDTIME/);
  });

  it('two issued leaves complete a mutual TLS 1.3 handshake, each seeing the other’s URI SAN', async () => {
    const ca = initCa({ dir, trustDomain: 'cluster.local' });
    const serverId = 'spiffe://cluster.local/ns/default/sa/provider';
    const clientId = 'spiffe://cluster.local/ns/default/sa/consumer';
    const s = issueCertificate({ caDir: dir, id: serverId, out: path.join(dir, 'server') });
    const c = issueCertificate({ caDir: dir, id: clientId, out: path.join(dir, 'client') });
    let seenByServer: string | undefined;
    const server = tls.createServer(
      {
        cert: s.certPem,
        key: s.keyPem,
        ca: ca.certPem,
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.3',
      },
      (socket) => {
        seenByServer = socket.getPeerCertificate().subjectaltname;
        socket.end('hello');
      },
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const socket = tls.connect({
        host: '127.0.0.1',
        port: (server.address() as AddressInfo).port,
        cert: c.certPem,
        key: c.keyPem,
        ca: ca.certPem,
        minVersion: 'TLSv1.3',
        // A SPIFFE peer is known by its URI SAN, not a host name: the identity check replaces the host name check.
        checkServerIdentity: () => undefined,
      });
      await once(socket, 'secureConnect');
      assert.equal(socket.authorized, true, String(socket.authorizationError));
      assert.equal(socket.getProtocol(), 'TLSv1.3');
      assert.match(socket.getPeerCertificate().subjectaltname ?? '', new RegExp(`URI:${serverId}`));
      const chunks: Buffer[] = [];
      socket.on('data', (d: Buffer) => chunks.push(d));
      await once(socket, 'end');
      assert.equal(Buffer.concat(chunks).toString(), 'hello');
      assert.match(seenByServer ?? '', new RegExp(`URI:${clientId}`));
      socket.destroy();
    } finally {
      server.close();
    }
  });
});
