// `meshport demo` (what `npm run demo` runs): the whole product flow on one machine. A real ZooKeeper; two pods,
// each a `meshport sidecar` child process taking over ZooKeeper through its facade (loopback-port pods: every
// listener on 127.0.0.1, ports picked free); a sofa-rpc-node provider app (its own process) pointed at the provider
// pod's facade, and a sofa-rpc-node consumer app (this process) pointed at the consumer pod's facade. Calls are driven
// for a while with a progress line, then the demo shows what happened and stops everything, Ctrl-C included.

import { client as sofaClient, registry as sofaRegistry } from 'sofa-rpc-node';
import dubboProtocol from 'dubbo-remoting';
import boltProtocol from 'sofa-bolt-node';
import path from 'node:path';
import { DemoChild, killAllChildrenSync } from './demo/children';
import { hostPort, startPod, type Pod } from './demo/pods';
import { adminResponses, adminRoutes, formatMs, percentile, type RouteCluster } from './demo/report';
import { quietCluster, quietLogger } from './demo/quiet';
import { readProviders } from './demo/registry-view';
import { startZooKeeper, type DemoZooKeeper } from './demo/zookeeper';
import { Style } from './format';
import type { Io } from './io';

const PROVIDER_APP = path.join(__dirname, 'demo', 'provider-app.js');
const CALLERS_PER_PROTOCOL = 4;

interface Flow {
  protocol: 'bolt' | 'dubbo';
  impl: unknown;
  iface: string;
  method: string;
  arg: string;
  expect: string;
}

const FLOWS: Flow[] = [
  { protocol: 'bolt', impl: boltProtocol, iface: 'com.example.EchoService', method: 'echo', arg: 'hello meshport', expect: 'echo: hello meshport' },
  { protocol: 'dubbo', impl: dubboProtocol, iface: 'com.example.GreetService', method: 'greet', arg: 'meshport', expect: 'hello, meshport' },
];
const clusterOf = (flow: Flow) => `${flow.iface}:1.0`;

interface Tally {
  ok: number;
  failed: number;
  latencies: number[];
  firstError?: string;
}

type ConsumerClient = InstanceType<typeof sofaClient.RpcClient>;
type Registry = InstanceType<typeof sofaRegistry.ZookeeperRegistry>;

/** How long calls are driven: MESHPORT_DEMO_SECONDS, 5 s by default. */
function demoSeconds(): number {
  const raw = process.env.MESHPORT_DEMO_SECONDS;
  const n = raw === undefined || raw === '' ? 5 : Number(raw);
  return Number.isFinite(n) && n > 0 ? n : 5;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done);
  });

