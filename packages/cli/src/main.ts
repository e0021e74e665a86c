// The `meshport` command: each command with its own options and help (commander), dispatched to its module.
//
// commander rather than node:util parseArgs: the help of each command is generated from the options it declares, so
// help and parser cannot drift apart, and per-command options, `--version`, `--no-color`, option conflicts and
// "unknown option" errors come with it. `hijack` and `doctor` keep their own parsers (they load the kernel-side package
// on demand and have their own help and exit codes); they are listed here and handed their arguments untouched.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { registerCaCommands } from './ca';
import { UsageError } from './errors';
import { colourWanted } from './format';
import { processIo, type Io } from './io';
// Two small modules of plain functions (no dependencies), so the flags' choices are the view's own keys.
import { SORT_KEYS, type SortKey } from './top/figures';
import { DIRECTION_FILTERS, type DirectionFilter } from './top/screen';

export { CLI_ERROR_CODES, CliError, UsageError, InputError } from './errors';
export type { CliErrorCode } from './errors';

/** `meshport top`'s --admin default: the sidecar's own default admin port (SIDECAR_DEFAULTS.admin; a test keeps them equal). */
export const DEFAULT_ADMIN = '127.0.0.1:15000';

const EXIT_CODES = `Exit codes: 0 ok, 1 bad input or a failed command, 2 usage, config or start-up error (docs/errors.md).`;

/** Runs `meshport ARGV...` and resolves to the exit code. */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  // Their own parsers, help and exit codes; loaded on demand so the other commands never load the kernel-side package.
  // `meshport help hijack` is `meshport hijack --help`.
  const own = argv[0] === 'help' && (argv[1] === 'hijack' || argv[1] === 'doctor') ? [argv[1], '--help'] : argv;
  if (own[0] === 'hijack') {
    const { runHijack } = await import('./hijack.js');
    return runHijack(own.slice(1), io);
  }
  if (own[0] === 'doctor') {
    const { runDoctorCommand } = await import('./doctor.js');
    return runDoctorCommand(own.slice(1), io);
  }
  let code = 0;
  const program = buildProgram(io, (c) => (code = c));
  if (argv.length === 0) {
    io.stderr.write(program.helpInformation());
    return 2;
  }
  if (argv[0] === 'help' && argv[1] !== undefined && !program.commands.some((c) => c.name() === argv[1])) {
    io.stderr.write(`meshport: unknown command '${argv[1]}'\nRun 'meshport --help' for usage.\n`);
    return 2;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help (asked for: `--help`, `help [COMMAND]`) and version are printed and exit 0; every other commander error is
      // a usage mistake, already printed.
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return 0;
      return err.code === 'commander.help' && err.exitCode === 0 ? 0 : 2;
    }
    throw err;
  }
}

