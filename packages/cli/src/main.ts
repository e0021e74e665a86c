// The `meshport` command: argument parsing and dispatch to decode, tap, sidecar, hijack, doctor and demo.

import { parseArgs } from 'node:util';
import { colourWanted } from './format';
import { processIo, type Io } from './io';

const USAGE = `meshport — a sidecar for SOFA-style RPC (Bolt and Dubbo)

Usage:
  meshport decode [--hex HEX | --base64 B64 | --file PATH] [--json] [--body]
      Decode Bolt v1/v2 and Dubbo frames (one or many, concatenated). Without an input
      option, reads stdin: raw bytes, or hex text.
  meshport tap --listen HOST:PORT --upstream HOST:PORT [--json] [--body] [--with-bytes]
      Forward TCP unchanged and print every frame both ways, with request/response pairing.
  meshport sidecar [--config meshport.yaml]
      Run the sidecar: router, registry adapters and facades as the config says. Without
      --config, the defaults: loopback listeners and the file registry meshport-registry.json.
      Drains on SIGTERM/SIGINT; SIGHUP re-reads the config (registries and routes) without a restart.
  meshport hijack apply|remove|print --mode redirect|tproxy|connect-hook [--netns NAME] [--uid 1337]
          [--inbound-ports LIST] [--exclude-ports LIST] [--cgroup PATH] [--sockmap] [--json] ...
      Install, remove or show the kernel rules that send the app's connections to the sidecar.
      'meshport hijack --help' lists every option.
  meshport doctor [--json]
      Try each capture mode (redirect, tproxy, connect-hook, sockmap) for real in a scratch
      network namespace or cgroup and say which work here. Exit 1 when one does not.
  meshport demo
      The whole flow on one machine: a real ZooKeeper, two sidecars as two pods, a sofa-rpc-node
      provider and consumer (Bolt and Dubbo) pointed at their own sidecars' ZooKeeper facades;
      calls for MESHPORT_DEMO_SECONDS (default 5), then what happened; stops everything.

Common options:
  --json              one JSON object per frame per line
  --body              also decode bodies through hessian (display only)
  --max-frame-size N  largest frame accepted, in bytes (default 16 MiB)
  --color/--no-color  force colours on or off (default: on for a terminal, off with NO_COLOR)
  -h, --help          this text

Exit codes: 0 ok, 1 bad input (after printing every good frame before it), 2 usage error.
`;

const OPTIONS = {
  hex: { type: 'string' },
  base64: { type: 'string' },
  file: { type: 'string' },
  json: { type: 'boolean', default: false },
  body: { type: 'boolean', default: false },
  'with-bytes': { type: 'boolean', default: false },
  listen: { type: 'string' },
  config: { type: 'string' },
  upstream: { type: 'string' },
  'max-frame-size': { type: 'string' },
  color: { type: 'boolean' },
  'no-color': { type: 'boolean' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

class UsageError extends Error {}

export async function main(argv: string[], io: Io = processIo): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.stderr.write(`meshport: ${(err as Error).message}\nRun 'meshport --help' for usage.\n`);
      return 2;
    }
    throw err;
  }
}

