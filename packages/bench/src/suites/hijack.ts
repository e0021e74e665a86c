// `hijack`: what each capture mode costs an outbound connection. An app in a namespace of its own opens 1k and 10k
// connections to a server's real address (198.18.0.1); REDIRECT or the connect hook (with and without sockmap)
// sends them to the sidecar's capture port (the real CaptureListener, as uid 1337), which relays them to the server.
// Per mode: connection setup rate, conntrack entries while the connections are open, 64-byte ping-pong throughput
// and p50/p99 over all of them; `direct` (no capture) is the floor.

import { fixed, int, percent, type Align } from '../format';
import { renderReport } from '../render';
import {
  CASES,
  SERVER,
  bpffsState,
  leftovers,
  maxConnections,
  measureOnce,
  nofileHardLimit,
  restoreBpffs,
  type CaseName,
  type Measurement,
} from '../hijack/rig';
import { median, roundRatio, spread } from '../stats';
import type { LineChart, Metric, ProcessUsage, ResultRow, Suite, SuiteOptions, SuiteReport } from '../suite';

const LABEL: Record<CaseName, string> = {
  direct: 'direct (no capture, floor)',
  redirect: 'REDIRECT (iptables nat)',
  'connect-hook': 'connect hook (cgroup/connect4)',
  'connect-hook+sockmap': 'connect hook + sockmap',
};

interface Plan {
  connections: number;
  rounds: number;
}

/** Connections in quick mode: enough to show conntrack per connection and the modes' order, in seconds per case. */
const QUICK_CONNECTIONS = 200;

/** `--quick`: 200 connections, one round. MESHPORT_BENCH_HIJACK_SIZES=1000,10000 picks the sizes. */
function shape(options: SuiteOptions): Plan[] {
  const quick = options.quick;
  const sizes = (process.env.MESHPORT_BENCH_HIJACK_SIZES ?? (quick ? String(QUICK_CONNECTIONS) : '1000,10000'))
    .split(',')
    .map(Number)
    .filter((n) => n > 0);
  const cap = maxConnections();
  return sizes.map((wanted) => ({
    connections: Math.min(wanted, cap),
    rounds: quick ? 1 : wanted >= 10000 ? 1 : Math.min(options.rounds, 3),
  }));
}

interface Row {
  name: CaseName;
  connections: number;
  samples: Measurement[];
}

async function runSuite(options: SuiteOptions): Promise<SuiteReport> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0)
    throw new Error('the hijack suite needs root (netns, iptables, BPF)');
  const seconds = Math.min(options.durationSeconds, 3);
  const plans = shape(options);
  const total = plans.reduce((a, p) => a + p.rounds * CASES.length, 0);
  let done = 0;
  const bpffs = bpffsState();
  const rows: Row[] = [];
  const t0 = Date.now();
  try {
    for (const p of plans) {
      const byCase = new Map<CaseName, Row>(
        CASES.map((c) => [c, { name: c, connections: p.connections, samples: [] }]),
      );
      for (let round = 0; round < p.rounds; round++) {
        // A B C D, then B C D A, ...: every case sees the start and the end of the size's window.
        const order = CASES.map((_, i) => CASES[(i + round) % CASES.length]);
        for (const c of order) {
          byCase
            .get(c)!
            .samples.push(await measureOnce(c, p.connections, seconds, options.log, options.quick ? 0.5 : 1));
          options.progress(++done, total);
        }
      }
      rows.push(...byCase.values());
    }
  } finally {
    await restoreBpffs(bpffs);
  }
  const left = await leftovers();
  if (left.length > 0) throw new Error(`hijack suite left behind: ${left.join(', ')}`);
  return report(rows, plans, seconds, (Date.now() - t0) / 1000);
}

