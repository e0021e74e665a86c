// The development CA behind `meshport ca init` and `meshport ca issue`: an ECDSA P-256 CA for one trust domain, kept
// in a directory on this machine, that issues SPIFFE leaves (the identity as the URI SAN) for the demo and the tests.
// An operator's CA (cert-manager, SPIRE) replaces it by writing the same three files; see docs/security.md.

import { createPrivateKey, generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { SidecarError } from '../errors';
import { parseSpiffeId, spiffeIdsOf, TRUST_DOMAIN_PATTERN } from './spiffe';
import { buildCertificate, issuerFields, toPem } from './x509';

export const DEV_CA_DEFAULTS = {
  /** How long the CA certificate is valid. */
  caDays: 365,
  /** How long a leaf is valid (never past the CA's own end). */
  leafDays: 90,
  /** notBefore is set this far in the past, so a peer whose clock is a little behind accepts a fresh certificate. */
  backdateMs: 5 * 60_000,
  /** The CA's files in its directory. */
  certFileName: 'ca.pem',
  keyFileName: 'ca-key.pem',
} as const;

const DAY_MS = 86_400_000;

export interface InitCaOptions {
  /** Where ca.pem and ca-key.pem go; created (0755) if missing. */
  dir: string;
  /** e.g. `cluster.local`. */
  trustDomain: string;
  /** @default 365 */
  days?: number;
  /** The start of validity (before the backdate); tests use it for CAs that are expired or not valid yet. @default now */
  now?: Date;
}

export interface DevCa {
  dir: string;
  /** `<dir>/ca.pem` (0644): the trust bundle to give every sidecar. */
  certFile: string;
  /** `<dir>/ca-key.pem` (0600): never leaves this machine. */
  keyFile: string;
  trustDomain: string;
  certPem: string;
  notBefore: Date;
  notAfter: Date;
}

export interface IssueCertificateOptions {
  /** The CA directory of initCa. */
  caDir: string;
  /** The leaf's identity: `spiffe://<the CA's trust domain>/<path>`, e.g. `spiffe://cluster.local/ns/default/sa/app`. */
  id: string;
  /** The files' prefix: `<out>.pem` (the leaf, 0644) and `<out>-key.pem` (its key, 0600); a trailing `.pem` is dropped. */
  out: string;
  /** @default 90, and never past the CA's end */
  days?: number;
  /** The start of validity (before the backdate); tests use it for expired or not yet valid leaves. @default now */
  now?: Date;
}

export interface IssuedCertificate {
  id: string;
  certFile: string;
  keyFile: string;
  certPem: string;
  keyPem: string;
  notBefore: Date;
  notAfter: Date;
  /** True when `days` would have outlived the CA, so the leaf ends with the CA instead. */
  endsWithCa: boolean;
}

/**
 * Creates a CA for `trustDomain` in `dir`: a new P-256 key (ca-key.pem, 0600, PKCS#8) and a self-signed certificate
 * (ca.pem, 0644) with CA:true, keyCertSign and cRLSign, and `spiffe://<trustDomain>` as its URI SAN (SPIFFE X509-SVID
 * §4.1 allows a signing certificate to carry its trust domain's ID; `issue` reads the trust domain from it). Refuses
 * with MESHPORT_CA_EXISTS when either file exists: a new CA key would orphan every certificate issued so far.
 */
export function initCa(options: InitCaOptions): DevCa {
  const trustDomain = options.trustDomain.replace(/^spiffe:\/\//, '');
  if (!TRUST_DOMAIN_PATTERN.test(trustDomain))
    throw new SidecarError(
      'MESHPORT_CA_BAD_IDENTITY',
      `'${options.trustDomain}' is not a trust domain: lowercase letters, digits, '.', '-', '_' (e.g. cluster.local)`,
    );
  const days = positiveDays(options.days ?? DEV_CA_DEFAULTS.caDays, 'days');
  const dir = path.resolve(options.dir);
  const certFile = path.join(dir, DEV_CA_DEFAULTS.certFileName);
  const keyFile = path.join(dir, DEV_CA_DEFAULTS.keyFileName);
  for (const file of [certFile, keyFile])
    if (existsSync(file))
      throw new SidecarError('MESHPORT_CA_EXISTS', `${file} exists: ${dir} holds a CA already; it was left as it was`);
  mkdirSync(dir, { recursive: true, mode: 0o755 });

  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const notBefore = new Date((options.now ?? new Date()).getTime() - DEV_CA_DEFAULTS.backdateMs);
  const notAfter = new Date(notBefore.getTime() + DEV_CA_DEFAULTS.backdateMs + days * DAY_MS);
  const der = buildCertificate({
    subject: { commonName: `meshport development CA (${trustDomain})`, organization: trustDomain },
    notBefore,
    notAfter,
    publicKey,
    signingKey: privateKey,
    ca: true,
    uris: [`spiffe://${trustDomain}`],
  });
  const certPem = toPem(der);
  // The key first and exclusively ('wx'): should two inits race, one fails instead of both writing.
  writeNew(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600);
  try {
    writeNew(certFile, certPem, 0o644);
  } catch (err) {
    rmSync(keyFile, { force: true });
    throw err;
  }
  return { dir, certFile, keyFile, trustDomain, certPem, notBefore, notAfter };
}

/** Reads the CA of `dir` (certificate, key, trust domain) and checks they belong together and the CA is valid now. */
export function readCa(dir: string, now = new Date()): DevCa & { key: KeyObject; cert: X509Certificate } {
  const abs = path.resolve(dir);
  const certFile = path.join(abs, DEV_CA_DEFAULTS.certFileName);
  const keyFile = path.join(abs, DEV_CA_DEFAULTS.keyFileName);
  const read = (file: string) => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : (err as Error).message;
      throw new SidecarError(
        'MESHPORT_CA_INVALID',
        `${file} ${reason} (create the CA with 'meshport ca init --dir ${dir} --trust-domain TD')`,
      );
    }
  };
  const certPem = read(certFile);
  const keyPem = read(keyFile);
  let cert: X509Certificate;
  let key: KeyObject;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    throw new SidecarError('MESHPORT_CA_INVALID', `${certFile} is not a PEM certificate: ${(err as Error).message}`);
  }
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw new SidecarError('MESHPORT_CA_INVALID', `${keyFile} is not a PEM private key: ${(err as Error).message}`);
  }
  if (!cert.ca) throw new SidecarError('MESHPORT_CA_INVALID', `${certFile} is not a CA certificate (CA:false)`);
  if (!cert.checkPrivateKey(key))
    throw new SidecarError('MESHPORT_CA_INVALID', `${keyFile} is not the key of ${certFile}`);
  const notBefore = new Date(cert.validFrom);
  const notAfter = new Date(cert.validTo);
  if (notAfter.getTime() <= now.getTime())
    throw new SidecarError('MESHPORT_CA_INVALID', `${certFile} expired on ${notAfter.toISOString()}`);
  const td = spiffeIdsOf(cert)[0]?.slice('spiffe://'.length);
  const trustDomain = td ?? /(?:^|\n)O=([^\n]+)/.exec(cert.subject)?.[1];
  if (!trustDomain || !TRUST_DOMAIN_PATTERN.test(trustDomain))
    throw new SidecarError('MESHPORT_CA_INVALID', `${certFile} names no trust domain (no spiffe://<td> URI SAN)`);
  return { dir: abs, certFile, keyFile, trustDomain, certPem, notBefore, notAfter, key, cert };
}

