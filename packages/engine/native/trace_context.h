// What the engine reads of a request beyond its route key, for metrics, access logs and spans only (routing never
// depends on it): the method a SofaRequest body names when the header does not, and the trace context a caller
// sent. Mirrors @meshport/protocol's boltBodyMethod and readTraceContext (the reference); bounded reads of the frame
// [p, p+len) as decodeHeader measured it, never an error: anything unexpected is "not there".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "codec.h"

namespace meshport {

// A Bolt request without a `sofa_head_method_name` header whose class is SofaRequest: the `methodName` field of the
// body's first object. False when there is none (or the body is not as expected). `out` is cleared first.
bool boltBodyMethod(const uint8_t* p, size_t len, const FrameHeader& h, std::string& out);

// The trace context a request carries (W3C traceparent, SOFA's rpc_trace_context keys), from the Bolt header map,
// the SofaRequest body's requestProps, or the Dubbo attachments. Copies: the strings outlive the frame.
struct TraceContext {
  std::string traceparent;
  std::string sofaTraceId;
  std::string sofaRpcId;
  bool any() const { return !traceparent.empty() || !sofaTraceId.empty(); }
};
bool readTraceContext(const uint8_t* p, size_t len, const FrameHeader& h, TraceContext& out);

// The ids of the span a sidecar writes for a call (the derivation of packages/router/src/trace-ids.ts): lowercase hex,
// traceId 32 digits, spanId/parentSpanId 16 ("" parent: a root span). `sampledFlag` false when a traceparent says
// "not sampled". False when `ctx` holds nothing usable (then the caller starts a root span of its own).
struct SpanIds {
  std::string traceId;
  std::string spanId;
  std::string parentSpanId;
  bool sampledFlag = true;
};
enum class SpanSide : uint8_t { Outbound, Inbound };
bool deriveSpanIds(const TraceContext& ctx, SpanSide side, SpanIds& out);

// FNV-1a 64 over the bytes of `s`, 0 mapped to 1 (the derivation's hash).
uint64_t fnv1a64(std::string_view s);

// Whether a trace is sampled at one in `everyN` (trace-ids.ts sampled): the low 64 bits of the hex traceId,
// unsigned, are a multiple of everyN. everyN 0 samples nothing; a traceId that is not 1..32 lowercase hex digits
// is never sampled.
bool traceSampled(std::string_view traceId, uint64_t everyN);

// Limits of the reads (trace-context.ts): the longest trace value kept (printable ASCII only), the longest body
// method read (UTF-16 units), the most class definitions a SofaRequest body may declare.
inline constexpr size_t kMaxTraceValue = 256;
inline constexpr size_t kMaxBodyMethod = 1024;
inline constexpr size_t kMaxBodyClasses = 256;

}  // namespace meshport