function figures(r: Row) {
  const s = r.samples;
  return {
    setup: median(s.map((m) => m.setupPerSec)),
    setupSpread: spread(s.map((m) => m.setupPerSec)),
    conntrack: median(s.map((m) => m.conntrack)),
    rps: median(s.map((m) => m.reqPerSec)),
    rpsSpread: spread(s.map((m) => m.reqPerSec)),
    p50: median(s.map((m) => m.p50us)),
    p99: median(s.map((m) => m.p99us)),
    p50l: median(s.map((m) => m.p50us1x1)),
    p99l: median(s.map((m) => m.p99us1x1)),
    cpuApp: median(s.map((m) => m.cpuUsPerReq.loadgen)),
    cpuRelay: median(s.map((m) => m.cpuUsPerReq.relay)),
    cpuEcho: median(s.map((m) => m.cpuUsPerReq.echo)),
    failed: s.reduce((a, m) => a + m.setupFailed + m.runErrors, 0),
    redirected: s.reduce((a, m) => a + (m.bpf?.redirectedMessages ?? 0), 0),
    misses: s.reduce((a, m) => a + (m.bpf?.redirectMisses ?? 0), 0),
    relayed: s.reduce((a, m) => a + (m.relay?.passedThrough ?? 0), 0),
    somaxconn: s[0]?.somaxconn ?? 0,
  };
}

