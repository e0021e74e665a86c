// `meshport hijack apply|remove|print|status`: flags to HijackOptions, then @meshport/hijack does the work.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  HIJACK_DEFAULTS,
  HIJACK_MODES,
  HijackError,
  applyPlan,
  assertNetnsName,
  captureHealth,
  formatCaptureHealth,
  parsePlanJson,
  planCommands,
  planRules,
  planToJson,
  printPlan,
  removePlan,
  type HijackMode,
  type HijackOptions,
  type HijackPlan,
} from '@meshport/hijack';
import { UsageError } from './errors';
import type { Io } from './io';

export const HIJACK_USAGE = `Usage:
  meshport hijack apply|remove|print|status --mode redirect|tproxy|connect-hook [options]
  meshport hijack apply|remove|print|status --config meshport.yaml [options]
  meshport hijack apply|remove --plan FILE     (a plan as 'print --json' wrote it)

  apply    install the rules (idempotent: a second apply changes nothing)
  remove   delete exactly what apply installs (nothing there is not an error)
  print    show the iptables rules, ip rules/routes and BPF attachments apply would make (and, for connect-hook,
           whether a hook is attached with nothing listening on its capture port)
  status   connect-hook: is the hook attached, and does the capture port listen? A hook whose sidecar is dead
           sends every connect of the pod to a closed port; status says so (exit 1) with the remove command

Modes:
  redirect      outbound: nat OUTPUT REDIRECT to the outbound port; inbound: nat PREROUTING REDIRECT
  tproxy        inbound: mangle PREROUTING TPROXY + ip rule fwmark + local route; outbound stays REDIRECT
  connect-hook  outbound: BPF cgroup/connect4 + connect6 + sockops + cgroup/getsockopt (pinned under ${HIJACK_DEFAULTS.bpfPinRoot});
                inbound: TPROXY

Options:
  --config FILE            take the mode, --uid, the capture and admin ports, the facade ports (the sidecar's
                           listeners and every facade) and --sockmap from the sidecar's config, its hijack key;
                           a flag given as well wins
  --netns NAME             work inside this network namespace (default: the current one)
  --uid N                  the sidecar's uid, never captured (default ${HIJACK_DEFAULTS.uid})
  --outbound-port N        outbound capture listener (default ${HIJACK_DEFAULTS.outboundPort})
  --inbound-port N         inbound capture listener (default ${HIJACK_DEFAULTS.inboundPort})
  --admin-port N           the sidecar's admin port, never captured (default ${HIJACK_DEFAULTS.adminPort})
  --facade-ports LIST      the sidecar's listeners and facades, never captured (default ${HIJACK_DEFAULTS.facadePorts.join(',')})
  --exclude-ports LIST     more ports never captured, either direction
  --inbound-ports LIST|*   inbound ports to capture; * = all but the excluded; '' = none (default *)
  --outbound-ports LIST|*  outbound ports to capture (redirect, tproxy; default *)
  --include-loopback       also capture connections to 127.0.0.0/8
  --mark N                 TPROXY fwmark (default 0x${HIJACK_DEFAULTS.mark.toString(16)})
  --route-table N          TPROXY routing table (default ${HIJACK_DEFAULTS.routeTable})
  --cgroup PATH            the pod's cgroup v2 directory for the BPF programs (connect-hook, --sockmap: required)
  --sockmap                also attach sockops + sk_msg (same-host shortcut)
  --json                   print: the plan as JSON (with its commands); status: the check as JSON

Exit codes: 0 ok, 1 a command failed or the mode is not available here, 2 usage error or loop check refused.
`;

