// The start-up check: every address and plugin of a config, tried before anything of the sidecar starts.

import { lookup } from 'node:dns/promises';
import { open } from 'node:fs/promises';
import net from 'node:net';
import { BUILTIN_REGISTRY_TYPES, configSource, keyName, type HostPort, type SidecarConfig } from './config';
import { SidecarError, type SidecarErrorCode, type SidecarProblem } from './errors';
import { loadPlugin } from './registries';
import { loadTlsMaterial, tlsFilesOf } from './tls';

/** One address the sidecar will listen on, with the config key that gives it. */
interface Listen {
  key: (string | number)[];
  host: string;
  port: number;
  /** The capture listeners report with their own code, as they did when they failed at bind. */
  code: SidecarErrorCode;
}

/**
 * Checks what would otherwise fail half-way through start(), after some listeners were bound and had to be drained:
 *
 * - every host name resolves;
 * - no two listeners of the config share an address (found from the config alone, without binding);
 * - every address with a fixed port can be bound now: each is bound and closed at once (the sidecar's own addresses,
 *   nothing else is touched), which finds a port held by another process, an address not on this host, a privileged
 *   port;
 * - every registry plugin loads and exports createRegistryAdapter (a built-in type misspelt is a plugin that is not
 *   found, and the message says which type was meant);
 * - with mutual TLS on, the certificate files load and check (present, PEM, valid now, chain to the trust bundle, an
 *   identity, the key pair), reported with the identity module's MESHPORT_TLS_* code on the line of the file's key;
 * - the access log and trace files can be opened for appending (telemetryFileProblems).
 *
 * All problems are reported at once in one SidecarError (its `problems`, each `file:line: key: what`), whose code is
 * the first problem's. Port 0 addresses are skipped: the kernel picks a free port.
 */
export async function preflight(config: SidecarConfig): Promise<void> {
  const source = configSource(config);
  const where = (key: (string | number)[]) => {
    const line = source?.lineOf(key);
    return source ? `${source.file}${line === undefined ? '' : `:${line}`}: ${keyName(key)}` : keyName(key);
  };
  const problems: SidecarProblem[] = [];
  const report = (code: SidecarErrorCode, key: (string | number)[], message: string) =>
    problems.push({ code, message: `${where(key)}: ${message}` });

  // Names first: two listeners on `localhost` and `127.0.0.1` are one address.
  const listens = listensOf(config);
  const resolved: { listen: Listen; address: string }[] = [];
  await Promise.all(
    listens.map(async (listen) => {
      try {
        const address = net.isIP(listen.host) ? listen.host : (await lookup(listen.host)).address;
        resolved.push({ listen, address });
      } catch (err) {
        report(
          'MESHPORT_ADDRESS_UNAVAILABLE',
          listen.key,
          `${show(listen)}: the host name ${listen.host} does not resolve (${(err as NodeJS.ErrnoException).code})`,
        );
      }
    }),
  );
  resolved.sort((a, b) => listens.indexOf(a.listen) - listens.indexOf(b.listen));

  const clashing = new Set<Listen>();
  for (let i = 0; i < resolved.length; i++) {
    for (let j = 0; j < i; j++) {
      const [a, b] = [resolved[j]!, resolved[i]!];
      if (a.listen.port === 0 || a.listen.port !== b.listen.port || !overlap(a.address, b.address)) continue;
      report(
        'MESHPORT_ADDRESS_UNAVAILABLE',
        b.listen.key,
        `${show(b.listen)} is also ${where(a.listen.key)} (${show(a.listen)}); each listener needs its own port`,
      );
      clashing.add(b.listen);
      break;
    }
  }

  await Promise.all(
    resolved
      .filter(({ listen }) => listen.port !== 0 && !clashing.has(listen))
      .map(async ({ listen, address }) => {
        const error = await tryBind(address, listen.port);
        if (error) report(listen.code, listen.key, `${show(listen)} ${bindProblem(error)}`);
      }),
  );

  for (const [i, entry] of config.registries.entries()) {
    if ((BUILTIN_REGISTRY_TYPES as readonly string[]).includes(entry.type)) continue;
    try {
      await loadPlugin(entry.type);
    } catch (err) {
      const meant = closestBuiltin(entry.type);
      const hint = meant ? ` (did you mean type: ${meant}?)` : '';
      report(
        err instanceof SidecarError ? err.code : 'MESHPORT_PLUGIN_INVALID',
        ['registries', i, 'type'],
        `${(err as Error).message}${hint}`,
      );
    }
  }

  const files = tlsFilesOf(config.tls);
  if (files) {
    try {
      loadTlsMaterial(files);
    } catch (err) {
      const { code, message } = err as { code?: string; message: string };
      const key =
        code === 'MESHPORT_TLS_KEY_MISMATCH'
          ? 'keyFile'
          : ((['certFile', 'keyFile', 'trustBundleFile'] as const).find((k) => message.includes(files[k])) ??
            'certFile');
      report(err instanceof SidecarError ? err.code : 'MESHPORT_TLS_FILE_UNREADABLE', ['tls', key], message);
    }
  }

  problems.push(...(await telemetryFileProblems(config)));

  if (problems.length === 0) return;
  // In the order of the file where lines are known, else in the order found.
  const lineOf = (p: SidecarProblem) => Number(/^[^:]*:(\d+):/.exec(p.message)?.[1] ?? 0);
  problems.sort((a, b) => lineOf(a) - lineOf(b));
  throw new SidecarError(problems[0]!.code, problems.map((p) => p.message).join('\n'), { problems });
}

