// Access log lines and spans of the calls the engine carries (packages/router/src/telemetry.ts is the contract, and
// packages/router/src/call-log.ts the TypeScript engine's lines, which these match byte for byte). The loop decides
// which calls get a line and keeps what a line needs on the call (CallRecord); the lines are formatted here into
// per-kind batches that JavaScript receives whole.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "codec.h"
#include "trace_context.h"

namespace meshport {

// The sampling in force (RouterTelemetry): immutable once handed to the loop, replaced whole by setTelemetry.
struct TelemetrySettings {
  bool accessLog = false;
  uint64_t logEveryN = 100;  // at least 1
  bool logErrors = true;
  double slowMs = 1000;  // 0: no slow rule
  bool tracing = false;
  double traceEveryN = 1;  // below 1: no trace is sampled
  bool any() const { return accessLog || tracing; }
};

// The outcome names of meshport_responses_total, by Failure, and [kFailures] = "ok".
extern const char* const kOutcomeNames[kFailures + 1];

// A request up to this long is copied as it arrives when only the access log is on: most calls then get no line, and
// the trace context is read from the copy for those that do (Loop::startRecord).
inline constexpr size_t kKeptFrameBytes = 2048;

// What a call's line and span need beyond what the loop keeps anyway, taken as the request arrives (the frame itself
// is forwarded in place). Reused with the Call: its strings keep their capacity.
struct CallRecord {
  bool on = false;        // telemetry was on when the call arrived
  bool traced = false;    // ids are known: carried context, or a root trace started here (tracing on)
  bool contextRead = false;  // else `frame` holds the request, for its context should a line be written
  uint32_t bytesIn = 0;
  std::string method;    // as the call named it (the metrics may count it as `other`)
  std::string endpoint;  // host:port of the last attempt; empty: it never left
  TraceContext context;
  SpanIds ids;
  std::vector<uint8_t> frame;
  void reset() {
    on = traced = contextRead = false;
    // Records stay with pooled calls: a large request's copy is not kept with one.
    if (frame.capacity() > kKeptFrameBytes) std::vector<uint8_t>().swap(frame);
    else frame.clear();
    bytesIn = 0;
    endpoint.clear();
    context.traceparent.clear();
    context.sofaTraceId.clear();
    context.sofaRpcId.clear();
  }
};

// The rest of a line, known as the answer is written.
struct CallEnd {
  int listener = 0;  // 0 outbound, 1 inbound
  Proto proto = Proto::Bolt;
  std::string_view caller;    // ip:port
  std::string_view identity;  // "": unknown
  std::string_view service;
  std::string_view status;
  int64_t durationMicros = 0;
  uint64_t bytesOut = 0;
  int64_t endUnixMicros = 0;  // wall clock as the answer was written
};

// One access log line (ending in '\n') appended to `out`.
void appendAccessLine(std::string& out, const CallRecord& r, const CallEnd& e);
// One OTLP/JSON Span (ending in '\n') appended to `out`; r.traced must hold.
void appendSpanLine(std::string& out, const CallRecord& r, const CallEnd& e);

// Whether a trace of this id is sampled at one in `everyN` (its low 64 bits, unsigned, a multiple of everyN).
bool traceSampled(std::string_view traceId, double everyN);

// A cheap generator for the ids of root traces (seeded from getrandom): ids need to be unique, not secret.
class IdSource {
 public:
  IdSource();
  // `digits` lowercase hex digits (16 or 32) into `out`.
  void hex(std::string& out, size_t digits);

 private:
  uint64_t next();
  uint64_t state_;
};

}  // namespace meshport
