// The observability specification as the tests hold the engines to it, written on its own (not imported from the
// router, whose derivation is what is under test): the access log's field order and the span ids a carried trace
// context yields on each sidecar.

/** The keys of an access log line, in their order (docs/observability.md). */
export const ACCESS_LOG_KEYS = [
  'time',
  'direction',
  'protocol',
  'caller',
  'callerIdentity',
  'service',
  'method',
  'endpoint',
  'status',
  'durationMs',
  'bytesIn',
  'bytesOut',
  'traceId',
];

/** FNV-1a 64 over the UTF-8 bytes, 16 hex digits, 0 as 1: the specification's hash. */
export function specFnv(text: string): string {
  let hash = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(text, 'utf8')) hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return (hash === 0n ? 1n : hash).toString(16).padStart(16, '0');
}

/** The ids of a trace id and the caller's span (P): the consumer sidecar's span and the provider sidecar's. */
export function expectedSpanIds(traceId: string, callerSpan: string) {
  return {
    traceId,
    callerSpan,
    outbound: specFnv(`${traceId}/${callerSpan}/out`),
    inbound: specFnv(`${traceId}/${callerSpan}/in`),
  };
}

/** The ids both sidecars derive from `rpc_trace_context.sofaTraceId` / `sofaRpcId`. */
export function expectedSofaSpanIds(sofaTraceId: string, sofaRpcId: string) {
  const traceId = /^[0-9a-f]{1,32}$/i.test(sofaTraceId)
    ? sofaTraceId.toLowerCase().padStart(32, '0')
    : specFnv(sofaTraceId) + specFnv(`meshport/${sofaTraceId}`);
  return expectedSpanIds(traceId, specFnv(`${traceId}/${sofaRpcId}`));
}
