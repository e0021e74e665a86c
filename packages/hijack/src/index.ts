// @meshport/hijack: kernel-side capture for the sidecar — plan, print, apply and remove rule sets; netns helpers.

export {
  CHAINS,
  DEFAULT_FACADE_PORTS,
  HIJACK_DEFAULTS,
  HIJACK_MODES,
  bpfPinDir,
  checkLoops,
  expectedSaveLines,
  parsePlanJson,
  planCommands,
  planRules,
  planToJson,
  printPlan,
  resolveHijackOptions,
  ruleArgs,
  sidecarPorts,
} from './plan';
export type {
  BpfAttachment,
  BpfProgram,
  HijackMode,
  HijackOptions,
  HijackPlan,
  IpRoute,
  IpRule,
  IptablesChain,
  IptablesRule,
  IptablesTable,
  ResolvedHijackOptions,
  RuleMatch,
  RuleTarget,
} from './plan';
export { applyPlan, bpfAttachSupported, installedState, removePlan } from './apply';
export type { ApplyOptions, ApplyReport, InstalledState } from './apply';
export { HIJACK_ERROR_CODES, HijackCommandError, HijackError, HijackKernelError } from './errors';
export type { HijackErrorCode } from './errors';
export {
  addTestAddress,
  assertNetnsName,
  assertTestAddress,
  commandArgv,
  createNetns,
  createVethPair,
  deleteNetns,
  execInNetns,
  listNetns,
  run,
  runChecked,
  spawnInNetns,
  uniqueNetnsName,
} from './netns';
export type { ExecOptions, ExecResult, VethPairOptions } from './netns';
export { captureHealth, formatCaptureHealth, procNetListens, removeCommand } from './health';
export type { CaptureHealth } from './health';
export { DOCTOR_FEATURES, DOCTOR_NEEDS_ROOT, doctorAllSupported, formatDoctor, runDoctor } from './doctor';
export type { DoctorFeature, DoctorReport } from './doctor';
