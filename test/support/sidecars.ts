// What the end-to-end suites share: sidecars started from YAML as an operator writes it, and the view a user checks
// (the admin /routes page). The SDK apps they drive are in @meshport/testkit.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { loadConfig, Sidecar } from '@meshport/sidecar';

const tempDirs: string[] = [];
const running = new Set<Sidecar>();

/**
 * The sidecars' warnings and errors, the last SIDECAR_LOG_LINES of them, for a failing test to print (a test that
 * fails in CI should say what the sidecars saw). MESHPORT_LOG_LEVEL=debug|info|... sends everything to stderr instead.
 */
const SIDECAR_LOG_LINES = 200;
const sidecarLog: string[] = [];
const keptLog = {
  write(line: string) {
    sidecarLog.push(line.trimEnd());
    if (sidecarLog.length > SIDECAR_LOG_LINES) sidecarLog.splice(0, sidecarLog.length - SIDECAR_LOG_LINES);
  },
};

/** For an afterEach hook: prints the kept sidecar log when the test failed; forgets it either way. */
export function showSidecarLogIfFailed(test: Mocha.Test | undefined): void {
  const lines = sidecarLog.splice(0);
  if (test?.state !== 'failed' || lines.length === 0) return;
  console.log(
    `      the sidecars' last ${lines.length} warnings and errors:\n${lines.map((l) => `        ${l}`).join('\n')}`,
  );
}

function sidecarLogger(): pino.Logger {
  const level = process.env.MESHPORT_LOG_LEVEL;
  return level ? pino({ level }) : pino({ level: 'warn' }, keptLog);
}

/** A sidecar from config text, written to a file first so relative paths and error lines work as in production. */
export async function startSidecar(yaml: string): Promise<Sidecar> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-sidecar-'));
  tempDirs.push(dir);
  const file = path.join(dir, 'meshport.yaml');
  writeFileSync(file, yaml);
  const sidecar = new Sidecar(await loadConfig(file), { logger: sidecarLogger() });
  await sidecar.start();
  running.add(sidecar);
  return sidecar;
}

/** A pod's sidecar taking over one registry through its facade, every port picked free. */
export function podConfig(registry: { type: string; upstream: string; options?: string }): string {
  return [
    'node: { ip: 127.0.0.1 }',
    'listeners: { outbound: "127.0.0.1:0", inbound: "127.0.0.1:0" }',
    'admin: "127.0.0.1:0"',
    'registries:',
    `  - { name: main, type: ${registry.type}, upstream: "${registry.upstream}", facade: "127.0.0.1:0"${registry.options ? `, options: ${registry.options}` : ''} }`,
  ].join('\n');
}

export async function stopSidecars(): Promise<void> {
  await Promise.allSettled([...running].map((s) => s.stop(0)));
  running.clear();
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** The admin /routes page: each service's real endpoints as the router holds them. */
export async function adminRoutes(
  sidecar: Sidecar,
): Promise<{ listener: string; name: string; endpoints: { address: string }[] }[]> {
  const { port } = sidecar.address('admin');
  const body = (await (await fetch(`http://127.0.0.1:${port}/routes`)).json()) as {
    clusters: { listener: string; name: string; endpoints: { address: string }[] }[];
  };
  return body.clusters;
}