/**
 * Issues a leaf for `id` from the CA in `caDir`: a new P-256 key and a certificate with the identity as its one URI
 * SAN, digitalSignature, serverAuth and clientAuth (the same certificate serves a sidecar's inbound and outbound TLS).
 * Both files are written to a temporary name and renamed into place, so a sidecar watching them never reads half a
 * file, and a key file never exists with wider modes than 0600, even for an instant. An existing leaf is replaced:
 * issuing again is how the development CA rotates.
 */
export function issueCertificate(options: IssueCertificateOptions): IssuedCertificate {
  const ca = readCa(options.caDir, options.now);
  const parsed = parseSpiffeId(options.id);
  if ('problem' in parsed) throw new SidecarError('MESHPORT_CA_BAD_IDENTITY', `--id ${parsed.problem}`);
  if (parsed.trustDomain !== ca.trustDomain)
    throw new SidecarError(
      'MESHPORT_CA_BAD_IDENTITY',
      `'${options.id}' is in trust domain ${parsed.trustDomain}, but the CA in ${ca.dir} issues for ${ca.trustDomain}`,
    );
  const days = positiveDays(options.days ?? DEV_CA_DEFAULTS.leafDays, 'days');
  const prefix = path.resolve(options.out.replace(/\.pem$/, ''));
  const certFile = `${prefix}.pem`;
  const keyFile = `${prefix}-key.pem`;

  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const notBefore = new Date((options.now ?? new Date()).getTime() - DEV_CA_DEFAULTS.backdateMs);
  // A leaf that outlives its CA fails to verify on the CA's last day; end it with the CA instead.
  const wanted = notBefore.getTime() + DEV_CA_DEFAULTS.backdateMs + days * DAY_MS;
  const notAfter = new Date(Math.min(wanted, ca.notAfter.getTime()));
  const issuer = issuerFields(ca.cert.raw);
  const segments = parsed.path.split('/');
  const der = buildCertificate({
    // CN is for people reading the certificate (at most 64 characters, RFC 5280's upper bound); peers use the SAN.
    subject: { commonName: segments[segments.length - 1].slice(0, 64), organization: ca.trustDomain },
    issuerName: issuer.subjectName,
    issuerKeyId: issuer.keyId,
    notBefore,
    notAfter,
    publicKey,
    signingKey: ca.key,
    ca: false,
    uris: [options.id],
  });
  const certPem = toPem(der);
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  mkdirSync(path.dirname(prefix), { recursive: true });
  // The key first: a watcher that sees the new certificate next to the old key waits for the key (debounced) and, at
  // worst, reports a mismatch once and keeps the old pair.
  replaceFile(keyFile, keyPem, 0o600);
  replaceFile(certFile, certPem, 0o644);
  return {
    id: options.id,
    certFile,
    keyFile,
    certPem,
    keyPem,
    notBefore,
    notAfter,
    endsWithCa: wanted > ca.notAfter.getTime(),
  };
}

function positiveDays(days: number, what: string): number {
  if (!Number.isInteger(days) || days < 1 || days > 36500)
    throw new RangeError(`${what} must be a whole number of days from 1 to 36500, not ${days}`);
  return days;
}

/** Creates `file` with `mode` (not narrowed by the umask, not widened either); fails if it exists. */
function writeNew(file: string, text: string, mode: number): void {
  const fd = openSync(file, 'wx', mode);
  try {
    // The umask can only take bits away; chmod makes 0644 mean 0644 under a umask of 077 as well.
    chmodSync(file, mode);
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes `file` as a new temporary file beside it, then renames it into place (atomic on one filesystem). */
function replaceFile(file: string, text: string, mode: number): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  try {
    writeNew(tmp, text, mode);
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
