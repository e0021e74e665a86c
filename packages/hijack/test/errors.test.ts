// What a failed BPF step of apply/remove is reported as: NOT_SUPPORTED only for a missing kernel feature or addon,
// permission errors with their errno, anything else with its errno (issue 14, Errors). Cgroups made here are removed.

import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import {
  NotSupportedError,
  bpfUnload,
  createCgroup,
  findCgroup2Mount,
  nativeAddonStatus,
  removeCgroup,
} from '@meshport/socket';
import { skipOrFail } from '@meshport/testkit';
import { classifyBpfError } from '../src/apply';
import { HijackKernelError, applyPlan, bpfPinDir, planRules, planToJson, type HijackPlan } from '../src/index';

type Fake = { errno?: number; code?: string; syscall?: string; message: string };
const sys = (errno: number, code: string, syscall: string): Fake => ({
  errno,
  code,
  syscall,
  message: `${syscall} failed: (${code})`,
});
const unreachableProbe = () => assert.fail('the probe is not consulted for this error');

function kernelTestsOrSkip(ctx: Mocha.Context): string {
  const root = findCgroup2Mount();
  const why =
    process.getuid?.() !== 0
      ? 'not root'
      : !nativeAddonStatus().loaded
        ? 'addon not built'
        : root === undefined
          ? 'no cgroup v2'
          : undefined;
  if (why !== undefined) skipOrFail(ctx, `kernel test: ${why}`);
  return root!;
}

/** The BPF part of a connect-hook plan alone: no iptables, so only the BPF steps can fail. */
const bpfOnly = (cgroup: string): HijackPlan => ({
  ...planRules({ mode: 'connect-hook', cgroup, inboundPorts: [] }),
  chains: [],
  rules: [],
  hooks: [],
  ipRules: [],
  routes: [],
});