/** The program: one subcommand per command; `done` receives the exit code of the command that ran. */
export function buildProgram(io: Io, done: (code: number) => void): Command {
  const program = new Command('meshport')
    .description('A sidecar for SOFA-style RPC (Bolt and Dubbo)')
    .version(version(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'print this help (`meshport COMMAND --help`: that command)')
    .showSuggestionAfterError(false)
    .addHelpText('after', `\n${EXIT_CODES}\n`);
  wireOutput(program, 'meshport', io);

  const command = (name: string, description: string) => {
    const cmd = program
      .command(name)
      .description(description)
      .helpOption('-h, --help', 'print this help')
      .allowExcessArguments(false);
    wireOutput(cmd, `meshport ${name}`, io);
    cmd.addHelpText('after', `\n${EXIT_CODES}\n`);
    return cmd;
  };
  const run = (name: string, action: () => Promise<number>) =>
    action().then(done, (err: unknown) => {
      if (!(err instanceof UsageError)) throw err;
      io.stderr.write(`meshport ${name}: ${err.message}\nRun 'meshport ${name} --help' for usage.\n`);
      done(2);
    });

  command(
    'decode',
    'Decode Bolt v1/v2 and Dubbo frames (one or many, concatenated); without an input option, reads stdin',
  )
    .addOption(new Option('--hex <HEX>', 'the frames as hex text').conflicts(['base64', 'file']))
    .addOption(new Option('--base64 <B64>', 'the frames as base64').conflicts(['file']))
    .option('--file <PATH>', "a file of raw bytes or hex text ('-': stdin)")
    .option('--json', 'one JSON object per frame per line')
    .option('--body', 'also decode bodies through hessian (display only); a body no decoder reads is noted')
    .addOption(maxFrameSizeOption())
    .option('--color', 'colours on (default: on for a terminal, off with NO_COLOR)')
    .option('--no-color', 'colours off')
    .action((opts: DecodeFlags) =>
      run('decode', async () => {
        // decode and tap load hessian.js (for --body): imported only by them, so `meshport sidecar` never loads a
        // deserializer into the data path's process.
        const { runDecode } = await import('./decode.js');
        return runDecode(
          {
            ...opts,
            json: opts.json ?? false,
            body: opts.body ?? false,
            colour: colourWanted(process.stdout, opts.color),
          },
          io,
        );
      }),
    );

  command('tap', 'Forward TCP unchanged and print every frame both ways, with request/response pairing')
    .requiredOption('--listen <ADDR>', 'where the client connects: HOST:PORT, :PORT or PORT (loopback)')
    .requiredOption('--upstream <ADDR>', 'where the tap forwards to: HOST:PORT')
    .option('--json', 'one JSON object per frame, and per connection event, per line')
    .option('--body', 'also decode bodies through hessian (display only)')
    .option('--with-bytes', "with --json: each frame's bytes as hex")
    .addOption(maxFrameSizeOption())
    .option('--color', 'colours on (default: on for a terminal, off with NO_COLOR)')
    .option('--no-color', 'colours off')
    .action((opts: TapFlags) => run('tap', () => runTapCommand(opts, io)));

  command('sidecar', 'Run the sidecar: router, registry adapters and facades, capture listeners, as the config says')
    .option('--config <FILE>', 'the config (default: loopback listeners and the file registry meshport-registry.json)')
    .option('--check', 'check the config, its addresses and plugins, then exit 0 (good) or 2 without starting anything')
    .addOption(
      new Option('--log-level <LEVEL>', "overrides the config's log.level").choices([
        'fatal',
        'error',
        'warn',
        'info',
        'debug',
        'trace',
        'silent',
      ]),
    )
    .addOption(
      new Option('--log-format <FORMAT>', 'json (one object a line) or pretty (for people); auto: pretty on a terminal')
        .choices(['auto', 'json', 'pretty'])
        .default('auto'),
    )
    .addHelpText(
      'after',
      '\nDrains on SIGTERM/SIGINT; SIGHUP re-reads the config (registries and routes) without a restart.',
    )
    .action((opts: SidecarFlags) => run('sidecar', () => runSidecar(opts, io)));

  // Listed for the help; main() hands their arguments to their own parsers before commander sees them.
  command(
    'hijack',
    "Install, remove or show the kernel rules that send the app's connections to the sidecar (meshport hijack --help)",
  );
  command(
    'doctor',
    'Try each capture mode for real in a scratch netns or cgroup and say which work here (meshport doctor --help)',
  );

  registerCaCommands(
    command('ca', 'A development CA on this machine: create one, issue SPIFFE identity certificates from it'),
    io,
    run,
  );

  command('top', 'A live view of a running sidecar: per service and method req/s, success rate, p50/p99, top callers')
    .option('--admin <ADDR>', "the sidecar's admin port: HOST:PORT, :PORT or PORT (loopback)", DEFAULT_ADMIN)
    .option('--interval <SECONDS>', 'seconds between reads (the figures are over this interval)', parseInterval, 1)
    .addOption(
      new Option('--sort <KEY>', 'the order of the rows (keys r s 5 9 n in the live view)')
        .choices(SORT_KEYS)
        .default('rps'),
    )
    .addOption(
      new Option('--direction <WHICH>', 'which rows (key d in the live view)')
        .choices(DIRECTION_FILTERS)
        .default('all'),
    )
    .option('--json', 'one JSON object per interval on stdout instead of the screen (for scripts)')
    .option('--once', 'one interval (two reads --interval apart), printed once, then exit')
    .addHelpText(
      'after',
      '\nKeys: r req/s, s success, 5 p50, 9 p99, n name (sort); d all/outbound/inbound; q quit.\n' +
        `Reads the admin page /services; the sidecar's admin port is ${DEFAULT_ADMIN} unless its config says otherwise.`,
    )
    .action((opts: TopFlags) =>
      run('top', async () => {
        const { runTop, topFailure } = await import('./top.js');
        try {
          return await runTop(
            {
              admin: opts.admin,
              intervalSeconds: opts.interval,
              sort: opts.sort,
              direction: opts.direction,
              json: opts.json ?? false,
              once: opts.once ?? false,
            },
            io,
          );
        } catch (err) {
          return topFailure(err, io);
        }
      }),
    );

  command('demo', 'The whole flow on one machine: ZooKeeper, two sidecars, a sofa-rpc-node provider and consumer')
    .option('--color', 'colours on (default: on for a terminal, off with NO_COLOR)')
    .option('--no-color', 'colours off')
    .addHelpText(
      'after',
      '\nCalls for MESHPORT_DEMO_SECONDS (default 5), then says what happened and stops everything.',
    )
    .action((opts: { color?: boolean }) =>
      run('demo', async () => {
        // Loaded on demand: the demo pulls in the SDKs, which decode and tap never need.
        const { runDemo } = await import('./demo.js');
        return runDemo(io, colourWanted(process.stdout, opts.color));
      }),
    );
  return program;
}

interface DecodeFlags {
  hex?: string;
  base64?: string;
  file?: string;
  json?: boolean;
  body?: boolean;
  maxFrameSize?: number;
  color?: boolean;
}

interface TapFlags {
  listen: string;
  upstream: string;
  json?: boolean;
  body?: boolean;
  withBytes?: boolean;
  maxFrameSize?: number;
  color?: boolean;
}

interface TopFlags {
  admin: string;
  interval: number;
  sort: SortKey;
  direction: DirectionFilter;
  json?: boolean;
  once?: boolean;
}

interface SidecarFlags {
  config?: string;
  check?: boolean;
  logLevel?: string;
  logFormat: 'auto' | 'json' | 'pretty';
}

/** Commander's messages (`error: unknown option '--x'`) as meshport prints every error: prefixed with the command. */
function wireOutput(cmd: Command, prefix: string, io: Io): void {
  cmd.exitOverride().configureOutput({
    writeOut: (text) => io.stdout.write(text),
    writeErr: (text) => io.stderr.write(text),
    outputError: (text, write) =>
      write(`${prefix}: ${text.replace(/^error: /, '').trimEnd()}\nRun '${prefix} --help' for usage.\n`),
  });
}

function maxFrameSizeOption(): Option {
  return new Option(
    '--max-frame-size <N>',
    'largest frame accepted: bytes, or with KiB/MiB (default 16 MiB)',
  ).argParser(parseSize);
}

function parseInterval(text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0.1 || n > 3600) throw new InvalidArgumentError('give seconds from 0.1 to 3600.');
  return n;
}

