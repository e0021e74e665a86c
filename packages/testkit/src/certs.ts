// Test certificates made by the openssl command, not by meshport: a CA per trust domain and SPIFFE leaves it issues
// (valid, expired, not yet valid), so the suites check meshport's TLS against certificates it did not write itself.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface TestLeaf {
  identity: string;
  certFile: string;
  keyFile: string;
  certPem: string;
  keyPem: string;
}

export interface TestLeafOptions {
  /** Valid from now for this many days. @default 30 */
  days?: number;
  /** Ended yesterday (valid from 10 days ago to 1 day ago). */
  expired?: boolean;
  /** Starts tomorrow. */
  notYetValid?: boolean;
  /** Leave the URI SAN out (a certificate with no identity). */
  noIdentity?: boolean;
}

export interface TestPki {
  /** The directory all files live in; removed by cleanup(). */
  dir: string;
  trustDomain: string;
  caPem: string;
  /** The CA certificate as a file: the trust bundle meshport is configured with. */
  trustBundleFile: string;
  /** A leaf with `identity` (a spiffe:// URI) as its URI SAN, ECDSA P-256, for client and server use. */
  issue(identity: string, options?: TestLeafOptions): TestLeaf;
  cleanup(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** openssl ca's date form, YYYYMMDDHHMMSSZ. */
function asn1Time(d: Date): string {
  return `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

/** A CA (ECDSA P-256, self-signed) for `trustDomain`, in a fresh temporary directory. */
export function makeTestPki(options: { trustDomain?: string; name?: string } = {}): TestPki {
  const trustDomain = options.trustDomain ?? 'cluster.local';
  const dir = mkdtempSync(path.join(tmpdir(), 'meshport-pki-'));
  writeFileSync(path.join(dir, 'index.txt'), '');
  writeFileSync(path.join(dir, 'serial'), '1000\n');
  // `openssl ca` is the one openssl command that takes explicit start and end dates (for expired leaves).
  writeFileSync(
    path.join(dir, 'ca.cnf'),
    [
      '[ca]',
      'default_ca = test_ca',
      '[test_ca]',
      `dir = ${dir}`,
      'database = $dir/index.txt',
      'serial = $dir/serial',
      'new_certs_dir = $dir',
      'certificate = $dir/ca.pem',
      'private_key = $dir/ca-key.pem',
      'default_md = sha256',
      'policy = any',
      'unique_subject = no',
      'copy_extensions = none',
      'default_days = 30',
      '[any]',
      'commonName = supplied',
      '[req]',
      'distinguished_name = dn',
      '[dn]',
      '[ca_ext]',
      'basicConstraints = critical, CA:true',
      'keyUsage = critical, keyCertSign, cRLSign',
      'subjectKeyIdentifier = hash',
      '',
    ].join('\n'),
  );
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca-key.pem'], dir);
  openssl(
    [
      'req',
      '-new',
      '-x509',
      '-key',
      'ca-key.pem',
      '-out',
      'ca.pem',
      '-days',
      '365',
      '-subj',
      `/O=meshport tests/CN=${options.name ?? `test CA for ${trustDomain}`}`,
      '-config',
      'ca.cnf',
      '-extensions',
      'ca_ext',
    ],
    dir,
  );
  const caPem = readFileSync(path.join(dir, 'ca.pem'), 'utf8');
  let n = 0;
  return {
    dir,
    trustDomain,
    caPem,
    trustBundleFile: path.join(dir, 'ca.pem'),
    issue(identity, leafOptions = {}) {
      const name = `leaf-${++n}`;
      const ext = path.join(dir, `${name}.ext`);
      writeFileSync(
        ext,
        [
          '[leaf]',
          'basicConstraints = critical, CA:false',
          'keyUsage = critical, digitalSignature',
          'extendedKeyUsage = serverAuth, clientAuth',
          ...(leafOptions.noIdentity ? [] : [`subjectAltName = URI:${identity}`]),
          '',
        ].join('\n'),
      );
      openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}-ec.pem`], dir);
      openssl(['pkcs8', '-topk8', '-nocrypt', '-in', `${name}-ec.pem`, '-out', `${name}-key.pem`], dir);
      openssl(['req', '-new', '-key', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir);
      const day = 24 * 3600 * 1000;
      const now = Date.now();
      const [start, end] = leafOptions.expired
        ? [new Date(now - 10 * day), new Date(now - day)]
        : leafOptions.notYetValid
          ? [new Date(now + day), new Date(now + 10 * day)]
          : [new Date(now - 60_000), new Date(now + (leafOptions.days ?? 30) * day)];
      openssl(
        [
          'ca',
          '-batch',
          '-notext',
          '-config',
          'ca.cnf',
          '-in',
          `${name}.csr`,
          '-out',
          `${name}.pem`,
          '-startdate',
          asn1Time(start),
          '-enddate',
          asn1Time(end),
          '-extfile',
          ext,
          '-extensions',
          'leaf',
        ],
        dir,
      );
      const certFile = path.join(dir, `${name}.pem`);
      const keyFile = path.join(dir, `${name}-key.pem`);
      return {
        identity,
        certFile,
        keyFile,
        certPem: readFileSync(certFile, 'utf8'),
        keyPem: readFileSync(keyFile, 'utf8'),
      };
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