/** Every address start() binds, in the order of the config. */
function listensOf(config: SidecarConfig): Listen[] {
  const out: Listen[] = [
    { key: ['admin'], ...config.admin, code: 'MESHPORT_ADDRESS_UNAVAILABLE' },
    { key: ['listeners', 'outbound'], ...config.listeners.outbound, code: 'MESHPORT_ADDRESS_UNAVAILABLE' },
    { key: ['listeners', 'inbound'], ...config.listeners.inbound, code: 'MESHPORT_ADDRESS_UNAVAILABLE' },
  ];
  config.registries.forEach((entry, i) => {
    if (entry.facade)
      out.push({ key: ['registries', i, 'facade'], ...entry.facade, code: 'MESHPORT_ADDRESS_UNAVAILABLE' });
  });
  if (config.hijack) {
    // As Sidecar.startCapture binds them: outbound on loopback, inbound on every address.
    out.push({
      key: ['hijack', 'outboundCapturePort'],
      host: '127.0.0.1',
      port: config.hijack.outboundCapturePort,
      code: 'MESHPORT_CAPTURE_FAILED',
    });
    out.push({
      key: ['hijack', 'inboundCapturePort'],
      host: '0.0.0.0',
      port: config.hijack.inboundCapturePort,
      code: 'MESHPORT_CAPTURE_FAILED',
    });
  }
  return out;
}

function show({ host, port }: HostPort): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Two binds of one port collide when the addresses are equal or either is a wildcard of the same family. */
function overlap(a: string, b: string): boolean {
  if (a === b) return true;
  const wildcard = (x: string) => x === '0.0.0.0' || x === '::';
  // A `::` listener takes IPv4 too (dual stack, Node's default).
  if (a === '::' || b === '::') return true;
  return (wildcard(a) || wildcard(b)) && net.isIPv4(a) === net.isIPv4(b);
}

/** Binds and closes at once; the error of a bind that failed, else undefined. */
function tryBind(host: string, port: number): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(undefined)));
  });
}

function bindProblem(error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case 'EADDRINUSE':
      return 'is in use (another process listens there)';
    case 'EADDRNOTAVAIL':
      return 'cannot be bound: the address is not one of this host (EADDRNOTAVAIL)';
    case 'EACCES':
      return 'cannot be bound: a port below 1024 needs CAP_NET_BIND_SERVICE (EACCES)';
    default:
      return `cannot be bound: ${error.message}`;
  }
}

/** The built-in type a plugin name was probably meant to be: at most two edits away. */
function closestBuiltin(type: string): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const name of BUILTIN_REGISTRY_TYPES) {
    const distance = editDistance(type.toLowerCase(), name);
    if (distance <= 2 && (!best || distance < best.distance)) best = { name, distance };
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = row;
  }
  return previous[b.length]!;
}

/**
 * The telemetry files of a config (telemetry.accessLog.to, telemetry.tracing.file) that cannot be opened for
 * appending (a directory that does not exist, no permission), each on the line of its key: found at start and on a
 * reload, not at the first call to log. Opening creates a missing file, as the first write would. `source`: where the
 * keys are written (a reload checks a config made from the file's).
 */
export async function telemetryFileProblems(
  config: SidecarConfig,
  source = configSource(config),
): Promise<SidecarProblem[]> {
  const files: { key: string[]; path: string }[] = [];
  const { accessLog, tracing } = config.telemetry;
  if (accessLog && accessLog.to !== 'stdout') files.push({ key: ['telemetry', 'accessLog', 'to'], path: accessLog.to });
  if (tracing?.file) files.push({ key: ['telemetry', 'tracing', 'file'], path: tracing.file });
  const problems: SidecarProblem[] = [];
  for (const { key, path } of files) {
    try {
      await (await open(path, 'a')).close();
    } catch (err) {
      const line = source?.lineOf(key);
      const where = source ? `${source.file}${line === undefined ? '' : `:${line}`}: ` : '';
      problems.push({
        code: 'MESHPORT_CONFIG_INVALID',
        message: `${where}${keyName(key)}: cannot append to ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      });
    }
  }
  return problems;
}
