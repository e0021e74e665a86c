// The demo's consumer app, in a process of its own as in its own pod: sofa-rpc-node consumers of
// com.example.EchoService (Bolt) and com.example.GreetService (Dubbo), finding providers through the ZooKeeper
// address it is given (the consumer pod's facade). Usage: node consumer-app.js REGISTRY_HOST:PORT SECONDS CALLERS
// Reports as JSON lines on stdout:
//   {"warm": "bolt"}                         a flow answered as expected (warm-up, not counted)
//   {"started": true}                        the counted calls begin
//   {"progress": {"bolt": {"ok", "failed"}, ...}}   every 100 ms while calling
//   {"done": {"elapsedMs", "tallies": {"bolt": {"ok", "failed", "latencies", "firstError"?}, ...}, "connected": [...]}}
//   {"error": "..."}                         it gave up (then exits 1)
// SIGTERM/SIGINT ends the calls early (a "done" line still comes); after "done" it waits for SIGTERM/SIGINT, then
// closes its clients and registries and exits 0.

import { client as sofaClient, registry as sofaRegistry } from 'sofa-rpc-node';
import dubboProtocol from 'dubbo-remoting';
import boltProtocol from 'sofa-bolt-node';
import { quietCluster, quietLogger } from './quiet';

export interface Flow {
  protocol: 'bolt' | 'dubbo';
  impl: unknown;
  iface: string;
  method: string;
  arg: string;
  expect: string;
}

export const FLOWS: Flow[] = [
  {
    protocol: 'bolt',
    impl: boltProtocol,
    iface: 'com.example.EchoService',
    method: 'echo',
    arg: 'hello meshport',
    expect: 'echo: hello meshport',
  },
  {
    protocol: 'dubbo',
    impl: dubboProtocol,
    iface: 'com.example.GreetService',
    method: 'greet',
    arg: 'meshport',
    expect: 'hello, meshport',
  },
];

export interface Tally {
  ok: number;
  failed: number;
  latencies: number[];
  firstError?: string;
}

export interface ConsumerDone {
  elapsedMs: number;
  tallies: Record<string, Tally>;
  connected: string[];
}

type ConsumerClient = InstanceType<typeof sofaClient.RpcClient>;
type Registry = InstanceType<typeof sofaRegistry.ZookeeperRegistry>;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const report = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

async function main(registryAddress: string, seconds: number, callersPerProtocol: number): Promise<void> {
  const clients: ConsumerClient[] = [];
  const registries: Registry[] = [];
  let stopRequested = false;
  let finished = false;
  let closing = false;
  const close = async (code: number) => {
    if (closing) return;
    closing = true;
    await Promise.allSettled(clients.map((c) => c.close()));
    await Promise.allSettled(registries.map((r) => r.close()));
    process.exit(code);
  };
  const onSignal = () => {
    stopRequested = true;
    if (finished) void close(0);
  };
  process.on('SIGTERM', onSignal).on('SIGINT', onSignal);

  const consumers = new Map<Flow, ReturnType<ConsumerClient['createConsumer']>>();
  for (const flow of FLOWS) {
    const registry = new sofaRegistry.ZookeeperRegistry({
      logger: quietLogger,
      address: registryAddress,
      cluster: quietCluster(),
    });
    registries.push(registry);
    // The protocol is always explicit, Bolt too: sofa-rpc-node keeps the last one given in module-wide defaults.
    const client = new sofaClient.RpcClient({ logger: quietLogger, registry, protocol: flow.impl });
    clients.push(client);
    // retryFaultInterval: the SDK sleeps this long between reconnect rounds, even after close (default 30 s).
    const consumer = client.createConsumer({ interfaceName: flow.iface, version: '1.0', retryFaultInterval: 200 });
    await consumer.ready();
    consumers.set(flow, consumer);
  }
  // The provider's registration travels provider pod -> ZooKeeper -> consumer pod -> this app: wait for it.
  for (const flow of FLOWS) {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const reply = await consumers
        .get(flow)!
        .invoke(flow.method, [flow.arg], { responseTimeout: 3000 })
        .catch((e: Error) => e);
      if (reply === flow.expect) break;
      if (stopRequested) {
        finished = true;
        return void close(0);
      }
      if (Date.now() > deadline) {
        report({
          error: `${flow.protocol}: no answer within 30 s, last: ${reply instanceof Error ? reply.message : JSON.stringify(reply)}`,
        });
        return void close(1);
      }
      await sleep(200);
    }
    report({ warm: flow.protocol });
  }

  const tallies: Record<string, Tally> = Object.fromEntries(
    FLOWS.map((f) => [f.protocol, { ok: 0, failed: 0, latencies: [] }]),
  );
  report({ started: true });
  const started = Date.now();
  const endAt = started + seconds * 1000;
  const progress = () =>
    report({
      progress: Object.fromEntries(
        FLOWS.map((f) => [f.protocol, { ok: tallies[f.protocol]!.ok, failed: tallies[f.protocol]!.failed }]),
      ),
    });
  const ticker = setInterval(progress, 100);
  const caller = async (flow: Flow) => {
    const t = tallies[flow.protocol]!;
    const consumer = consumers.get(flow)!;
    while (Date.now() < endAt && !stopRequested) {
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
    await Promise.all(FLOWS.flatMap((f) => Array.from({ length: callersPerProtocol }, () => caller(f))));
  } finally {
    clearInterval(ticker);
  }
  const connected = [...new Set(clients.flatMap((c) => [...c.connectionManager.connections.keys()]))];
  for (const t of Object.values(tallies)) t.latencies = t.latencies.map((ms) => Math.round(ms * 1000) / 1000);
  const done: ConsumerDone = { elapsedMs: Date.now() - started, tallies, connected };
  report({ done });
  finished = true;
  if (stopRequested) void close(0);
}

if (require.main === module) {
  const [address, secondsText, callersText] = process.argv.slice(2);
  const seconds = Number(secondsText);
  const callers = Number(callersText);
  if (!address || !(seconds > 0) || !(callers > 0)) {
    process.stderr.write('usage: consumer-app.js REGISTRY_HOST:PORT SECONDS CALLERS\n');
    process.exit(2);
  }
  main(address, seconds, callers).catch((err: Error) => {
    report({ error: err.message });
    process.stderr.write(`consumer app: ${err.stack ?? err.message}\n`);
    process.exit(1);
  });
}