const OPTIONS = {
  mode: { type: 'string' },
  config: { type: 'string' },
  plan: { type: 'string' },
  netns: { type: 'string' },
  uid: { type: 'string' },
  'outbound-port': { type: 'string' },
  'inbound-port': { type: 'string' },
  'admin-port': { type: 'string' },
  'facade-ports': { type: 'string' },
  'exclude-ports': { type: 'string' },
  'inbound-ports': { type: 'string' },
  'outbound-ports': { type: 'string' },
  'include-loopback': { type: 'boolean', default: false },
  mark: { type: 'string' },
  'route-table': { type: 'string' },
  cgroup: { type: 'string' },
  sockmap: { type: 'boolean', default: false },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

/** Runs `meshport hijack …` (argv after `hijack`) and returns the exit code. */
export async function runHijack(argv: string[], io: Io): Promise<number> {
  try {
    return await hijack(argv, io);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.stderr.write(`meshport hijack: ${(err as Error).message}\nRun 'meshport hijack --help' for usage.\n`);
      return 2;
    }
    if (err instanceof HijackError) {
      io.stderr.write(`meshport hijack: ${err.code}: ${err.message}\n`);
      return err.code === 'MESHPORT_HIJACK_LOOP' || err.code === 'MESHPORT_HIJACK_BAD_OPTIONS' ? 2 : 1;
    }
    throw err;
  }
}

async function hijack(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const [action, ...rest] = positionals;
  if (values.help || action === 'help') {
    io.stdout.write(HIJACK_USAGE);
    return 0;
  }
  if (action === undefined) throw new UsageError('hijack needs an action: apply, remove, print or status');
  if (!['apply', 'remove', 'print', 'status'].includes(action))
    throw new UsageError(`unknown hijack action '${action}' (apply, remove, print, status)`);
  if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}'`);
  if (values.json && action !== 'print' && action !== 'status')
    throw new UsageError('--json goes with print or status');

  const fromConfig =
    values.plan === undefined && values.config !== undefined ? await optionsOfConfig(values.config) : undefined;
  const plan = values.plan !== undefined ? readPlan(values.plan, values) : planRules(toOptions(values, fromConfig));
  const netns = values.netns;
  if (netns !== undefined) assertNetnsName(netns);

  if (action === 'print') {
    io.stdout.write(
      values.json ? `${JSON.stringify(planToJson(plan, { netns }), null, 2)}\n` : printPlan(plan, { netns }),
    );
    // A hook left attached by a dead sidecar refuses every connect of the pod: say so wherever the plan is shown.
    if (plan.bpf.length > 0) {
      const health = await captureHealth(plan, { netns });
      if (health.blackhole) io.stderr.write(formatCaptureHealth(health));
    }
    return 0;
  }
  if (action === 'status') {
    if (plan.bpf.length === 0)
      throw new UsageError('status checks the connect hook: use --mode connect-hook --cgroup PATH');
    const health = await captureHealth(plan, { netns });
    io.stdout.write(values.json ? `${JSON.stringify(health)}\n` : formatCaptureHealth(health));
    return health.blackhole ? 1 : 0;
  }
  if (action === 'apply') {
    try {
      const report = await applyPlan(plan, { netns });
      for (const c of report.changed) io.stdout.write(`${c}\n`);
      io.stderr.write(`meshport hijack: applied ${plan.mode}${where(netns)}: ${report.changed.length} change(s)\n`);
      return 0;
    } catch (err) {
      if (err instanceof HijackError && err.code === 'MESHPORT_HIJACK_NOT_SUPPORTED') {
        // Say exactly what would have been attached, so the missing part is visible.
        for (const argv of planCommands(plan, netns).filter((a) => a[0] === 'bpf'))
          io.stdout.write(`would: ${argv.join(' ')}\n`);
      }
      throw err;
    }
  }
  const report = await removePlan(plan, { netns });
  for (const c of report.changed) io.stdout.write(`${c}\n`);
  io.stderr.write(`meshport hijack: removed ${plan.mode}${where(netns)}: ${report.changed.length} change(s)\n`);
  return 0;
}

type Values = ReturnType<
  typeof parseArgs<{ args: string[]; options: typeof OPTIONS; allowPositionals: true; strict: true }>
>['values'];

function where(netns: string | undefined): string {
  return netns === undefined ? '' : ` in netns ${netns}`;
}