function parseSize(text: string): number {
  const m = /^(\d+)\s*(k|ki|kib|m|mi|mib)?$/i.exec(text.trim());
  if (!m) throw new InvalidArgumentError('give bytes, e.g. 1048576 or 16MiB.');
  const unit = (m[2] ?? '').toLowerCase();
  return Number(m[1]) * (unit.startsWith('k') ? 1024 : unit.startsWith('m') ? 1024 * 1024 : 1);
}

function version(): string {
  return (JSON.parse(readFileSync(path.join(__dirname, '../../package.json'), 'utf8')) as { version: string }).version;
}

async function runTapCommand(opts: TapFlags, io: Io): Promise<number> {
  const { parseHostPort, startTap, describeListenError } = await import('./tap.js');
  const hostPort = (text: string, what: string) => {
    try {
      return parseHostPort(text, what);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  };
  const listen = hostPort(opts.listen, '--listen');
  let tap: Awaited<ReturnType<typeof startTap>>;
  try {
    tap = await startTap(
      {
        listen,
        upstream: hostPort(opts.upstream, '--upstream'),
        json: opts.json,
        body: opts.body,
        withBytes: opts.withBytes,
        colour: colourWanted(process.stdout, opts.color),
        maxFrameSize: opts.maxFrameSize,
      },
      io,
    );
  } catch (err) {
    const message = describeListenError(err, listen);
    if (message === undefined) throw err;
    io.stderr.write(`meshport tap: --listen ${message}\n`);
    return 2;
  }
  io.stderr.write(
    `meshport tap: listening on ${tap.address.address}:${tap.address.port}, forwarding to ${opts.upstream}\n`,
  );
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop).off('SIGTERM', stop);
      void tap.close().then(resolve);
    };
    process.on('SIGINT', stop).on('SIGTERM', stop);
  });
  return 0;
}

