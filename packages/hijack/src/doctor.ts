// `meshport doctor`: which capture modes this machine can really do, found by trying each one in a scratch network
// namespace (REDIRECT, TPROXY) or a scratch cgroup (the BPF connect hook, the sockmap), never by version numbers.
// Everything it creates (namespaces, veth pairs, rules, cgroups) is removed before it returns, also on failure.

import { spawn } from 'node:child_process';
import { bpfProbe, nativeAddonStatus } from '@meshport/socket';
import { applyPlan } from './apply';
import { commandArgv, createNetns, createVethPair, deleteNetns, addTestAddress, run, uniqueNetnsName } from './netns';
import { planRules } from './plan';

export interface DoctorFeature {
  supported: boolean;
  /** What was tried and what happened. */
  reason: string;
}

export interface DoctorReport {
  redirect: DoctorFeature;
  tproxy: DoctorFeature;
  connectHook: DoctorFeature;
  sockmap: DoctorFeature;
}

export const DOCTOR_FEATURES = ['redirect', 'tproxy', 'connectHook', 'sockmap'] as const;

export const DOCTOR_NEEDS_ROOT = 'needs root (CAP_NET_ADMIN)';

/** Scratch addresses (198.18.0.0/15, the benchmarking range) and ports, only ever used inside scratch namespaces. */
const SCRATCH = {
  redirectTarget: '198.18.254.1',
  podAddress: '198.18.253.1',
  peerAddress: '198.18.253.2',
  targetPort: 80,
  capturePort: 15001,
  inboundPort: 15006,
  timeoutMs: 5000,
} as const;

// Listens on the capture port, connects to the scratch address, and prints what getOriginalDst said.
const REDIRECT_SCRIPT = `
const net = require('net');
const [socketModule, capturePort, host, port] = process.argv.slice(1);
const socket = require(socketModule);
const timer = setTimeout(() => { console.log('timeout'); process.exit(0); }, 3000);
const server = net.createServer((s) => {
  s.on('error', () => {});
  let answer;
  try { const o = socket.getOriginalDst(s); answer = o.address + ':' + o.port; } catch (e) { answer = 'error:' + (e.code || e.message); }
  s.end(answer + '\\n');
});
server.on('error', (e) => { console.log('listen-error:' + e.code); process.exit(0); });
server.listen(Number(capturePort), '127.0.0.1', () => {
  const c = net.connect(Number(port), host);
  let got = '';
  c.on('data', (d) => { got += d; });
  c.on('end', () => { clearTimeout(timer); console.log(got.trim() || 'empty'); process.exit(0); });
  c.on('error', (e) => { clearTimeout(timer); console.log('connect-error:' + e.code); process.exit(0); });
});
`;

// A transparent listener answering with the accepted socket's local address (= the original destination).
const TPROXY_SERVER_SCRIPT = `
const [socketModule, port] = process.argv.slice(1);
let server;
try {
  server = require(socketModule).transparentListen({ host: '0.0.0.0', port: Number(port) }, (s) => {
    s.on('error', () => {});
    s.end(s.localAddress + ':' + s.localPort + '\\n');
  });
} catch (e) { console.log('listen-error:' + (e.code || e.message)); process.exit(0); }
server.on('error', (e) => { console.log('listen-error:' + e.code); process.exit(0); });
server.on('listening', () => console.log('ready'));
setTimeout(() => process.exit(0), 10000);
`;

const CLIENT_SCRIPT = `
const net = require('net');
const [host, port] = process.argv.slice(1);
const c = net.connect(Number(port), host);
let got = '';
const timer = setTimeout(() => { console.log('timeout'); process.exit(0); }, 3000);
c.on('data', (d) => { got += d; });
c.on('end', () => { clearTimeout(timer); console.log(got.trim() || 'empty'); process.exit(0); });
c.on('error', (e) => { clearTimeout(timer); console.log('connect-error:' + e.code); process.exit(0); });
`;

const no = (reason: string): DoctorFeature => ({ supported: false, reason });

function socketModulePath(): string {
  return require.resolve('@meshport/socket');
}

async function nodeInNetns(netns: string, script: string, args: string[]): Promise<string> {
  const [cmd, ...rest] = commandArgv(process.execPath, ['-e', script, ...args], { netns });
  const r = await run(cmd, rest, { timeoutMs: SCRATCH.timeoutMs + 5000 });
  if (r.code !== 0) return `exit ${r.code}: ${r.stderr.trim().split('\n').slice(-1)[0] ?? ''}`;
  return r.stdout.trim();
}

/** What is missing before anything can be tried: root, the tools, the addon. */
async function prerequisites(): Promise<string | undefined> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return DOCTOR_NEEDS_ROOT;
  for (const [cmd, args] of [
    ['ip', ['netns', 'list']],
    ['iptables', ['--version']],
  ] as const) {
    const r = await run(cmd, args);
    if (r.code !== 0) return `'${cmd}' unavailable: ${r.stderr.trim() || `exit ${r.code}`}`;
  }
  return undefined;
}

