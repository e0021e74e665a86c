// The sink of the forward suite's routers with access logs or tracing on (runners/router-process): what a daemon's
// file sink does, in its simplest form, so the cost measured is the router's plus one write per batch.

import { openSync, writeSync } from 'node:fs';
import type { TelemetrySink } from '@meshport/router';

/** The OTLP/JSON envelope of a batch of spans (the spec's resource and scope), as the sidecar's exporters write it. */
const OTLP_HEAD =
  '{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"meshport"}},' +
  '{"key":"meshport.node","value":{"stringValue":"127.0.0.1"}}]},"scopeSpans":[{"scope":{"name":"meshport"},"spans":[';
const OTLP_TAIL = ']}]}]}\n';

/**
 * Appends each batch to its file with one synchronous write: access log lines as given, a batch of spans as one
 * OTLP ExportTraceServiceRequest per line (the OpenTelemetry Collector file exporter's format). A kind without a file
 * is dropped.
 */
export function fileSink(files: { access?: string; span?: string }): TelemetrySink {
  const access = files.access ? openSync(files.access, 'a') : undefined;
  const span = files.span ? openSync(files.span, 'a') : undefined;
  return (kind, lines) => {
    if (kind === 'access') {
      if (access !== undefined) writeSync(access, lines);
    } else if (span !== undefined && lines.length > 1) {
      // Whole lines, each ending in '\n' (a span object has none inside): joined by commas into the spans array.
      writeSync(span, OTLP_HEAD + lines.slice(0, -1).replaceAll('\n', ',') + OTLP_TAIL);
    }
  };
}
