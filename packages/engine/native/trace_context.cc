// See trace_context.h. Until filled in, every read finds nothing.
#include "trace_context.h"

namespace meshport {

bool boltBodyMethod(const uint8_t*, size_t, const FrameHeader&, std::string& out) {
  out.clear();
  return false;
}

bool readTraceContext(const uint8_t*, size_t, const FrameHeader&, TraceContext& out) {
  out = TraceContext{};
  return false;
}

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h == 0 ? 1 : h;
}

bool deriveSpanIds(const TraceContext&, SpanSide, SpanIds&) { return false; }

}  // namespace meshport