function report(rows: Row[], plans: Plan[], seconds: number, elapsed: number): SuiteReport {
  const headers = [
    'case',
    'conns',
    'rounds',
    'conn/s',
    'spread',
    'conntrack',
    'req/s',
    'spread',
    'x direct',
    'x REDIRECT',
    'p50 us',
    'p99 us',
    '1x1 p50 us',
    '1x1 p99 us',
    'CPU us/req app+relay+server',
    'errors',
  ];
  const align: Align[] = ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'];
  const table: string[][] = [];
  const results: ResultRow[] = [];
  const goals: string[][] = [];
  for (const p of plans) {
    const of = (c: CaseName) => figures(rows.find((r) => r.name === c && r.connections === p.connections)!);
    const direct = of('direct');
    const redirect = of('redirect');
    for (const c of CASES) {
      const r = rows.find((x) => x.name === c && x.connections === p.connections)!;
      const f = figures(r);
      table.push([
        LABEL[c],
        int(p.connections),
        String(r.samples.length),
        int(f.setup),
        r.samples.length > 1 ? percent(f.setupSpread) : '-',
        Number.isFinite(f.conntrack) ? int(f.conntrack) : 'n/a',
        int(f.rps),
        r.samples.length > 1 ? percent(f.rpsSpread) : '-',
        `${fixed(f.rps / direct.rps, 2)}x`,
        `${fixed(f.rps / redirect.rps, 2)}x`,
        fixed(f.p50, 0),
        fixed(f.p99, 0),
        fixed(f.p50l, 1),
        fixed(f.p99l, 1),
        `${fixed(f.cpuApp, 1)} + ${fixed(f.cpuRelay, 1)} + ${fixed(f.cpuEcho, 1)}`,
        int(f.failed),
      ]);
      results.push({
        name: `${c} ${p.connections}`,
        case: c,
        connections: p.connections,
        rounds: r.samples.length,
        connPerSec: f.setup,
        conntrack: f.conntrack,
        reqPerSec: f.rps,
        reqPerSecSamples: r.samples.map((m) => m.reqPerSec),
        connPerSecSamples: r.samples.map((m) => m.setupPerSec),
        p50us: f.p50,
        p99us: f.p99,
        p50us1x1: f.p50l,
        p99us1x1: f.p99l,
        cpuUsPerReqApp: f.cpuApp,
        cpuUsPerReqRelay: f.cpuRelay,
        cpuUsPerReqServer: f.cpuEcho,
        vsDirect: f.rps / direct.rps,
        vsRedirect: f.rps / redirect.rps,
        errors: f.failed,
        skMsgRedirected: f.redirected,
        skMsgMisses: f.misses,
        relayed: f.relayed,
      });
    }
    const best = of('connect-hook+sockmap');
    const ratio = best.rps / redirect.rps;
    goals.push([
      `${int(p.connections)} conns: connect hook + sockmap / REDIRECT req/s`,
      `${fixed(ratio, 2)}x`,
      `>= ${GOAL_RATIO}x`,
      ratio >= GOAL_RATIO ? 'yes' : 'NO',
    ]);
    goals.push([
      `${int(p.connections)} conns: conntrack entries, connect hook + sockmap`,
      int(best.conntrack),
      '0',
      best.conntrack === 0 ? 'yes' : 'NO',
    ]);
  }
  const goalHeaders = ['goal', 'measured', 'target', 'met'];
  const goalAlign: Align[] = ['l', 'r', 'r', 'l'];

  const notes: string[] = [];
  for (const p of plans) {
    const of = (c: CaseName) => figures(rows.find((r) => r.name === c && r.connections === p.connections)!);
    const rd = of('redirect');
    const ch = of('connect-hook');
    const sm = of('connect-hook+sockmap');
    const d = of('direct');
    notes.push(
      `${int(p.connections)} connections: REDIRECT kept ${int(rd.conntrack)} conntrack entries (${fixed(rd.conntrack / p.connections, 2)} per app connection: ` +
        `the app's NATed connection and the relay's upstream one, tracked once nat is in use in the namespace); the connect hook ${int(ch.conntrack)}, with sockmap ${int(sm.conntrack)}, direct ${int(d.conntrack)}. ` +
        `req/s: connect hook ${fixed(ch.rps / rd.rps, 2)}x REDIRECT, + sockmap ${fixed(sm.rps / rd.rps, 2)}x REDIRECT and ${fixed(sm.rps / ch.rps, 2)}x the hook alone; ` +
        `p50 ${fixed(rd.p50, 0)} / ${fixed(ch.p50, 0)} / ${fixed(sm.p50, 0)} us (REDIRECT / hook / hook + sockmap), direct ${fixed(d.p50, 0)} us. ` +
        `1x1 p50 (one connection, one message at a time): ${fixed(rd.p50l, 1)} / ${fixed(ch.p50l, 1)} / ${fixed(sm.p50l, 1)} us, direct ${fixed(d.p50l, 1)} us. ` +
        `CPU us per request, relay: ${fixed(rd.cpuRelay, 1)} / ${fixed(ch.cpuRelay, 1)} / ${fixed(sm.cpuRelay, 1)}; app: ${fixed(rd.cpuApp, 1)} / ${fixed(ch.cpuApp, 1)} / ${fixed(sm.cpuApp, 1)} (direct ${fixed(d.cpuApp, 1)}). ` +
        `conn/s (connect + first round trip): ${int(rd.setup)} / ${int(ch.setup)} / ${int(sm.setup)}, direct ${int(d.setup)}. ` +
        `sk_msg redirected ${int(sm.redirected)} messages in the timed windows (${int(sm.misses)} misses); the relay passed through ${int(rd.relayed)} / ${int(ch.relayed)} / ${int(sm.relayed)} connections.`,
    );
  }
  const method = [
    `Rig: one fresh network namespace per measurement (and, for the connect hook, a fresh cgroup v2 directory under the cgroup2 mount); the server (runners/hijack-echo-process, echoes every byte) listens on ${SERVER.host}:${SERVER.port} on the namespace's lo; the capture listener (runners/hijack-relay-process: the real CaptureListener of @meshport/sidecar, empty route table, so every connection is passed through to SO_ORIGINAL_DST, relayed on the native engine's thread as the sidecar does; MESHPORT_ENGINE=js relays in Node as before) listens on 127.0.0.1:15001 as uid 1337; the app (runners/hijack-loadgen-process, RLIMIT_NOFILE raised by \`ulimit -n\` in its spawn shell) connects to ${SERVER.host}:${SERVER.port}. Plans from @meshport/hijack planRules/applyPlan (\`inboundPorts: []\`: outbound capture only), removed with removePlan; the namespace, cgroup and BPF pins go after each measurement. net.ipv4.ip_local_port_range 10000-65000 in the namespace, net.core.somaxconn ${figures(rows[0]).somaxconn}, listen backlogs 4096.`,
    "direct: the same app and server, no relay and no rules (the floor). REDIRECT: iptables nat OUTPUT REDIRECT to 15001 (uid 1337 excluded). connect hook: cgroup/connect4 rewrites the connect to 127.0.0.1:15001, sockops + cgroup/getsockopt answer SO_ORIGINAL_DST; app and relay in the cgroup. + sockmap: sockops puts both loopback ends of the app <-> relay hop in a SOCKHASH and sk_msg hands the app's writes straight to the relay's socket (and back); the relay -> server hop is not loopback and takes the normal path.",
    `conn/s: the app opens all N connections, 128 at a time; each counts when connected and its first 64-byte round trip came back (so the relay's upstream connect is included), N / wall time. conntrack: \`conntrack -C\` in the namespace with all N open.`,
    `req/s: every connection ping-pongs one 64-byte message at a time (one in flight per connection, N in flight in all) for ${seconds} s after a 0.5 s warm-up; p50/p99 from hrtime write -> full answer over every request of the window (with N in flight these are queueing delays of the saturated processes). 1x1: afterwards, one connection alone for 1 s, one message at a time: the unloaded round trip through the path. CPU us/req: utime + stime of each process (/proc/PID/stat) over the timed window / requests in it. Rounds interleave the cases (order rotated each round); figures are medians over rounds, spread = (max - min) / median. the large tier: ${plans.at(-1)?.rounds ?? 0} round(s) per case (each 10k measurement is several seconds of setup). errors: failed connects plus broken connections.`,
    `All processes (app, relay, server, and the bench) share the machine's CPUs; ratios between cases of one run are the figure to read. Suite wall time ${fixed(elapsed, 0)} s.`,
    `Connection counts: the large tier asks for 10,000; the relay (one process, like the sidecar) needs two descriptors a connection and RLIMIT_NOFILE's hard limit on this machine is ${int(nofileHardLimit())} (the soft limit is raised to it with \`ulimit -n\`; raising the hard limit needs CAP_SYS_RESOURCE, which this container lacks), so it runs at ${int(maxConnections())} where that is lower.`,
    "Not measured: TPROXY. It is an inbound mode (outbound stays REDIRECT in the tproxy plan, so its outbound figures are REDIRECT's); an inbound rig (client in a second namespace over veth, transparent listener relay) is not part of this suite yet.",
  ];
  // The method is for the docs page; a terminal gets the figures and the notes on them.
  const { text, markdown } = renderReport([
    { headers, align, rows: table },
    { headers: goalHeaders, align: goalAlign, rows: goals },
    { notes, methodNotes: method },
  ]);
  return { suite: 'hijack', results, ...extras(rows, plans), text, markdown };
}

