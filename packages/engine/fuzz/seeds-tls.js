// Writes the seed corpora of the TLS-side fuzz targets into <out-dir>/<target>/: fuzz_san (GeneralNames in DER, and a
// whole certificate when the openssl command is there), fuzz_tls (a real TLS 1.3 ClientHello, as node's TLS client
// sends it, whole and in small chunks) and fuzz_authz (a few policies). Each file: the target's mode byte(s), then
// the bytes.
//   node seeds-tls.js <out-dir>
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const tls = require('node:tls');
const { Duplex } = require('node:stream');
const { spawnSync } = require('node:child_process');
const os = require('node:os');

const out = process.argv[2];
if (!out) {
  console.error('usage: node seeds-tls.js <out-dir>');
  process.exit(2);
}
const write = (target, name, bytes) => {
  fs.mkdirSync(path.join(out, target), { recursive: true });
  fs.writeFileSync(path.join(out, target, name), bytes);
};

// DER: a tag, a length (short or long form), the content.
const der = (tag, content) => {
  const n = content.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...len]), content]);
};
const uri = (text) => der(0x86, Buffer.from(text, 'latin1'));
const dns = (text) => der(0x82, Buffer.from(text, 'latin1'));
const names = (...items) => der(0x30, Buffer.concat(items));

// fuzz_san: mode byte 0x00 = GeneralNames, 0x01 = a whole certificate.
const generalNames = {
  spiffe: names(uri('spiffe://cluster.local/ns/default/sa/app')),
  'dns-then-spiffe': names(dns('app.default.svc'), uri('spiffe://cluster.local/ns/default/sa/app')),
  'https-then-spiffe': names(uri('https://example.test/'), uri('spiffe://td/ns/a/sa/b')),
  'two-spiffe': names(uri('spiffe://a/ns/x/sa/y'), uri('spiffe://b/ns/x/sa/y')),
  'spiffe-no-domain': names(uri('spiffe://')),
  'no-uri': names(dns('only.dns')),
};
for (const [name, bytes] of Object.entries(generalNames)) write('fuzz_san', `names-${name}`, Buffer.concat([Buffer.from([0]), bytes]));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'meshport-fuzz-seeds-'));
try {
  const made = spawnSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', path.join(tmp, 'k.pem'),
      '-outform', 'DER', '-out', path.join(tmp, 'c.der'), '-days', '1', '-subj', '/CN=seed',
      '-addext', 'subjectAltName=DNS:seed,URI:spiffe://cluster.local/ns/default/sa/seed'],
    { stdio: 'ignore' },
  );
  if (made.status === 0) write('fuzz_san', 'cert-spiffe', Buffer.concat([Buffer.from([1]), fs.readFileSync(path.join(tmp, 'c.der'))]));
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}

// fuzz_authz: FuzzedDataProvider reads integers from the end; any bytes are a start, these reach rules and methods.
write('fuzz_authz', 'rules', Buffer.from('svc\u0000spiffe://td/ns/a/*\u0000m\u0000spiffe://td/ns/a/sa/b\u0003\u0002\u0001\u0001\u0002\u0003', 'latin1'));
write('fuzz_authz', 'default', Buffer.from([0, 1, 2, 0, 1]));

// fuzz_tls: mode byte (bit 0 server, bit 1 the stream ends after the input), chunk byte, then the peer's bytes.
const hello = new Promise((resolve) => {
  let sent = false;
  const wire = new Duplex({
    read() {},
    write(chunk, _enc, done) {
      if (!sent) {
        sent = true;
        resolve(Buffer.from(chunk));
      }
      done();
    },
  });
  const socket = tls.connect({ socket: wire, minVersion: 'TLSv1.3', rejectUnauthorized: false, servername: 'seed' });
  socket.on('error', () => {});
  setTimeout(() => socket.destroy(), 200).unref();
});
hello.then((bytes) => {
  write('fuzz_tls', 'client-hello', Buffer.concat([Buffer.from([1, 0xff]), bytes]));
  write('fuzz_tls', 'client-hello-small-chunks', Buffer.concat([Buffer.from([1, 0]), bytes]));
  write('fuzz_tls', 'client-hello-cut', Buffer.concat([Buffer.from([3, 0xff]), bytes.subarray(0, bytes.length >> 1)]));
  write('fuzz_tls', 'plaintext-to-client', Buffer.concat([Buffer.from([2, 0x02]), Buffer.from('not a server hello')]));
  process.exit(0);
});
