// `meshport demo` (what `npm run demo` runs): the whole product flow on one machine. A real ZooKeeper; two pods,
// each a `meshport sidecar` child process taking over ZooKeeper through its facade; a sofa-rpc-node provider app
// pointed at the provider pod's facade, and a sofa-rpc-node consumer app pointed at the consumer pod's facade, each
// in a process of its own. The pods: when root (and `ip netns` works) each pod is a network namespace of its own
// (198.18.10.2 and 198.18.11.2, routed through a third "net" namespace; ZooKeeper on the host side of that, at
// 198.18.12.1), the sidecar and the pod's app run inside it; otherwise loopback-port pods (every listener on
// 127.0.0.1, ports picked free). MESHPORT_DEMO_PODS=loopback|netns chooses. The pods talk mutual TLS (strict), each
// with an identity from a development CA the demo makes in a temporary directory (MESHPORT_DEMO_TLS=off: plaintext).
// Calls are driven for a while with a progress line, then the demo shows what happened (the peer identities
// included) and stops everything, Ctrl-C included.

import path from 'node:path';
// The one ZooKeeper launcher (the suites' and the bench's too); its entry point loads node built-ins only.
import { startZooKeeper, type RunningZooKeeper } from '@meshport/testkit/zookeeper';
import { DemoChild, killAllChildrenSync } from './demo/children';
import { demoTls, makeDemoPki, type DemoPki } from './demo/identities';
import { FLOWS, type ConsumerDone, type Flow } from './demo/consumer-app';
import { podMode, setupNetns, CONSUMER_POD_IP, PROVIDER_POD_IP, type DemoNetns } from './demo/netns';
import { hostPort, inPod, startPod, type Pod, type PodPlace } from './demo/pods';
import { adminRoutes, adminServices, adminTls, formatMs, percentile, type RouteCluster } from './demo/report';
import { readProviders } from './demo/registry-view';
import { Style } from './format';
import { formatSuccess } from './top/figures';
import type { Io } from './io';

const PROVIDER_APP = path.join(__dirname, 'demo', 'provider-app.js');
const CONSUMER_APP = path.join(__dirname, 'demo', 'consumer-app.js');
const CALLERS_PER_PROTOCOL = 4;

/** The route key of a flow's calls: sofa-rpc-node's Dubbo consumers send their group (`SOFA`) in every call. */
const clusterOf = (flow: Flow) => (flow.protocol === 'dubbo' ? `SOFA/${flow.iface}:1.0` : `${flow.iface}:1.0`);

