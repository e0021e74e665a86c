// See trace_context.h. A port of @meshport/protocol's trace-context.ts and @meshport/router's trace-ids.ts, check
// for check: the differential test (test/codec.test.ts) and the fuzz target fuzz/fuzz_trace.cc hold the two to the
// same answers. Nothing here touches the codec's scratch, so a caller's FrameHeader views stay valid; nothing
// allocates but the output strings.
#include "trace_context.h"

#include <cstring>
#include <initializer_list>

namespace meshport {

namespace {

constexpr int kMaxDepth = 64;
const char kSofaClass[] = "com.alipay.sofa.rpc.core.request.SofaRequest";
const char kHexDigits[] = "0123456789abcdef";

inline uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline int32_t s32(const uint8_t* p) {
  const uint32_t u = (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
                     (static_cast<uint32_t>(p[2]) << 8) | p[3];
  int32_t v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

template <size_t N>
bool bytesEqual(const uint8_t* p, int64_t len, const char (&key)[N]) {
  return len == static_cast<int64_t>(N - 1) && std::memcmp(p, key, N - 1) == 0;
}

bool isRequest(const FrameHeader& h) { return h.kind == Kind::Request || h.kind == Kind::Oneway; }

struct BoltRanges {
  size_t classStart, classLen, headerStart, headerEnd;
};
// Where a decoded Bolt request's class name and header map lie.
BoltRanges boltRanges(const uint8_t* p) {
  const size_t fixed = p[0] == 0x02 ? 24 : 22;
  const size_t classLen = be16(p + fixed - 8) & 0x7fff;
  const size_t headerStart = fixed + classLen;
  return BoltRanges{fixed, classLen, headerStart, headerStart + (be16(p + fixed - 6) & 0x7fff)};
}

bool isSofaHessian(const uint8_t* p, const FrameHeader& h) {
  if (h.proto != Proto::Bolt || h.codec != 1) return false;
  const BoltRanges r = boltRanges(p);
  return bytesEqual(p + r.classStart, static_cast<int64_t>(r.classLen), kSofaClass);
}

// Bytes as a trace value: 1..kMaxTraceValue of printable ASCII (space to tilde).
bool asciiValue(const uint8_t* s, size_t n, std::string& out) {
  out.clear();
  if (n == 0 || n > kMaxTraceValue) return false;
  for (size_t i = 0; i < n; i++)
    if (s[i] < 0x20 || s[i] > 0x7e) return false;
  out.assign(reinterpret_cast<const char*>(s), n);
  return true;
}

// One UTF-16 unit of CESU-8 at q (a sequence skipUnits accepted), as hessian.ts decodeCesu8 reads it: continuation
// bits masked, a 4-byte sequence as the two units JavaScript's arithmetic makes of it.
size_t cesu8Unit(const uint8_t* q, uint32_t units[2]) {
  const uint32_t b = q[0];
  if (b < 0x80) {
    units[0] = b;
    return 1;
  }
  if (b < 0xe0) {
    units[0] = ((b & 0x1f) << 6) | (q[1] & 0x3f);
    return 1;
  }
  if (b < 0xf0) {
    units[0] = ((b & 0x0f) << 12) | ((q[1] & 0x3fu) << 6) | (q[2] & 0x3f);
    return 1;
  }
  const uint32_t cp = ((b & 0x07) << 18) | ((q[1] & 0x3fu) << 12) | ((q[2] & 0x3fu) << 6) | (q[3] & 0x3f);
  units[0] = (0xd800 + (cp >> 10) - 64) & 0xffff;  // (cp - 0x10000) >> 10 without shifting a negative
  units[1] = (0xdc00 + (cp & 0x3ff)) & 0xffff;
  return 2;
}
inline size_t cesu8Length(uint8_t b) { return b < 0x80 ? 1 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4; }

// UTF-16 units to UTF-8 as Buffer.from(string) writes them: a pair combined, a lone surrogate as U+FFFD.
struct Utf8Writer {
  std::string& out;
  uint32_t pendingHigh = 0;
  void unit(uint32_t u) {
    if (pendingHigh != 0) {
      const uint32_t high = pendingHigh;
      pendingHigh = 0;
      if (u >= 0xdc00 && u <= 0xdfff) {
        appendCodePoint(out, 0x10000 + ((high - 0xd800) << 10) + (u - 0xdc00));
        return;
      }
      appendCodePoint(out, 0xfffd);
    }
    if (u >= 0xd800 && u <= 0xdbff) pendingHigh = u;
    else appendCodePoint(out, u >= 0xdc00 && u <= 0xdfff ? 0xfffd : u);
  }
  void finish() {
    if (pendingHigh != 0) appendCodePoint(out, 0xfffd);
    pendingHigh = 0;
  }
};

// ---------------------------------------------------------------------------------------------------------------
// The SofaRequest body in the Hessian 3.1.3 draft grammar (trace-context.ts SofaBodyReader, which lists it).

struct DraftFixed {
  uint8_t t[256] = {};
  DraftFixed() {
    auto set = [this](int from, int to, uint8_t size) {
      for (int c = from; c <= to; c++) t[c] = size;
    };
    set(0x80, 0xbf, 1);
    set(0xc0, 0xcf, 2);
    set(0xd0, 0xd7, 3);
    set(0x49, 0x49, 5);
    set(0xd8, 0xef, 1);
    set(0xf0, 0xff, 2);
    set(0x38, 0x3f, 3);
    set(0x77, 0x77, 5);
    set(0x4c, 0x4c, 9);
    set(0x44, 0x44, 9);
    set(0x67, 0x68, 1);
    set(0x69, 0x69, 2);
    set(0x6a, 0x6a, 3);
    set(0x6b, 0x6b, 5);
    set(0x64, 0x64, 9);
    set(0x52, 0x52, 5);
    set(0x4a, 0x4a, 2);
    set(0x4b, 0x4b, 3);
    set(0x4e, 0x4e, 1);
    set(0x46, 0x46, 1);
    set(0x54, 0x54, 1);
    for (int c = 0x20; c <= 0x2f; c++) t[c] = static_cast<uint8_t>(1 + c - 0x20);
  }
};
const DraftFixed kDraftFixed;

class SofaBodyReader {
 public:
  // Results of read(): the method (a `method` read), or the trace values of requestProps (a `trace` read).
  bool hasMethod = false;
  bool hasTraceparent = false, hasTraceId = false, hasRpcId = false;

  SofaBodyReader(const uint8_t* buf, size_t end, std::string* method, TraceContext* trace)
      : buf_(buf), end_(static_cast<int64_t>(end)), method_(method), trace_(trace) {}

  bool read(size_t start) {
    int64_t p = static_cast<int64_t>(start);
    if (p >= end_ || buf_[p] != 0x4f) return false;
    p = classDefinition(p, true);
    if (p < 0 || p >= end_ || buf_[p] != 0x6f) return false;
    p = readInt(p + 1);
    if (p < 0 || int_ != 0) return false;
    const int32_t fields = classFields_[0];
    for (int32_t i = 0; i < fields && p >= 0; i++) {
      if (i == methodField_ && trace_ == nullptr) {
        p = readMethod(p);
        return p >= 0 && hasMethod;
      }
      if (i == propsField_ && trace_ != nullptr) {
        p = readProps(p);
        if (p < 0) return false;
        if (!hasTraceId) {
          hasTraceId = hasNestedTraceId_;
          trace_->sofaTraceId.swap(nestedTraceId_);
          hasRpcId = hasNestedRpcId_;
          trace_->sofaRpcId.swap(nestedRpcId_);
        }
        return true;
      }
      p = skipValue(p, 1);
    }
    return false;
  }

 private:
  const uint8_t* buf_;
  int64_t end_;
  std::string* method_;
  TraceContext* trace_;
  int64_t int_ = 0;
  size_t classCount_ = 0;
  int32_t classFields_[kMaxBodyClasses];  // only [0, classCount_) is read: no need to clear 1 KiB per call
  int32_t methodField_ = -1, propsField_ = -1;
  bool hasNestedTraceId_ = false, hasNestedRpcId_ = false;
  std::string nestedTraceId_, nestedRpcId_;

  int64_t classDefinition(int64_t p, bool first) {
    p = readInt(p + 1);
    if (p < 0) return p;
    const int64_t nameLen = int_;
    if (nameLen < 0) return -1;
    const int64_t nameStart = p;
    constexpr int64_t kSofaClassLen = sizeof kSofaClass - 1;
    if (first && nameLen == kSofaClassLen && kSofaClassLen <= end_ - p && std::memcmp(buf_ + p, kSofaClass, kSofaClassLen) == 0) {
      p += kSofaClassLen;  // the expected name, ASCII: as many bytes as units
    } else {
      p = skipUnits(p, nameLen);
      if (p < 0) return p;
      if (first && !bytesEqual(buf_ + nameStart, p - nameStart, kSofaClass)) return -1;
    }
    p = readInt(p);
    if (p < 0) return p;
    const int64_t fields = int_;
    if (fields < 0 || classCount_ >= kMaxBodyClasses) return -1;
    for (int64_t i = 0; i < fields && p >= 0; i++) {
      if (first && p < end_ && buf_[p] < 0x20) {
        const int64_t n = buf_[p];
        if (p + 1 + n <= end_) {
          if (bytesEqual(buf_ + p + 1, n, "methodName") && methodField_ < 0) methodField_ = static_cast<int32_t>(i);
          else if (bytesEqual(buf_ + p + 1, n, "requestProps") && propsField_ < 0) propsField_ = static_cast<int32_t>(i);
        }
      }
      p = skipString(p);
    }
    if (p < 0) return p;
    classFields_[classCount_++] = static_cast<int32_t>(fields);
    return p;
  }

  static bool isStringStart(uint8_t c) { return c < 0x20 || c == 0x53 || c == 0x73; }

  int64_t readMethod(int64_t p) {
    if (p >= end_) return -1;
    if (!isStringStart(buf_[p])) return -1;
    const int64_t after = skipString(p);
    if (after < 0) return after;
    hasMethod = methodString(p, after);
    return after;
  }

  // The chunks of the walked string [p, after): calls each(chunk chars start, stop, units) ; false past maxUnits.
  template <typename F>
  bool chunks(int64_t p, int64_t after, size_t maxUnits, F each) const {
    size_t units = 0;
    for (;;) {
      const uint8_t c = buf_[p];
      const size_t n = c < 0x20 ? c : be16(buf_ + p + 1);
      const int64_t start = c < 0x20 ? p + 1 : p + 3;
      units += n;
      if (units > maxUnits) return false;
      const int64_t stop = unitsEnd(start, n);
      if (!each(start, stop)) return false;
      if (c != 0x73 || stop >= after) return true;
      p = stop;
    }
  }

  // Where `units` units from p end (the range was walked by skipUnits).
  int64_t unitsEnd(int64_t p, size_t units) const {
    for (size_t n = 0; n < units; n++) {
      const uint8_t b = buf_[p];
      if (b >= 0xf0) n++;
      p += static_cast<int64_t>(cesu8Length(b));
    }
    return p;
  }

  // The method as UTF-8 (Buffer.from of the reference's string) into *method_; false when empty or too long.
  bool methodString(int64_t p, int64_t after) {
    std::string& out = *method_;
    out.clear();
    // One final chunk whose bytes are as many as its units: ASCII, the bytes are the string.
    const uint8_t c = buf_[p];
    if (c != 0x73) {
      const int64_t start = c < 0x20 ? p + 1 : p + 3;
      const int64_t units = c < 0x20 ? c : be16(buf_ + p + 1);
      if (after - start == units) {
        if (units == 0 || units > static_cast<int64_t>(kMaxBodyMethod)) return false;
        out.assign(reinterpret_cast<const char*>(buf_ + start), static_cast<size_t>(units));
        return true;
      }
    }
    Utf8Writer w{out};
    const bool ok = chunks(p, after, kMaxBodyMethod, [&](int64_t q, int64_t stop) {
      uint32_t units[2];
      while (q < stop) {
        const size_t k = cesu8Unit(buf_ + q, units);
        for (size_t i = 0; i < k; i++) w.unit(units[i]);
        q += static_cast<int64_t>(cesu8Length(buf_[q]));
      }
      return true;
    });
    w.finish();
    if (!ok || out.empty()) {
      out.clear();
      return false;
    }
    return true;
  }

  // The value [p, after) as a trace value (a string of printable ASCII, 1..kMaxTraceValue units) into out.
  bool traceString(int64_t p, int64_t after, std::string& out) const {
    out.clear();
    if (!isStringStart(buf_[p])) return false;
    const bool ok = chunks(p, after, kMaxTraceValue, [&](int64_t q, int64_t stop) {
      uint32_t units[2];
      while (q < stop) {
        if (cesu8Unit(buf_ + q, units) != 1 || units[0] < 0x20 || units[0] > 0x7e) return false;
        out.push_back(static_cast<char>(units[0]));
        q += static_cast<int64_t>(cesu8Length(buf_[q]));
      }
      return true;
    });
    if (!ok || out.empty()) {
      out.clear();
      return false;
    }
    return true;
  }

  // A short string key at p: its length, or -1.
  int64_t shortKey(int64_t p) const {
    const int64_t k = buf_[p];
    return k < 0x20 && p + 1 + k <= end_ ? k : -1;
  }

  int64_t readProps(int64_t p) {
    if (p >= end_) return -1;
    const uint8_t c = buf_[p];
    if (c != 0x4d && c != 0x48) return skipValue(p, 1);
    p = c == 0x4d ? skipType(p + 1) : p + 1;
    for (;;) {
      if (p < 0) return p;
      if (p >= end_) return -1;
      if (buf_[p] == 0x7a) return p + 1;
      const int64_t keyLen = shortKey(p);
      const uint8_t* key = buf_ + p + 1;
      p = skipValue(p, 2);
      if (p < 0) return p;
      if (keyLen > 0 && bytesEqual(key, keyLen, "rpc_trace_context") && p < end_ && (buf_[p] == 0x4d || buf_[p] == 0x48)) {
        p = readNested(p);
        continue;
      }
      int slot = 0;
      if (keyLen > 0) {
        if (bytesEqual(key, keyLen, "traceparent")) slot = 1;
        else if (bytesEqual(key, keyLen, "rpc_trace_context.sofaTraceId")) slot = 2;
        else if (bytesEqual(key, keyLen, "rpc_trace_context.sofaRpcId")) slot = 3;
      }
      const int64_t valueAt = p;
      p = skipValue(p, 2);
      if (p < 0 || slot == 0) continue;
      if (slot == 1) hasTraceparent = traceString(valueAt, p, trace_->traceparent);
      else if (slot == 2) hasTraceId = traceString(valueAt, p, trace_->sofaTraceId);
      else hasRpcId = traceString(valueAt, p, trace_->sofaRpcId);
    }
  }

  int64_t readNested(int64_t p) {
    p = buf_[p] == 0x4d ? skipType(p + 1) : p + 1;
    for (;;) {
      if (p < 0) return p;
      if (p >= end_) return -1;
      if (buf_[p] == 0x7a) return p + 1;
      const int64_t keyLen = shortKey(p);
      const uint8_t* key = buf_ + p + 1;
      p = skipValue(p, 3);
      if (p < 0) return p;
      int slot = 0;
      if (keyLen > 0) {
        if (bytesEqual(key, keyLen, "sofaTraceId")) slot = 1;
        else if (bytesEqual(key, keyLen, "sofaRpcId")) slot = 2;
      }
      const int64_t valueAt = p;
      p = skipValue(p, 3);
      if (p < 0 || slot == 0) continue;
      if (slot == 1) hasNestedTraceId_ = traceString(valueAt, p, nestedTraceId_);
      else hasNestedRpcId_ = traceString(valueAt, p, nestedRpcId_);
    }
  }

  int64_t skipValue(int64_t p, int depth) {
    for (;;) {
      if (p >= end_) return -1;
      const uint8_t c = buf_[p];
      const uint8_t size = kDraftFixed.t[c];
      if (size != 0) return p + size <= end_ ? p + size : -1;
      if (isStringStart(c)) return skipString(p);
      switch (c) {
        case 0x42:
        case 0x62:
          return skipBinary(p);
        case 0x4f:
          p = classDefinition(p, false);
          if (p < 0) return p;
          continue;
        case 0x6f: {
          const int64_t q = readInt(p + 1);
          if (q < 0) return q;
          const int64_t ref = int_;
          if (ref < 0 || ref >= static_cast<int64_t>(classCount_) || depth >= kMaxDepth) return -1;
          return skipItems(q, classFields_[ref], depth);
        }
        case 0x56: {
          if (depth >= kMaxDepth) return -1;
          int64_t q = skipType(p + 1);
          if (q < 0 || q >= end_) return -1;
          int64_t length = -1;
          if (buf_[q] == 0x6e) {
            if (q + 1 >= end_) return -1;
            length = buf_[q + 1];
            q += 2;
          } else if (buf_[q] == 0x6c) {
            if (q + 4 >= end_) return -1;
            length = s32(buf_ + q + 1);
            if (length < 0) return -1;
            q += 5;
          }
          if (length >= 0) {
            q = skipItems(q, length, depth);
            return q >= 0 && q < end_ && buf_[q] == 0x7a ? q + 1 : -1;
          }
          return skipUntilEnd(q, depth, 1);
        }
        case 0x76: {
          if (depth >= kMaxDepth) return -1;
          int64_t q = readInt(p + 1);
          if (q < 0) return q;
          q = readInt(q);
          if (q < 0 || int_ < 0) return -1;
          return skipItems(q, int_, depth);
        }
        case 0x4d: {
          if (depth >= kMaxDepth) return -1;
          const int64_t q = skipType(p + 1);
          return q < 0 ? q : skipUntilEnd(q, depth, 2);
        }
        case 0x48:
          if (depth >= kMaxDepth) return -1;
          return skipUntilEnd(p + 1, depth, 2);
        default:
          return -1;
      }
    }
  }

  int64_t skipItems(int64_t p, int64_t count, int depth) {
    for (int64_t i = 0; i < count && p >= 0; i++) p = skipValue(p, depth + 1);
    return p;
  }

  int64_t skipUntilEnd(int64_t p, int depth, int per) {
    for (;;) {
      if (p < 0) return p;
      if (p >= end_) return -1;
      if (buf_[p] == 0x7a) return p + 1;
      p = skipValue(p, depth + 1);
      if (per == 2 && p >= 0) p = skipValue(p, depth + 1);
    }
  }

  int64_t skipType(int64_t p) {
    if (p >= end_) return -1;
    const uint8_t c = buf_[p];
    if (c == 0x74) {
      if (p + 2 >= end_) return -1;
      const int64_t q = p + 3 + be16(buf_ + p + 1);
      return q <= end_ ? q : -1;
    }
    if (c == 0x54 || c == 0x75) return readInt(p + 1);
    return p;
  }

  int64_t skipBinary(int64_t p) {
    for (;;) {
      if (p >= end_) return -1;
      const uint8_t c = buf_[p];
      int64_t next;
      if (c == 0x42 || c == 0x62) {
        if (p + 2 >= end_) return -1;
        next = p + 3 + be16(buf_ + p + 1);
      } else if (c >= 0x20 && c <= 0x2f) {
        next = p + 1 + c - 0x20;
      } else {
        return -1;
      }
      if (next > end_) return -1;
      if (c != 0x62) return next;
      p = next;
    }
  }

  int64_t skipString(int64_t p) {
    for (;;) {
      if (p >= end_) return -1;
      const uint8_t c = buf_[p];
      int64_t units, start;
      if (c < 0x20) {
        units = c;
        start = p + 1;
      } else if (c == 0x53 || c == 0x73) {
        if (p + 2 >= end_) return -1;
        units = be16(buf_ + p + 1);
        start = p + 3;
      } else {
        return -1;
      }
      p = skipUnits(start, units);
      if (p < 0 || c != 0x73) return p;
    }
  }

  int64_t skipUnits(int64_t p, int64_t units) const {
    // The common case, ASCII (class and field names, methods, ids), eight bytes per test; else character by character.
    if (units <= end_ - p) {
      int64_t q = p;
      const int64_t stop = p + units;
      uint64_t high = 0;
      for (; q + 8 <= stop; q += 8) {
        uint64_t w;
        std::memcpy(&w, buf_ + q, 8);
        high |= w;
      }
      for (; q < stop; q++) high |= buf_[q];
      if ((high & 0x8080808080808080ULL) == 0) return stop;
    }
    for (int64_t n = 0; n < units; n++) {
      if (p >= end_) return -1;
      const uint8_t b = buf_[p];
      if (b < 0x80) p += 1;
      else if (b >= 0xc0 && b < 0xe0) p += 2;
      else if (b >= 0xe0 && b < 0xf0) p += 3;
      else if (b >= 0xf0 && b < 0xf8) {
        p += 4;
        n++;
      } else {
        return -1;
      }
    }
    return p <= end_ ? p : -1;
  }

  // Multiplications, not shifts: the high part of the compact forms is negative.
  int64_t readInt(int64_t p) {
    if (p >= end_) return -1;
    const uint8_t c = buf_[p];
    if (c >= 0x80 && c <= 0xbf) {
      int_ = c - 0x90;
      return p + 1;
    }
    if (c >= 0xc0 && c <= 0xcf) {
      if (p + 1 >= end_) return -1;
      int_ = (c - 0xc8) * 256 + buf_[p + 1];
      return p + 2;
    }
    if (c >= 0xd0 && c <= 0xd7) {
      if (p + 2 >= end_) return -1;
      int_ = (c - 0xd4) * 65536 + buf_[p + 1] * 256 + buf_[p + 2];
      return p + 3;
    }
    if (c == 0x49) {
      if (p + 4 >= end_) return -1;
      int_ = s32(buf_ + p + 1);
      return p + 5;
    }
    return -1;
  }
};

// The body's [start, end) of a decoded Bolt request.
void bodyRange(const uint8_t* p, size_t& start, size_t& end) {
  const BoltRanges r = boltRanges(p);
  const size_t fixed = r.classStart;
  start = r.headerEnd;
  end = start + static_cast<size_t>(s32(p + fixed - 4));
}

// A hessian 2.0 string [p, after) of a Dubbo attachment (walked by the scanner) as a trace value: chunks short,
// medium, 'R' and 'S'; every unit printable ASCII; 1..kMaxTraceValue units (trace-context.ts traceValue of
// HessianStringReader.readString).
bool h2TraceString(const uint8_t* f, size_t p, size_t after, std::string& out) {
  out.clear();
  size_t units = 0;
  while (p < after) {
    const uint8_t c = f[p];
    size_t n, start;
    bool final = true;
    if (c < 0x20) {
      n = c;
      start = p + 1;
    } else if (c >= 0x30 && c <= 0x33) {
      n = (static_cast<size_t>(c - 0x30) << 8) | f[p + 1];
      start = p + 2;
    } else {
      n = be16(f + p + 1);
      start = p + 3;
      final = c == 0x53;
    }
    units += n;
    if (units > kMaxTraceValue) return false;
    size_t q = start;
    for (size_t k = 0; k < n; k++) {
      uint32_t u[2];
      if (cesu8Unit(f + q, u) != 1 || u[0] < 0x20 || u[0] > 0x7e) {
        out.clear();
        return false;
      }
      out.push_back(static_cast<char>(u[0]));
      q += cesu8Length(f[q]);
    }
    if (final) break;
    p = q;
  }
  if (out.empty()) return false;
  return true;
}

bool traceparentValid(std::string_view v, std::string_view& traceId, std::string_view& parent, bool& sampled);

}  // namespace

bool boltBodyMethod(const uint8_t* p, size_t len, const FrameHeader& h, std::string& out) {
  out.clear();
  if (len == 0 || h.proto != Proto::Bolt || !isRequest(h) || h.method.data() != nullptr || !isSofaHessian(p, h)) return false;
  size_t start, end;
  bodyRange(p, start, end);
  if (end > len) return false;
  SofaBodyReader reader(p, end, &out, nullptr);
  if (!reader.read(start)) {
    out.clear();
    return false;
  }
  return true;
}

bool readTraceContext(const uint8_t* p, size_t len, const FrameHeader& h, TraceContext& out) {
  out = TraceContext{};
  if (len == 0 || !isRequest(h)) return false;
  bool hasTraceparent = false, hasTraceId = false, hasRpcId = false;
  if (h.proto == Proto::Bolt) {
    const BoltRanges r = boltRanges(p);
    // The header map, last entry wins, a null or unusable value unsets (trace-context.ts scanTraceHeaders).
    size_t q = r.headerStart;
    const size_t end = r.headerEnd;
    while (q + 4 <= end) {
      const int32_t keyLen = s32(p + q);
      if (keyLen < -1 || static_cast<int64_t>(q) + 4 + keyLen > static_cast<int64_t>(end)) break;
      const size_t keyStart = q + 4;
      q = keyStart + (keyLen > 0 ? static_cast<size_t>(keyLen) : 0);
      if (q + 4 > end) break;
      const int32_t valLen = s32(p + q);
      if (valLen < -1 || static_cast<int64_t>(q) + 4 + valLen > static_cast<int64_t>(end)) break;
      const size_t valStart = q + 4;
      q = valStart + (valLen > 0 ? static_cast<size_t>(valLen) : 0);
      const size_t vl = valLen > 0 ? static_cast<size_t>(valLen) : 0;
      if (bytesEqual(p + keyStart, keyLen, "traceparent")) hasTraceparent = asciiValue(p + valStart, vl, out.traceparent);
      else if (bytesEqual(p + keyStart, keyLen, "rpc_trace_context.sofaTraceId")) hasTraceId = asciiValue(p + valStart, vl, out.sofaTraceId);
      else if (bytesEqual(p + keyStart, keyLen, "rpc_trace_context.sofaRpcId")) hasRpcId = asciiValue(p + valStart, vl, out.sofaRpcId);
    }
    if (!hasTraceId) {
      hasRpcId = false;
      out.sofaRpcId.clear();
    }
    if ((!hasTraceparent || !hasTraceId) && isSofaHessian(p, h)) {
      size_t start, bodyEnd;
      bodyRange(p, start, bodyEnd);
      TraceContext body;
      SofaBodyReader reader(p, bodyEnd <= len ? bodyEnd : 0, nullptr, &body);
      if (bodyEnd <= len && reader.read(start)) {
        if (!hasTraceparent && reader.hasTraceparent) {
          hasTraceparent = true;
          out.traceparent.swap(body.traceparent);
        }
        if (!hasTraceId) {
          hasTraceId = reader.hasTraceId;
          hasRpcId = reader.hasRpcId;
          out.sofaTraceId.swap(body.sofaTraceId);
          out.sofaRpcId.swap(body.sofaRpcId);
        }
      }
    }
  } else {
    if (h.codec != 2) return false;
    TraceAttachments a;
    if (!dubboTraceAttachments(p, len, a)) return false;
    if (a.traceparent.present) hasTraceparent = h2TraceString(p, a.traceparent.start, a.traceparent.end, out.traceparent);
    if (a.sofaTraceId.present) hasTraceId = h2TraceString(p, a.sofaTraceId.start, a.sofaTraceId.end, out.sofaTraceId);
    if (a.sofaRpcId.present) hasRpcId = h2TraceString(p, a.sofaRpcId.start, a.sofaRpcId.end, out.sofaRpcId);
  }
  if (!hasTraceparent) out.traceparent.clear();
  if (!hasTraceId) {
    out.sofaTraceId.clear();
    hasRpcId = false;
  }
  if (!hasRpcId) out.sofaRpcId.clear();
  if (!hasTraceparent && !hasTraceId) {
    out = TraceContext{};
    return false;
  }
  return true;
}

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h == 0 ? 1 : h;
}

namespace {

// FNV-1a 64 of the concatenation of parts, without making it.
uint64_t fnvOf(std::initializer_list<std::string_view> parts) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (std::string_view s : parts)
    for (unsigned char c : s) {
      h ^= c;
      h *= 0x100000001b3ULL;
    }
  return h == 0 ? 1 : h;
}

void appendHex16(std::string& out, uint64_t v) {
  for (int shift = 60; shift >= 0; shift -= 4) out.push_back(kHexDigits[(v >> shift) & 15]);
}

bool lowerHex(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}
bool allZero(std::string_view s) {
  for (char c : s)
    if (c != '0') return false;
  return true;
}

// trace-ids.ts parseTraceparent: /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/ (`.` no line
// terminator), version ff refused, version 00 without more fields, no all-zero id.
bool traceparentValid(std::string_view v, std::string_view& traceId, std::string_view& parent, bool& sampled) {
  if (v.size() < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-') return false;
  const std::string_view version = v.substr(0, 2), flags = v.substr(53, 2);
  traceId = v.substr(3, 32);
  parent = v.substr(36, 16);
  if (!lowerHex(version) || !lowerHex(traceId) || !lowerHex(parent) || !lowerHex(flags)) return false;
  if (v.size() > 55) {
    if (v[55] != '-' || version == "00") return false;
    for (size_t i = 56; i < v.size(); i++) {
      const uint8_t c = static_cast<uint8_t>(v[i]);
      if (c == '\n' || c == '\r') return false;
      if (c == 0xe2 && i + 2 < v.size() && static_cast<uint8_t>(v[i + 1]) == 0x80 &&
          (static_cast<uint8_t>(v[i + 2]) == 0xa8 || static_cast<uint8_t>(v[i + 2]) == 0xa9))
        return false;
    }
  }
  if (version == "ff" || allZero(traceId) || allZero(parent)) return false;
  const char f = flags[1];
  const int low = f <= '9' ? f - '0' : f - 'a' + 10;
  sampled = (low & 1) == 1;
  return true;
}

}  // namespace

bool deriveSpanIds(const TraceContext& ctx, SpanSide side, SpanIds& out) {
  out = SpanIds{};
  std::string traceId, parent;
  std::string_view w3cTrace, w3cParent;
  bool sampled = true;
  if (!ctx.traceparent.empty() && traceparentValid(ctx.traceparent, w3cTrace, w3cParent, sampled)) {
    traceId.assign(w3cTrace);
    parent.assign(w3cParent);
  } else if (!ctx.sofaTraceId.empty()) {
    sampled = true;
    const std::string_view id = ctx.sofaTraceId;
    bool shortHex = id.size() <= 32;
    for (char c : id)
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) shortHex = false;
    if (shortHex) {
      traceId.assign(32 - id.size(), '0');
      for (char c : id) traceId.push_back(c >= 'A' && c <= 'F' ? static_cast<char>(c - 'A' + 'a') : c);
    }
    if (!shortHex || allZero(traceId)) {
      traceId.clear();
      appendHex16(traceId, fnv1a64(id));
      appendHex16(traceId, fnvOf({"meshport/", id}));
    }
    const std::string_view rpcId = ctx.sofaRpcId.empty() ? std::string_view("0") : std::string_view(ctx.sofaRpcId);
    appendHex16(parent, fnvOf({traceId, "/", rpcId}));
  } else {
    return false;
  }
  const uint64_t consumer = fnvOf({traceId, "/", parent, "/out"});
  out.sampledFlag = sampled;
  if (side == SpanSide::Outbound) {
    appendHex16(out.spanId, consumer);
    out.parentSpanId = std::move(parent);
  } else {
    appendHex16(out.spanId, fnvOf({traceId, "/", parent, "/in"}));
    appendHex16(out.parentSpanId, consumer);
  }
  out.traceId = std::move(traceId);
  return true;
}

bool traceSampled(std::string_view traceId, uint64_t everyN) {
  if (everyN == 0) return false;
  if (everyN == 1) return true;
  if (traceId.empty() || traceId.size() > 32 || !lowerHex(traceId)) return false;
  const std::string_view low = traceId.size() > 16 ? traceId.substr(traceId.size() - 16) : traceId;
  uint64_t v = 0;
  for (char c : low) v = (v << 4) | static_cast<uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
  return v % everyN == 0;
}

}  // namespace meshport
