// The sink of the forward suite's routers with access logs or tracing on (runners/router-process): the sidecar's own
// file targets (@meshport/sidecar's RotatingFile, and its OTLP request per batch of spans, as its trace file writes
// them), so the cost measured is the router's plus what a sidecar does with the lines.

import type { TelemetrySink } from '@meshport/router';
import pino, { type Logger } from 'pino';
import type * as SidecarModule from '@meshport/sidecar';

/** No rotation: the suite counts each file whole at the end of a protocol (tracing writes hundreds of MB). */
const WHOLE = { maxBytes: Number.MAX_SAFE_INTEGER, keep: 1 };

export interface FileSink {
  sink: TelemetrySink;
  /** Lines (access) or spans the sidecar's writer dropped: its queue full, a failed write. */
  dropped(): number;
  /** Writes what is waiting, then closes the files. */
  close(): Promise<void>;
}

const NODE = '127.0.0.1';

/**
 * Appends each batch to its file as a sidecar would: access log lines as given, a batch of spans as one OTLP
 * ExportTraceServiceRequest per line (the OpenTelemetry Collector file exporter's format); strings or, from the
 * native engine, bytes. A kind without a file is dropped. `onDrop` hears of the first loss.
 */
export function fileSink(
  files: { access?: string; span?: string },
  onDrop: (message: string) => void = () => undefined,
): FileSink {
  // Loaded here, not at the top: the plain cases' routers should not carry the sidecar's modules in their RSS.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { RotatingFile, exportRequest, exportRequestLine, lineCount } =
    require('@meshport/sidecar') as typeof SidecarModule;
  let dropped = 0;
  const events = (kind: string) => ({
    written: () => undefined,
    dropped: (count: number, error?: Error) => {
      if (dropped === 0) onDrop(`${kind}: ${count} dropped${error ? ` (${error.message})` : ' (its queue was full)'}`);
      dropped += count;
    },
  });
  const access = files.access ? new RotatingFile({ path: files.access, ...WHOLE }, events('access')) : undefined;
  const span = files.span ? new RotatingFile({ path: files.span, ...WHOLE }, events('span')) : undefined;
  // Strings from the TypeScript engine; the native engine's batches as its bytes (TelemetrySink.bytes), as the
  // sidecar's TelemetryOutput takes them.
  const sink: TelemetrySink = Object.assign(
    (kind: 'access' | 'span', lines: string) => {
      if (kind === 'access') access?.write(lines, lineCount(lines));
      else span?.write(`${exportRequest(lines, NODE)}\n`, lineCount(lines));
    },
    {
      bytes: (kind: 'access' | 'span', lines: Buffer) => {
        if (kind === 'access') access?.write(lines, lineCount(lines));
        else span?.write(exportRequestLine(lines, NODE), lineCount(lines));
      },
    },
  );
  return {
    sink,
    dropped: () => dropped,
    close: async () => {
      await Promise.all([access?.close(3000), span?.close(3000)]);
    },
  };
}

/**
 * The router's logger for a case with telemetry on: pino as the router makes its own (level MESHPORT_LOG_LEVEL, to
 * stdout), with the native engine's "access log lines and spans dropped" warnings (JavaScript behind the loop, its
 * 8 MiB of batches waiting) counted on the way.
 */
export function countingLogger(out: { write(line: string): unknown } = process.stdout): {
  logger: Logger;
  dropped(): number;
} {
  let dropped = 0;
  const destination = {
    write(line: string): void {
      if (line.includes('spans dropped')) {
        for (const m of line.matchAll(/"(?:accessLines|spans)":(\d+)/g)) dropped += Number(m[1]);
      }
      out.write(line);
    },
  };
  const logger = pino({ name: 'meshport-router', level: process.env.MESHPORT_LOG_LEVEL ?? 'warn' }, destination);
  return { logger, dropped: () => dropped };
}
