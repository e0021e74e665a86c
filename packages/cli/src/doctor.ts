// `meshport doctor [--json]`: which capture modes work on this machine, each really tried (see @meshport/hijack).

import { parseArgs } from 'node:util';
import { doctorAllSupported, formatDoctor, runDoctor } from '@meshport/hijack';
import type { Io } from './io';

export const DOCTOR_USAGE = `Usage:
  meshport doctor [--json]

  Tries each capture mechanism for real, in a scratch network namespace or cgroup that is removed afterwards:
  redirect (nat REDIRECT + SO_ORIGINAL_DST), tproxy (TPROXY from a second namespace to a transparent listener),
  connect-hook (BPF cgroup/connect4 + sockops + getsockopt) and sockmap (sockops + sk_msg).

  --json   one JSON object {"redirect": {"supported", "reason"}, "tproxy": …, "connectHook": …, "sockmap": …}

Exit codes: 0 every feature supported, 1 at least one is not, 2 usage error.
`;

/** Runs `meshport doctor …` (argv after `doctor`) and returns the exit code. */
export async function runDoctorCommand(argv: string[], io: Io): Promise<number> {
  let values: { json?: boolean; help?: boolean };
  try {
    const parsed = parseArgs({
      args: argv,
      options: { json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false } },
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
  const report = await runDoctor();
  io.stdout.write(values.json ? `${JSON.stringify(report)}\n` : formatDoctor(report));
  return doctorAllSupported(report) ? 0 : 1;
}
