// Access log lines and spans on the loop thread: what a call's line needs is taken as its request arrives (only
// while telemetry is on), the sampling decides as it ends, and the lines wait in one batch per kind until 100 ms have
// passed or 256 KiB wait; sendEvents hands them to JavaScript with the other events (loop.cc).

#include <time.h>

#include <algorithm>

#include "loop.h"

namespace meshport {

namespace {

constexpr int64_t kBatchMs = 100;
// Each batch costs a wake-up of the main thread and a write by a libuv worker: at 64 KiB, tracing every call spent
// about as much on those as on the lines themselves.
constexpr size_t kBatchBytes = 256 * 1024;

int64_t clockMicros(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

}  // namespace

// A batch's first line: its clock starts, and it gets room for a whole batch (the last one went to JavaScript with
// its buffer), so it is not copied as it grows.
void Loop::startBatch(std::string& batch, int64_t& since) {
  since = now_;
  batch.reserve(kBatchBytes + 4096);
}

void Loop::setTelemetry(const TelemetrySettings& telemetry) {
  telemetry_ = telemetry;
  telemetryOn_ = telemetry.any();
  syncWallClock();
}

// Wall-clock time of a monotonic reading, to the microsecond: one clock read per tick instead of one per line.
void Loop::syncWallClock() { wallOffsetMicros_ = clockMicros(CLOCK_REALTIME) - clockMicros(CLOCK_MONOTONIC); }

void Loop::startRecord(const uint8_t* p, size_t len, const FrameHeader& h, std::string_view method) {
  if (pendingRecord_ == nullptr) pendingRecord_ = std::make_unique<CallRecord>();
  CallRecord& r = *pendingRecord_;
  r.reset();
  r.on = true;
  r.bytesIn = uint32_t(len);
  r.method.assign(method.data(), method.size());
  if (telemetry_.tracing || len > kKeptFrameBytes) {
    readTraceContext(p, len, h, r.context);
    r.contextRead = true;
  } else {
    // Access log alone: most calls get no line, so the context is read only for those that do, from a copy.
    r.frame.assign(p, p + len);
  }
}

// The trace context of a call whose frame was kept instead of read (startRecord).
void Loop::readKeptContext(CallRecord& r) {
  if (r.contextRead) return;
  r.contextRead = true;
  FrameHeader h;
  CodecError err;
  if (decodeHeader(r.frame.data(), r.frame.size(), h, err)) readTraceContext(r.frame.data(), r.frame.size(), h, r.context);
}

void Loop::endRecord(CallRecord& r, Caller* c, Proto proto, std::string_view service, std::string_view status,
                     int64_t startedMicros, int64_t durationMicros, uint64_t bytesOut) {
  if (!r.on) return;
  r.on = false;
  if (!telemetryOn_) return;
  const TelemetrySettings& t = telemetry_;
  bool line = false;
  if (t.accessLog) {
    // Every call counts toward the n-th, both directions alike (call-log.ts counts as a call ends, too).
    accessCalls_++;
    line = accessCalls_ % t.logEveryN == 0 || (t.logErrors && status != "ok") ||
           (t.slowMs > 0 && double(durationMicros) / 1000.0 >= t.slowMs);
  }
  if (!line && !t.tracing) return;
  readKeptContext(r);
  const int which = c->listener;
  r.traced = r.context.any() && deriveSpanIds(r.context, which == 0 ? SpanSide::Outbound : SpanSide::Inbound, r.ids);
  CallEnd e;
  e.listener = which;
  e.proto = proto;
  e.caller = c->address;
  e.identity = c->peer;
  e.service = service;
  e.status = status;
  e.durationMicros = durationMicros;
  e.bytesOut = bytesOut;
  e.endUnixMicros = wallOffsetMicros_ + startedMicros + durationMicros;
  if (t.tracing) {
    if (!r.traced) {
      // No context: a root span of a trace started here (never propagated: the frame is not changed).
      ids_.hex(r.ids.traceId, 32);
      ids_.hex(r.ids.spanId, 16);
      r.ids.parentSpanId.clear();
      r.ids.sampledFlag = true;
      r.traced = true;
    }
    if (r.ids.sampledFlag && traceSampled(r.ids.traceId, t.traceEveryN)) {
      if (spanBatch_.empty()) startBatch(spanBatch_, spanSince_);
      appendSpanLine(spanBatch_, r, e);
    }
  }
  if (line) {
    if (accessBatch_.empty()) startBatch(accessBatch_, accessSince_);
    appendAccessLine(accessBatch_, r, e);
  }
}

void Loop::endRecord(Call* call, Failure f, uint64_t bytesOut) {
  endRecord(*call->record, call->caller, call->who.proto, call->cluster->name, kOutcomeNames[size_t(f)], call->startedMicros,
            call->durationMicros, bytesOut);
}

void Loop::endRecordAnswered(Call* call, uint16_t status, uint64_t bytesOut) {
  if (status == 0 || status == 20) {
    endRecord(*call->record, call->caller, call->who.proto, call->cluster->name, "ok", call->startedMicros, call->durationMicros,
              bytesOut);
    return;
  }
  char text[16];
  const int n = std::snprintf(text, sizeof text, "status-%u", unsigned(status));
  endRecord(*call->record, call->caller, call->who.proto, call->cluster->name, std::string_view(text, size_t(n)),
            call->startedMicros, call->durationMicros, bytesOut);
}

bool Loop::telemetryDue(bool force) const {
  if (accessBatch_.empty() && spanBatch_.empty()) return false;
  if (force || accessBatch_.size() >= kBatchBytes || spanBatch_.size() >= kBatchBytes) return true;
  return (!accessBatch_.empty() && now_ - accessSince_ >= kBatchMs) || (!spanBatch_.empty() && now_ - spanSince_ >= kBatchMs);
}

int64_t Loop::telemetryWaitMs() const {
  int64_t due = INT64_MAX;
  if (!accessBatch_.empty()) due = std::min(due, accessSince_ + kBatchMs);
  if (!spanBatch_.empty()) due = std::min(due, spanSince_ + kBatchMs);
  return due == INT64_MAX ? INT64_MAX : std::max<int64_t>(0, due - now_);
}

}  // namespace meshport
