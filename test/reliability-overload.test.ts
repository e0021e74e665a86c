// Suite 5 (issue 8): overload at twice the capacity. A real `meshport sidecar` child process in front of a raw
// provider with a fixed service time; the cluster limit is what bounds the system, so its capacity is known and then
// measured. Driven open-loop at twice that: the limit holds (the provider itself never sees more at once, and the
// admin page never shows more), every request gets exactly one answer (ok, or the protocol's busy status; never a
// timeout, a drop or a duplicate), the sidecar's own RSS stays under a stated ceiling, and once the load drops every
// call succeeds again at its baseline latency.

import { strict as assert } from 'node:assert';
import { setTimeout as sleep } from 'node:timers/promises';
import { BoltStatus, DubboStatus } from '@meshport/protocol';
import { recordSuite, scale, type Figure } from './support/reliability';
import { boltRequest, dubboCall, type EchoProvider, startEchoProvider } from '@meshport/testkit';
import { memoryOf, percentile, RpcClient, startSidecarChild, type SidecarChild } from './support/wire';

const BOLT_SERVICE = 'com.example.Echo:1.0';
const DUBBO_SERVICE = 'com.example.Greet';
/** The provider answers every request after this long, at any concurrency. */
const SERVICE_TIME_MS = 100;
/** router.maxActiveRequests: per cluster, so the Bolt and the Dubbo cluster each serve LIMIT / SERVICE_TIME_MS calls a second. */
const LIMIT = 20;
/**
 * The sidecar's RSS ceiling. A `meshport sidecar` process (Node 20, pino, prom-client, the registry packages) idles at
 * 60-80 MB here; under overload it holds at most LIMIT calls per cluster plus one busy answer per turned-away request,
 * each under 200 bytes, so anything near the ceiling would mean requests piling up somewhere they should not.
 */
const RSS_CEILING_MB = 150;
const OVERLOAD_SECONDS = scale(6, 60);

type Protocol = 'bolt' | 'dubbo';
const BUSY: Record<Protocol, number> = {
  bolt: BoltStatus.SERVER_THREADPOOL_BUSY,
  dubbo: DubboStatus.SERVER_THREADPOOL_EXHAUSTED_ERROR,
};
const OK: Record<Protocol, number> = { bolt: BoltStatus.SUCCESS, dubbo: DubboStatus.OK };
const TIMEOUT: Record<Protocol, number> = { bolt: BoltStatus.TIMEOUT, dubbo: DubboStatus.SERVER_TIMEOUT };

let nextId = 1;
function request(protocol: Protocol): { id: number; frame: Buffer } {
  const id = nextId++;
  const body = Buffer.from(`call ${id}`);
  const frame =
    protocol === 'bolt'
      ? boltRequest(id, BOLT_SERVICE, body, 5000)
      : dubboCall(id, DUBBO_SERVICE, '1.0', 'echo', body.toString());
  return { id, frame };
}

interface Tally {
  sent: number;
  ok: number;
  busy: number;
  timeouts: number;
  other: number;
  okLatencies: number[];
}

const tally = (): Tally => ({ sent: 0, ok: 0, busy: 0, timeouts: 0, other: 0, okLatencies: [] });

/** Each protocol has its own connections (a pod's app would too), round-robin among them. */
class Load {
  private turn = 0;
  constructor(private readonly clients: Record<Protocol, RpcClient[]>) {}

  send(protocol: Protocol, t: Tally): Promise<void> {
    const list = this.clients[protocol];
    const client = list[this.turn++ % list.length];
    const { id, frame } = request(protocol);
    t.sent++;
    return client.call(id, frame).then((a) => {
      const status = a.header.status;
      if (status === OK[protocol]) {
        t.ok++;
        t.okLatencies.push(a.latencyMs);
      } else if (status === BUSY[protocol]) t.busy++;
      else if (status === TIMEOUT[protocol]) t.timeouts++;
      else t.other++;
    });
  }

  /** `workers` callers per protocol, each sending its next call when the last is answered, for `ms`. */
  async closedLoop(workers: number, ms: number): Promise<Record<Protocol, Tally>> {
    const out = { bolt: tally(), dubbo: tally() };
    const until = performance.now() + ms;
    const worker = async (p: Protocol) => {
      while (performance.now() < until) await this.send(p, out[p]);
    };
    await Promise.all((['bolt', 'dubbo'] as const).flatMap((p) => Array.from({ length: workers }, () => worker(p))));
    return out;
  }

  /** Open loop: `rate` calls a second per protocol whatever the answers do, for `ms`; resolves when all are answered. */
  async openLoop(rate: number, ms: number, within = 15_000): Promise<Record<Protocol, Tally>> {
    const out = { bolt: tally(), dubbo: tally() };
    const answers: Promise<void>[] = [];
    const start = performance.now();
    let due = 0;
    while (performance.now() - start < ms) {
      const should = Math.floor(((performance.now() - start) / 1000) * rate);
      for (; due < should; due++) for (const p of ['bolt', 'dubbo'] as const) answers.push(this.send(p, out[p]));
      await sleep(5);
    }
    // Exactly one answer each, within a bound: a request the sidecar dropped would hang here.
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`answers missing ${within} ms after the load stopped`)), within);
    });
    try {
      await Promise.race([Promise.all(answers), late]);
    } finally {
      clearTimeout(timer);
    }
    return out;
  }
}

