// Spans to a file, one ExportTraceServiceRequest per line: the OpenTelemetry Collector file exporter's format, so
// its otlpjsonfile receiver (or a script) reads the file back.

import { SIDECAR_DEFAULTS } from '../config';
import { exportRequest, exportRequestLine } from './otlp';
import { RotatingFile } from './rotating-file';
import type { LineWriter, Lines, WriterEvents } from './writer';

/**
 * Each batch of span lines the router hands over is one request line (its spans are what the events count); the
 * file rotates by size as the access log does, with the access log's default size and count.
 */
export class TraceFile implements LineWriter {
  private readonly file: RotatingFile;

  constructor(
    path: string,
    private readonly node: string,
    events: WriterEvents,
  ) {
    this.file = new RotatingFile({ path, ...SIDECAR_DEFAULTS.accessLogFiles }, events);
  }

  write(lines: Lines, count: number): void {
    this.file.write(
      typeof lines === 'string' ? `${exportRequest(lines, this.node)}\n` : exportRequestLine(lines, this.node),
      count,
    );
  }

  close(waitMs: number): Promise<void> {
    return this.file.close(waitMs);
  }
}
