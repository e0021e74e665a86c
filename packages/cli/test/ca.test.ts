// `meshport ca init` / `meshport ca issue` and `meshport doctor tls` as a user runs them: the real binary, file modes,
// exit codes, messages; the certificates it writes checked by openssl.

import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { makeTestPki, type TestPki } from '@meshport/testkit';

const BIN = path.resolve(__dirname, '../../bin/meshport.js');

function meshport(args: string[], cwd?: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    env: { ...process.env, NO_COLOR: '' },
    timeout: 60000,
    cwd,
    encoding: 'utf8',
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const mode = (file: string) => statSync(file).mode & 0o777;

describe('meshport ca', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'meshport-cli-ca-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('init, then issue: files with modes 0644/0600, a leaf openssl verifies with the identity as URI SAN', () => {
    const ca = path.join(dir, 'ca');
    const init = meshport(['ca', 'init', '--dir', ca, '--trust-domain', 'cluster.local', '--days', '30']);
    assert.equal(init.code, 0, init.stderr);
    assert.match(init.stdout, /^meshport ca init: a CA for trust domain cluster\.local, valid until \d{4}-/);
    assert.equal(mode(path.join(ca, 'ca.pem')), 0o644);
    assert.equal(mode(path.join(ca, 'ca-key.pem')), 0o600);

    const id = 'spiffe://cluster.local/ns/default/sa/echo';
    const out = path.join(dir, 'certs', 'echo');
    const issue = meshport(['ca', 'issue', '--dir', ca, '--id', id, '--out', out, '--days', '7']);
    assert.equal(issue.code, 0, issue.stderr);
    assert.match(issue.stdout, new RegExp(`^meshport ca issue: ${id.replace(/[/.]/g, '\\$&')}, valid until`));
    assert.ok(issue.stdout.includes(`${out}.pem`) && issue.stdout.includes(`${out}-key.pem`));
    assert.equal(mode(`${out}.pem`), 0o644);
    assert.equal(mode(`${out}-key.pem`), 0o600);
    const verify = spawnSync('openssl', ['verify', '-CAfile', path.join(ca, 'ca.pem'), `${out}.pem`], {
      encoding: 'utf8',
    });
    assert.equal(verify.status, 0, verify.stderr);
    const text = spawnSync('openssl', ['x509', '-noout', '-text', '-in', `${out}.pem`], { encoding: 'utf8' }).stdout;
    assert.ok(text.includes(`URI:${id}`));
  });

  it('keys stay 0600 under a permissive umask and when issuing over an existing 0644 file', () => {
    const ca = path.join(dir, 'ca');
    const r = spawnSync(
      'sh',
      ['-c', `umask 000 && "${process.execPath}" "${BIN}" ca init --dir "${ca}" --trust-domain td`],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(mode(path.join(ca, 'ca-key.pem')), 0o600);
    const out = path.join(dir, 'app');
    writeFileSync(`${out}-key.pem`, 'old');
    chmodSync(`${out}-key.pem`, 0o644);
    assert.equal(meshport(['ca', 'issue', '--dir', ca, '--id', 'spiffe://td/a', '--out', out]).code, 0);
    assert.equal(mode(`${out}-key.pem`), 0o600);
    assert.match(readFileSync(`${out}-key.pem`, 'utf8'), /BEGIN PRIVATE KEY/);
  });

  it('init over an existing CA: exit 1, MESHPORT_CA_EXISTS, the CA untouched', () => {
    assert.equal(meshport(['ca', 'init', '--dir', dir, '--trust-domain', 'cluster.local']).code, 0);
    const key = readFileSync(path.join(dir, 'ca-key.pem'), 'utf8');
    const again = meshport(['ca', 'init', '--dir', dir, '--trust-domain', 'cluster.local']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^meshport ca init: MESHPORT_CA_EXISTS: .*ca\.pem exists/);
    assert.equal(readFileSync(path.join(dir, 'ca-key.pem'), 'utf8'), key);
  });

  it('issue without a CA: exit 1, MESHPORT_CA_INVALID naming the file and the init command', () => {
    const r = meshport(['ca', 'issue', '--dir', dir, '--id', 'spiffe://td/a', '--out', path.join(dir, 'x')]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /^meshport ca issue: MESHPORT_CA_INVALID: .*ca\.pem does not exist \(create the CA with 'meshport ca init/,
    );
  });

  it('usage mistakes exit 2 with the pointer to the subcommand help', () => {
    assert.equal(meshport(['ca', 'init', '--dir', dir, '--trust-domain', 'cluster.local']).code, 0);
    const cases: [string[], RegExp][] = [
      [
        ['ca', 'issue', '--dir', dir, '--id', 'spiffe://elsewhere/ns/a/sa/b', '--out', 'x'],
        /is in trust domain elsewhere, but the CA in .* issues for cluster\.local/,
      ],
      [
        ['ca', 'issue', '--dir', dir, '--id', 'http://cluster.local/a', '--out', 'x'],
        /does not start with spiffe:\/\//,
      ],
      [
        ['ca', 'issue', '--dir', dir, '--id', 'spiffe://cluster.local/a'],
        /required option '--out <PATH>' not specified/,
      ],
      [
        ['ca', 'issue', '--dir', dir, '--id', 'spiffe://cluster.local/a', '--out', 'x', '--days', '0'],
        /'--days <N>' argument '0' is invalid/,
      ],
      [
        ['ca', 'init', '--dir', path.join(dir, 'b'), '--trust-domain', 'Not_Lower'],
        /'Not_Lower' is not a trust domain/,
      ],
      [['ca', 'init', '--dir', path.join(dir, 'b')], /required option '--trust-domain <TD>'/],
      [['ca', 'init', '--dir', path.join(dir, 'b'), '--trust-domain', 'td', '--bogus'], /unknown option '--bogus'/],
    ];
    for (const [args, message] of cases) {
      const r = meshport(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      const sub = args[1];
      assert.match(r.stderr, new RegExp(`^meshport ca ${sub}: `), r.stderr);
      assert.match(r.stderr, message);
      assert.match(r.stderr, new RegExp(`Run 'meshport ca ${sub} --help' for usage\\.\\n$`));
    }
    assert.equal(existsSync(path.join(dir, 'b', 'ca.pem')), false);
    assert.equal(meshport(['ca']).code, 2, 'no subcommand');
  });

  it('per-command help: meshport ca --help lists init and issue; each has its options and exit codes', () => {
    const top = meshport(['ca', '--help']);
    assert.equal(top.code, 0);
    assert.match(top.stdout, /init \[options\]/);
    assert.match(top.stdout, /issue \[options\]/);
    const issue = meshport(['ca', 'issue', '--help']);
    assert.equal(issue.code, 0);
    for (const opt of ['--dir <DIR>', '--id <URI>', '--out <PATH>', '--days <N>'])
      assert.ok(issue.stdout.includes(opt), opt);
    assert.match(issue.stdout, /Exit codes: 0 done/);
    assert.match(meshport(['--help']).stdout, /\n {2}ca\s+A development CA/);
  });
});

describe('meshport doctor tls', () => {
  let dir: string;
  let pki: TestPki;
  before(() => {
    pki = makeTestPki({ trustDomain: 'cluster.local' });
  });
  after(() => pki.cleanup());
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'meshport-doctor-tls-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const ID = 'spiffe://cluster.local/ns/default/sa/app';
  const flags = (leaf: { certFile: string; keyFile: string }, bundle = pki.trustBundleFile) => [
    '--cert',
    leaf.certFile,
    '--key',
    leaf.keyFile,
    '--trust-bundle',
    bundle,
  ];

  it('good files: a ✓ line per check, the identity and the days left, exit 0', () => {
    const leaf = pki.issue(ID, { days: 30 });
    const r = meshport(['doctor', 'tls', ...flags(leaf)]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines[0], `meshport doctor tls: ${leaf.certFile}`);
    assert.deepEqual(
      lines.slice(1, 8).map((l) => l.split(/ {2,}/)[0]),
      ['✓ certificate', '✓ key', '✓ trust bundle', '✓ validity', '✓ chain', '✓ identity', '✓ key pair'],
    );
    assert.match(r.stdout, /✓ validity +until \d{4}-\d\d-\d\dT[\d:.]+Z \((29|30) days left\)/);
    assert.match(r.stdout, new RegExp(`✓ identity +${ID.replace(/[/.]/g, '\\$&')}\\n`));
    assert.match(lines[8], /^ok: spiffe:\/\/cluster\.local\/ns\/default\/sa\/app, (29|30) days left$/);
  });

  it('an expired certificate of another CA with a wrong key: every problem shown, exit 1', () => {
    const other = makeTestPki({ trustDomain: 'cluster.local', name: 'another CA' });
    try {
      const expired = other.issue(ID, { expired: true });
      const stranger = pki.issue(ID);
      const r = meshport(['doctor', 'tls', ...flags({ certFile: expired.certFile, keyFile: stranger.keyFile })]);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /✗ validity +.* expired on .*day\(s\) ago/);
      assert.match(r.stdout, /✗ chain +.* does not chain to a CA of /);
      assert.match(r.stdout, /✗ key pair +.* is not the private key of /);
      assert.match(r.stdout, /\n3 problem\(s\): the sidecar would refuse these files\n$/);
    } finally {
      other.cleanup();
    }
  });

  it('a missing file and a certificate without identity; --json carries the codes', () => {
    const none = pki.issue(ID, { noIdentity: true });
    const r = meshport(['doctor', 'tls', '--json', ...flags(none)]);
    assert.equal(r.code, 1);
    const report = JSON.parse(r.stdout) as { ok: boolean; checks: { name: string; status: string; code?: string }[] };
    assert.equal(report.ok, false);
    assert.deepEqual(
      report.checks.filter((c) => c.status === 'fail').map((c) => [c.name, c.code]),
      [['identity', 'MESHPORT_TLS_NO_IDENTITY']],
    );
    const missing = meshport([
      'doctor',
      'tls',
      ...flags({ certFile: path.join(dir, 'nope.pem'), keyFile: none.keyFile }),
    ]);
    assert.equal(missing.code, 1);
    assert.match(missing.stdout, /✗ certificate +certificate file .*nope\.pem does not exist/);
    assert.match(missing.stdout, /- validity +no certificate to check/);
  });

  it('--config: the files of the tls block, relative to the config; mode off without files is nothing to check', () => {
    const leaf = pki.issue(ID);
    const config = path.join(dir, 'meshport.yaml');
    writeFileSync(path.join(dir, 'cert.pem'), leaf.certPem);
    writeFileSync(path.join(dir, 'key.pem'), leaf.keyPem, { mode: 0o600 });
    writeFileSync(path.join(dir, 'bundle.pem'), pki.caPem);
    writeFileSync(
      config,
      'tls:\n  mode: strict\n  certFile: cert.pem\n  keyFile: key.pem\n  trustBundleFile: bundle.pem\n  trustDomain: other.example\n',
    );
    const r = meshport(['doctor', 'tls', '--config', config]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^meshport doctor tls: .*meshport\.yaml \(tls\.mode strict\)\n/);
    assert.ok(r.stdout.includes(path.join(dir, 'cert.pem')));
    assert.match(r.stdout, /! trust domain +tls\.trustDomain is other\.example, the identity's is cluster\.local/);

    writeFileSync(config, 'log:\n  level: info\n');
    const off = meshport(['doctor', 'tls', '--config', config]);
    assert.equal(off.code, 0);
    assert.match(off.stdout, /tls\.mode is off and names no certificate files: nothing to check/);

    writeFileSync(config, 'tls:\n  mode: sideways\n');
    const bad = meshport(['doctor', 'tls', '--config', config]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^meshport doctor tls: MESHPORT_CONFIG_INVALID: .*tls\.mode/m);
  });

  it('usage: the files go together, not with --config; help; plain doctor still knows its own options', () => {
    const leaf = pki.issue(ID);
    for (const args of [
      ['doctor', 'tls'],
      ['doctor', 'tls', '--cert', leaf.certFile],
      ['doctor', 'tls', '--config', 'x.yaml', '--cert', leaf.certFile],
      ['doctor', 'tls', '--nope'],
    ]) {
      const r = meshport(args);
      assert.equal(r.code, 2, args.join(' '));
      assert.match(r.stderr, /^meshport doctor tls: .*\nRun 'meshport doctor tls --help' for usage\.\n$/);
    }
    const help = meshport(['doctor', 'tls', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--trust-bundle FILE/);
    assert.match(meshport(['doctor', '--help']).stdout, /meshport doctor tls \(--config FILE/);
    assert.equal(meshport(['doctor', '--outbound-port', '1']).code, 2, 'the capture doctor parses as before');
  });
});
