// `meshport doctor [--json]`: which capture modes work on this machine, each really tried (see @meshport/hijack).

import { parseArgs } from 'node:util';
import {
  assertNetnsName,
  captureHealth,
  doctorAllSupported,
  formatCaptureHealth,
  formatDoctor,
  planRules,
  runDoctor,
} from '@meshport/hijack';
import type { Io } from './io';

export const DOCTOR_USAGE = `Usage:
  meshport doctor [--json] [--cgroup PATH [--outbound-port N] [--netns NAME]]
  meshport doctor tls (--config FILE | --cert FILE --key FILE --trust-bundle FILE) [--json]

  Tries each capture mechanism for real, in a scratch network namespace or cgroup that is removed afterwards:
  redirect (nat REDIRECT + SO_ORIGINAL_DST), tproxy (TPROXY from a second namespace to a transparent listener),
  connect-hook (BPF cgroup/connect4 + sockops + getsockopt) and sockmap (sockops + sk_msg).

  --json   one JSON object {"redirect": {"supported", "reason"}, "tproxy": …, "connectHook": …, "sockmap": …}
           (with --cgroup also "capture": the check below)
  --cgroup PATH         also check a pod's connect hook: attached (pinned) with nothing listening on the capture
                        port means a dead sidecar, whose pod's connects are all refused; prints the remove command
  --outbound-port N     that pod's capture port (default 15001)
  --netns NAME          read the pod's listeners in this namespace (default: a process of the cgroup)

  tls      check the sidecar's certificate files instead (meshport doctor tls --help)

Exit codes: 0 every feature supported (and the hook checked has a listener), 1 otherwise, 2 usage error.
`;

/** Runs `meshport doctor …` (argv after `doctor`) and returns the exit code. */
export async function runDoctorCommand(argv: string[], io: Io): Promise<number> {
  if (argv[0] === 'tls') {
    // The certificate files, not the kernel: its own options and help.
    const { runDoctorTls } = await import('./doctor-tls.js');
    return runDoctorTls(argv.slice(1), io);
  }
  let values: { json?: boolean; help?: boolean; cgroup?: string; 'outbound-port'?: string; netns?: string };
  try {
    const parsed = parseArgs({
      args: argv,
      options: {
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        cgroup: { type: 'string' },
        'outbound-port': { type: 'string' },
        netns: { type: 'string' },
      },
      allowPositionals: false,
      strict: true,
    });
    values = parsed.values;
  } catch (err) {
    io.stderr.write(`meshport doctor: ${(err as Error).message}\nRun 'meshport doctor --help' for usage.\n`);
    return 2;
  }
  if (values.help) {
    io.stdout.write(DOCTOR_USAGE);
    return 0;
  }
  let plan;
  try {
    if (values.netns !== undefined) assertNetnsName(values.netns);
    const port = values['outbound-port'];
    if (port !== undefined && !/^\d+$/.test(port))
      throw new Error(`--outbound-port must be a port number, not '${port}'`);
    if (values.cgroup === undefined && (port !== undefined || values.netns !== undefined))
      throw new Error('--outbound-port and --netns go with --cgroup');
    if (values.cgroup !== undefined)
      plan = planRules({
        mode: 'connect-hook',
        cgroup: values.cgroup,
        outboundPort: port === undefined ? undefined : Number(port),
      });
  } catch (err) {
    io.stderr.write(`meshport doctor: ${(err as Error).message}\nRun 'meshport doctor --help' for usage.\n`);
    return 2;
  }
  const report = await runDoctor();
  const capture = plan === undefined ? undefined : await captureHealth(plan, { netns: values.netns });
  if (values.json) io.stdout.write(`${JSON.stringify(capture === undefined ? report : { ...report, capture })}\n`);
  else io.stdout.write(formatDoctor(report) + (capture === undefined ? '' : formatCaptureHealth(capture)));
  return doctorAllSupported(report) && !capture?.blackhole ? 0 : 1;
}
