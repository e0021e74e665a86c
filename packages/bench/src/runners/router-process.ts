// One meshport Router in a process of its own, for the forward suite:
//
//   node router-process.js '<routes JSON>'        (or the JSON in MESHPORT_BENCH_ROUTES)
//
// routes: { "outbound"?: { "<service>": ClusterSpec }, "inbound"?: { "<service>": Endpoint }, "options"?: {...} }
// (options: other RouterOptions, e.g. connectionsPerEndpoint; the defaults when absent). A listener is opened
// only for the kinds of route given. Prints one line {"ready": "router", "pid", "engine", "outbound", "inbound",
// "admin"} (engine: the one createRouter made, 'native' or 'js'; ports, or null) to stdout once bound; drains and
// exits on SIGTERM, or when the parent's IPC channel closes.
//
// With an IPC channel (child_process.fork), the parent may send {"profile": "start"} and
// {"profile": "stop", "file": PATH}: a V8 CPU profile (node:inspector, as `node --cpu-prof` writes) of what happened
// in between is written to PATH, then {"profiled": PATH} is sent back. `node --cpu-prof` on this script works as well,
// but profiles the whole life of the process.
//
// MESHPORT_BENCH_ROUTER=PATH loads the Router from another build of @meshport/router (a scratch copy with a change to
// try, or the baseline worktree of scripts/baseline.sh) instead of the workspace package, for A/B runs.
//
// routes.telemetryFiles { "access"?: PATH, "span"?: PATH } gives the router an onTelemetry sink that appends what it
// is handed to those files with the sidecar's own file writer (forward/telemetry-files): access log lines as they
// come, spans wrapped one OTLP ExportTraceServiceRequest per batch and line (the Collector's file exporter format).
// options.telemetry says which calls get them (RouterOptions.telemetry, JSON as it is). {"telemetry": "dropped"} over
// IPC is answered {"dropped": N}: lines (spans) lost so far, by that writer (its queue full) or by the native engine
// (its batches waiting on JavaScript; counted from its warnings).

import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import * as path from 'node:path';
import type * as RouterModule from '@meshport/router';
import type { ClusterSpec, Endpoint } from '@meshport/router';
import { countingLogger, fileSink } from '../forward/telemetry-files';

function loadRouter(): typeof RouterModule {
  const alt = process.env.MESHPORT_BENCH_ROUTER;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return alt
    ? (require(path.resolve(alt)) as typeof RouterModule)
    : (require('@meshport/router') as typeof RouterModule);
}

interface Routes {
  outbound?: Record<string, ClusterSpec>;
  inbound?: Record<string, Endpoint>;
  /** Router options other than listeners and routes (e.g. connectionsPerEndpoint); defaults when absent. */
  options?: Record<string, unknown>;
  /** Files the router's access log lines and spans are appended to (an onTelemetry sink); none when absent. */
  telemetryFiles?: { access?: string; span?: string };
}

function parseRoutes(): Routes {
  const text = process.argv[2] ?? process.env.MESHPORT_BENCH_ROUTES;
  if (!text) throw new Error('router-process: give the routes as JSON in argv[2] or MESHPORT_BENCH_ROUTES');
  return JSON.parse(text) as Routes;
}

function post(session: Session, method: string, params?: object): Promise<any> {
  return new Promise((resolve, reject) =>
    session.post(method, params ?? {}, (err, result) => (err ? reject(err) : resolve(result))),
  );
}

async function main(): Promise<void> {
  // The router's own pino logger writes to stdout; below warn it would mix with the ready line.
  process.env.MESHPORT_LOG_LEVEL ??= 'warn';
  const routes = parseRoutes();
  const { MemoryRouteTable, createRouter } = loadRouter();
  const table = new MemoryRouteTable();
  for (const [service, spec] of Object.entries(routes.outbound ?? {})) table.setOutbound(service, spec);
  for (const [service, endpoint] of Object.entries(routes.inbound ?? {})) table.setInbound(service, endpoint);
  const hasOutbound = Object.keys(routes.outbound ?? {}).length > 0;
  const hasInbound = Object.keys(routes.inbound ?? {}).length > 0;
  // The engine comes from options.engine, else MESHPORT_ENGINE (see createRouter).
  const files = routes.telemetryFiles
    ? fileSink(routes.telemetryFiles, (message) => process.stderr.write(`router-process: telemetry lost: ${message}\n`))
    : undefined;
  // With telemetry on, the engine's own drops (its batches waiting on JavaScript) are counted from its warnings.
  const counting = files ? countingLogger() : undefined;
  const router = createRouter({
    ...routes.options,
    ...(files ? { onTelemetry: files.sink } : {}),
    ...(counting ? { logger: counting.logger } : {}),
    routeTable: table,
    outbound: hasOutbound ? { host: '127.0.0.1', port: 0 } : false,
    inbound: hasInbound ? { host: '127.0.0.1', port: 0 } : false,
    admin: { port: 0 },
  });
  await router.start();

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await router.drain(500);
    await files?.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());

  if (process.send) {
    let session: Session | undefined;
    process.on('disconnect', () => void stop());
    process.on('message', (msg: { profile?: 'start' | 'stop'; file?: string; telemetry?: 'dropped' }) => {
      if (msg.telemetry === 'dropped') {
        process.send!({ dropped: (files?.dropped() ?? 0) + (counting?.dropped() ?? 0) });
        return;
      }
      void (async () => {
        if (msg.profile === 'start' && session === undefined) {
          session = new Session();
          session.connect();
          await post(session, 'Profiler.enable');
          // 100 us sampling (the --cpu-prof default is 1000 us): enough samples from a few seconds.
          await post(session, 'Profiler.setSamplingInterval', { interval: 100 });
          await post(session, 'Profiler.start');
          process.send!({ profiling: true });
        } else if (msg.profile === 'stop' && session !== undefined && msg.file) {
          const { profile } = await post(session, 'Profiler.stop');
          session.disconnect();
          session = undefined;
          writeFileSync(msg.file, JSON.stringify(profile));
          process.send!({ profiled: msg.file });
        }
      })().catch((err: Error) => process.send!({ error: err.message }));
    });
  }

  const port = (listener: 'outbound' | 'inbound' | 'admin', has: boolean) =>
    has ? router.address(listener).port : null;
  process.stdout.write(
    `${JSON.stringify({
      ready: 'router',
      pid: process.pid,
      engine: router.engine,
      outbound: port('outbound', hasOutbound),
      inbound: port('inbound', hasInbound),
      admin: port('admin', true),
    })}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`router-process: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
