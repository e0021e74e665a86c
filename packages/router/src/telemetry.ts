// What a router tells about the calls it carries beyond its counters: access log lines and trace spans. Both engines
// decide which calls to write and format the lines themselves (the native one on its loop thread), then hand them
// over in batches to the embedding daemon's sink, which only writes bytes: a file, stdout, an OTLP collector.
// The rules here are the contract both engines are held to (packages/router/test/telemetry.test.ts).

/**
 * Which calls get an access log line: every `everyN`th call (1: every call, 100: 1%), and whatever that says, every
 * call that did not end `ok` (with `errors`) and every call that took `slowMs` or longer (0: no slow rule).
 */
export interface AccessLogSampling {
  /** @default 100 */
  everyN: number;
  /** @default true */
  errors: boolean;
  /** @default 1000 */
  slowMs: number;
}

/**
 * Which calls get a span. A call belongs to a sampled trace when its trace id's low 64 bits, as an unsigned number,
 * are a multiple of `everyN` (1: every call): both sidecars of a call decide alike, so a trace is whole or absent. A
 * W3C `traceparent` whose flags say "not sampled" is never sampled.
 */
export interface TraceSampling {
  /** @default 1 */
  everyN: number;
}

export const ACCESS_LOG_DEFAULTS: AccessLogSampling = { everyN: 100, errors: true, slowMs: 1000 };
export const TRACE_DEFAULTS: TraceSampling = { everyN: 1 };

/** Caps on the label values of the per-service metrics: past them a service's new methods or callers are `other`. */
export interface LabelCaps {
  /** Distinct methods per service and direction. @default 64 */
  methods: number;
  /** Distinct callers per service and direction. @default 32 */
  callers: number;
}

export const LABEL_CAP_DEFAULTS: LabelCaps = { methods: 64, callers: 32 };

/** The label a folded method or caller is counted under, and the service of a call that has no route. */
export const FOLDED_LABEL = 'other';
export const NO_SERVICE_LABEL = 'none';

/** What a router writes besides its counters. Absent parts are off; both off by default. */
export interface RouterTelemetry {
  accessLog?: AccessLogSampling;
  tracing?: TraceSampling;
}

/**
 * `access`: access log lines; `span`: OTLP/JSON Span objects. `lines` is one or more whole lines, each ending in
 * '\n'. Called on the main thread, in order, at most every 100 ms per kind or when 256 KiB are waiting.
 *
 * A sink that writes bytes also has `bytes`: the native engine then hands it each batch as the UTF-8 bytes it made
 * them in (the same lines, in the same order; the sink may keep the Buffer and must not change it) instead of a
 * string, sparing a decoding into a JavaScript string and an encoding back to bytes per batch. A sink without it gets
 * strings from both engines; the TypeScript engine always calls the function itself.
 */
export interface TelemetrySink {
  (kind: 'access' | 'span', lines: string): void;
  bytes?: (kind: 'access' | 'span', lines: Buffer) => void;
}