/** Ratios to REDIRECT and to direct round by round, what each process cost, and the chart. */
function extras(rows: Row[], plans: Plan[]): Pick<SuiteReport, 'metrics' | 'processes' | 'charts'> {
  const metrics: Metric[] = [];
  const processes: ProcessUsage[] = [];
  const bars: { label: string; value: number; spread?: number }[] = [];
  const series: LineChart['series'] = [];
  for (const p of plans) {
    const row = (c: CaseName) => rows.find((r) => r.name === c && r.connections === p.connections)!;
    const rps = (c: CaseName) => row(c).samples.map((m) => m.reqPerSec);
    const tier = `${int(p.connections)} conns`;
    const ratio = (a: CaseName, b: CaseName): Metric => {
      const r = roundRatio(rps(a), rps(b));
      return {
        name: `${tier}: ${LABEL[a]} / ${LABEL[b]} req/s`,
        value: Math.round(r.ratio * 1000) / 1000,
        unit: 'x',
        better: 'higher',
        spread: Math.round(r.spread * 1000) / 1000,
        rounds: r.rounds,
        peer: LABEL[b],
      };
    };
    metrics.push(
      ratio('connect-hook+sockmap', 'redirect'),
      ratio('connect-hook', 'redirect'),
      ratio('redirect', 'direct'),
      ratio('connect-hook+sockmap', 'direct'),
    );
    const rd = row('redirect').samples;
    metrics.push({
      name: `${tier}: REDIRECT conntrack entries per connection`,
      value: median(rd.map((m) => m.conntrack / m.connections)),
      unit: 'entries',
      better: 'lower',
      spread: spread(rd.map((m) => m.conntrack / m.connections)),
      rounds: rd.length,
    });
    for (const c of CASES) {
      const s = row(c).samples;
      bars.push({
        label: `${tier}: ${LABEL[c]}`,
        value: median(s.map((m) => m.reqPerSec)),
        spread: spread(s.map((m) => m.reqPerSec)),
      });
      series.push({
        label: `${tier}: ${LABEL[c]}`,
        values: [median(s.map((m) => m.p50us1x1)), median(s.map((m) => m.p99us1x1))],
      });
      for (const proc of ['loadgen', 'relay', 'echo'] as const) {
        const used = s.map((m) => m.usage[proc]).filter((u): u is NonNullable<typeof u> => u !== undefined);
        if (used.length === 0) continue;
        const peaks = used.map((u) => u.peakRssMB).filter((x): x is number => x !== null);
        processes.push({
          scope: `${tier}: ${LABEL[c]} (timed windows, all rounds)`,
          process: { loadgen: 'app (load generator)', relay: 'capture relay (uid 1337)', echo: 'server' }[proc],
          cpuSeconds: Math.round(used.reduce((a, u) => a + u.cpuSeconds, 0) * 100) / 100,
          peakRssMB: peaks.length > 0 ? Math.round(Math.max(...peaks) * 10) / 10 : null,
        });
      }
    }
  }
  return {
    metrics,
    processes,
    charts: {
      bars: {
        title: 'Ping-pong requests/s, all connections at once (whisker: spread of the rounds)',
        unit: 'req/s',
        bars,
      },
      lines: { title: 'Round trip of one connection alone (1x1)', unit: 'us', x: ['p50', 'p99'], series },
    },
  };
}

