// A stand-in for an OpenTelemetry collector on loopback: it takes OTLP/HTTP JSON trace exports (POST /v1/traces),
// checks each against the OTLP/JSON shape, keeps the spans with their resource, and answers as told (slow, failing).

import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One span as it arrived, with the resource attributes of its ResourceSpans flattened to strings. */
export interface CollectedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  /** Attribute values as strings (`intValue` ones too, as OTLP/JSON writes them). */
  attributes: Record<string, string>;
  status: { code: number; message?: string };
  resource: Record<string, string>;
}

/** How the collector answers: after `delayMs`, with `status` (200 takes the spans; another status keeps nothing). */
export interface CollectorBehaviour {
  delayMs: number;
  status: number;
}

export interface OtlpCollector {
  /** `http://127.0.0.1:PORT`: what a sidecar's `telemetry.tracing.otlp` names. */
  readonly url: string;
  readonly port: number;
  /** Every span accepted, in arrival order. */
  readonly spans: CollectedSpan[];
  /** Export requests received (each POST, whatever its answer). */
  readonly requests: number;
  /** Why a request was refused (400): a body that is not an ExportTraceServiceRequest. */
  readonly invalid: string[];
  /** Changes how later requests are answered. */
  behave(behaviour: Partial<CollectorBehaviour>): void;
  /** Resolves once `count` spans matching `match` have arrived (rejects after `ms`). */
  waitForSpans(count: number, ms?: number, match?: (span: CollectedSpan) => boolean): Promise<CollectedSpan[]>;
  close(): Promise<void>;
}

