// The ids of the span a sidecar writes for a call, derived from the trace context the call carries (W3C traceparent
// or SOFA's sofaTraceId/sofaRpcId). Derived, not random: the consumer's and the provider's sidecars see the same
// unchanged headers, so each computes the other's span id and the two spans join one trace without the sidecar ever
// rewriting a frame. packages/engine/native/trace_context.cc computes the same ids (the differential test holds it).

/** What a request carries (as @meshport/protocol's readTraceContext reads it). */
export interface CarriedTraceContext {
  traceparent?: string;
  sofaTraceId?: string;
  sofaRpcId?: string;
}

/** Lowercase hex: traceId 32 digits, spanId and parentSpanId 16; no parentSpanId for a root span. */
export interface SpanIds {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  /** False when a traceparent's flags say "not sampled": such a call never gets a span. */
  sampledFlag: boolean;
}

/** Which sidecar writes the span: the consumer's (outbound, CLIENT) or the provider's (inbound, SERVER). */
export type SpanSide = 'outbound' | 'inbound';

const TWO_32 = 4294967296;

/**
 * FNV-1a 64 over the UTF-8 bytes of `s`, as 16 lowercase hex digits; a hash of 0 becomes 1 (an all-zero id is
 * invalid in W3C and OTLP). Two 32-bit halves in doubles: the prime is 2^40 + 0x1b3, so h * prime is h * 0x1b3
 * plus the low word moved up by 40 bits, and no partial product exceeds 2^53.
 */
export function fnv1a64(s: string): string {
  const bytes = Buffer.from(s, 'utf8');
  let hi = 0xcbf29ce4;
  let lo = 0x84222325;
  for (let i = 0; i < bytes.length; i++) {
    lo = (lo ^ bytes[i]) >>> 0;
    const low = lo * 0x1b3;
    const carry = Math.floor(low / TWO_32);
    hi = (hi * 0x1b3 + carry + ((lo * 256) % TWO_32)) % TWO_32;
    lo = low % TWO_32;
  }
  if (hi === 0 && lo === 0) lo = 1;
  return hex8(hi) + hex8(lo);
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

// version-traceid-parentid-flags; a version other than 00 may carry more fields after a '-'.
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);
const SHORT_HEX = /^[0-9a-fA-F]{1,32}$/;

/** The W3C parts of a traceparent, or undefined when it is not one (bad form, version ff, an all-zero id). */
function parseTraceparent(value: string): { traceId: string; parent: string; sampled: boolean } | undefined {
  const m = TRACEPARENT.exec(value);
  if (m === null) return undefined;
  const [, version, traceId, parent, flags, rest] = m;
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (traceId === ZERO_TRACE || parent === ZERO_SPAN) return undefined;
  return { traceId, parent, sampled: (Number.parseInt(flags, 16) & 1) === 1 };
}

/**
 * The trace id a SOFA sofaTraceId stands for: itself when it is 1 to 32 hex digits (left-padded with zeros,
 * lowercased), else two FNV hashes of it. An all-zero id is hashed too (W3C and OTLP reject a zero trace id).
 */
function sofaTraceIdToW3c(sofaTraceId: string): string {
  if (SHORT_HEX.test(sofaTraceId)) {
    const id = sofaTraceId.toLowerCase().padStart(32, '0');
    if (id !== ZERO_TRACE) return id;
  }
  return fnv1a64(sofaTraceId) + fnv1a64(`meshport/${sofaTraceId}`);
}

/**
 * The span ids for a call on `side`, or undefined when `ctx` holds no usable context (the caller then starts a root
 * span with random ids). A valid traceparent wins over SOFA ids; an invalid one is ignored.
 */
export function deriveSpanIds(ctx: CarriedTraceContext, side: SpanSide): SpanIds | undefined {
  let traceId: string;
  let parent: string;
  let sampledFlag = true;
  const w3c = ctx.traceparent ? parseTraceparent(ctx.traceparent) : undefined;
  if (w3c !== undefined) {
    traceId = w3c.traceId;
    parent = w3c.parent;
    sampledFlag = w3c.sampled;
  } else if (ctx.sofaTraceId) {
    traceId = sofaTraceIdToW3c(ctx.sofaTraceId);
    parent = fnv1a64(`${traceId}/${ctx.sofaRpcId || '0'}`);
  } else {
    return undefined;
  }
  const consumerSpan = fnv1a64(`${traceId}/${parent}/out`);
  return side === 'outbound'
    ? { traceId, spanId: consumerSpan, parentSpanId: parent, sampledFlag }
    : { traceId, spanId: fnv1a64(`${traceId}/${parent}/in`), parentSpanId: consumerSpan, sampledFlag };
}

/**
 * Whether a trace is sampled at one in `everyN`: its id's low 64 bits, unsigned, are a multiple of everyN. Both
 * sidecars of a call decide alike. everyN below 1 samples nothing.
 */
export function sampled(traceId: string, everyN: number): boolean {
  if (!(everyN >= 1)) return false;
  if (everyN === 1) return true;
  if (!/^[0-9a-f]{1,32}$/.test(traceId)) return false;
  const low = BigInt(`0x${traceId.slice(-16) || '0'}`);
  return low % BigInt(Math.floor(everyN)) === 0n;
}
