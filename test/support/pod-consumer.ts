// A pod's consumer app for the network-namespace suites: a sofa-rpc-node consumer of INTERFACE v1.0 (Bolt, or Dubbo)
// finding its providers through REGISTRY (its pod sidecar's ZooKeeper facade), run as a child inside the pod. Usage:
//   node pod-consumer.js REGISTRY_HOST:PORT INTERFACE [bolt|dubbo]
// REGISTRY `direct:HOST:PORT`: no registry, every call straight to HOST:PORT (a caller that skips its sidecar).
// Commands, one JSON line each on stdin; answers as JSON lines on stdout:
//   (start)                              -> {"ready": true} once the consumer has its first provider list
//   {"call": N, "text": T}               -> {"called": {"ok", "failed", "answers": [first 3], "errors": [first 3]}}
//                                           N calls of echo(T#i), one after the other
//   {"stream": C}                        -> {"streaming": true}; C callers call echo in a loop until "stop"
//   {"stop": true}                       -> {"stopped": {"ok", "failed", "errors": [first 5], "elapsedMs"}}
//   stdin closed                         -> closes the app and exits 0
// Any failure to start: {"error": "..."} and exit 1.

import { createInterface } from 'node:readline';
import { client as sofaClient } from 'sofa-rpc-node';
import { closeApps, type Protocol, protocolOption, quietLogger, startConsumerApp } from '@meshport/testkit';

const [registry, iface, protocolArg] = process.argv.slice(2) as [string, string, string | undefined];
const protocol: Protocol = protocolArg === 'dubbo' ? 'dubbo' : 'bolt';
const say = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

/** A consumer with no registry: every call to `serverHost`. */
async function direct(serverHost: string) {
  const client = new sofaClient.RpcClient({ logger: quietLogger, ...protocolOption(protocol) });
  const consumer = client.createConsumer({ interfaceName: iface, version: '1.0', serverHost });
  await consumer.ready();
  return { client, consumer, registry: undefined };
}

async function main() {
  const app = registry.startsWith('direct:')
    ? await direct(registry.slice('direct:'.length))
    : await startConsumerApp(protocol, iface, registry);
  const call = (text: string) => app.consumer.invoke('echo', [text], { responseTimeout: 5000 }) as Promise<unknown>;
  say({ ready: true });
  let streaming = false;
  let callers: Promise<void>[] = [];
  const tally = { ok: 0, failed: 0, errors: [] as string[], started: 0 };
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    let cmd: { call?: number; text?: string; stream?: number; stop?: boolean };
    try {
      cmd = JSON.parse(line) as typeof cmd;
    } catch {
      continue;
    }
    if (cmd.call !== undefined) {
      const result = { ok: 0, failed: 0, answers: [] as unknown[], errors: [] as string[] };
      for (let i = 0; i < cmd.call; i++) {
        try {
          const answer = await call(`${cmd.text ?? 'hi'}#${i}`);
          result.ok++;
          if (result.answers.length < 3) result.answers.push(answer);
        } catch (e) {
          result.failed++;
          if (result.errors.length < 3) result.errors.push((e as Error).message);
        }
      }
      say({ called: result });
    } else if (cmd.stream !== undefined) {
      streaming = true;
      Object.assign(tally, { ok: 0, failed: 0, errors: [], started: Date.now() });
      callers = Array.from({ length: cmd.stream }, async (_, c) => {
        for (let i = 0; streaming; i++) {
          try {
            await call(`stream-${c}-${i}`);
            tally.ok++;
          } catch (e) {
            tally.failed++;
            if (tally.errors.length < 5) tally.errors.push((e as Error).message);
          }
        }
      });
      say({ streaming: true });
    } else if (cmd.stop) {
      streaming = false;
      await Promise.all(callers);
      say({
        stopped: { ok: tally.ok, failed: tally.failed, errors: tally.errors, elapsedMs: Date.now() - tally.started },
      });
    }
  }
  streaming = false;
  await Promise.all(callers);
  await closeApps(app.registry ? [app.client, app.registry] : [app.client]);
  process.exit(0);
}

main().catch((e: Error) => {
  say({ error: e.message });
  process.exit(1);
});