/** The connect hook + sockmap against REDIRECT, req/s. */
const GOAL_RATIO = 1.2;

/** The README's glance cells, from a saved results line: the connect hook + sockmap at each connection count. */
function glance(results: ResultRow[]): { figures: string; goal: string } | null {
  const hooks = results.filter((r) => r.case === 'connect-hook+sockmap' && typeof r.vsRedirect === 'number');
  if (hooks.length === 0) return null;
  const at = (r: ResultRow) =>
    `${fixed(Number(r.vsRedirect), 2)}x REDIRECT, ${fixed(Number(r.vsDirect), 2)}x direct at ${int(Number(r.connections))} connections`;
  const relay = hooks.map((r) => fixed(Number(r.cpuUsPerReqRelay), 1)).join(' / ');
  const met = hooks.every((r) => Number(r.vsRedirect) >= GOAL_RATIO);
  return {
    figures:
      `connect hook + sockmap ${hooks.map(at).join('; ')}; 0 conntrack entries (REDIRECT: 2 per connection); ` +
      `the relay (native engine) ${relay} us of CPU a request`,
    goal: `>= ${GOAL_RATIO}x REDIRECT: ${met ? 'met' : 'missed'}`,
  };
}

export const hijackSuite: Suite = {
  name: 'hijack',
  summary:
    'capture modes (REDIRECT, connect hook, + sockmap) at 1k/10k conns: conntrack, conn/s, req/s, p50/p99 (root)',
  unavailable: () =>
    typeof process.getuid === 'function' && process.getuid() !== 0
      ? 'needs root (network namespaces, iptables, BPF)'
      : null,
  glance,
  run: runSuite,
};