describe('@meshport/hijack errors of the BPF steps', function () {
  this.timeout(60000);

  describe('classifyBpfError (no kernel)', () => {
    it('EPERM and EACCES are permission errors with errno, systemCode and syscall, never NOT_SUPPORTED', () => {
      for (const [errno, code] of [
        [1, 'EPERM'],
        [13, 'EACCES'],
      ] as const) {
        const cause = sys(errno, code, 'bpf_link_create');
        const err = classifyBpfError(cause, 'BPF attach to /sys/fs/cgroup/pod', unreachableProbe);
        assert.ok(err instanceof HijackKernelError);
        assert.equal(err.code, 'MESHPORT_HIJACK_PERMISSION_DENIED');
        assert.deepEqual([err.errno, err.systemCode, err.syscall], [errno, code, 'bpf_link_create']);
        assert.equal((err as { cause?: unknown }).cause, cause);
        assert.match(
          err.message,
          new RegExp(
            `^BPF attach to /sys/fs/cgroup/pod: bpf_link_create was refused with ${code}: .*needs root, or CAP_BPF and CAP_NET_ADMIN`,
          ),
        );
      }
    });

    it('NOT_SUPPORTED for a missing kernel feature: ENOSYS, ENOTSUP, ENOTSUPP, no addon, or a load the probe cannot do either', () => {
      for (const cause of [
        sys(38, 'ENOSYS', 'bpf_object__load'),
        sys(95, 'ENOTSUP', 'bpf_link_create'),
        sys(524, 'ENOTSUPP', 'bpf_link_create'),
      ]) {
        const err = classifyBpfError(cause, 'BPF attach', unreachableProbe) as HijackKernelError;
        assert.equal(err.code, 'MESHPORT_HIJACK_NOT_SUPPORTED', cause.code);
        assert.deepEqual([err.errno, err.systemCode, err.syscall], [cause.errno, cause.code, cause.syscall]);
      }
      const noAddon = classifyBpfError(
        new NotSupportedError('native addon not built'),
        'BPF attach',
      ) as HijackKernelError;
      assert.equal(noAddon.code, 'MESHPORT_HIJACK_NOT_SUPPORTED');
      assert.equal(noAddon.message, 'BPF attach: not supported: native addon not built');
      assert.ok(noAddon.cause instanceof NotSupportedError);
      // A verifier or BTF refusal says EINVAL: it is a missing feature exactly when the feature probe fails too.
      const verifier = sys(22, 'EINVAL', 'bpf_object__load');
      const missing = classifyBpfError(verifier, 'BPF attach', () => ({
        supported: false,
        reason: 'bpf_object__load: Invalid argument',
      }));
      assert.equal(missing.code, 'MESHPORT_HIJACK_NOT_SUPPORTED');
      assert.match(
        missing.message,
        /this kernel cannot run the plan's programs \(bpf_object__load: Invalid argument\)/,
      );
      assert.equal(
        classifyBpfError(verifier, 'BPF attach', () => ({ supported: true })).code,
        'MESHPORT_HIJACK_BPF_FAILED',
      );
      assert.equal(
        classifyBpfError(verifier, 'BPF attach', () => {
          throw new Error('probe needs root');
        }).code,
        'MESHPORT_HIJACK_BPF_FAILED',
      );
    });

    it('anything else keeps its errno as MESHPORT_HIJACK_BPF_FAILED; argument errors are bad options', () => {
      const err = classifyBpfError(
        sys(2, 'ENOENT', 'open'),
        'BPF attach to /nope',
        unreachableProbe,
      ) as HijackKernelError;
      assert.deepEqual(
        [err.code, err.errno, err.systemCode, err.syscall],
        ['MESHPORT_HIJACK_BPF_FAILED', 2, 'ENOENT', 'open'],
      );
      assert.equal(
        classifyBpfError(sys(28, 'ENOSPC', 'bpf_map_update_elem'), 'BPF attach').code,
        'MESHPORT_HIJACK_BPF_FAILED',
      );
      const arg = Object.assign(
        new RangeError('bpfLoad: config.capturePort must be an integer from 1 to 65535, got NaN'),
        {
          code: 'MESHPORT_SOCKET_BAD_ARGUMENT',
          argument: 'config.capturePort',
        },
      );
      assert.equal(classifyBpfError(arg, 'BPF attach').code, 'MESHPORT_HIJACK_BAD_OPTIONS');
    });
  });

  describe('against the kernel', () => {
    let root: string;
    let cgroup: string;

    beforeEach(function () {
      root = kernelTestsOrSkip(this);
      cgroup = createCgroup(path.join(root, `mphj-${process.pid}-errors`));
    });

    afterEach(async () => {
      if (cgroup === undefined) return;
      try {
        bpfUnload();
      } finally {
        await removeCgroup(cgroup, root);
      }
    });

    it('apply as an unprivileged user fails with MESHPORT_HIJACK_PERMISSION_DENIED and EPERM, not NOT_SUPPORTED', () => {
      const index = path.join(__dirname, '..', 'src', 'index.js');
      const script = `const h = require(${JSON.stringify(index)});
h.applyPlan(h.parsePlanJson(process.argv[1])).then(
  () => console.log('{"applied":true}'),
  (e) => console.log(JSON.stringify({ name: e.name, code: e.code, errno: e.errno, systemCode: e.systemCode, syscall: e.syscall, message: e.message })));`;
      const out = execFileSync(process.execPath, ['-e', script, JSON.stringify(planToJson(bpfOnly(cgroup)))], {
        uid: 65534,
        gid: 65534,
        encoding: 'utf8',
      });
      const err = JSON.parse(out) as Record<string, unknown>;
      assert.equal(err.code, 'MESHPORT_HIJACK_PERMISSION_DENIED', out);
      assert.equal(err.name, 'HijackKernelError');
      assert.equal(err.errno, 1);
      assert.equal(err.systemCode, 'EPERM');
      assert.match(String(err.syscall), /^bpf/);
      assert.match(String(err.message), /was refused with EPERM: .*CAP_BPF/);
      assert.equal(existsSync(bpfPinDir(cgroup)), false, 'nothing pinned');
    });

    it('a cgroup that does not exist is MESHPORT_HIJACK_BPF_FAILED with ENOENT from open, not NOT_SUPPORTED', async () => {
      const missing = path.join(cgroup, 'not-there');
      await assert.rejects(applyPlan(bpfOnly(missing)), (err: unknown) => {
        assert.ok(err instanceof HijackKernelError, String(err));
        assert.deepEqual(
          [err.code, err.errno, err.systemCode, err.syscall],
          ['MESHPORT_HIJACK_BPF_FAILED', 2, 'ENOENT', 'open'],
        );
        assert.match(err.message, new RegExp(`^BPF attach to ${missing}: `));
        return true;
      });
      assert.equal(existsSync(bpfPinDir(missing)), false, 'nothing pinned');
    });
  });
});