export async function startOtlpCollector(behaviour: Partial<CollectorBehaviour> = {}): Promise<OtlpCollector> {
  let now: CollectorBehaviour = { delayMs: 0, status: 200, ...behaviour };
  const spans: CollectedSpan[] = [];
  const invalid: string[] = [];
  let requests = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests++;
      const answer = (status: number, body: string) => {
        if (res.destroyed) return;
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(body);
      };
      if (req.method !== 'POST' || req.url !== '/v1/traces') return answer(404, '{}');
      if (!/^application\/json\b/.test(req.headers['content-type'] ?? '')) {
        invalid.push(`content-type ${req.headers['content-type']}`);
        return answer(415, '{}');
      }
      let found: CollectedSpan[];
      try {
        found = readExport(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch (error) {
        invalid.push((error as Error).message);
        return answer(400, JSON.stringify({ message: (error as Error).message }));
      }
      const { delayMs, status } = now;
      setTimeout(() => {
        if (status === 200 && !res.destroyed) spans.push(...found);
        answer(status, '{}');
      }, delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    spans,
    get requests() {
      return requests;
    },
    invalid,
    behave(next) {
      now = { ...now, ...next };
    },
    async waitForSpans(count, ms = 10_000, match = () => true) {
      const deadline = Date.now() + ms;
      for (;;) {
        const matching = spans.filter(match);
        if (matching.length >= count) return matching;
        if (Date.now() > deadline)
          throw new Error(`the collector has ${matching.length} matching spans of ${count} after ${ms} ms`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

const HEX = (n: number) => new RegExp(`^[0-9a-f]{${n}}$`);
const TRACE_ID = HEX(32);
const SPAN_ID = HEX(16);
const NANOS = /^\d{1,20}$/;

/**
 * The spans of an ExportTraceServiceRequest (OTLP/JSON: lowercase hex ids, 64-bit integers as decimal strings, enums
 * as numbers), or an error naming the first thing out of shape. Also what a test reads a trace file's lines with.
 */
export function readExport(body: unknown): CollectedSpan[] {
  const out: CollectedSpan[] = [];
  const resourceSpans = field(body, 'resourceSpans', 'request');
  if (!Array.isArray(resourceSpans)) throw new Error('resourceSpans is not a list');
  resourceSpans.forEach((rs, i) => {
    const at = `resourceSpans[${i}]`;
    const resource = attributes(field(field(rs, 'resource', at), 'attributes', `${at}.resource`), `${at}.resource`);
    const scopeSpans = field(rs, 'scopeSpans', at);
    if (!Array.isArray(scopeSpans)) throw new Error(`${at}.scopeSpans is not a list`);
    scopeSpans.forEach((ss, j) => {
      const list = field(ss, 'spans', `${at}.scopeSpans[${j}]`);
      if (!Array.isArray(list)) throw new Error(`${at}.scopeSpans[${j}].spans is not a list`);
      list.forEach((span, k) => out.push(readSpan(span, `${at}.scopeSpans[${j}].spans[${k}]`, resource)));
    });
  });
  return out;
}

function readSpan(span: unknown, at: string, resource: Record<string, string>): CollectedSpan {
  const text = (key: string, shape?: RegExp) => {
    const value = field(span, key, at);
    if (typeof value !== 'string' || (shape && !shape.test(value)))
      throw new Error(`${at}.${key} is ${JSON.stringify(value)}, not ${shape ? `matching ${shape}` : 'a string'}`);
    return value;
  };
  const parent = (span as { parentSpanId?: unknown }).parentSpanId;
  if (parent !== undefined && (typeof parent !== 'string' || !(parent === '' || SPAN_ID.test(parent))))
    throw new Error(`${at}.parentSpanId is ${JSON.stringify(parent)}`);
  const kind = field(span, 'kind', at);
  if (typeof kind !== 'number' || !Number.isInteger(kind) || kind < 0 || kind > 5)
    throw new Error(`${at}.kind is ${JSON.stringify(kind)}, not an integer 0-5`);
  const start = text('startTimeUnixNano', NANOS);
  const end = text('endTimeUnixNano', NANOS);
  if (BigInt(end) < BigInt(start)) throw new Error(`${at} ends before it starts`);
  const status = field(span, 'status', at) as { code?: unknown; message?: unknown };
  if (typeof status !== 'object' || status === null || ![0, 1, 2].includes(status.code as number))
    throw new Error(`${at}.status is ${JSON.stringify(status)}`);
  if (status.message !== undefined && typeof status.message !== 'string')
    throw new Error(`${at}.status.message is not a string`);
  return {
    traceId: text('traceId', TRACE_ID),
    spanId: text('spanId', SPAN_ID),
    ...(parent ? { parentSpanId: parent as string } : {}),
    name: text('name'),
    kind,
    startTimeUnixNano: start,
    endTimeUnixNano: end,
    attributes: attributes(field(span, 'attributes', at), at),
    status: {
      code: status.code as number,
      ...(status.message !== undefined ? { message: status.message as string } : {}),
    },
    resource,
  };
}

/** A KeyValue list as a map: each value one of stringValue, intValue (decimal string), boolValue, doubleValue. */
function attributes(list: unknown, at: string): Record<string, string> {
  if (!Array.isArray(list)) throw new Error(`${at}.attributes is not a list`);
  const out: Record<string, string> = {};
  list.forEach((kv, i) => {
    const { key, value } = (kv ?? {}) as { key?: unknown; value?: Record<string, unknown> };
    if (typeof key !== 'string' || !key) throw new Error(`${at}.attributes[${i}].key is ${JSON.stringify(key)}`);
    if (key in out) throw new Error(`${at}.attributes: ${key} twice`);
    const entries = Object.entries(value ?? {});
    if (entries.length !== 1) throw new Error(`${at}.attributes[${i}] (${key}) has ${entries.length} values`);
    const [type, v] = entries[0]!;
    const ok =
      (type === 'stringValue' && typeof v === 'string') ||
      (type === 'intValue' && typeof v === 'string' && /^-?\d+$/.test(v)) ||
      (type === 'boolValue' && typeof v === 'boolean') ||
      (type === 'doubleValue' && typeof v === 'number');
    if (!ok) throw new Error(`${at}.attributes[${i}] (${key}): ${type} ${JSON.stringify(v)}`);
    out[key] = String(v);
  });
  return out;
}

function field(value: unknown, key: string, at: string): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${at} is not an object`);
  if (!(key in value)) throw new Error(`${at} has no ${key}`);
  return (value as Record<string, unknown>)[key];
}
