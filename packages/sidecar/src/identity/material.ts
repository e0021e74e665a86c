// This sidecar's TLS credentials from the three files the config names (certificate chain, key, trust bundle):
// every check a peer or the TLS layer would otherwise fail on later, done up front with a message naming the file.
// The same checks, all of them at once, are what `meshport doctor tls` prints.

import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { TlsMaterial } from '@meshport/router';
import { type SidecarErrorCode, SidecarError } from '../errors';
import { spiffeIdsOf } from './spiffe';

/** The three files of `tls:` in the config. */
export interface TlsFiles {
  /** PEM: the leaf certificate, then any intermediates. */
  certFile: string;
  /** PEM: the leaf's private key (PKCS#8 or SEC1). */
  keyFile: string;
  /** PEM: the CA certificates peers' chains (and this one) must end at. */
  trustBundleFile: string;
}

export type TlsCheckName = 'certificate' | 'key' | 'trust bundle' | 'validity' | 'chain' | 'identity' | 'key pair';

/** One line of the report: what was checked, how it went, and what was found (or what is wrong). */
export interface TlsCheck {
  name: TlsCheckName;
  /** `warn`: works, but needs attention (a key file others can read, a certificate ending within a week). */
  status: 'ok' | 'warn' | 'fail' | 'skipped';
  detail: string;
  /** With `fail`: the code loadTlsMaterial raises for it. */
  code?: SidecarErrorCode;
}

export interface TlsFilesReport {
  checks: TlsCheck[];
  /** The credentials, when no check failed. */
  material?: TlsMaterial;
  /** The certificate's identity, when it has exactly one. */
  identity?: string;
  /** The leaf's end of validity, when it parsed. */
  notAfter?: Date;
  /** Whole days from `now` to notAfter (negative: ended that many days ago). */
  daysLeft?: number;
}

export const TLS_CHECK_DEFAULTS = {
  /** A certificate ending sooner than this is a warning in the report (not a failure: it still works). */
  warnDaysLeft: 7,
} as const;

const DAY_MS = 86_400_000;
const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * Checks the files and, when all is well, returns the material; otherwise raises the first failure as a SidecarError
 * (MESHPORT_TLS_FILE_UNREADABLE, _BAD_PEM, _CERT_EXPIRED, _CERT_NOT_YET_VALID, _UNTRUSTED, _NO_IDENTITY,
 * _KEY_MISMATCH) whose message names the file.
 */
export function loadTlsMaterial(files: TlsFiles, options: { now?: Date } = {}): TlsMaterial {
  const report = checkTlsFiles(files, options);
  if (report.material) return report.material;
  const failed = report.checks.find((c) => c.status === 'fail')!;
  throw new SidecarError(failed.code!, failed.detail);
}