/** Runs until a signal has drained it; a bad config or start-up check exits 2 with every problem's key and line. */
async function runSidecar(opts: SidecarFlags, io: Io): Promise<number> {
  // The daemon's V8 heap settings (a 1 MiB young generation, a tight old-generation step; see
  // @meshport/sidecar/v8-settings), set before the sidecar's modules load so the young generation never grows.
  const { applySidecarV8Settings } = await import('@meshport/sidecar/v8-settings');
  applySidecarV8Settings();
  // Loaded on demand: the sidecar pulls in every registry client, which decode and tap never need.
  const { Sidecar, loadConfig, parseConfig, preflight, MeshportError } = await import('./sidecar.js');
  const { sidecarLogger } = await import('./log.js');
  const configFile = opts.config;
  const fail = (err: unknown) => {
    // A listener that another process took between the start-up check and the bind: the kernel's words, no stack.
    const { code, syscall } = err as NodeJS.ErrnoException;
    if (!(err instanceof MeshportError) && typeof code === 'string' && syscall !== undefined) {
      io.stderr.write(`meshport sidecar: ${code}: ${(err as Error).message}\n`);
      return 2;
    }
    if (!(err instanceof MeshportError)) throw err;
    const problems = (err as { problems?: { code: string; message: string }[] }).problems ?? [err];
    for (const p of problems) io.stderr.write(`meshport sidecar: ${p.code}: ${p.message}\n`);
    return 2;
  };
  let sidecar: InstanceType<typeof Sidecar>;
  try {
    const config = configFile === undefined ? parseConfig('', 'meshport.yaml') : await loadConfig(configFile);
    if (opts.logLevel) config.log.level = opts.logLevel;
    if (opts.check) {
      await preflight(config);
      const { registries, listeners, admin } = config;
      const at = (a: { host: string; port: number }) => `${a.host}:${a.port}`;
      io.stdout.write(
        `meshport sidecar: ${configFile ?? 'the default config'} is good: outbound ${at(listeners.outbound)}, inbound ${at(listeners.inbound)}, ` +
          `admin ${at(admin)}, ${registries.length} registr${registries.length === 1 ? 'y' : 'ies'} (${registries.map((r) => r.name).join(', ')})\n`,
      );
      return 0;
    }
    sidecar = new Sidecar(config, { logger: sidecarLogger(config.log.level, opts.logFormat) });
    await sidecar.start();
  } catch (err) {
    return fail(err);
  }
  // SIGHUP re-reads the config file: registries and routes change, the router and its connections stay (an invalid
  // file is logged with its line and key and changes nothing; see Sidecar.reload).
  const onHangup = () => {
    if (configFile === undefined) {
      sidecar.logger.warn({ signal: 'SIGHUP' }, 'no --config file to reload; running on the defaults');
      return;
    }
    sidecar.logger.info({ signal: 'SIGHUP', config: configFile }, 'signal received, reloading');
    if (!opts.logLevel) {
      void sidecar.reload(configFile);
      return;
    }
    // --log-level still overrides the file's log.level; a file that does not load is reloaded by path, which logs
    // its mistakes and changes nothing.
    const level = opts.logLevel;
    void loadConfig(configFile).then(
      (next) => sidecar.reload({ ...next, log: { ...next.log, level } }),
      () => sidecar.reload(configFile),
    );
  };
  process.on('SIGHUP', onHangup);
  await new Promise<void>((resolve) => sidecar.stopOnSignals(resolve));
  process.off('SIGHUP', onHangup);
  return 0;
}
