// Spans to an OpenTelemetry collector over OTLP/HTTP with JSON bodies: batched, bounded, retried once.

import http from 'node:http';
import https from 'node:https';
import type { LineWriter, Lines, WriterEvents } from './writer';

/**
 * The ExportTraceServiceRequest around span lines (OTLP/JSON Span objects, each ending in '\n'): the lines are joined
 * with ',' as they are, never parsed. The resource says which sidecar sent them (`meshport.node`, its node ip).
 */
export function exportRequest(spanLines: string, node: string): string {
  const spans = spanLines.endsWith('\n') ? spanLines.slice(0, -1) : spanLines;
  return `${requestPrefix(node)}${spans.replaceAll('\n', ',')}${REQUEST_SUFFIX}`;
}

/**
 * exportRequest's text followed by '\n', as bytes, from span lines as bytes: one copy of the batch, its '\n's turned
 * into ','s in the copy (the batch itself is left as it is: another target may hold it).
 */
export function exportRequestLine(spanLines: Buffer, node: string): Buffer {
  const prefix = requestPrefixBytes(node);
  const end =
    spanLines.length > 0 && spanLines[spanLines.length - 1] === NEWLINE ? spanLines.length - 1 : spanLines.length;
  const out = Buffer.allocUnsafe(prefix.length + end + SUFFIX_LINE.length);
  prefix.copy(out, 0);
  spanLines.copy(out, prefix.length, 0, end);
  const from = prefix.length;
  const to = from + end;
  for (let at = out.indexOf(NEWLINE, from); at !== -1 && at < to; at = out.indexOf(NEWLINE, at + 1)) out[at] = COMMA;
  SUFFIX_LINE.copy(out, to);
  return out;
}

const NEWLINE = 0x0a;
const COMMA = 0x2c;
const REQUEST_SUFFIX = ']}]}]}';
const SUFFIX_LINE = Buffer.from(`${REQUEST_SUFFIX}\n`);

function requestPrefix(node: string): string {
  return (
    '{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"meshport"}},' +
    `{"key":"meshport.node","value":{"stringValue":${JSON.stringify(node)}}}]},` +
    '"scopeSpans":[{"scope":{"name":"meshport"},"spans":['
  );
}

/** The prefix as bytes, made once per node (a sidecar has one). */
let prefixCache: { node: string; bytes: Buffer } | undefined;
function requestPrefixBytes(node: string): Buffer {
  if (prefixCache?.node !== node) prefixCache = { node, bytes: Buffer.from(requestPrefix(node)) };
  return prefixCache.bytes;
}

/** `http://host:4318` -> `http://host:4318/v1/traces`; an endpoint that already ends in /v1/traces is kept. */
export function tracesUrl(endpoint: string): URL {
  const url = new URL(endpoint);
  if (!url.pathname.endsWith('/v1/traces')) url.pathname = `${url.pathname.replace(/\/+$/, '')}/v1/traces`;
  return url;
}

export const OTLP_DEFAULTS = {
  /** Spans per request. */
  batch: 512,
  /** A span waits at most this long for a batch to fill. */
  intervalMs: 1000,
  /** A request without an answer by then is abandoned (and retried once). */
  timeoutMs: 5000,
  /** Spans waiting to be sent; past it new spans are dropped (a collector down or slow must not grow the heap). */
  maxQueue: 4096,
};

export interface OtlpOptions {
  /** The collector's base URL (`http://127.0.0.1:4318`). */
  endpoint: string;
  /** The node ip, for the resource. */
  node: string;
  batch?: number;
  intervalMs?: number;
  timeoutMs?: number;
  maxQueue?: number;
}

type Attempt = 'ok' | 'retry' | 'fail';

/**
 * One request at a time: while it is out, spans queue (up to maxQueue). A 5xx answer, a connection error or a timeout
 * is tried once more, then the batch is dropped and counted; any other non-2xx answer (the collector refuses the
 * data) is dropped at once. Spans are split into separate lines only here, to count and batch them.
 */
export class OtlpExporter implements LineWriter {
  private readonly url: URL;
  private readonly settings: typeof OTLP_DEFAULTS;
  private readonly agent: http.Agent;
  private queue: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> | undefined;
  private request: http.ClientRequest | undefined;
  private closed = false;