async function dispatch(argv: string[], io: Io): Promise<number> {
  if (argv[0] === 'hijack') {
    // Its own flags and exit codes; loaded on demand so the other commands never load the kernel-side package.
    const { runHijack } = await import('./hijack.js');
    return runHijack(argv.slice(1), io);
  }
  if (argv[0] === 'doctor') {
    // Loaded on demand like hijack: it needs the kernel-side package.
    const { runDoctorCommand } = await import('./doctor.js');
    return runDoctorCommand(argv.slice(1), io);
  }
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const [command, ...rest] = positionals;
  if (values.help || command === undefined || command === 'help') {
    io.stdout.write(USAGE);
    return command === undefined && !values.help ? 2 : 0;
  }
  if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}'`);
  const colourFlag = values['no-color'] ? false : values.color;
  const maxFrameSize = values['max-frame-size'] === undefined ? undefined : parseSize(values['max-frame-size']);

  switch (command) {
    case 'decode': {
      const inputs = ['hex', 'base64', 'file'].filter((k) => values[k as 'hex'] !== undefined);
      if (inputs.length > 1) throw new UsageError(`give one input, not ${inputs.map((k) => `--${k}`).join(' and ')}`);
      // decode and tap load hessian.js (for --body): imported only by them, so `meshport sidecar` never loads a
      // deserializer into the data path's process.
      const { runDecode } = await import('./decode.js');
      return runDecode(
        {
          hex: values.hex,
          base64: values.base64,
          file: values.file,
          json: values.json,
          body: values.body,
          colour: colourWanted(process.stdout, colourFlag),
          maxFrameSize,
        },
        io,
      );
    }
    case 'tap': {
      if (!values.listen || !values.upstream) throw new UsageError('tap needs --listen HOST:PORT and --upstream HOST:PORT');
      const { parseHostPort, startTap } = await import('./tap.js');
      const hostPort = (text: string, what: string) => {
        try {
          return parseHostPort(text, what);
        } catch (err) {
          throw new UsageError((err as Error).message);
        }
      };
      const tap = await startTap(
        {
          listen: hostPort(values.listen, '--listen'),
          upstream: hostPort(values.upstream, '--upstream'),
          json: values.json,
          body: values.body,
          withBytes: values['with-bytes'],
          colour: colourWanted(process.stdout, colourFlag),
          maxFrameSize,
        },
        io,
      );
      io.stderr.write(`meshport tap: listening on ${tap.address.address}:${tap.address.port}, forwarding to ${values.upstream}\n`);
      await new Promise<void>((resolve) => {
        const stop = () => {
          process.off('SIGINT', stop).off('SIGTERM', stop);
          void tap.close().then(resolve);
        };
        process.on('SIGINT', stop).on('SIGTERM', stop);
      });
      return 0;
    }
    case 'sidecar':
      return runSidecar(values.config, io);
    case 'demo': {
      // Loaded on demand: the demo pulls in the SDKs, which decode and tap never need.
      const { runDemo } = await import('./demo.js');
      return runDemo(io, colourWanted(process.stdout, colourFlag));
    }
    default:
      throw new UsageError(`unknown command '${command}'`);
  }
}

/** Runs until a signal has drained it; a bad config is a usage-level mistake and exits 2 with the key and line. */
async function runSidecar(configFile: string | undefined, io: Io): Promise<number> {
  // The daemon's V8 heap settings (a 1 MiB young generation, a tight old-generation step; see
  // @meshport/sidecar/v8-settings), set before the sidecar's modules load so the young generation never grows.
  const { applySidecarV8Settings } = await import('@meshport/sidecar/v8-settings');
  applySidecarV8Settings();
  // Loaded on demand: the sidecar pulls in every registry client, which decode and tap never need.
  const { Sidecar, loadConfig, parseConfig, MeshportError } = await import('./sidecar.js');
  let sidecar: InstanceType<typeof Sidecar>;
  try {
    const config = configFile === undefined ? parseConfig('', 'meshport.yaml') : await loadConfig(configFile);
    sidecar = new Sidecar(config);
    await sidecar.start();
  } catch (err) {
    if (!(err instanceof MeshportError)) throw err;
    const problems = (err as { problems?: { code: string; message: string }[] }).problems ?? [err];
    for (const p of problems) io.stderr.write(`meshport sidecar: ${p.code}: ${p.message}\n`);
    return 2;
  }
  // SIGHUP re-reads the config file: registries and routes change, the router and its connections stay (an invalid
  // file is logged with its line and key and changes nothing; see Sidecar.reload).
  const onHangup = () => {
    if (configFile === undefined) {
      sidecar.logger.warn({ signal: 'SIGHUP' }, 'no --config file to reload; running on the defaults');
      return;
    }
    sidecar.logger.info({ signal: 'SIGHUP', config: configFile }, 'signal received, reloading');
    void sidecar.reload(configFile);
  };
  process.on('SIGHUP', onHangup);
  await new Promise<void>((resolve) => sidecar.stopOnSignals(resolve));
  process.off('SIGHUP', onHangup);
  return 0;
}

function parseSize(text: string): number {
  const m = /^(\d+)\s*(k|ki|kib|m|mi|mib)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`--max-frame-size must be bytes, e.g. 1048576 or 16MiB, got '${text}'`);
  const unit = (m[2] ?? '').toLowerCase();
  return Number(m[1]) * (unit.startsWith('k') ? 1024 : unit.startsWith('m') ? 1024 * 1024 : 1);
}
