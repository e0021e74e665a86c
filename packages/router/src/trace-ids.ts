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

/**
 * FNV-1a 64 over the UTF-8 bytes of `s`, as 16 lowercase hex digits; a hash of 0 becomes 1 (an all-zero id is
 * invalid in W3C and OTLP).
 */
export function fnv1a64(s: string): string {
  return fnvHex(s);
}

/**
 * FNV-1a 64 of the concatenated UTF-8 bytes of `parts`, in four 16-bit limbs of int32 arithmetic (no BigInt, no
 * Buffer for ASCII). The prime is 2^40 + 0x1b3: h * prime is each limb times 0x1b3 plus the two low limbs moved up
 * 40 bits, carries propagated; no intermediate exceeds 2^26.
 */
function fnvHex(...parts: string[]): string {
  let h0 = 0x2325;
  let h1 = 0x8422;
  let h2 = 0x9ce4;
  let h3 = 0xcbf2;
  const step = (b: number) => {
    h0 ^= b;
    const r0 = h0 * 0x1b3;
    const r1 = h1 * 0x1b3 + (r0 >>> 16);
    const r2 = h2 * 0x1b3 + (h0 << 8) + (r1 >>> 16);
    const r3 = h3 * 0x1b3 + (h1 << 8) + (r2 >>> 16);
    h0 = r0 & 0xffff;
    h1 = r1 & 0xffff;
    h2 = r2 & 0xffff;
    h3 = r3 & 0xffff;
  };
  for (const s of parts) {
    let ascii = true;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) for (let i = 0; i < s.length; i++) step(s.charCodeAt(i));
    else for (const b of Buffer.from(s, 'utf8')) step(b);
  }
  if ((h0 | h1 | h2 | h3) === 0) h0 = 1;
  return hex8((h3 << 16) | h2) + hex8((h1 << 16) | h0);
}

function hex8(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0');
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
  return fnvHex(sofaTraceId) + fnvHex('meshport/', sofaTraceId);
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
    parent = fnvHex(traceId, '/', ctx.sofaRpcId || '0');
  } else {
    return undefined;
  }
  const consumerSpan = fnvHex(traceId, '/', parent, '/out');
  return side === 'outbound'
    ? { traceId, spanId: consumerSpan, parentSpanId: parent, sampledFlag }
    : { traceId, spanId: fnvHex(traceId, '/', parent, '/in'), parentSpanId: consumerSpan, sampledFlag };
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