  constructor(
    private readonly options: OtlpOptions,
    private readonly events: WriterEvents,
  ) {
    this.url = tracesUrl(options.endpoint);
    this.settings = {
      batch: options.batch ?? OTLP_DEFAULTS.batch,
      intervalMs: options.intervalMs ?? OTLP_DEFAULTS.intervalMs,
      timeoutMs: options.timeoutMs ?? OTLP_DEFAULTS.timeoutMs,
      maxQueue: options.maxQueue ?? OTLP_DEFAULTS.maxQueue,
    };
    const Agent = this.url.protocol === 'https:' ? https.Agent : http.Agent;
    this.agent = new Agent({ keepAlive: true, maxSockets: 1 });
  }

  write(batch: Lines, count: number): void {
    if (this.closed) {
      this.events.dropped(count);
      return;
    }
    // Spans are queued one by one (batches of 512 are cut from the queue): bytes are made text here.
    const lines = typeof batch === 'string' ? batch : batch.toString();
    let dropped = 0;
    let start = 0;
    for (let end = lines.indexOf('\n'); end !== -1; end = lines.indexOf('\n', start)) {
      if (this.queue.length < this.settings.maxQueue) this.queue.push(lines.slice(start, end));
      else dropped++;
      start = end + 1;
    }
    if (dropped > 0)
      this.events.dropped(
        dropped,
        new Error(`${this.settings.maxQueue} spans are waiting for the collector (slow or down): new ones are dropped`),
      );
    this.schedule();
  }

  /** Sends what is queued, batch after batch, for at most `waitMs`; what is left then is dropped. */
  async close(waitMs: number): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    const deadline = Date.now() + waitMs;
    while ((this.queue.length > 0 || this.sending) && Date.now() < deadline) {
      if (!this.sending) this.send();
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
      });
      await Promise.race([this.sending, late]);
      clearTimeout(timer);
    }
    // Past the deadline: the request under way is abandoned (its batch counted dropped when it fails).
    this.request?.destroy(new Error('the sidecar is stopping'));
    await this.sending;
    if (this.queue.length > 0) this.events.dropped(this.queue.length);
    this.queue = [];
    this.agent.destroy();
  }

  private schedule(): void {
    if (this.sending || this.queue.length === 0) return;
    if (this.queue.length >= this.settings.batch || this.closed) this.send();
    else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        if (!this.sending && this.queue.length > 0) this.send();
      }, this.settings.intervalMs);
      this.timer.unref();
    }
  }

  private send(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const spans = this.queue.splice(0, this.settings.batch);
    const body = exportRequest(spans.join('\n'), this.options.node);
    this.sending = this.deliver(body, spans.length).finally(() => {
      this.sending = undefined;
      if (!this.closed) this.schedule();
    });
  }

  private async deliver(body: string, count: number): Promise<void> {
    let outcome = await this.post(body);
    if (outcome.result === 'retry' && !this.closed) outcome = await this.post(body);
    if (outcome.result === 'ok') this.events.written(count);
    else this.events.dropped(count, outcome.error);
  }

  private post(body: string): Promise<{ result: Attempt; error?: Error }> {
    const client = this.url.protocol === 'https:' ? https : http;
    return new Promise((resolve) => {
      const request = client.request(this.url, {
        method: 'POST',
        agent: this.agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      });
      this.request = request;
      const timer = setTimeout(
        () => request.destroy(new Error(`no answer within ${this.settings.timeoutMs} ms`)),
        this.settings.timeoutMs,
      );
      let settled = false;
      const settle = (result: Attempt, error?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (this.request === request) this.request = undefined;
        resolve({ result, ...(error ? { error } : {}) });
      };
      request.on('response', (response) => {
        response.resume();
        const status = response.statusCode ?? 0;
        const error = new Error(`the collector answered ${status} ${response.statusMessage ?? ''}`.trim());
        response.on('end', () => {
          if (status >= 200 && status < 300) settle('ok');
          else settle(status >= 500 ? 'retry' : 'fail', error);
        });
        response.on('error', (e) => settle('retry', e));
      });
      request.on('error', (e) => settle('retry', e));
      request.end(body);
    });
  }
}
