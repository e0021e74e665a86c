// Argument checks of the BPF entry points: every value is checked by name here, before the addon checks it again.
import * as net from 'node:net';
import type { BpfAttachOptions, BpfCaptureConfig, BpfDetachOptions, BpfLoadOptions, BpfProgramName } from './bpf-types';
import { badValue, checkFd, checkInteger, checkPort, checkString, checkUint32 } from './errors';

const PROGRAM_NAMES: readonly string[] = ['connect4', 'connect6', 'sockops', 'getsockopt', 'sk_msg'];

/** What bpfLoad fills in for a missing config value. */
export interface BpfLoadDefaults {
  objectDir: string;
  captureAddress: string;
  captureAddress6: string;
  capturePort: number;
  sidecarUid: number;
  maxPorts: number;
}

function optionsObject<T>(value: T | undefined, what: string, argument = 'options'): Partial<T> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw badValue(what, argument, 'an object', value);
  return value;
}

function checkPortList(value: unknown, argument: string, maxPorts: number): number[] {
  if (!Array.isArray(value)) throw badValue('bpfLoad', argument, `an array of at most ${maxPorts} ports`, value);
  checkInteger(value.length, 'bpfLoad', `${argument}.length`, 0, maxPorts);
  return value.map((port, i) => checkInteger(port, 'bpfLoad', `${argument}[${i}]`, 1, 65535));
}

function checkPrograms(value: unknown, what: string): BpfProgramName[] {
  const expected = `a non-empty array of program names (${PROGRAM_NAMES.join(', ')})`;
  if (!Array.isArray(value) || value.length === 0) throw badValue(what, 'programs', expected, value);
  for (const [i, name] of value.entries()) {
    if (typeof name !== 'string' || !PROGRAM_NAMES.includes(name))
      throw badValue(what, `programs[${i}]`, `one of ${PROGRAM_NAMES.join(', ')}`, name);
  }
  return [...value] as BpfProgramName[];
}

function optionalString(value: unknown, what: string, argument: string): string | undefined {
  return value === undefined ? undefined : checkString(value, what, argument);
}

export function checkLoadOptions(
  options: BpfLoadOptions | undefined,
  defaults: BpfLoadDefaults,
): { objectDir: string; config: Required<BpfCaptureConfig>; sockmapMaxEntries?: number; reuseMapsFrom?: string } {
  const o = optionsObject(options, 'bpfLoad');
  const reuseMapsFrom = optionalString(o.reuseMapsFrom, 'bpfLoad', 'reuseMapsFrom');
  const config = optionsObject(o.config, 'bpfLoad', 'config');
  const captureAddress = checkString(
    config.captureAddress ?? defaults.captureAddress,
    'bpfLoad',
    'config.captureAddress',
  );
  if (net.isIPv4(captureAddress) === false)
    throw badValue('bpfLoad', 'config.captureAddress', 'a numeric IPv4 address', captureAddress);
  const captureAddress6 = checkString(
    config.captureAddress6 ?? defaults.captureAddress6,
    'bpfLoad',
    'config.captureAddress6',
  );
  // '::' names no listener; an IPv4-mapped address would be connected over IPv4 and answered as IPv4.
  if (!net.isIPv6(captureAddress6) || /^[0:]*$/.test(captureAddress6) || /^[0:]*:ffff:/i.test(captureAddress6)) {
    throw badValue(
      'bpfLoad',
      'config.captureAddress6',
      'a numeric IPv6 address, not :: or IPv4-mapped',
      captureAddress6,
    );
  }
  return {
    objectDir: checkString(o.objectDir ?? defaults.objectDir, 'bpfLoad', 'objectDir'),
    config: {
      captureAddress,
      captureAddress6,
      capturePort: checkInteger(config.capturePort ?? defaults.capturePort, 'bpfLoad', 'config.capturePort', 1, 65535),
      sidecarUid: checkUint32(config.sidecarUid ?? defaults.sidecarUid, 'bpfLoad', 'config.sidecarUid'),
      includePorts: checkPortList(config.includePorts ?? [], 'config.includePorts', defaults.maxPorts),
      excludePorts: checkPortList(config.excludePorts ?? [], 'config.excludePorts', defaults.maxPorts),
    },
    ...(o.sockmapMaxEntries === undefined
      ? {}
      : { sockmapMaxEntries: checkInteger(o.sockmapMaxEntries, 'bpfLoad', 'sockmapMaxEntries', 1, 1 << 24) }),
    ...(reuseMapsFrom === undefined ? {} : { reuseMapsFrom }),
  };
}

export function checkAttachOptions(
  options: BpfAttachOptions,
  defaultPrograms: readonly BpfProgramName[],
): { cgroupPath: string; programs: BpfProgramName[]; pinDir?: string } {
  if (options === null || typeof options !== 'object') throw badValue('bpfAttach', 'options', 'an object', options);
  const cgroupPath = checkString(options.cgroupPath, 'bpfAttach', 'cgroupPath', 'a cgroup v2 directory path');
  if (cgroupPath.length === 0) throw badValue('bpfAttach', 'cgroupPath', 'a cgroup v2 directory path', cgroupPath);
  const programs = checkPrograms(options.programs ?? [...defaultPrograms], 'bpfAttach');
  const pinDir = optionalString(options.pinDir, 'bpfAttach', 'pinDir');
  return pinDir === undefined ? { cgroupPath, programs } : { cgroupPath, programs, pinDir };
}

export function checkDetachOptions(options: BpfDetachOptions | undefined): BpfDetachOptions {
  const o = optionsObject(options, 'bpfDetach');
  const checked: BpfDetachOptions = {};
  const cgroupPath = optionalString(o.cgroupPath, 'bpfDetach', 'cgroupPath');
  const pinDir = optionalString(o.pinDir, 'bpfDetach', 'pinDir');
  if (cgroupPath !== undefined) checked.cgroupPath = cgroupPath;
  if (pinDir !== undefined) checked.pinDir = pinDir;
  // Absent means all; anything else that is not a list of names is refused, never read as "all".
  if (o.programs !== undefined) checked.programs = checkPrograms(o.programs, 'bpfDetach');
  return checked;
}

export function checkStatsOptions(options: { pinDir?: string } | undefined): { pinDir?: string } {
  const pinDir = optionalString(optionsObject(options, 'bpfStats').pinDir, 'bpfStats', 'pinDir');
  return pinDir === undefined ? {} : { pinDir };
}

export { checkFd, checkPort };
