// `meshport doctor tls`: the sidecar's certificate files checked as the sidecar will check them at start-up and on
// rotation (present, readable, valid now with the days left, chain to the bundle, one spiffe:// identity, key pair),
// every check printed, so an operator sees all that is wrong at once rather than the first failure.

import { parseArgs } from 'node:util';
import type { TlsCheck, TlsFiles, TlsFilesReport } from '@meshport/sidecar';
import type { Io } from './io';

export const DOCTOR_TLS_USAGE = `Usage:
  meshport doctor tls --config FILE [--json]
  meshport doctor tls --cert FILE --key FILE --trust-bundle FILE [--json]

  Checks this sidecar's TLS files as the sidecar does when it starts and when they change: each file present,
  readable and PEM; the certificate valid now (and the days it has left; under 7 is a warning); its chain verifies
  against the trust bundle; its subjectAltName carries exactly one spiffe:// identity; the key is the certificate's.

  --config FILE        the files of the config's tls block (tls.certFile, tls.keyFile, tls.trustBundleFile)
  --cert FILE          the certificate (leaf first, then any intermediates)
  --key FILE           its private key
  --trust-bundle FILE  the CA certificates peers' chains end at
  --json               one JSON object {"ok", "identity", "notAfter", "daysLeft", "checks": [{"name", "status",
                       "detail", "code"}]}

Exit codes: 0 every check passed (warnings included), 1 a check failed, 2 usage error or a config that does not load.
`;

const MARK: Record<TlsCheck['status'], string> = { ok: '✓', warn: '!', fail: '✗', skipped: '-' };

/** Runs `meshport doctor tls …` (argv after `tls`) and returns the exit code. */
export async function runDoctorTls(argv: string[], io: Io): Promise<number> {
  const usage = (message: string) => {
    io.stderr.write(`meshport doctor tls: ${message}\nRun 'meshport doctor tls --help' for usage.\n`);
    return 2;
  };
  let values: { config?: string; cert?: string; key?: string; 'trust-bundle'?: string; json?: boolean; help?: boolean };
  try {
    values = parseArgs({
      args: argv,
      options: {
        config: { type: 'string' },
        cert: { type: 'string' },
        key: { type: 'string' },
        'trust-bundle': { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      allowPositionals: false,
      strict: true,
    }).values;
  } catch (err) {
    return usage((err as Error).message);
  }
  if (values.help) {
    io.stdout.write(DOCTOR_TLS_USAGE);
    return 0;
  }
  const given = (['cert', 'key', 'trust-bundle'] as const).filter((k) => values[k] !== undefined);
  if (values.config !== undefined && given.length > 0)
    return usage(`--config names the files itself; leave out ${given.map((k) => `--${k}`).join(', ')}`);
  if (values.config === undefined && given.length < 3)
    return usage(
      given.length === 0
        ? 'give --config FILE, or --cert, --key and --trust-bundle'
        : `--cert, --key and --trust-bundle go together (missing: ${(['cert', 'key', 'trust-bundle'] as const)
            .filter((k) => values[k] === undefined)
            .map((k) => `--${k}`)
            .join(', ')})`,
    );

  // Loaded here: the sidecar package is only needed once the command line is good.
  const { checkTlsFiles, loadConfig, parseSpiffeId } = await import('@meshport/sidecar');
  let files: TlsFiles;
  let heading: string;
  let configTrustDomain: string | undefined;
  if (values.config !== undefined) {
    let tls;
    try {
      tls = (await loadConfig(values.config)).tls;
    } catch (err) {
      const problems = (err as { problems?: { code: string; message: string }[] }).problems;
      if (!problems) throw err;
      for (const p of problems) io.stderr.write(`meshport doctor tls: ${p.code}: ${p.message}\n`);
      return 2;
    }
    if (!tls.certFile || !tls.keyFile || !tls.trustBundleFile) {
      // Only with mode off may the files be left out (the config check requires them otherwise).
      const message = `${values.config}: tls.mode is ${tls.mode} and names no certificate files: nothing to check`;
      io.stdout.write(values.json ? `${JSON.stringify({ ok: true, mode: tls.mode, checks: [] })}\n` : `${message}\n`);
      return 0;
    }
    files = { certFile: tls.certFile, keyFile: tls.keyFile, trustBundleFile: tls.trustBundleFile };
    heading = `${values.config} (tls.mode ${tls.mode})`;
    configTrustDomain = tls.trustDomain;
  } else {
    files = { certFile: values.cert!, keyFile: values.key!, trustBundleFile: values['trust-bundle']! };
    heading = files.certFile;
  }

  const report = checkTlsFiles(files);
  const checks: (TlsCheck | { name: string; status: TlsCheck['status']; detail: string })[] = [...report.checks];
  // authz.default allow-trust-domain admits tls.trustDomain; one other than the identity's is legal but worth a look.
  const parsed = report.identity === undefined ? undefined : parseSpiffeId(report.identity);
  const ownDomain = parsed && 'trustDomain' in parsed ? parsed.trustDomain : undefined;
  if (configTrustDomain !== undefined && ownDomain !== undefined && configTrustDomain !== ownDomain)
    checks.push({
      name: 'trust domain',
      status: 'warn',
      detail: `tls.trustDomain is ${configTrustDomain}, the identity's is ${ownDomain}: allow-trust-domain admits callers of ${configTrustDomain}`,
    });
  const ok = !checks.some((c) => c.status === 'fail');
  if (values.json) io.stdout.write(`${JSON.stringify(jsonReport(report, checks, ok))}\n`);
  else io.stdout.write(formatTable(heading, report, checks, ok));
  return ok ? 0 : 1;
}

function jsonReport(report: TlsFilesReport, checks: { name: string }[], ok: boolean) {
  return {
    ok,
    identity: report.identity ?? null,
    notAfter: report.notAfter?.toISOString() ?? null,
    daysLeft: report.daysLeft ?? null,
    checks,
  };
}

/** One line a check: mark, name, detail; then the verdict. */
function formatTable(
  heading: string,
  report: TlsFilesReport,
  checks: { name: string; status: TlsCheck['status']; detail: string }[],
  ok: boolean,
): string {
  const width = Math.max(...checks.map((c) => c.name.length));
  const lines = checks.map((c) => `${MARK[c.status]} ${c.name.padEnd(width)}  ${c.detail}`);
  const verdict = ok
    ? `ok: ${report.identity}, ${report.daysLeft} day${report.daysLeft === 1 ? '' : 's'} left`
    : `${checks.filter((c) => c.status === 'fail').length} problem(s): the sidecar would refuse these files`;
  return `meshport doctor tls: ${heading}\n${lines.join('\n')}\n${verdict}\n`;
}
