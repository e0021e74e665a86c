// `meshport ca init` and `meshport ca issue`: the development CA (see @meshport/sidecar's identity module), for the
// demo, the tests and a laptop; an operator's CA (cert-manager, SPIRE) writes the same files instead (docs/security.md).

import { type Command, InvalidArgumentError } from 'commander';
import { UsageError } from './errors';
import type { Io } from './io';

const CA_EXIT_CODES =
  'Exit codes: 0 done, 1 the CA directory holds a CA already (init) or no usable one (issue), 2 usage (a malformed identity or trust domain included).';

/** Adds `init` and `issue` to the `ca` command; `run` is main.ts's wrapper (exit code, UsageError to exit 2). */
export function registerCaCommands(
  ca: Command,
  io: Io,
  run: (name: string, action: () => Promise<number>) => Promise<void>,
): Command {
  ca.addHelpText(
    'after',
    '\nThe CA key never leaves DIR (ca-key.pem, mode 0600). For production, let your own CA (cert-manager, SPIRE)\n' +
      'write the certificate, key and trust bundle files instead; docs/security.md says how.',
  );
  const sub = (name: string, description: string) => {
    const cmd = ca.command(name).description(description).helpOption('-h, --help', 'print this help');
    const prefix = `meshport ca ${name}`;
    // The same message shape as every other command, named down to the subcommand.
    cmd.exitOverride().configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      outputError: (text, write) =>
        write(`${prefix}: ${text.replace(/^error: /, '').trimEnd()}\nRun '${prefix} --help' for usage.\n`),
    });
    cmd.addHelpText('after', `\n${CA_EXIT_CODES}\n`);
    return cmd;
  };

  sub('init', 'Create a development CA for a trust domain: DIR/ca.pem (the trust bundle) and DIR/ca-key.pem (0600)')
    .requiredOption('--dir <DIR>', 'where the CA goes (created if missing); an existing CA there is never overwritten')
    .requiredOption('--trust-domain <TD>', 'the trust domain its identities are in, e.g. cluster.local')
    .option('--days <N>', 'how long the CA is valid (default 365)', parseDays)
    .action((opts: { dir: string; trustDomain: string; days?: number }) =>
      run('ca init', async () => {
        const { initCa } = await import('@meshport/sidecar');
        return failures(io, 'ca init', () => {
          const created = initCa({ dir: opts.dir, trustDomain: opts.trustDomain, days: opts.days });
          io.stdout.write(
            `meshport ca init: a CA for trust domain ${created.trustDomain}, valid until ${created.notAfter.toISOString()}\n` +
              `  ${created.certFile}  the trust bundle: tls.trustBundleFile of every sidecar\n` +
              `  ${created.keyFile}  its key (0600): keep it on this machine\n`,
          );
        });
      }),
    );

  sub('issue', 'Issue a certificate for an identity from the CA in DIR: OUT.pem and OUT-key.pem (0600)')
    .requiredOption('--dir <DIR>', 'the CA directory of meshport ca init')
    .requiredOption('--id <URI>', "the identity, in the CA's trust domain: spiffe://TD/ns/NAMESPACE/sa/APP")
    .requiredOption(
      '--out <PATH>',
      'the files: PATH.pem (certificate, tls.certFile) and PATH-key.pem (key, tls.keyFile)',
    )
    .option('--days <N>', "how long it is valid (default 90; never past the CA's end)", parseDays)
    .addHelpText('after', '\nIssuing again for the same OUT replaces both files (each renamed into place): a rotation.')
    .action((opts: { dir: string; id: string; out: string; days?: number }) =>
      run('ca issue', async () => {
        const { issueCertificate } = await import('@meshport/sidecar');
        return failures(io, 'ca issue', () => {
          const leaf = issueCertificate({ caDir: opts.dir, id: opts.id, out: opts.out, days: opts.days });
          io.stdout.write(
            `meshport ca issue: ${leaf.id}, valid until ${leaf.notAfter.toISOString()}${leaf.endsWithCa ? " (the CA's end)" : ''}\n` +
              `  ${leaf.certFile}  the certificate: tls.certFile\n` +
              `  ${leaf.keyFile}  its key (0600): tls.keyFile\n`,
          );
        });
      }),
    );
  return ca;
}

/**
 * A malformed identity or trust domain is a usage mistake (exit 2, via UsageError); a CA that exists already (init) or
 * cannot be used (issue) is a failed command: `meshport ca X: CODE: message`, exit 1.
 */
function failures(io: Io, name: string, action: () => void): number {
  try {
    action();
    return 0;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 'MESHPORT_CA_BAD_IDENTITY') throw new UsageError((err as Error).message);
    if (code === 'MESHPORT_CA_EXISTS' || code === 'MESHPORT_CA_INVALID') {
      io.stderr.write(`meshport ${name}: ${String(code)}: ${(err as Error).message}\n`);
      return 1;
    }
    const { syscall } = err as NodeJS.ErrnoException;
    if (typeof code === 'string' && syscall !== undefined) {
      // The filesystem's refusal (a directory that cannot be created, a read-only mount): its words, no stack.
      io.stderr.write(`meshport ${name}: ${code}: ${(err as Error).message}\n`);
      return 1;
    }
    throw err;
  }
}

function parseDays(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 36500)
    throw new InvalidArgumentError('give a whole number of days from 1 to 36500.');
  return Number(text);
}