export async function runDemo(io: Io, colour: boolean): Promise<number> {
  const s = new Style(colour);
  const out = (text = '') => io.stdout.write(`${text}\n`);
  const step = (n: number, text: string) => out(`\n${s.bold(`[${n}/6] ${text}`)}`);
  const tty = (io.stdout as { isTTY?: boolean }).isTTY === true;
  const seconds = demoSeconds();

  // Ctrl-C: the first ends the calls (or the start-up) and the demo stops everything in order; a second kills the
  // children outright. The children run in process groups of their own, so the terminal's SIGINT reaches only us.
  const abort = new AbortController();
  let interrupts = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupts++;
    if (interrupts === 1) {
      io.stderr.write(`\n${s.yellow(`${signal}: stopping the demo and everything it started (again to kill at once)`)}\n`);
      abort.abort();
    } else {
      killAllChildrenSync();
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  process.on('exit', killAllChildrenSync);

  let zk: DemoZooKeeper | undefined;
  const pods: Pod[] = [];
  let provider: DemoChild | undefined;
  const clients: ConsumerClient[] = [];
  const registries: Registry[] = [];
  let drove = false;
  let failed = false;
  try {
    out(s.bold('meshport demo: SOFA RPC (Bolt) and Dubbo apps talking through two meshport sidecars'));
    out(s.dim('  registry takeover over a real ZooKeeper; two loopback-port pods, every port picked free on 127.0.0.1'));

    step(1, 'ZooKeeper');
    zk = await startZooKeeper(abort.signal);
    out(`  zookeeper ${zk.connectString} (pid ${zk.pid})`);

    step(2, 'two pods, one meshport sidecar each (child processes: meshport sidecar --config pod.yaml)');
    const [providerPod, consumerPod] = await Promise.all([
      startPod('provider-pod', zk.connectString, abort.signal),
      startPod('consumer-pod', zk.connectString, abort.signal),
    ]);
    pods.push(providerPod, consumerPod);
    for (const pod of pods) {
      out(`  ${pod.name}: sidecar pid ${pod.pid}, inbound ${hostPort(pod.inbound)}, outbound ${hostPort(pod.outbound)}, ` +
        `admin ${hostPort(pod.admin)}, zookeeper facade ${hostPort(pod.facade)}`);
    }

    step(3, 'provider app (its own process) registering through the provider pod\'s facade');
    provider = new DemoChild('the provider app', process.execPath, [PROVIDER_APP, hostPort(providerPod.facade)]);
    const appPorts = await provider.waitForLine('its published ports', (line) => {
      try {
        const o = JSON.parse(line) as { bolt?: number; dubbo?: number };
        return o.bolt && o.dubbo ? { bolt: o.bolt, dubbo: o.dubbo } : undefined;
      } catch {
        return undefined;
      }
    }, 30_000, abort.signal);
    out(`  provider app pid ${provider.pid}: ${FLOWS[0]!.iface} (bolt) on 127.0.0.1:${appPorts.bolt}, ` +
      `${FLOWS[1]!.iface} (dubbo) on 127.0.0.1:${appPorts.dubbo}, registry ${hostPort(providerPod.facade)}`);

    step(4, 'consumer app (this process) finding providers through the consumer pod\'s facade');
    const consumers = new Map<Flow, ReturnType<ConsumerClient['createConsumer']>>();
    for (const flow of FLOWS) {
      const registry = new sofaRegistry.ZookeeperRegistry({ logger: quietLogger, address: hostPort(consumerPod.facade), cluster: quietCluster() });
      registries.push(registry);
      // The protocol is always explicit, Bolt too: sofa-rpc-node keeps the last one given in module-wide defaults.
      const client = new sofaClient.RpcClient({ logger: quietLogger, registry, protocol: flow.impl });
      clients.push(client);
      // retryFaultInterval: the SDK sleeps this long between reconnect rounds, even after close (default 30 s).
      const consumer = client.createConsumer({ interfaceName: flow.iface, version: '1.0', retryFaultInterval: 200 });
      await consumer.ready();
      consumers.set(flow, consumer);
    }
    // The provider's registration travels provider pod -> ZooKeeper -> consumer pod -> consumer app: wait for it.
    for (const flow of FLOWS) {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const reply = await consumers.get(flow)!.invoke(flow.method, [flow.arg], { responseTimeout: 3000 }).catch((e: Error) => e);
        if (reply === flow.expect) break;
        if (abort.signal.aborted) throw new Error('interrupted');
        if (Date.now() > deadline) throw new Error(`${flow.protocol}: no answer within 30 s, last: ${reply instanceof Error ? reply.message : JSON.stringify(reply)}`);
        await sleep(200, abort.signal);
      }
      out(`  ${flow.protocol.padEnd(5)} ${flow.iface}#${flow.method}(${JSON.stringify(flow.arg)}) -> ${JSON.stringify(flow.expect)}`);
    }

    step(5, `calls for ${seconds} s, ${CALLERS_PER_PROTOCOL} callers per protocol (Ctrl-C ends them early)`);
    const tallies = new Map<Flow, Tally>(FLOWS.map((f) => [f, { ok: 0, failed: 0, latencies: [] }]));
    const started = Date.now();
    const endAt = started + seconds * 1000;
    const progress = () => {
      const parts = FLOWS.map((f) => {
        const t = tallies.get(f)!;
        return `${f.protocol} ${s.green(String(t.ok))} ok${t.failed ? ` ${s.red(`${t.failed} failed`)}` : ''}`;
      });
      return `  ${((Date.now() - started) / 1000).toFixed(1).padStart(4)} s / ${seconds} s   ${parts.join('   ')}`;
    };
    const ticker = setInterval(() => {
      if (tty) io.stdout.write(`\r${progress()}\x1b[K`);
      else out(progress());
    }, tty ? 100 : 1000);
    const caller = async (flow: Flow) => {
      const t = tallies.get(flow)!;
      const consumer = consumers.get(flow)!;
      while (Date.now() < endAt && !abort.signal.aborted) {
        const t0 = process.hrtime.bigint();
        try {
          const reply = await consumer.invoke(flow.method, [flow.arg], { responseTimeout: 3000 });
          if (reply !== flow.expect) throw new Error(`unexpected reply ${JSON.stringify(reply)}`);
          t.latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
          t.ok++;
        } catch (err) {
          t.failed++;
          t.firstError ??= (err as Error).message.split('\n')[0];
          await sleep(50);
        }
      }
    };
    try {
      await Promise.all(FLOWS.flatMap((f) => Array.from({ length: CALLERS_PER_PROTOCOL }, () => caller(f))));
    } finally {
      clearInterval(ticker);
    }
    if (tty) io.stdout.write(`\r${progress()}\x1b[K\n`);
    else out(progress());
    drove = true;

    step(6, 'what happened');
    const elapsed = (Date.now() - started) / 1000;
    out(s.bold(`  calls (${elapsed.toFixed(1)} s, warm-up calls not counted)`));
    for (const flow of FLOWS) {
      const t = tallies.get(flow)!;
      const sorted = [...t.latencies].sort((a, b) => a - b);
      const failedText = t.failed > 0 ? s.red(`failed ${t.failed}`) : `failed ${t.failed}`;
      out(`  calls ${flow.protocol.padEnd(5)} ${`${flow.iface}#${flow.method}`.padEnd(32)} ok ${s.green(String(t.ok))}  ${failedText}  ` +
        `(${(t.ok / elapsed).toFixed(0)}/s)  p50 ${formatMs(percentile(sorted, 50))}  p90 ${formatMs(percentile(sorted, 90))}  p99 ${formatMs(percentile(sorted, 99))}`);
      if (t.firstError) out(`    ${s.red('first error:')} ${t.firstError}`);
      if (t.failed > 0) failed = true;
    }

    // The provider nodes as they stand in the real ZooKeeper: the provider pod's inbound address, not the app's.
    const ifaces = FLOWS.map((f) => f.iface);
    const upstream = await readProviders(zk.connectString, ifaces);
    out(s.bold(`\n  registry entries in ZooKeeper ${zk.connectString} (rewritten by the provider pod's sidecar)`));
    for (const flow of FLOWS) {
      const appPort = flow.protocol === 'bolt' ? appPorts.bolt : appPorts.dubbo;
      for (const entry of upstream.get(flow.iface) ?? []) {
        const mark = entry.port === providerPod.inbound.port ? s.green('= provider pod inbound') : s.red('!= provider pod inbound');
        out(`  zookeeper entry ${flow.iface}: ${entry.host}:${entry.port}  ${mark} ${s.dim(`(the app itself listens on 127.0.0.1:${appPort})`)}`);
        out(`    ${s.dim(`/sofa-rpc/${flow.iface}/providers/${shorten(entry.url, 150)}`)}`);
      }
      if ((upstream.get(flow.iface) ?? []).length === 0) out(`  zookeeper entry ${flow.iface}: ${s.red('none')}`);
    }

    // What the consumer app was handed through its own pod's facade, and where it actually connected.
    const handed = await readProviders(hostPort(consumerPod.facade), ifaces);
    out(s.bold(`\n  what the consumer app was handed (through the consumer pod's facade ${hostPort(consumerPod.facade)})`));
    for (const flow of FLOWS) {
      const addrs = (handed.get(flow.iface) ?? []).map((e) => `${e.host}:${e.port}`);
      const mark = addrs.length === 1 && addrs[0] === hostPort(consumerPod.outbound) ? s.green('= consumer pod outbound') : s.red('unexpected');
      out(`  consumer app handed ${flow.iface}: ${addrs.join(', ') || 'nothing'}  ${mark}`);
    }
    const dialled = [...new Set(clients.flatMap((c) => [...c.connectionManager.connections.keys()]))];
    out(`  consumer app connected to: ${dialled.join(', ') || 'nothing'}`);

    // Which endpoint served: the pods' admin pages.
    const [outRoutes, inRoutes, outStats, inStats] = await Promise.all([
      adminRoutes(consumerPod.admin),
      adminRoutes(providerPod.admin),
      adminResponses(consumerPod.admin),
      adminResponses(providerPod.admin),
    ]);
    out(s.bold('\n  which endpoint served (the pods\' admin /routes and /stats; the counts include the warm-up calls)'));
    for (const flow of FLOWS) {
      const cluster = clusterOf(flow);
      const appPort = flow.protocol === 'bolt' ? appPorts.bolt : appPorts.dubbo;
      const outEndpoints = endpoints(outRoutes, 'outbound', cluster);
      const inEndpoints = endpoints(inRoutes, 'inbound', cluster);
      out(`  consumer pod outbound route ${cluster} -> ${outEndpoints || 'none'}  ` +
        `${outEndpoints === hostPort(providerPod.inbound) ? s.green('= provider pod inbound') : s.red('unexpected')}`);
      out(`  provider pod inbound route ${cluster} -> ${inEndpoints || 'none'}  ` +
        `${inEndpoints === `127.0.0.1:${appPort}` ? s.green('= provider app') : s.red('unexpected')}`);
      out(`  consumer pod /stats outbound ok ${cluster}: ${outStats.get(`outbound ${cluster} ok`) ?? 0}`);
      out(`  provider pod /stats inbound ok ${cluster}: ${inStats.get(`inbound ${cluster} ok`) ?? 0}`);
      const notOk = [...outStats, ...inStats].filter(([k]) => k.includes(` ${cluster} `) && !k.endsWith(' ok'));
      for (const [k, n] of notOk) out(`  ${s.yellow(`not ok: ${k}: ${n}`)}`);
    }
  } catch (err) {
    failed = true;
    if (!abort.signal.aborted) io.stderr.write(`\n${s.red('meshport demo failed:')} ${(err as Error).message}\n`);
  } finally {
    out(s.bold('\nstopping everything'));
    await Promise.allSettled(clients.map((c) => c.close()));
    await Promise.allSettled(registries.map((r) => r.close()));
    if (provider) {
      const r = await provider.stop();
      out(`  provider app pid ${provider.pid} ${r.killed ? 'killed' : `exited ${r.code ?? r.signal}`}`);
    }
    // Consumer pod first: its facade closes before the provider pod's registration goes.
    for (const pod of [...pods].reverse()) out(`  ${pod.name} sidecar pid ${pod.pid} exited ${await pod.stop()}`);
    if (zk) {
      await zk.stop();
      out(`  zookeeper pid ${zk.pid} stopped`);
    }
    process.off('exit', killAllChildrenSync);
    out(`stopped: zookeeper pid ${zk?.pid ?? '-'}, sidecars pids ${pods.map((p) => p.pid).join(' ') || '-'}, provider pid ${provider?.pid ?? '-'}`);
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
  }
  if (abort.signal.aborted && !drove) return 130;
  return failed ? 1 : 0;
}

function endpoints(clusters: RouteCluster[], listener: string, name: string): string {
  return clusters
    .filter((c) => c.listener === listener && c.name === name)
    .flatMap((c) => c.endpoints.map((e) => e.address))
    .join(', ');
}

function shorten(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
