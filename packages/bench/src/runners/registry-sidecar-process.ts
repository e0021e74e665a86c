// The registry suite's meshport side: a consumer-side Sidecar (the real @meshport/sidecar: router, route book,
// ZooKeeper adapter) in a process of its own, configured with a `zookeeper` registry without a facade that subscribes
// the bench's services, and nothing else; with the V8 heap settings of `meshport sidecar` (@meshport/sidecar/v8-settings).
//
//   node registry-sidecar-process.js '{"connectString": "127.0.0.1:2181", "services": 1000}'
//
// IPC (child_process.fork): sends WatcherReady once the sidecar has started (every service subscribed), then one
// SeenMessage per event-loop turn with the endpoints that appeared in its route table, timed in the route table's
// change listener (which runs after the router's own listener, so the router routes by the new table by then);
// answers {memory: true}. Exits on SIGTERM or when the parent goes, after sidecar.stop(0).
//
// MESHPORT_BENCH_PROFILE=FILE writes a V8 CPU profile of the whole life of the process to FILE at exit.

import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import type * as SidecarModule from '@meshport/sidecar';
import type * as V8Settings from '@meshport/sidecar/v8-settings';
import {
  SeenReporter,
  endpointId,
  memoryFigures,
  serveParent,
  serviceKey,
  wallNow,
  type WatcherReady,
} from '../registry/common';

interface Args {
  connectString: string;
  services: number;
}

type ClusterSpec = { endpoints: { host: string; port: number; weight?: number }[] };

function post(session: Session, method: string, params?: object): Promise<any> {
  return new Promise((resolve, reject) =>
    session.post(method, params ?? {}, (err, result) => (err ? reject(err) : resolve(result))),
  );
}

async function main(): Promise<void> {
  const t0 = wallNow();
  const profileFile = process.env.MESHPORT_BENCH_PROFILE;
  let session: Session | undefined;
  if (profileFile) {
    session = new Session();
    session.connect();
    await post(session, 'Profiler.enable');
    await post(session, 'Profiler.setSamplingInterval', { interval: 200 });
    await post(session, 'Profiler.start');
  }

  const args = JSON.parse(process.argv[2] ?? '{}') as Args;
  // The V8 heap settings `meshport sidecar` runs with, applied the way the command does, before the sidecar loads
  // (node flags in MESHPORT_BENCH_SIDECAR_FLAGS that name the same settings take precedence, as they do for the command).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  (require('@meshport/sidecar/v8-settings') as typeof V8Settings).applySidecarV8Settings();
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Sidecar, parseConfig } = require('@meshport/sidecar') as typeof SidecarModule;
  const services = Array.from({ length: args.services }, (_, i) => serviceKey(i));
  const yaml = [
    'listeners:',
    '  outbound: 127.0.0.1:0',
    '  inbound: 127.0.0.1:0',
    'admin: 127.0.0.1:0',
    'log:',
    '  level: warn',
    'registries:',
    '  - name: zk',
    '    type: zookeeper',
    `    upstream: '${args.connectString}'`,
    '    services:',
    ...services.map((s) => `      - '${s}'`),
    '',
  ].join('\n');
  const config = parseConfig(yaml, 'bench-registry.yaml');
  const sidecar = new Sidecar(config);
  await sidecar.start();

  const table = sidecar.book.table;
  const reporter = new SeenReporter();
  /** Per service: the endpoint ids last seen in its route. */
  const last = new Map<string, Set<string>>();
  /**
   * The services whose outbound route was set or deleted since the last change event. The table's onChange listener
   * gets no arguments, and looking at all 1k routes on every change would cost more than the change itself (a first
   * version did: a fifth of the process's CPU), so the two mutators of this one table instance are wrapped to note
   * the key before doing what they did; nothing else about them changes.
   */
  const dirty = new Set<string>();
  const setOutbound = table.setOutbound.bind(table);
  const deleteOutbound = table.deleteOutbound.bind(table);
  table.setOutbound = (service, spec) => {
    dirty.add(service);
    return setOutbound(service, spec);
  };
  table.deleteOutbound = (service) => {
    dirty.add(service);
    return deleteOutbound(service);
  };
  const look = (service: string, at: number) => {
    const spec = table.outbound(service) as ClusterSpec | undefined;
    const prev = last.get(service);
    const ids = new Set<string>();
    for (const e of spec?.endpoints ?? []) {
      const id = endpointId(service, e.host, e.port);
      ids.add(id);
      if (!prev?.has(id)) reporter.add(id, at);
    }
    last.set(service, ids);
  };
  // Whatever the subscriptions already found, then every change as it happens.
  const start = wallNow();
  for (const service of services) look(service, start);
  table.onChange(() => {
    const at = wallNow();
    for (const service of dirty) look(service, at);
    dirty.clear();
  });

  serveParent(async () => {
    await sidecar.stop(0);
    if (session && profileFile) {
      const { profile } = await post(session, 'Profiler.stop');
      writeFileSync(profileFile, JSON.stringify(profile));
    }
  });
  const ready: WatcherReady = {
    ready: 'sidecar',
    pid: process.pid,
    services: services.length,
    startupMs: wallNow() - t0,
    memory: memoryFigures(),
  };
  process.send!(ready);
}

main().catch((err: Error) => {
  process.stderr.write(`registry-sidecar-process: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
