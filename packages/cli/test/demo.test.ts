// `meshport demo` (what `npm run demo` runs): the whole product flow — a real ZooKeeper, two sidecars as two pods,
// a sofa-rpc-node provider and consumer each pointed at its own pod's facade — completes, the calls went through
// both sidecars over mutual TLS (the summary names the peer identities), each sidecar counted them per service and
// method (its /services: calls, success, p50/p99, callers), and nothing it started is left running. As root (with a
// working `ip netns`) the pods are network namespaces (198.18.10.2 / 198.18.11.2) and none is left behind;
// MESHPORT_DEMO_PODS=loopback forces loopback pods.

import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const BIN = path.resolve(__dirname, '../../bin/meshport.js');

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Root with a working `ip netns`: the demo picks network-namespace pods by default. */
function netnsAvailable(): boolean {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return false;
  return spawnSync('ip', ['netns', 'list'], { stdio: 'ignore' }).status === 0;
}

function demoNamespaces(): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return (r.stdout ?? '').split('\n').filter((l) => l.startsWith('meshport-demo-'));
}

const esc = (text: string) => text.replace(/\./g, '\\.');

function one(out: string, re: RegExp, what: string): RegExpMatchArray {
  const m = re.exec(out);
  assert.ok(m, `${what}: no line matching ${re} in the output:\n${out}`);
  return m;
}

describe('meshport demo', function () {
  this.timeout(120_000);

  const netns = netnsAvailable() && process.env.MESHPORT_DEMO_PODS !== 'loopback';
  const title =
    'runs Bolt and Dubbo calls through two sidecar pods over a real ZooKeeper, shows what happened, and stops everything';

  it(`${title}${netns ? ' (network-namespace pods, as root)' : ' (loopback-port pods)'}`, () => {
    checkDemo({}, netns);
  });

  if (netns) {
    it(`${title} (loopback-port pods: MESHPORT_DEMO_PODS=loopback)`, () => {
      checkDemo({ MESHPORT_DEMO_PODS: 'loopback' }, false);
    });
  }
});