/** Every check on the files, failed or not, for `meshport doctor tls`; `material` is set when none failed. */
export function checkTlsFiles(files: TlsFiles, options: { now?: Date } = {}): TlsFilesReport {
  const now = options.now ?? new Date();
  const checks: TlsCheck[] = [];
  const report: TlsFilesReport = { checks };
  const ok = (name: TlsCheckName, detail: string) => checks.push({ name, status: 'ok', detail });
  const warn = (name: TlsCheckName, detail: string) => checks.push({ name, status: 'warn', detail });
  const fail = (name: TlsCheckName, code: SidecarErrorCode, detail: string) =>
    checks.push({ name, status: 'fail', detail, code });
  const skip = (name: TlsCheckName, why: string) => checks.push({ name, status: 'skipped', detail: why });

  // 1. The three files: present, readable, parseable.
  const certPem = readPem(files.certFile, 'certificate', (d) => fail('certificate', 'MESHPORT_TLS_FILE_UNREADABLE', d));
  let chain: X509Certificate[] | undefined;
  if (certPem !== undefined) {
    chain = parseCertificates(certPem);
    if (chain === undefined || chain.length === 0) {
      fail('certificate', 'MESHPORT_TLS_BAD_PEM', `${files.certFile} holds no PEM certificate that can be parsed`);
      chain = undefined;
    } else
      ok(
        'certificate',
        `${files.certFile}: ${chain.length === 1 ? 'a leaf' : `a leaf and ${chain.length - 1} intermediate(s)`}`,
      );
  }

  const keyPem = readPem(files.keyFile, 'key', (d) => fail('key', 'MESHPORT_TLS_FILE_UNREADABLE', d));
  let key: KeyObject | undefined;
  if (keyPem !== undefined) {
    try {
      key = createPrivateKey(keyPem);
      const mode = statSync(files.keyFile).mode & 0o777;
      const what = `${files.keyFile}: ${describeKey(key)}`;
      // Not a failure: a kubelet-mounted secret is often 0644 inside a pod only the sidecar's uid reads.
      if (mode & 0o077) warn('key', `${what}, mode 0${mode.toString(8)}: others can read it (0600 is enough)`);
      else ok('key', `${what}, mode 0${mode.toString(8)}`);
    } catch (err) {
      fail(
        'key',
        'MESHPORT_TLS_BAD_PEM',
        `${files.keyFile} holds no PEM private key that can be parsed (${reason(err)})`,
      );
    }
  }

  const bundlePem = readPem(files.trustBundleFile, 'trust bundle', (d) =>
    fail('trust bundle', 'MESHPORT_TLS_FILE_UNREADABLE', d),
  );
  let bundle: X509Certificate[] | undefined;
  if (bundlePem !== undefined) {
    bundle = parseCertificates(bundlePem);
    if (bundle === undefined || bundle.length === 0) {
      fail(
        'trust bundle',
        'MESHPORT_TLS_BAD_PEM',
        `${files.trustBundleFile} holds no PEM certificate that can be parsed`,
      );
      bundle = undefined;
    } else
      ok(
        'trust bundle',
        `${files.trustBundleFile}: ${bundle.length} CA${bundle.length === 1 ? '' : 's'} (${bundle.map(commonName).join(', ')})`,
      );
  }

  // 2. The leaf: valid now, chained to the bundle, one identity, the key's pair.
  const leaf = chain?.[0];
  if (!leaf) {
    for (const name of ['validity', 'chain', 'identity'] as const) skip(name, 'no certificate to check');
  } else {
    const notBefore = new Date(leaf.validFrom);
    const notAfter = new Date(leaf.validTo);
    report.notAfter = notAfter;
    report.daysLeft = Math.floor((notAfter.getTime() - now.getTime()) / DAY_MS);
    if (notAfter.getTime() <= now.getTime())
      fail(
        'validity',
        'MESHPORT_TLS_CERT_EXPIRED',
        `${files.certFile} expired on ${notAfter.toISOString()} (${Math.floor((now.getTime() - notAfter.getTime()) / DAY_MS)} whole day(s) ago); peers refuse it`,
      );
    else if (notBefore.getTime() > now.getTime())
      fail(
        'validity',
        'MESHPORT_TLS_CERT_NOT_YET_VALID',
        `${files.certFile} is valid only from ${notBefore.toISOString()} (is this host's clock behind?)`,
      );
    else {
      const detail = `until ${notAfter.toISOString()} (${report.daysLeft} day${report.daysLeft === 1 ? '' : 's'} left)`;
      if (report.daysLeft < TLS_CHECK_DEFAULTS.warnDaysLeft) warn('validity', `${detail}: renew it soon`);
      else ok('validity', detail);
    }

    if (!bundle) skip('chain', 'no trust bundle to check against');
    else {
      const verdict = verifyChain(chain!, bundle, now);
      if (verdict.ok)
        ok('chain', `${verdict.path.map(commonName).join(' <- ')} <- ${commonName(verdict.anchor)} (trust bundle)`);
      else
        fail(
          'chain',
          'MESHPORT_TLS_UNTRUSTED',
          `${files.certFile} does not chain to a CA of ${files.trustBundleFile}: ${verdict.problem}`,
        );
    }

    const ids = spiffeIdsOf(leaf);
    if (ids.length === 1) {
      report.identity = ids[0];
      ok('identity', ids[0]);
    } else
      fail(
        'identity',
        'MESHPORT_TLS_NO_IDENTITY',
        ids.length === 0
          ? `${files.certFile} has no spiffe:// URI in its subjectAltName (${leaf.subjectAltName ?? 'no subjectAltName'}); a sidecar's certificate carries its identity there`
          : `${files.certFile} has ${ids.length} spiffe:// URIs in its subjectAltName (${ids.join(', ')}); SPIFFE allows exactly one`,
      );
  }
  if (!leaf || !key) skip('key pair', `no ${leaf ? 'key' : 'certificate'} to compare`);
  else if (leaf.checkPrivateKey(key)) ok('key pair', `${files.keyFile} is the key of ${files.certFile}`);
  else fail('key pair', 'MESHPORT_TLS_KEY_MISMATCH', `${files.keyFile} is not the private key of ${files.certFile}`);

  if (!checks.some((c) => c.status === 'fail'))
    report.material = {
      certChain: certPem!,
      key: keyPem!,
      trustBundle: bundlePem!,
      identity: report.identity!,
    };
  return report;
}