/** REDIRECT a connection to 198.18.254.1:80 in a scratch netns, and read SO_ORIGINAL_DST on the capture listener. */
async function checkRedirect(): Promise<DoctorFeature> {
  const addon = nativeAddonStatus();
  if (!addon.loaded) return no(`the @meshport/socket addon (SO_ORIGINAL_DST) is unavailable: ${addon.reason}`);
  const ns = uniqueNetnsName('mpdoctor');
  try {
    await createNetns(ns);
    await addTestAddress(ns, 'lo', `${SCRATCH.redirectTarget}/32`);
    const plan = planRules({ mode: 'redirect', outboundPort: SCRATCH.capturePort, inboundPorts: [] });
    await applyPlan(plan, { netns: ns });
    const got = await nodeInNetns(ns, REDIRECT_SCRIPT, [
      socketModulePath(),
      String(SCRATCH.capturePort),
      SCRATCH.redirectTarget,
      String(SCRATCH.targetPort),
    ]);
    const want = `${SCRATCH.redirectTarget}:${SCRATCH.targetPort}`;
    if (got === want)
      return {
        supported: true,
        reason: `nat OUTPUT REDIRECT to 127.0.0.1:${SCRATCH.capturePort}; SO_ORIGINAL_DST answered ${want}`,
      };
    return no(`REDIRECT of a connection to ${want} in a scratch netns: ${got}`);
  } catch (err) {
    return no(`REDIRECT check failed: ${(err as Error).message.trim()}`);
  } finally {
    await deleteNetns(ns).catch(() => undefined);
  }
}

/** TPROXY a connection from a second netns (over a veth) to a transparent listener, which sees the original destination. */
async function checkTproxy(): Promise<DoctorFeature> {
  const addon = nativeAddonStatus();
  if (!addon.loaded) return no(`the @meshport/socket addon (IP_TRANSPARENT) is unavailable: ${addon.reason}`);
  const pod = uniqueNetnsName('mpdoctor');
  const peer = uniqueNetnsName('mpdoctor');
  let child: ReturnType<typeof spawn> | undefined;
  try {
    await createNetns(pod);
    await createNetns(peer);
    await createVethPair({
      netnsA: pod,
      netnsB: peer,
      addressA: `${SCRATCH.podAddress}/24`,
      addressB: `${SCRATCH.peerAddress}/24`,
    });
    const plan = planRules({ mode: 'tproxy', inboundPort: SCRATCH.inboundPort, outboundPort: SCRATCH.capturePort });
    await applyPlan(plan, { netns: pod });
    const [cmd, ...args] = commandArgv(
      process.execPath,
      ['-e', TPROXY_SERVER_SCRIPT, socketModulePath(), String(SCRATCH.inboundPort)],
      { netns: pod },
    );
    const server = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = server;
    const ready = await new Promise<string>((resolve) => {
      let out = '';
      let err = '';
      const timer = setTimeout(
        () => resolve(`timeout starting the transparent listener ${err.trim()}`),
        SCRATCH.timeoutMs,
      );
      server.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const line = out.split('\n')[0];
        if (out.includes('\n')) {
          clearTimeout(timer);
          resolve(line);
        }
      });
      server.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      server.once('exit', (code) => {
        clearTimeout(timer);
        resolve(out.split('\n')[0] || `the transparent listener exited ${code}: ${err.trim()}`);
      });
    });
    if (ready !== 'ready') return no(`transparent listener: ${ready}`);
    const got = await nodeInNetns(peer, CLIENT_SCRIPT, [SCRATCH.podAddress, String(SCRATCH.targetPort)]);
    const want = `${SCRATCH.podAddress}:${SCRATCH.targetPort}`;
    if (got === want)
      return {
        supported: true,
        reason: `mangle PREROUTING TPROXY to :${SCRATCH.inboundPort} from a second netns; the transparent listener saw ${want}`,
      };
    return no(`TPROXY of a connection to ${want} from a second netns: ${got}`);
  } catch (err) {
    return no(`TPROXY check failed: ${(err as Error).message.trim()}`);
  } finally {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
    await deleteNetns(pod).catch(() => undefined);
    await deleteNetns(peer).catch(() => undefined);
  }
}

/** The BPF features, by a real load and attach in a scratch cgroup (bpfProbe removes it again). */
function checkBpf(): Pick<DoctorReport, 'connectHook' | 'sockmap'> {
  try {
    const probe = bpfProbe();
    const feature = (f: { supported: boolean; reason?: string }, what: string): DoctorFeature =>
      f.supported
        ? { supported: true, reason: `${what} loaded and attached to a scratch cgroup` }
        : no(f.reason ?? `${what} could not be attached`);
    return {
      connectHook: feature(probe.connectHook, 'cgroup/connect4 + sockops + cgroup/getsockopt'),
      sockmap: feature(probe.sockmap, 'sockops + sk_msg on a SOCKHASH'),
    };
  } catch (err) {
    const reason = `BPF probe failed: ${(err as Error).message}`;
    return { connectHook: no(reason), sockmap: no(reason) };
  }
}

/** Tries every capture mechanism for real and says which work here; never throws for a missing feature. */
export async function runDoctor(): Promise<DoctorReport> {
  const missing = await prerequisites();
  if (missing !== undefined) {
    // Without root not even the BPF probe can load a program; every feature gets the same reason.
    const bpf = missing === DOCTOR_NEEDS_ROOT ? { connectHook: no(missing), sockmap: no(missing) } : checkBpf();
    return { redirect: no(missing), tproxy: no(missing), ...bpf };
  }
  const redirect = await checkRedirect();
  const tproxy = await checkTproxy();
  return { redirect, tproxy, ...checkBpf() };
}

/** One line per feature: ✓ or ✗, its name, the reason. */
export function formatDoctor(report: DoctorReport): string {
  const names: Record<keyof DoctorReport, string> = {
    redirect: 'redirect',
    tproxy: 'tproxy',
    connectHook: 'connect-hook',
    sockmap: 'sockmap',
  };
  return (
    DOCTOR_FEATURES.map((k) => `${report[k].supported ? '✓' : '✗'} ${names[k].padEnd(12)} ${report[k].reason}`).join(
      '\n',
    ) + '\n'
  );
}

/** True when every feature is supported. */
export function doctorAllSupported(report: DoctorReport): boolean {
  return DOCTOR_FEATURES.every((k) => report[k].supported);
}