/** How long calls are driven: MESHPORT_DEMO_SECONDS, 5 s by default. */
function demoSeconds(): number {
  const raw = process.env.MESHPORT_DEMO_SECONDS;
  const n = raw === undefined || raw === '' ? 5 : Number(raw);
  return Number.isFinite(n) && n > 0 ? n : 5;
}

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
      io.stderr.write(
        `\n${s.yellow(`${signal}: stopping the demo and everything it started (again to kill at once)`)}\n`,
      );
      abort.abort();
    } else {
      lastResort();
      process.exit(130);
    }
  };
  // The namespaces go in the finally below; on a second Ctrl-C or an unexpected exit, here.
  let netns: DemoNetns | undefined;
  const lastResort = () => {
    killAllChildrenSync();
    netns?.cleanup();
    netns = undefined;
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  process.on('exit', lastResort);

  let zk: RunningZooKeeper | undefined;
  let pki: DemoPki | undefined;
  const pods: Pod[] = [];
  let provider: DemoChild | undefined;
  let consumer: DemoChild | undefined;
  let drove = false;
  let failed = false;
  try {
    const mode = podMode();
    out(s.bold('meshport demo: SOFA RPC (Bolt) and Dubbo apps talking through two meshport sidecars'));
    let providerPlace: PodPlace | undefined;
    let consumerPlace: PodPlace | undefined;
    if (mode === 'netns') {
      netns = setupNetns();
      providerPlace = { netns: netns.provider, ip: PROVIDER_POD_IP };
      consumerPlace = { netns: netns.consumer, ip: CONSUMER_POD_IP };
      out(
        s.dim(
          `  registry takeover over a real ZooKeeper; two pods in network namespaces: ${netns.provider} (${PROVIDER_POD_IP}), ` +
            `${netns.consumer} (${CONSUMER_POD_IP}), routed through ${netns.net}`,
        ),
      );
    } else {
      out(
        s.dim('  registry takeover over a real ZooKeeper; two loopback-port pods, every port picked free on 127.0.0.1'),
      );
    }

    step(1, 'ZooKeeper');
    zk = await startZooKeeper({ signal: abort.signal, host: netns?.hostIp, tickTime: 1000 });
    out(`  zookeeper ${zk.connectString} (pid ${zk.pid})`);

    step(
      2,
      `two pods, one meshport sidecar each (child processes: ${netns ? 'ip netns exec POD ' : ''}meshport sidecar --config pod.yaml)`,
    );
    if (demoTls()) {
      pki = await makeDemoPki();
      // The provider pod lets only the consumer pod's identity call its services.
      pki.pods.provider.allow = Object.fromEntries(FLOWS.map((f) => [clusterOf(f), [pki!.pods.consumer.identity]]));
      out(
        `  identities: development CA ${pki.caFile} (trust domain ${pki.trustDomain}); ` +
          `provider-pod ${pki.pods.provider.identity}, consumer-pod ${pki.pods.consumer.identity}; tls mode strict`,
      );
    } else {
      out(s.dim('  MESHPORT_DEMO_TLS=off: the pods talk plaintext'));
    }
    const [providerPod, consumerPod] = await Promise.all([
      startPod('provider-pod', zk.connectString, abort.signal, providerPlace, pki?.pods.provider),
      startPod('consumer-pod', zk.connectString, abort.signal, consumerPlace, pki?.pods.consumer),
    ]);
    pods.push(providerPod, consumerPod);
    for (const pod of pods) {
      out(
        `  ${pod.name}: sidecar pid ${pod.pid}, inbound ${hostPort(pod.inbound)}, outbound ${hostPort(pod.outbound)}, ` +
          `admin ${hostPort(pod.admin)}, zookeeper facade ${hostPort(pod.facade)}`,
      );
    }

    step(
      3,
      `provider app (its own process${netns ? ', in the provider pod' : ''}) registering through the provider pod's facade`,
    );
    provider = new DemoChild(
      'the provider app',
      ...inPod(providerPlace, process.execPath, [PROVIDER_APP, hostPort(providerPod.facade)]),
    );
    const appPorts = await provider.waitForLine(
      'its published ports',
      (line) => {
        try {
          const o = JSON.parse(line) as { bolt?: number; dubbo?: number };
          return o.bolt && o.dubbo ? { bolt: o.bolt, dubbo: o.dubbo } : undefined;
        } catch {
          return undefined;
        }
      },
      30_000,
      abort.signal,
    );
    out(
      `  provider app pid ${provider.pid}: ${FLOWS[0]!.iface} (bolt) on 127.0.0.1:${appPorts.bolt}, ` +
        `${FLOWS[1]!.iface} (dubbo) on 127.0.0.1:${appPorts.dubbo}, registry ${hostPort(providerPod.facade)}`,
    );

    step(
      4,
      `consumer app (its own process${netns ? ', in the consumer pod' : ''}) finding providers through the consumer pod's facade`,
    );
    consumer = new DemoChild(
      'the consumer app',
      ...inPod(consumerPlace, process.execPath, [
        CONSUMER_APP,
        hostPort(consumerPod.facade),
        String(seconds),
        String(CALLERS_PER_PROTOCOL),
      ]),
    );
    const consumerApp = consumer;
    const parse = (line: string): Record<string, unknown> | undefined => {
      try {
        const o = JSON.parse(line) as unknown;
        return o && typeof o === 'object' ? (o as Record<string, unknown>) : undefined;
      } catch {
        return undefined;
      }
    };
    const fromConsumer = <T>(what: string, match: (o: Record<string, unknown>) => T | undefined, timeoutMs: number) =>
      consumerApp
        .waitForLine(
          what,
          (line) => {
            const o = parse(line);
            if (o && typeof o.error === 'string') return { error: o.error };
            const value = o && match(o);
            return value === undefined ? undefined : { value };
          },
          timeoutMs,
          abort.signal,
        )
        .then((r) => {
          if ('error' in r) throw new Error(`the consumer app: ${r.error}`);
          return r.value as T;
        });
    // The provider's registration travels provider pod -> ZooKeeper -> consumer pod -> consumer app: it waits for it.
    for (const flow of FLOWS) {
      await fromConsumer(`a ${flow.protocol} answer`, (o) => (o.warm === flow.protocol ? true : undefined), 45_000);
      out(
        `  ${flow.protocol.padEnd(5)} ${flow.iface}#${flow.method}(${JSON.stringify(flow.arg)}) -> ${JSON.stringify(flow.expect)}`,
      );
    }

    step(5, `calls for ${seconds} s, ${CALLERS_PER_PROTOCOL} callers per protocol (Ctrl-C ends them early)`);
    type Counts = Record<string, { ok: number; failed: number }>;
    let counts: Counts = Object.fromEntries(FLOWS.map((f) => [f.protocol, { ok: 0, failed: 0 }]));
    const started = Date.now();
    const progress = () => {
      const parts = FLOWS.map((f) => {
        const t = counts[f.protocol] ?? { ok: 0, failed: 0 };
        return `${f.protocol} ${s.green(String(t.ok))} ok${t.failed ? ` ${s.red(`${t.failed} failed`)}` : ''}`;
      });
      return `  ${((Date.now() - started) / 1000).toFixed(1).padStart(4)} s / ${seconds} s   ${parts.join('   ')}`;
    };
    const ticker = setInterval(
      () => {
        if (tty) io.stdout.write(`\r${progress()}\x1b[K`);
        else out(progress());
      },
      tty ? 100 : 1000,
    );
    // Ctrl-C: the consumer app ends its calls early on SIGTERM and still reports them.
    const endEarly = () => {
      if (consumerApp.running) process.kill(consumerApp.pid, 'SIGTERM');
    };
    abort.signal.addEventListener('abort', endEarly);
    let done: ConsumerDone;
    try {
      done = await consumerApp
        .waitForLine(
          "its calls' results",
          (line) => {
            const o = parse(line);
            if (!o) return undefined;
            if (typeof o.error === 'string') return { error: o.error };
            if (o.progress) counts = o.progress as Counts;
            return o.done ? { done: o.done as ConsumerDone } : undefined;
          },
          seconds * 1000 + 30_000,
        )
        .then((r) => {
          if ('error' in r) throw new Error(`the consumer app: ${r.error}`);
          return r.done;
        });
    } finally {
      abort.signal.removeEventListener('abort', endEarly);
      clearInterval(ticker);
    }
    for (const f of FLOWS) {
      const t = done.tallies[f.protocol];
      if (t) counts[f.protocol] = { ok: t.ok, failed: t.failed };
    }
    if (tty) io.stdout.write(`\r${progress()}\x1b[K\n`);
    else out(progress());
    drove = true;

    step(6, 'what happened');
    const elapsed = done.elapsedMs / 1000;
    out(s.bold(`  calls (${elapsed.toFixed(1)} s, warm-up calls not counted)`));
    for (const flow of FLOWS) {
      const t = done.tallies[flow.protocol] ?? { ok: 0, failed: 0, latencies: [] };
      const sorted = [...t.latencies].sort((a, b) => a - b);
      const failedText = t.failed > 0 ? s.red(`failed ${t.failed}`) : `failed ${t.failed}`;
      out(
        `  calls ${flow.protocol.padEnd(5)} ${`${flow.iface}#${flow.method}`.padEnd(32)} ok ${s.green(String(t.ok))}  ${failedText}  ` +
          `(${(t.ok / elapsed).toFixed(0)}/s)  p50 ${formatMs(percentile(sorted, 50))}  p90 ${formatMs(percentile(sorted, 90))}  p99 ${formatMs(percentile(sorted, 99))}`,
      );
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
        const mark =
          entry.port === providerPod.inbound.port
            ? s.green('= provider pod inbound')
            : s.red('!= provider pod inbound');
        out(
          `  zookeeper entry ${flow.iface}: ${entry.host}:${entry.port}  ${mark} ${s.dim(`(the app itself listens on 127.0.0.1:${appPort})`)}`,
        );
        out(`    ${s.dim(`/sofa-rpc/${flow.iface}/providers/${shorten(entry.url, 150)}`)}`);
        if (pki) {
          const id = meshportIdOf(entry.url);
          const ok = id === pki.pods.provider.identity;
          out(`    meshport.id ${id ?? 'none'}  ${ok ? s.green('= provider pod identity') : s.red('unexpected')}`);
        }
      }
      if ((upstream.get(flow.iface) ?? []).length === 0) out(`  zookeeper entry ${flow.iface}: ${s.red('none')}`);
    }

    // What the consumer app was handed through its own pod's facade, and where it actually connected.
    const handed = await readProviders(hostPort(consumerPod.facade), ifaces);
    const appHost = '127.0.0.1'; // the apps listen on their own pod's loopback
    out(
      s.bold(
        `\n  what the consumer app was handed (through the consumer pod's facade ${hostPort(consumerPod.facade)})`,
      ),
    );
    for (const flow of FLOWS) {
      const addrs = (handed.get(flow.iface) ?? []).map((e) => `${e.host}:${e.port}`);
      const mark =
        addrs.length === 1 && addrs[0] === hostPort(consumerPod.outbound)
          ? s.green('= consumer pod outbound')
          : s.red('unexpected');
      out(`  consumer app handed ${flow.iface}: ${addrs.join(', ') || 'nothing'}  ${mark}`);
      // The app dials its own sidecar in plaintext: what it is handed never carries the provider's identity.
      if ((handed.get(flow.iface) ?? []).some((e) => meshportIdOf(e.url) !== undefined))
        out(`    ${s.red('the consumer app was handed a meshport.id')}`);
    }
    const dialled = done.connected;
    out(`  consumer app connected to: ${dialled.join(', ') || 'nothing'}`);

    // Which endpoint served: the pods' admin /routes; what each sidecar counted per service and method: /services.
    const [outRoutes, inRoutes, outServices, inServices] = await Promise.all([
      adminRoutes(consumerPod.admin, consumerPod.netns),
      adminRoutes(providerPod.admin, providerPod.netns),
      adminServices(consumerPod.admin, consumerPod.netns),
      adminServices(providerPod.admin, providerPod.netns),
    ]);
    out(s.bold("\n  which endpoint served (the pods' admin /routes)"));
    for (const flow of FLOWS) {
      const cluster = clusterOf(flow);
      const appPort = flow.protocol === 'bolt' ? appPorts.bolt : appPorts.dubbo;
      const outEndpoints = endpoints(outRoutes, 'outbound', cluster);
      const inEndpoints = endpoints(inRoutes, 'inbound', cluster);
      out(
        `  consumer pod outbound route ${cluster} -> ${outEndpoints || 'none'}  ` +
          `${outEndpoints === hostPort(providerPod.inbound) ? s.green('= provider pod inbound') : s.red('unexpected')}`,
      );
      out(
        `  provider pod inbound route ${cluster} -> ${inEndpoints || 'none'}  ` +
          `${inEndpoints === `${appHost}:${appPort}` ? s.green('= provider app') : s.red('unexpected')}`,
      );
    }
    out(
      s.bold(
        "\n  per service and method, as each sidecar counted them (the pods' admin /services, what `meshport top` reads; warm-up calls included)",
      ),
    );
    const sides = [
      ['consumer pod', 'outbound', outServices],
      ['provider pod', 'inbound', inServices],
    ] as const;
    for (const flow of FLOWS) {
      const cluster = clusterOf(flow);
      for (const [pod, direction, lines] of sides) {
        const rows = lines.filter((l) => l.direction === direction && l.service === cluster);
        if (rows.length === 0) out(`  ${pod} ${direction.padEnd(8)} ${cluster}: ${s.red('no calls counted')}`);
        for (const r of rows) {
          const rate = r.answered > 0 ? r.ok / r.answered : undefined;
          const success = `success ${formatSuccess(rate)}`;
          out(
            `  ${pod} ${direction.padEnd(8)} ${cluster}#${r.method}  calls ${r.calls}  ${rate === 1 ? s.green(success) : s.red(success)}  ` +
              `p50 ${r.p50}  p99 ${r.p99}  callers ${r.callers.slice(0, 3).join(', ') || 'none'}`,
          );
          for (const [outcome, n] of r.failures) out(`    ${s.yellow(`not ok: ${outcome}: ${n}`)}`);
        }
      }
    }

    // Who talked to whom: the identity the consumer pod required of the endpoint (published by the provider pod as
    // meshport.id), and the caller identity the provider pod admitted (its policy lets in only the consumer pod's).
    if (pki) {
      const [outTls, inTls] = await Promise.all([
        adminTls(consumerPod.admin, consumerPod.netns),
        adminTls(providerPod.admin, providerPod.netns),
      ]);
      const consumerId = pki.pods.consumer.identity;
      const providerId = pki.pods.provider.identity;
      out(s.bold("\n  mutual TLS between the pods (tls: strict; the pods' admin /routes and /stats)"));
      for (const flow of FLOWS) {
        const cluster = clusterOf(flow);
        const ids = outRoutes
          .filter((c) => c.listener === 'outbound' && c.name === cluster)
          .flatMap((c) => c.endpoints.map((e) => e.identity ?? 'none (plaintext)'));
        const mark =
          ids.length > 0 && ids.every((id) => id === providerId)
            ? s.green('= provider pod identity')
            : s.red('unexpected');
        out(`  consumer pod endpoint identity ${cluster}: ${ids.join(', ') || 'none'}  ${mark}`);
      }
      const admitted = inTls.handshakes.inbound > 0 && inTls.denied === 0;
      out(
        `  provider pod caller identity: ${consumerId}  ${admitted ? s.green('= consumer pod identity') : s.red('unexpected')} ` +
          s.dim(`(its policy admits only ${consumerId}; denied ${inTls.denied})`),
      );
      out(`  provider pod tls handshakes inbound: ${inTls.handshakes.inbound}`);
      out(`  consumer pod tls handshakes outbound: ${outTls.handshakes.outbound}`);
      for (const [k, n] of [...inTls.failures, ...outTls.failures])
        out(`  ${s.yellow(`tls handshake failures ${k}: ${n}`)}`);
      if (!admitted || inTls.handshakes.inbound === 0 || outTls.handshakes.outbound === 0) failed = true;
    }
  } catch (err) {
    failed = true;
    if (!abort.signal.aborted) io.stderr.write(`\n${s.red('meshport demo failed:')} ${(err as Error).message}\n`);
  } finally {
    out(s.bold('\nstopping everything'));
    if (consumer) {
      const r = await consumer.stop();
      out(`  consumer app pid ${consumer.pid} ${r.killed ? 'killed' : `exited ${r.code ?? r.signal}`}`);
    }
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
    if (pki) {
      pki.cleanup();
      out(`  development CA ${pki.dir} deleted`);
    }
    if (netns) {
      const names = [netns.provider, netns.consumer, netns.net];
      netns.cleanup();
      netns = undefined;
      out(`  network namespaces ${names.join(', ')} deleted`);
    }
    process.off('exit', lastResort);
    out(
      `stopped: zookeeper pid ${zk?.pid ?? '-'}, sidecars pids ${pods.map((p) => p.pid).join(' ') || '-'}, provider pid ${provider?.pid ?? '-'}, ` +
        `consumer pid ${consumer?.pid ?? '-'}`,
    );
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

/** The `meshport.id` parameter of a provider URL, decoded. */
function meshportIdOf(url: string): string | undefined {
  const m = /[?&]meshport\.id=([^&]*)/.exec(url);
  return m ? decodeURIComponent(m[1]!) : undefined;
}

function shorten(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