function readPlan(file: string, values: Values): HijackPlan {
  const conflicting = Object.keys(OPTIONS).filter(
    (k) =>
      !['plan', 'netns', 'json', 'help', 'include-loopback', 'sockmap'].includes(k) &&
      values[k as keyof Values] !== undefined,
  );
  if (conflicting.length || values['include-loopback'] || values.sockmap) {
    throw new UsageError(
      `--plan carries its own options; drop ${[...conflicting, ...(values['include-loopback'] ? ['include-loopback'] : []), ...(values.sockmap ? ['sockmap'] : [])].map((k) => `--${k}`).join(', ')}`,
    );
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read --plan ${file}: ${(err as Error).message}`);
  }
  return parsePlanJson(text);
}

/**
 * What the sidecar's config says of the rules: its hijack mode, uid and capture ports, its admin port, and the ports
 * of its own listeners and facades (never captured), so the rules and the sidecar cannot disagree by a flag copied
 * wrongly. A config that cannot be read, or has no hijack key, is a usage error naming it.
 */
async function optionsOfConfig(file: string): Promise<Partial<HijackOptions>> {
  const { loadConfig } = await import('@meshport/sidecar');
  let config: Awaited<ReturnType<typeof loadConfig>>;
  try {
    config = await loadConfig(file);
  } catch (err) {
    const { code, message } = err as { code?: string; message: string };
    throw new UsageError(`--config ${file}: ${code ? `${code}: ` : ''}${message}`);
  }
  const { hijack } = config;
  if (hijack === undefined)
    throw new UsageError(`--config ${file} has no hijack key: it names no mode, uid or capture ports to take`);
  const facades = config.registries.flatMap((r) => (r.facade ? [r.facade.port] : []));
  return {
    mode: hijack.mode,
    uid: hijack.uid,
    outboundPort: hijack.outboundCapturePort,
    inboundPort: hijack.inboundCapturePort,
    adminPort: config.admin.port,
    facadePorts: [...new Set([config.listeners.inbound.port, config.listeners.outbound.port, ...facades])].filter(
      (p) => p !== 0,
    ),
    sockmap: hijack.sockmap,
  };
}

function toOptions(values: Values, base: Partial<HijackOptions> = {}): HijackOptions {
  const mode = values.mode ?? base.mode;
  if (mode === undefined) throw new UsageError(`--mode is required: ${HIJACK_MODES.join(', ')}`);
  if (!HIJACK_MODES.includes(mode as HijackMode))
    throw new UsageError(`--mode must be one of ${HIJACK_MODES.join(', ')}, got '${mode}'`);
  return {
    mode: mode as HijackMode,
    uid: int(values.uid, '--uid') ?? base.uid,
    outboundPort: int(values['outbound-port'], '--outbound-port') ?? base.outboundPort,
    inboundPort: int(values['inbound-port'], '--inbound-port') ?? base.inboundPort,
    adminPort: int(values['admin-port'], '--admin-port') ?? base.adminPort,
    facadePorts: portList(values['facade-ports'], '--facade-ports') ?? base.facadePorts,
    excludePorts: portList(values['exclude-ports'], '--exclude-ports'),
    inboundPorts: portListOrAll(values['inbound-ports'], '--inbound-ports'),
    outboundPorts: portListOrAll(values['outbound-ports'], '--outbound-ports'),
    includeLoopback: values['include-loopback'],
    mark: int(values.mark, '--mark'),
    routeTable: int(values['route-table'], '--route-table'),
    cgroup: values.cgroup,
    sockmap: values.sockmap || (base.sockmap ?? false),
  };
}

/** Decimal or 0x hex; range checks are the hijack package's. */
function int(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const t = text.trim();
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(t)) throw new UsageError(`${flag} must be a number, got '${text}'`);
  return Number(t);
}

function portList(text: string | undefined, flag: string): number[] | undefined {
  if (text === undefined) return undefined;
  const items = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return items.map((s) => {
    if (!/^\d+$/.test(s)) throw new UsageError(`${flag} takes comma-separated ports, got '${s}'`);
    return Number(s);
  });
}

function portListOrAll(text: string | undefined, flag: string): '*' | number[] | undefined {
  if (text !== undefined && text.trim() === '*') return '*';
  return portList(text, flag);
}
