// libFuzzer target: one input as one frame through what the engine reads of a request for metrics, access logs and
// spans (trace_context.h): the body method, the trace context, the span ids derived from it. And the input's bytes
// as a trace context of their own, through the derivation.
//
// ASan/UBSan catch reads past the input and undefined behaviour; the checks below abort on answers that break the
// contract trace-context.ts and trace-ids.ts set (the reference; the differential test in test/codec.test.ts compares
// the two on this target's corpus when run with MESHPORT_CODEC_CORPUS). Among them: reading the trace context leaves
// the views of the frame's decoded header as they were, since the engine holds them while it reads.

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "codec.h"
#include "trace_context.h"

using namespace meshport;

namespace {

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "trace invariant broken: %s\n", what);
  std::abort();
}
#define CHECK(cond) \
  do {              \
    if (!(cond)) broken(#cond); \
  } while (0)

bool isHex(const std::string& s, size_t n) {
  if (s.size() != n) return false;
  bool nonZero = false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    nonZero |= c != '0';
  }
  return nonZero;
}

bool traceValue(const std::string& s) {
  if (s.empty() || s.size() > kMaxTraceValue) return false;
  for (unsigned char c : s)
    if (c < 0x20 || c > 0x7e) return false;
  return true;
}

// A traceparent that says "not sampled": W3C-shaped, flags bit 0 clear.
bool unsampledTraceparent(const std::string& v) {
  if (v.size() < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-') return false;
  const char f = v[54];
  const int low = f >= '0' && f <= '9' ? f - '0' : f >= 'a' && f <= 'f' ? f - 'a' + 10 : -1;
  return low >= 0 && (low & 1) == 0;
}

// The ids of both sidecars for one context: well formed, chained, the same trace.
void checkIds(const TraceContext& ctx) {
  SpanIds out, in;
  const bool o = deriveSpanIds(ctx, SpanSide::Outbound, out);
  const bool i = deriveSpanIds(ctx, SpanSide::Inbound, in);
  CHECK(o == i);
  if (!o) {
    CHECK(ctx.sofaTraceId.empty());
    CHECK(out.traceId.empty() && out.spanId.empty());
    return;
  }
  CHECK(!ctx.traceparent.empty() || !ctx.sofaTraceId.empty());
  CHECK(isHex(out.traceId, 32) && isHex(out.spanId, 16) && isHex(out.parentSpanId, 16));
  CHECK(isHex(in.spanId, 16) && isHex(in.parentSpanId, 16));
  CHECK(in.traceId == out.traceId);
  CHECK(in.parentSpanId == out.spanId);
  CHECK(in.spanId != out.spanId);
  CHECK(in.sampledFlag == out.sampledFlag);
  if (!out.sampledFlag) CHECK(unsampledTraceparent(ctx.traceparent));
  // A context without a usable traceparent and a short hex sofaTraceId: that id, padded, is the trace id.
  const std::string& id = ctx.sofaTraceId;
  bool shortHex = !id.empty() && id.size() <= 32;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) shortHex = false;
  TraceContext sofaOnly{std::string(), ctx.sofaTraceId, ctx.sofaRpcId};
  SpanIds s;
  if (shortHex && deriveSpanIds(sofaOnly, SpanSide::Outbound, s)) {
    std::string lower;
    for (char c : id) lower.push_back(c >= 'A' && c <= 'F' ? static_cast<char>(c - 'A' + 'a') : c);
    bool zero = true;
    for (char c : id) zero &= c == '0';
    if (!zero) CHECK(s.traceId.compare(32 - lower.size(), lower.size(), lower) == 0);
  }
  // Sampling: 1 takes every trace, 0 none; the decision depends on the id alone.
  CHECK(traceSampled(out.traceId, 1));
  CHECK(!traceSampled(out.traceId, 0));
  CHECK(traceSampled(out.traceId, 7) == traceSampled(in.traceId, 7));
}

struct Owned {
  bool hasService, hasMethod;
  std::string service, version, group, method;
  explicit Owned(const FrameHeader& h)
      : hasService(h.service.data() != nullptr),
        hasMethod(h.method.data() != nullptr),
        service(h.service),
        version(h.version),
        group(h.group),
        method(h.method) {}
  bool operator==(const Owned& o) const {
    return hasService == o.hasService && hasMethod == o.hasMethod && service == o.service && version == o.version &&
           group == o.group && method == o.method;
  }
};

void checkFrame(const uint8_t* data, size_t size) {
  FrameHeader h;
  CodecError err;
  if (!decodeHeader(data, size, h, err)) return;
  const Owned before(h);

  std::string method;
  const bool hasMethod = boltBodyMethod(data, size, h, method);
  if (hasMethod) {
    CHECK(h.proto == Proto::Bolt && h.method.data() == nullptr);
    CHECK(h.kind == Kind::Request || h.kind == Kind::Oneway);
    CHECK(!method.empty() && method.size() <= 3 * kMaxBodyMethod && validUtf8(method));
  } else {
    CHECK(method.empty());
  }

  TraceContext ctx;
  const bool hasContext = readTraceContext(data, size, h, ctx);
  CHECK(hasContext == ctx.any());
  if (hasContext) {
    CHECK(h.kind == Kind::Request || h.kind == Kind::Oneway);
    CHECK(ctx.traceparent.empty() || traceValue(ctx.traceparent));
    CHECK(ctx.sofaTraceId.empty() || traceValue(ctx.sofaTraceId));
    CHECK(ctx.sofaRpcId.empty() || (traceValue(ctx.sofaRpcId) && !ctx.sofaTraceId.empty()));
    checkIds(ctx);
  } else {
    CHECK(ctx.traceparent.empty() && ctx.sofaTraceId.empty() && ctx.sofaRpcId.empty());
  }
  // The header's views (some live in the codec's scratch) are untouched, and a second read answers alike.
  CHECK(Owned(h) == before);
  std::string again;
  CHECK(boltBodyMethod(data, size, h, again) == hasMethod && again == method);
  TraceContext ctx2;
  CHECK(readTraceContext(data, size, h, ctx2) == hasContext);
  CHECK(ctx2.traceparent == ctx.traceparent && ctx2.sofaTraceId == ctx.sofaTraceId && ctx2.sofaRpcId == ctx.sofaRpcId);
}

// The input as a context: three strings split at the first two zero bytes.
void checkContext(const uint8_t* data, size_t size) {
  std::string parts[3];
  size_t k = 0;
  for (size_t i = 0; i < size && i < 1024; i++) {
    if (data[i] == 0 && k < 2) {
      k++;
      continue;
    }
    parts[k].push_back(static_cast<char>(data[i]));
  }
  TraceContext ctx{parts[0], parts[1], parts[2]};
  checkIds(ctx);
  // fnv1a64 never answers 0 (an all-zero id is invalid), and hashes the bytes alone.
  CHECK(fnv1a64(parts[0]) != 0);
  CHECK(fnv1a64(parts[0]) == fnv1a64(std::string_view(parts[0])));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Its own allocation of exactly the input's size: a read past the frame is a read past the allocation.
  std::vector<uint8_t> frame(data, data + size);
  checkFrame(frame.data(), frame.size());
  checkContext(data, size);
  return 0;
}