/** Reads a PEM file, or reports why not (missing, permissions, a directory) through `failed`. */
function readPem(file: string, what: string, failed: (detail: string) => void): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'does not exist'
        : code === 'EACCES' || code === 'EPERM'
          ? `cannot be read by uid ${process.getuid?.() ?? '?'} (permission denied)`
          : code === 'EISDIR'
            ? 'is a directory, not a file'
            : `cannot be read (${reason(err)})`;
    failed(`${what} file ${file} ${why}`);
    return undefined;
  }
}

/** Every certificate of a PEM text, in order; undefined when one of them does not parse. */
function parseCertificates(pem: string): X509Certificate[] | undefined {
  try {
    return (pem.match(PEM_CERT) ?? []).map((block) => new X509Certificate(block));
  } catch {
    return undefined;
  }
}

/**
 * Walks from the leaf up through the file's intermediates to a CA of the bundle, each link checked by name and key
 * identifier (checkIssued) and by signature (verify), each certificate on the way valid now. The TLS layer checks the
 * same again on every handshake; this is for a clear message at start-up instead of peers' handshake failures.
 */
function verifyChain(
  chain: X509Certificate[],
  bundle: X509Certificate[],
  now: Date,
): { ok: true; path: X509Certificate[]; anchor: X509Certificate } | { ok: false; problem: string } {
  const issuedBy = (child: X509Certificate, parent: X509Certificate) =>
    child.checkIssued(parent) && child.verify(parent.publicKey);
  const path: X509Certificate[] = [chain[0]];
  const intermediates = chain.slice(1);
  for (let current = chain[0]; path.length <= 10; ) {
    const anchor = bundle.find((ca) => issuedBy(current, ca));
    if (anchor) {
      const expired = [...path.slice(1), anchor].find(
        (c) => new Date(c.validTo).getTime() <= now.getTime() || new Date(c.validFrom).getTime() > now.getTime(),
      );
      if (expired)
        return {
          ok: false,
          problem: `${commonName(expired)} is valid only ${expired.validFrom} to ${expired.validTo}`,
        };
      return { ok: true, path, anchor };
    }
    const next = intermediates.find((c) => !path.includes(c) && issuedBy(current, c));
    if (!next)
      return {
        ok: false,
        problem: `no CA there issued ${commonName(current)} (issuer: ${oneLine(current.issuer)})`,
      };
    path.push(next);
    current = next;
  }
  return { ok: false, problem: 'the chain is longer than 10 certificates' };
}

function commonName(cert: X509Certificate): string {
  return /(?:^|\n)CN=([^\n]+)/.exec(cert.subject)?.[1] ?? oneLine(cert.subject);
}

const oneLine = (name: string) => name.split('\n').join(', ');

function describeKey(key: KeyObject): string {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'ec') return `EC ${d?.namedCurve ?? ''}`.trim();
  if (key.asymmetricKeyType === 'rsa') return `RSA ${d?.modulusLength ?? ''}`.trim();
  return key.asymmetricKeyType ?? 'a key';
}

const reason = (err: unknown) => (err instanceof Error ? err.message : String(err));
