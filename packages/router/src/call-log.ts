// The TypeScript engine's access log lines and spans: which calls get one (the sampling rules of telemetry.ts), the
// lines in the formats both engines write byte for byte alike (docs/observability.md), and the batches handed to the
// embedding daemon's sink. Only the calls that are written pay for a line; with telemetry off the router does not
// come here at all.

import { randomBytes } from 'node:crypto';
import type { ListenerName } from './caller';
import {
  ACCESS_LOG_DEFAULTS,
  TRACE_DEFAULTS,
  type AccessLogSampling,
  type RouterTelemetry,
  type TelemetrySink,
  type TraceSampling,
} from './telemetry';
import { type CarriedTraceContext, type SpanIds, deriveSpanIds, sampled } from './trace-ids';

/** What is known of a call as its answer is written (or a oneway is sent). */
export interface CallRecord {
  direction: ListenerName;
  protocol: 'bolt' | 'dubbo';
  /** The caller's `ip:port`. */
  caller: string;
  identity: string | undefined;
  service: string;
  method: string;
  /** `host:port` of the last endpoint tried; undefined when the call never left. */
  endpoint: string | undefined;
  /** The outcome: `ok`, `status-N`, or the router failure. */
  status: string;
  /** performance.now() at arrival and as the answer was written. */
  startedAt: number;
  endedAt: number;
  /** The request frame as it came (its id may since have been rewritten; nothing else is). */
  request: Buffer;
  /** The answer frame's length; 0 for a oneway. */
  bytesOut: number;
}

/** Where a call's trace context comes from: @meshport/protocol's readTraceContext, or what a test gives. */
export type TraceContextReader = (frame: Buffer) => CarriedTraceContext | undefined;

/** Hands lines to the sink in batches: every 100 ms per kind, or at once when 256 KiB are waiting. */
export class TelemetryBatches {
  private readonly waiting = { access: '', span: '' };
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly sink: TelemetrySink) {}

  add(kind: 'access' | 'span', line: string): void {
    const text = this.waiting[kind] + line;
    this.waiting[kind] = text;
    if (text.length >= BATCH_BYTES) this.flushKind(kind);
    else this.timer ??= setTimeout(() => this.flush(), BATCH_MS).unref();
  }

  /** Hands over whatever is waiting, now (on a drain, and by the timer). */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.flushKind('access');
    this.flushKind('span');
  }

  private flushKind(kind: 'access' | 'span'): void {
    const lines = this.waiting[kind];
    if (lines === '') return;
    this.waiting[kind] = '';
    this.sink(kind, lines);
  }
}

const BATCH_MS = 100;
// Characters, not bytes: a line is mostly ASCII, and the bound is about how much waits, not an exact size.
const BATCH_BYTES = 256 * 1024;

/** Decides which calls get a line and a span, and writes them. One per router, kept across setTelemetry. */
export class CallLog {
  private accessLog: AccessLogSampling | undefined;
  private tracing: TraceSampling | undefined;
  /** Calls seen while the access log is on, both directions: every everyN-th gets a line. */
  private calls = 0;
  private readonly batches: TelemetryBatches;

  constructor(
    sink: TelemetrySink,
    private readonly readContext: TraceContextReader,
  ) {
    this.batches = new TelemetryBatches(sink);
  }

  /** Takes the sampling in force; false when it turns everything off. */
  configure(telemetry: RouterTelemetry | undefined): boolean {
    this.accessLog = telemetry?.accessLog && { ...ACCESS_LOG_DEFAULTS, ...telemetry.accessLog };
    this.tracing = telemetry?.tracing && { ...TRACE_DEFAULTS, ...telemetry.tracing };
    return this.accessLog !== undefined || this.tracing !== undefined;
  }

  flush(): void {
    this.batches.flush();
  }