describe('reliability: overload at twice the capacity (suite 5)', () => {
  let provider: EchoProvider | undefined;
  let sidecar: SidecarChild | undefined;
  const clients: RpcClient[] = [];

  after(async () => {
    for (const c of clients) c.close();
    await sidecar?.stop();
    await provider?.close();
  });

  it('holds the limits, sheds the excess as busy, stays under the RSS ceiling, and recovers', async function () {
    this.timeout(OVERLOAD_SECONDS * 1000 + 120_000);
    provider = await startEchoProvider(SERVICE_TIME_MS);
    sidecar = await startSidecarChild(
      {
        [BOLT_SERVICE]: [`bolt://127.0.0.1:${provider.port}?interface=com.example.Echo&version=1.0`],
        [`${DUBBO_SERVICE}:1.0`]: [
          `dubbo://127.0.0.1:${provider.port}/${DUBBO_SERVICE}?interface=${DUBBO_SERVICE}&version=1.0`,
        ],
      },
      `router: { maxActiveRequests: ${LIMIT}, connectionsPerEndpoint: 2 }`,
    );
    const conns = { bolt: [] as RpcClient[], dubbo: [] as RpcClient[] };
    for (const p of ['bolt', 'dubbo'] as const) {
      for (let i = 0; i < 4; i++) {
        const c = await RpcClient.connect(sidecar.ports.outbound);
        conns[p].push(c);
        clients.push(c);
      }
    }
    const load = new Load(conns);
    const idle = memoryOf(sidecar.pid);

    // Baseline: a light load, well under capacity.
    await load.openLoop(20, 500); // warm the upstream connections
    const baseline = await load.openLoop(40, 2000);
    for (const p of ['bolt', 'dubbo'] as const)
      assert.equal(baseline[p].ok, baseline[p].sent, `${p} baseline: every call ok`);
    const baselineP99 = percentile([...baseline.bolt.okLatencies, ...baseline.dubbo.okLatencies], 99);

    // Capacity, measured: exactly LIMIT callers per protocol keep each cluster full.
    const measureMs = 3000;
    const full = await load.closedLoop(LIMIT, measureMs);
    const capacity = (full.bolt.ok + full.dubbo.ok) / 2 / (measureMs / 1000); // per protocol, calls a second
    const nominal = (LIMIT * 1000) / SERVICE_TIME_MS;
    // Only the ceiling is behaviour: more than LIMIT calls at once would serve more than nominal. How close a loaded
    // machine gets to it is a figure (recorded below); the overload that follows is relative to what was measured.
    assert.ok(
      capacity < nominal * 1.1,
      `measured capacity ${capacity.toFixed(0)}/s, nominal ${nominal}/s: the limit did not hold`,
    );

    // Overload: twice the measured capacity, open loop; the admin page and the sidecar's memory sampled meanwhile.
    provider.maxActive = 0;
    let adminMaxActive = 0;
    let peakRssKb = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const routes = await sidecar!.routes();
        for (const c of routes.clusters)
          if (c.listener === 'outbound') adminMaxActive = Math.max(adminMaxActive, c.active);
        peakRssKb = Math.max(peakRssKb, memoryOf(sidecar!.pid).rssKb);
        await sleep(25);
      }
    })();
    const started = performance.now();
    const over = await load.openLoop(2 * capacity, OVERLOAD_SECONDS * 1000);
    const overloadWallS = (performance.now() - started) / 1000;
    sampling = false;
    await sampler;
    const hwm = memoryOf(sidecar.pid);
    peakRssKb = Math.max(peakRssKb, hwm.hwmKb);

    const sum = (k: keyof Omit<Tally, 'okLatencies'>) => over.bolt[k] + over.dubbo[k];
    const duplicates = clients.reduce((n, c) => n + c.duplicates + c.strays, 0);
    // Two clusters (Bolt and Dubbo), each limited to LIMIT: the provider sees at most 2 * LIMIT at once.
    assert.ok(
      provider.maxActive <= 2 * LIMIT,
      `provider saw ${provider.maxActive} at once, limit ${LIMIT} per cluster`,
    );
    assert.ok(adminMaxActive <= LIMIT, `admin showed ${adminMaxActive} active in one cluster, limit ${LIMIT}`);
    assert.equal(sum('ok') + sum('busy'), sum('sent'), 'every request answered ok or busy');
    assert.equal(sum('timeouts'), 0, 'no timeouts');
    assert.equal(sum('other'), 0, 'no other statuses');
    assert.equal(duplicates, 0, 'no duplicate or stray answers');
    assert.ok(sum('busy') > sum('sent') * 0.25, `the excess is shed: ${sum('busy')} busy of ${sum('sent')}`);
    const servedRate = sum('ok') / 2 / overloadWallS;
    assert.ok(
      servedRate > capacity * 0.7,
      `still serving near capacity under overload: ${servedRate.toFixed(0)}/s of ${capacity.toFixed(0)}/s`,
    );
    assert.ok(
      peakRssKb < RSS_CEILING_MB * 1024,
      `peak RSS ${(peakRssKb / 1024).toFixed(1)} MB, ceiling ${RSS_CEILING_MB} MB`,
    );

    // Recovery: back under capacity, every call succeeds again, and latency comes back to the baseline's. One 2 s
    // window's p99 is at the mercy of whatever else the machine runs in those 2 s, so recovery is a window, within
    // three, whose p99 is back in bound (every call of every window must still be ok): a sidecar that stays slow
    // after an overload fails all three.
    const latencyBound = Math.max(baselineP99 * 1.5, baselineP99 + 25);
    const windowP99s: number[] = [];
    let recoveryP99 = Number.POSITIVE_INFINITY;
    const recovered = { ok: 0, sent: 0 };
    for (let w = 0; w < 3 && recoveryP99 > latencyBound; w++) {
      const recovery = await load.openLoop(40, 2000);
      for (const p of ['bolt', 'dubbo'] as const) {
        assert.equal(recovery[p].ok, recovery[p].sent, `${p} after the overload: every call ok`);
        recovered.ok += recovery[p].ok;
        recovered.sent += recovery[p].sent;
      }
      recoveryP99 = percentile([...recovery.bolt.okLatencies, ...recovery.dubbo.okLatencies], 99);
      windowP99s.push(recoveryP99);
    }
    assert.ok(
      recoveryP99 <= latencyBound,
      `p99 after the overload ${windowP99s.map((p) => p.toFixed(1)).join(', ')} ms in 3 windows, baseline ${baselineP99.toFixed(1)} ms`,
    );

    const figures: Figure[] = [
      { name: 'provider service time', value: `${SERVICE_TIME_MS} ms` },
      { name: 'cluster limit (maxActiveRequests)', value: LIMIT },
      {
        name: 'capacity per protocol, measured (calls/s)',
        value: Math.round(capacity),
        goal: `<= ${nominal} (the limit)`,
        met: true,
      },
      { name: 'offered load per protocol (calls/s)', value: Math.round(2 * capacity), goal: '2x capacity' },
      { name: 'requests sent under overload', value: sum('sent') },
      { name: 'answered ok', value: sum('ok') },
      { name: 'answered busy', value: sum('busy'), goal: '> 25%', met: sum('busy') > sum('sent') * 0.25 },
      {
        name: 'timeouts, other statuses, unanswered, duplicates',
        value: sum('timeouts') + sum('other') + duplicates,
        goal: '0',
        met: true,
      },
      {
        name: 'max active in one cluster (/routes)',
        value: adminMaxActive,
        goal: `<= ${LIMIT}`,
        met: adminMaxActive <= LIMIT,
      },
      {
        name: 'max concurrent at the provider (2 clusters)',
        value: provider.maxActive,
        goal: `<= ${2 * LIMIT}`,
        met: true,
      },
      {
        name: 'served under overload per protocol (calls/s)',
        value: Math.round(servedRate),
        goal: '> 70% of capacity',
        met: true,
      },
      { name: 'sidecar RSS idle (MB)', value: Math.round(idle.rssKb / 102.4) / 10 },
      {
        name: 'sidecar peak RSS (MB)',
        value: Math.round(peakRssKb / 102.4) / 10,
        goal: `< ${RSS_CEILING_MB}`,
        met: true,
      },
      { name: 'p99 before the overload (ms)', value: Math.round(baselineP99 * 10) / 10 },
      {
        name: 'p99 after the overload (ms)',
        value: windowP99s.map((p) => Math.round(p * 10) / 10).join(', '),
        goal: `<= ${latencyBound.toFixed(1)} in one of 3 windows`,
        met: true,
      },
      {
        name: 'calls ok after the overload',
        value: `${recovered.ok}/${recovered.sent}`,
        goal: 'all',
        met: true,
      },
    ];
    recordSuite({
      id: 'overload',
      title: 'Overload at twice the capacity',
      figures,
      notes: [
        `\`meshport sidecar\` as a child process (RSS from /proc/<pid>/status: VmRSS sampled every 25 ms, and VmHWM) in front of a raw provider answering after ${SERVICE_TIME_MS} ms at any concurrency; Bolt and Dubbo each on 4 connections, each service its own cluster with router.maxActiveRequests ${LIMIT}.`,
        `Capacity measured with ${LIMIT} closed-loop callers per protocol for ${measureMs / 1000} s; overload open-loop at twice that for ${OVERLOAD_SECONDS} s; baseline and recovery open-loop at 40 calls/s per protocol for 2 s.`,
        `RSS ceiling ${RSS_CEILING_MB} MB: an idle sidecar is 60-80 MB; under overload it holds at most ${LIMIT} calls per cluster, and a busy answer is written at once, so growth past that means requests piling up.`,
      ],
    });
  });
});