function checkDemo(extraEnv: NodeJS.ProcessEnv, netns: boolean): void {
  {
    const r = spawnSync(process.execPath, [BIN, 'demo'], {
      encoding: 'utf8',
      timeout: 90_000,
      env: { ...process.env, NO_COLOR: '1', MESHPORT_DEMO_SECONDS: '2', ...extraEnv },
    });
    const out = r.stdout;
    assert.equal(r.status, 0, `exit ${r.status} (signal ${r.signal})\nstdout:\n${out}\nstderr:\n${r.stderr}`);

    // The pods' addresses: their own in their namespaces (the outbound listener stays on the pod's loopback).
    const [providerIp, consumerIp] = netns ? ['198.18.10.2', '198.18.11.2'] : ['127.0.0.1', '127.0.0.1'];
    const provider = one(
      out,
      new RegExp(
        `provider-pod: sidecar pid (\\d+), inbound ${esc(providerIp)}:(\\d+), outbound 127\\.0\\.0\\.1:(\\d+)`,
      ),
      'provider pod',
    );
    const consumer = one(
      out,
      new RegExp(
        `consumer-pod: sidecar pid (\\d+), inbound ${esc(consumerIp)}:(\\d+), outbound 127\\.0\\.0\\.1:(\\d+)`,
      ),
      'consumer pod',
    );
    const providerInbound = `${providerIp}:${provider[2]}`;
    const consumerOutbound = `127.0.0.1:${consumer[3]}`;
    if (netns) {
      assert.match(
        out,
        /two pods in network namespaces: meshport-demo-\d+-provider \(198\.18\.10\.2\), meshport-demo-\d+-consumer \(198\.18\.11\.2\)/,
      );
      assert.match(out, /zookeeper 198\.18\.12\.1:\d+ /);
    } else {
      assert.match(out, /two loopback-port pods/);
    }
    const app = one(
      out,
      /provider app pid (\d+): com\.example\.EchoService \(bolt\) on 127\.0\.0\.1:(\d+), com\.example\.GreetService \(dubbo\) on 127\.0\.0\.1:(\d+)/,
      'provider app',
    );
    const appPorts = { 'com.example.EchoService': app[2], 'com.example.GreetService': app[3] };

    for (const [protocol, iface] of [
      ['bolt', 'com.example.EchoService'],
      ['dubbo', 'com.example.GreetService'],
    ] as const) {
      const cluster = protocol === 'dubbo' ? `SOFA/${iface}:1.0` : `${iface}:1.0`;
      const q = iface.replace(/\./g, '\\.');
      const qc = esc(cluster);
      // Calls went through, none failed.
      const calls = one(
        out,
        new RegExp(`calls ${protocol} +${q}#\\w+ +ok (\\d+) +failed (\\d+) .* p50 \\S+ ms +p90 \\S+ ms +p99 \\S+ ms`),
        `${protocol} calls`,
      );
      assert.ok(Number(calls[1]) > 0, `${protocol}: no call succeeded`);
      assert.equal(Number(calls[2]), 0, `${protocol}: failed calls\n${out}`);

      // The provider node in the real ZooKeeper carries the provider pod's inbound address, not the app's.
      const entry = one(out, new RegExp(`zookeeper entry ${q}: (\\S+:\\d+)`), `${iface} in ZooKeeper`);
      assert.equal(entry[1], providerInbound);
      assert.match(out, new RegExp(`/sofa-rpc/${q}/providers/${protocol}://${esc(providerInbound)}\\?`));

      // The consumer app was handed its own pod's outbound listener.
      const handed = one(out, new RegExp(`consumer app handed ${q}: (\\S+)`), `${iface} handed to the consumer`);
      assert.equal(handed[1], consumerOutbound);

      // Through both sidecars: consumer pod outbound -> provider pod inbound -> the provider app.
      const outRoute = one(out, new RegExp(`consumer pod outbound route ${qc} -> (\\S+)`), `${cluster} outbound route`);
      assert.equal(outRoute[1], providerInbound);
      const inRoute = one(out, new RegExp(`provider pod inbound route ${qc} -> (\\S+)`), `${cluster} inbound route`);
      assert.equal(inRoute[1], `127.0.0.1:${appPorts[iface]}`);
      // What each sidecar counted for the flow's method (/services): at least the app's calls (the warm-up calls
      // too), all of them ok, latency percentiles, and who called: the app on the consumer pod's loopback, the
      // consumer pod's identity at the provider pod.
      const method = protocol === 'bolt' ? 'echo' : 'greet';
      for (const [pod, direction, caller] of [
        ['consumer pod', 'outbound', '127.0.0.1'],
        ['provider pod', 'inbound', 'spiffe://meshport.demo/ns/demo/sa/consumer'],
      ] as const) {
        const counted = one(
          out,
          new RegExp(
            `${pod} ${direction} +${qc}#(\\S+)  calls (\\d+)  success (\\S+)  p50 ([\\d.]+m?s|<0\\.1ms)  p99 ([\\d.]+m?s|<0\\.1ms)  callers (.*)`,
          ),
          `${pod} /services ${cluster}`,
        );
        assert.equal(counted[1], method, `${pod} ${cluster}: the method`);
        assert.ok(Number(counted[2]) >= Number(calls[1]), `${pod} ${cluster}: ${counted[2]} calls < ${calls[1]}`);
        assert.equal(counted[3], '100%', `${pod} ${cluster}: success`);
        assert.equal(counted[6], caller, `${pod} ${cluster}: callers`);
      }
    }
    assert.match(out, new RegExp(`consumer app connected to: ${consumerOutbound.replace(/\./g, '\\.')}\\n`));

    // Mutual TLS by default: one identity per pod from the demo's development CA; the consumer pod required the
    // provider pod's identity of the endpoint, the provider pod admitted the consumer pod's, handshakes were counted.
    const providerId = 'spiffe://meshport.demo/ns/demo/sa/provider';
    const consumerId = 'spiffe://meshport.demo/ns/demo/sa/consumer';
    assert.match(
      out,
      new RegExp(
        `identities: development CA \\S+ \\(trust domain meshport\\.demo\\); provider-pod ${esc(providerId)}, consumer-pod ${esc(consumerId)}; tls mode strict`,
      ),
    );
    for (const cluster of ['com.example.EchoService:1.0', 'SOFA/com.example.GreetService:1.0']) {
      assert.match(
        out,
        new RegExp(`consumer pod endpoint identity ${esc(cluster)}: ${esc(providerId)}  = provider pod identity`),
      );
    }
    assert.match(out, new RegExp(`provider pod caller identity: ${esc(consumerId)}  = consumer pod identity`));
    const inbound = Number(one(out, /provider pod tls handshakes inbound: (\d+)/, 'inbound handshakes')[1]);
    const outbound = Number(one(out, /consumer pod tls handshakes outbound: (\d+)/, 'outbound handshakes')[1]);
    assert.ok(inbound >= 1 && outbound >= 1, `handshakes: inbound ${inbound}, outbound ${outbound}`);
    assert.doesNotMatch(out, /tls handshake failures/);
    // The provider nodes in ZooKeeper carry the provider pod's identity; what the consumer app was handed does not.
    assert.equal(
      out.match(new RegExp(`meshport\\.id ${esc(providerId)}  = provider pod identity`, 'g'))?.length,
      2,
      out,
    );
    assert.doesNotMatch(out, /handed a meshport\.id/);
    assert.match(out, /development CA \S+ deleted/);

    // Everything it started is stopped: the pids it printed are gone, the sidecars drained and exited 0.
    const stopped = one(
      out,
      /stopped: zookeeper pid (\d+), sidecars pids (\d+) (\d+), provider pid (\d+), consumer pid (\d+)/,
      'the stop line',
    );
    const pids = stopped.slice(1).map(Number);
    assert.deepEqual(pids.slice(1, 3).sort(), [Number(provider[1]), Number(consumer[1])].sort());
    assert.equal(pids[3], Number(app[1]));
    for (const pid of pids) assert.equal(pidAlive(pid), false, `pid ${pid} is still running`);
    assert.match(out, new RegExp(`provider-pod sidecar pid ${provider[1]} exited 0`));
    assert.match(out, new RegExp(`consumer-pod sidecar pid ${consumer[1]} exited 0`));
    assert.match(out, new RegExp(`provider app pid ${app[1]} exited 0`));
    assert.match(out, new RegExp(`consumer app pid ${pids[4]} exited 0`));

    // No namespace of the demo's is left behind.
    if (netns) {
      assert.match(
        out,
        /network namespaces meshport-demo-\d+-provider, meshport-demo-\d+-consumer, meshport-demo-\d+-net deleted/,
      );
      assert.deepEqual(demoNamespaces(), [], '`ip netns list` still names a meshport-demo- namespace');
    }
  }
}