  record(call: CallRecord): void {
    const durationMs = Math.round((call.endedAt - call.startedAt) * 1000) / 1000;
    const log = this.accessLog;
    let line = false;
    if (log !== undefined) {
      this.calls++;
      line =
        this.calls % Math.max(1, Math.floor(log.everyN)) === 0 ||
        (log.errors && call.status !== 'ok') ||
        (log.slowMs > 0 && durationMs >= log.slowMs);
    }
    if (!line && this.tracing === undefined) return;
    const context = this.readContext(call.request);
    let ids = context === undefined ? undefined : deriveSpanIds(context, call.direction);
    if (this.tracing !== undefined) {
      ids ??= { traceId: randomBytes(16).toString('hex'), spanId: randomBytes(8).toString('hex'), sampledFlag: true };
      if (ids.sampledFlag && sampled(ids.traceId, this.tracing.everyN)) {
        this.batches.add('span', spanLine(call, ids, context));
      }
    }
    if (line) this.batches.add('access', accessLine(call, durationMs, ids?.traceId));
  }
}

/** A wall-clock time in ms (fractional) of a performance.now() reading. */
function wallMs(at: number): number {
  return performance.timeOrigin + at;
}

/** One access log line: the keys in this order, null where unknown. */
export function accessLine(call: CallRecord, durationMs: number, traceId: string | undefined): string {
  return (
    `{"time":"${new Date(wallMs(call.endedAt)).toISOString()}","direction":"${call.direction}",` +
    `"protocol":"${call.protocol}","caller":${str(call.caller)},"callerIdentity":${strOrNull(call.identity)},` +
    `"service":${str(call.service)},"method":${str(call.method)},"endpoint":${strOrNull(call.endpoint)},` +
    `"status":${str(call.status)},"durationMs":${durationMs},"bytesIn":${call.request.length},` +
    `"bytesOut":${call.bytesOut},"traceId":${strOrNull(traceId)}}\n`
  );
}

/** One OTLP/JSON Span, keys in this order (the collector's file exporter and the OTLP/HTTP JSON body agree). */
export function spanLine(call: CallRecord, ids: SpanIds, context: CarriedTraceContext | undefined): string {
  const attributes = [
    text('rpc.system', call.protocol === 'bolt' ? 'sofarpc' : 'apache_dubbo'),
    text('rpc.service', call.service),
    text('rpc.method', call.method),
    text('meshport.direction', call.direction),
    text('meshport.outcome', call.status),
    text('network.peer.address', call.caller),
  ];
  if (call.endpoint !== undefined) attributes.push(text('server.address', call.endpoint));
  if (call.identity !== undefined) attributes.push(text('meshport.caller.identity', call.identity));
  if (context?.sofaTraceId) {
    attributes.push(text('sofa.trace_id', context.sofaTraceId), text('sofa.rpc_id', context.sofaRpcId || '0'));
  }
  attributes.push(int('meshport.bytes_in', call.request.length), int('meshport.bytes_out', call.bytesOut));
  const parent = ids.parentSpanId === undefined ? '' : `"parentSpanId":"${ids.parentSpanId}",`;
  const status = call.status === 'ok' ? '{"code":1}' : `{"code":2,"message":${str(call.status)}}`;
  return (
    `{"traceId":"${ids.traceId}","spanId":"${ids.spanId}",${parent}"name":${str(`${call.service}/${call.method}`)},` +
    `"kind":${call.direction === 'outbound' ? 3 : 2},"startTimeUnixNano":"${unixNano(call.startedAt)}",` +
    `"endTimeUnixNano":"${unixNano(call.endedAt)}","attributes":[${attributes.join(',')}],"status":${status}}\n`
  );
}

function text(key: string, value: string): string {
  return `{"key":"${key}","value":{"stringValue":${str(value)}}}`;
}

function int(key: string, value: number): string {
  return `{"key":"${key}","value":{"intValue":"${value}"}}`;
}

/** Nanoseconds since the epoch as a decimal string, at microsecond resolution (what performance.now() gives). */
function unixNano(at: number): string {
  return `${Math.round(wallMs(at) * 1000)}000`;
}

/**
 * A JSON string: `"` and `\` backslashed, control characters as \u00xx (lowercase hex, no short forms such as \n:
 * one rule the native engine writes alike); everything else as it is (UTF-8).
 */
export function str(value: string): string {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c) return `"${escaped(value)}"`;
  }
  return `"${value}"`;
}

function escaped(value: string): string {
  let out = '';
  for (const ch of value) {
    const c = ch.charCodeAt(0);
    if (c === 0x22 || c === 0x5c) out += `\\${ch}`;
    else if (c < 0x20) out += `\\u00${c.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return out;
}

function strOrNull(value: string | undefined): string {
  return value === undefined ? 'null' : str(value);
}
