// The native codec: a port of @meshport/protocol's framing, header decode, id rewrite and made frames (see codec.h).
//
// Every rule here follows the TypeScript reference in protocol/src, check for check and in the same order, because
// the two must refuse the same frames with the same code and route the same frames to the same key; the
// differential test (test/codec.test.ts) and the fuzz targets (fuzz/) hold them to it. Where the reference's choice
// looks arbitrary (which length is blamed first, which offset an error names), it is still the reference's choice.
//
// Strings of a FrameHeader are views. Most point into the frame. Two kinds cannot: a Bolt header value that is not
// valid UTF-8 (the reference decodes it with U+FFFD replacements) and a Dubbo hessian string that is chunked or not
// ASCII (its bytes are CESU-8). Those are written to a per-thread scratch buffer as WTF-8 (UTF-8, except that a lone
// UTF-16 surrogate keeps its own 3-byte form, so two views compare equal exactly when the reference's JS strings do).
// The scratch is reserved once per decode for the most the decode can write (1.5x the Dubbo body, 3x the Bolt values
// converted), so it never moves while views point into it; it is released at the next decode when it grew past
// 64 KiB. Such views therefore live until the next decodeHeader on the same thread. An absent string is a view with
// a null data pointer; an empty one that is present has a non-null pointer (Bolt `service: ""` routes under "").

#include "codec.h"

#include <cstring>
#include <vector>

namespace meshport {

void appendCodePoint(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

bool validUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t b = static_cast<uint8_t>(s[i]);
    size_t need = 0;
    uint8_t lo = 0x80, hi = 0xbf;
    if (b < 0x80) {
      i++;
      continue;
    }
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b == 0xe0) lo = 0xa0;
      if (b == 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b == 0xf0) lo = 0x90;
      if (b == 0xf4) hi = 0x8f;
    } else {
      return false;
    }
    for (size_t k = 1; k <= need; k++) {
      if (i + k >= s.size()) return false;
      const uint8_t c = static_cast<uint8_t>(s[i + k]);
      if (c < lo || c > hi) return false;
      lo = 0x80;
      hi = 0xbf;
    }
    i += need + 1;
  }
  return true;
}

namespace {

// ------------------------------------------------------------------------------------------------------------------
// Byte access. Wire integers are assembled from bytes: no unaligned loads, no signed shifts.

inline uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t be32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) | (static_cast<uint32_t>(p[2]) << 8) | p[3];
}
inline int32_t s32(const uint8_t* p) {
  const uint32_t u = be32(p);
  int32_t v;
  std::memcpy(&v, &u, sizeof v);  // two's complement reinterpretation without an implementation-defined conversion
  return v;
}
inline int16_t s16(const uint8_t* p) {
  const uint16_t u = be16(p);
  int16_t v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}
inline void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void put32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

const char kHex[] = "0123456789abcdef";

// Two hex digits, as errors.ts hexByte.
std::string hex2(uint8_t b) { return std::string{kHex[b >> 4], kHex[b & 15]}; }
// Hex without padding, as JavaScript's n.toString(16).
std::string hexBare(uint8_t b) { return b < 16 ? std::string(1, kHex[b]) : hex2(b); }

bool fail(CodecError& err, const char* code, size_t offset, std::string message) {
  err.code = code;
  err.offset = offset;
  err.message = std::move(message);
  return false;
}

// ------------------------------------------------------------------------------------------------------------------
// Scratch for strings that cannot be views (see the top of the file).

constexpr size_t kScratchKeep = 64 * 1024;

struct Scratch {
  std::string buf;
  size_t bound = 0;  // what this decode may write; reserved on first use

  void begin(size_t mayWrite) {
    if (buf.capacity() > kScratchKeep) std::string().swap(buf);
    buf.clear();
    bound = mayWrite;
  }
  // Makes room for everything this decode may write, once, so earlier views never move.
  void ensure() {
    if (buf.capacity() < bound) buf.reserve(bound);
  }
};

thread_local Scratch scratch;

// A view of what was appended to the scratch since `from`.
std::string_view scratchView(size_t from) { return std::string_view(scratch.buf.data() + from, scratch.buf.size() - from); }

// Appends one UTF-16 unit sequence element to WTF-8 output, combining a high surrogate with the low one after it.
struct Wtf8Writer {
  std::string& out;
  uint32_t pendingHigh = 0;

  void emit(uint32_t cp) { appendCodePoint(out, cp); }
  void unit(uint32_t u) {
    if (pendingHigh != 0) {
      const uint32_t high = pendingHigh;
      pendingHigh = 0;
      if (u >= 0xdc00 && u <= 0xdfff) {
        emit(0x10000 + ((high - 0xd800) << 10) + (u - 0xdc00));
        return;
      }
      emit(high);
    }
    if (u >= 0xd800 && u <= 0xdbff) {
      pendingHigh = u;
      return;
    }
    emit(u);
  }
  void finish() {
    if (pendingHigh != 0) emit(pendingHigh);
    pendingHigh = 0;
  }
};

// CESU-8 bytes [p, end) to units, exactly as hessian.ts decodeCesu8 reads them (continuation bits masked, not
// checked; a 4-byte sequence as the pair JavaScript's arithmetic makes of it). The range was walked by skipUnits,
// so every sequence lies inside it.
void cesu8ToWtf8(const uint8_t* p, const uint8_t* end, Wtf8Writer& w) {
  while (p < end) {
    const uint32_t b = *p;
    if (b < 0x80) {
      w.unit(b);
      p += 1;
    } else if (b < 0xe0) {
      w.unit(((b & 0x1f) << 6) | (p[1] & 0x3f));
      p += 2;
    } else if (b < 0xf0) {
      w.unit(((b & 0x0f) << 12) | ((p[1] & 0x3fu) << 6) | (p[2] & 0x3f));
      p += 3;
    } else {
      const uint32_t cp = ((b & 0x07) << 18) | ((p[1] & 0x3fu) << 12) | ((p[2] & 0x3fu) << 6) | (p[3] & 0x3f);
      // 0xd800 + ((cp - 0x10000) >> 10), with JavaScript's arithmetic shift of a negative, then String.fromCharCode's
      // 16-bit truncation: (cp >> 10) - 64 is the same floor division without shifting a negative.
      w.unit((0xd800 + (cp >> 10) - 64) & 0xffff);
      w.unit((0xdc00 + (cp & 0x3ff)) & 0xffff);
      p += 4;
    }
  }
}

// WHATWG UTF-8 decoding (what Buffer#toString('utf8') does): the bytes of each maximal invalid subpart become one
// U+FFFD. Returns false when the range is already valid UTF-8 (nothing written).
bool utf8Replacing(const uint8_t* s, size_t n, std::string* out) {
  size_t i = 0;
  bool wrote = false;
  size_t copiedTo = 0;
  while (i < n) {
    const uint8_t b = s[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    size_t need = 0;
    uint8_t lo = 0x80, hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b == 0xe0) lo = 0xa0;
      if (b == 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b == 0xf0) lo = 0x90;
      if (b == 0xf4) hi = 0x8f;
    }
    size_t j = i + 1;
    size_t k = 0;
    if (need != 0) {
      while (k < need && j < n && s[j] >= lo && s[j] <= hi) {
        lo = 0x80;
        hi = 0xbf;
        j++;
        k++;
      }
    }
    if (need != 0 && k == need) {
      i = j;
      continue;
    }
    // Invalid: [i, j) is the maximal subpart (the byte that broke it is read again).
    if (out == nullptr) return true;
    out->append(reinterpret_cast<const char*>(s + copiedTo), i - copiedTo);
    out->append("\xef\xbf\xbd");
    wrote = true;
    i = j;
    copiedTo = j;
  }
  if (out != nullptr && wrote) out->append(reinterpret_cast<const char*>(s + copiedTo), n - copiedTo);
  return wrote;
}

// A Bolt header value as the reference's string: a view when valid UTF-8, else its replaced form in the scratch.
std::string_view boltText(const uint8_t* s, size_t n) {
  if (!utf8Replacing(s, n, nullptr)) return std::string_view(reinterpret_cast<const char*>(s), n);
  scratch.ensure();
  const size_t from = scratch.buf.size();
  utf8Replacing(s, n, &scratch.buf);
  return scratchView(from);
}

// ------------------------------------------------------------------------------------------------------------------
// CRC32 (IEEE 802.3, reflected, as zlib and java.util.zip.CRC32).

struct CrcTable {
  uint32_t t[256];
  CrcTable() {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = (c & 1) ? (0xedb88320u ^ (c >> 1)) : (c >> 1);
      t[i] = c;
    }
  }
};
const CrcTable kCrc;

// ------------------------------------------------------------------------------------------------------------------
// Bolt layout (bolt.ts layout()): v2 inserts ver1 at 1 and a switch byte after codec.

constexpr uint8_t kBoltV1 = 0x01;
constexpr uint8_t kBoltV2 = 0x02;
constexpr uint8_t kDubboMagicHigh = 0xda;
constexpr size_t kDubboHeader = 16;

struct BoltLayout {
  size_t status, classLen, headerLen, contentLen, fixed;
};
BoltLayout boltLayout(bool v2, bool isResponse) {
  const size_t tail = v2 ? 12 : 10;
  if (isResponse) return {tail, tail + 2, tail + 4, tail + 6, tail + 10};
  return {0, tail + 4, tail + 6, tail + 8, tail + 12};
}

bool boltHasCrc(const uint8_t* p) { return p[0] == kBoltV2 && p[1] == 2 && (p[11] & 0x01) == 1; }

// boltHeaderNeed: either a byte count (true) or an error (false).
bool boltHeaderNeed(const uint8_t* p, size_t avail, size_t& need, CodecError& err) {
  const bool v2 = p[0] == kBoltV2;
  const size_t typeAt = v2 ? 2 : 1;
  if (avail <= typeAt) {
    need = typeAt + 1;
    return true;
  }
  if (v2 && p[1] != 1 && p[1] != 2) {
    return fail(err, "MESHPORT_BOLT_BAD_VERSION", 1, "Bolt v2 ver1 byte " + std::to_string(p[1]) + " is not 1 or 2");
  }
  const uint8_t type = p[typeAt];
  if (type > 2) {
    return fail(err, "MESHPORT_BOLT_BAD_TYPE", typeAt, "Bolt type byte 0x" + hex2(type) + " is not 0, 1 or 2");
  }
  need = boltLayout(v2, type == 0).fixed;
  return true;
}

// boltFrameLength: the fixed header is there.
bool boltFrameLength(const uint8_t* p, uint64_t& length, CodecError& err) {
  const bool v2 = p[0] == kBoltV2;
  const BoltLayout l = boltLayout(v2, p[v2 ? 2 : 1] == 0);
  const int32_t classLen = s16(p + l.classLen);
  const int32_t headerLen = s16(p + l.headerLen);
  const int32_t contentLen = s32(p + l.contentLen);
  if (classLen < 0 || headerLen < 0 || contentLen < 0) {
    const size_t at = classLen < 0 ? l.classLen : headerLen < 0 ? l.headerLen : l.contentLen;
    return fail(err, "MESHPORT_BOLT_BAD_LENGTH", at, "Bolt length field is negative");
  }
  length = static_cast<uint64_t>(l.fixed) + static_cast<uint64_t>(classLen) + static_cast<uint64_t>(headerLen) +
           static_cast<uint64_t>(contentLen) + (v2 && boltHasCrc(p) ? 4 : 0);
  return true;
}

bool dubboFrameLength(const uint8_t* p, uint64_t& length, CodecError& err) {
  if (p[1] != 0xbb) return fail(err, "MESHPORT_BAD_MAGIC", 1, "Dubbo magic 0xda" + hex2(p[1]) + " is not 0xdabb");
  const int32_t body = s32(p + 12);
  if (body < 0) {
    return fail(err, "MESHPORT_DUBBO_BAD_LENGTH", 12, "Dubbo body length " + std::to_string(body) + " is negative");
  }
  length = kDubboHeader + static_cast<uint64_t>(body);
  return true;
}

bool badMagic(const uint8_t* p, CodecError& err) {
  return fail(err, "MESHPORT_BAD_MAGIC", 0, "first byte 0x" + hex2(p[0]) + " is neither Bolt (0x01, 0x02) nor Dubbo (0xda)");
}

// ------------------------------------------------------------------------------------------------------------------
// Bolt header map (bolt.ts scanHeaderMap / readLen).

bool readMapLen(const uint8_t* p, size_t at, size_t end, int32_t& len, CodecError& err) {
  if (at + 4 > end) return fail(err, "MESHPORT_BOLT_BAD_HEADER_MAP", at, "Bolt header map ends inside a length field");
  len = s32(p + at);
  if (len < -1 || static_cast<int64_t>(at) + 4 + len > static_cast<int64_t>(end)) {
    return fail(err, "MESHPORT_BOLT_BAD_HEADER_MAP", at, "Bolt header map length " + std::to_string(len) + " does not fit");
  }
  return true;
}

bool keyIs(const uint8_t* p, size_t len, const char* key, size_t keyLen) {
  return len == keyLen && std::memcmp(p, key, keyLen) == 0;
}

struct Range {
  bool present = false;
  size_t start = 0, end = 0;
};

bool scanHeaderMap(const uint8_t* f, size_t start, size_t end, FrameHeader& out, CodecError& err) {
  Range service, target, method;
  size_t p = start;
  while (p < end) {
    int32_t keyLen, valLen;
    if (!readMapLen(f, p, end, keyLen, err)) return false;
    p += 4;
    const size_t keyStart = p;
    p += keyLen < 0 ? 0 : static_cast<size_t>(keyLen);
    if (!readMapLen(f, p, end, valLen, err)) return false;
    p += 4;
    const size_t valStart = p;
    p += valLen < 0 ? 0 : static_cast<size_t>(valLen);
    if (keyLen <= 0) continue;
    // A repeated key: the last one wins; a null value unsets it.
    Range value;
    if (valLen >= 0) value = Range{true, valStart, p};
    const size_t kl = static_cast<size_t>(keyLen);
    if (keyIs(f + keyStart, kl, "service", 7)) service = value;
    else if (keyIs(f + keyStart, kl, "sofa_head_target_service", 24)) target = value;
    else if (keyIs(f + keyStart, kl, "sofa_head_method_name", 21)) method = value;
  }
  const Range& svc = service.present ? service : target;
  // Replacement can triple an invalid value (one byte -> EF BF BD).
  scratch.begin(3 * ((svc.end - svc.start) + (method.end - method.start)) + 8);
  if (svc.present) out.service = boltText(f + svc.start, svc.end - svc.start);
  if (method.present) out.method = boltText(f + method.start, method.end - method.start);
  return true;
}

bool decodeBolt(const uint8_t* f, size_t len, FrameHeader& out, CodecError& err) {
  const bool v2 = f[0] == kBoltV2;
  size_t need = 0;
  if (!boltHeaderNeed(f, len, need, err)) return false;
  if (len < need) {
    return fail(err, "MESHPORT_FRAME_TRUNCATED", len,
                "Bolt header needs " + std::to_string(need) + " bytes, got " + std::to_string(len));
  }
  const size_t s = v2 ? 1 : 0;
  const uint8_t type = f[1 + s];
  const uint16_t cmd = be16(f + 2 + s);
  Kind kind;
  if (cmd == 0 && type == 1) kind = Kind::Heartbeat;
  else if (cmd == 0 && type == 0) kind = Kind::HeartbeatAck;
  else if (cmd == 1 && type == 1) kind = Kind::Request;
  else if (cmd == 1 && type == 2) kind = Kind::Oneway;
  else if (cmd == 2 && type == 0) kind = Kind::Response;
  else {
    return fail(err, "MESHPORT_BOLT_BAD_CMDCODE", 2 + s,
                "Bolt cmdcode " + std::to_string(cmd) + " does not fit type " + std::to_string(type));
  }
  out.proto = Proto::Bolt;
  out.kind = kind;
  out.boltVersion = v2 ? 2 : 1;
  out.ver1 = v2 ? f[1] : 0;
  out.switchFlags = v2 ? f[11] : 0;
  out.idHigh = 0;
  out.idLow = be32(f + 5 + s);
  out.codec = f[9 + s];
  const bool isResponse = type == 0;
  const BoltLayout l = boltLayout(v2, isResponse);
  out.timeoutMs = isResponse ? 0 : be32(f + 10 + 2 * s);
  out.status = isResponse ? be16(f + l.status) : 0;
  uint64_t frameLength = 0;
  if (!boltFrameLength(f, frameLength, err)) return false;  // names the negative field
  if (len < frameLength) {
    return fail(err, "MESHPORT_FRAME_TRUNCATED", len,
                "Bolt frame declares " + std::to_string(frameLength) + " bytes, got " + std::to_string(len));
  }
  const size_t headerStart = l.fixed + static_cast<size_t>(s16(f + l.classLen));
  const size_t headerEnd = headerStart + static_cast<size_t>(s16(f + l.headerLen));
  if (!scanHeaderMap(f, headerStart, headerEnd, out, err)) return false;
  if (v2 && boltHasCrc(f)) {
    const size_t at = static_cast<size_t>(frameLength) - 4;
    if (crc32(f, at) != be32(f + at)) return fail(err, "MESHPORT_BOLT_BAD_CRC", at, "Bolt v2 CRC32 does not match the frame");
  }
  return true;
}

// ------------------------------------------------------------------------------------------------------------------
// Hessian 2.0 strings (hessian.ts HessianStringReader): the leading strings of a Dubbo request.

bool truncatedString(CodecError& err, size_t at) {
  return fail(err, "MESHPORT_DUBBO_BAD_BODY", at, "hessian2 string runs past the end of the body");
}


// A unit walk over CESU-8 with the reader's lead-byte classes; false on a byte no character starts with.
inline bool unitStep(uint8_t b, size_t& p, uint32_t& n) {
  if (b < 0x80) p += 1;
  else if (b >= 0xc0 && b < 0xe0) p += 2;
  else if (b >= 0xe0 && b < 0xf0) p += 3;
  else if (b >= 0xf0 && b < 0xf8) {
    p += 4;
    n++;  // a 4-byte sequence is a surrogate pair: two units
  } else {
    return false;
  }
  return true;
}

// skipUnits of the reader: past `units` units of CESU-8 from pos.
bool readerSkipUnits(const uint8_t* f, size_t& pos, size_t end, uint32_t units, CodecError& err) {
  size_t p = pos;
  for (uint32_t n = 0; n < units; n++) {
    if (p >= end) return truncatedString(err, end);
    const uint8_t b = f[p];
    if (!unitStep(b, p, n)) {
      return fail(err, "MESHPORT_DUBBO_BAD_BODY", p, "byte 0x" + hexBare(b) + " cannot start a character");
    }
  }
  if (p > end) return truncatedString(err, end);
  pos = p;
  return true;
}

// One string or null at pos (HessianStringReader.readString): on success `present` says string or null, and
// [pos before, pos after) holds it, chunk headers included.
bool readH2String(const uint8_t* f, size_t& pos, size_t end, bool& present, CodecError& err) {
  const size_t at = pos;
  if (at >= end) return truncatedString(err, at);
  if (f[at] == 0x4e) {
    pos = at + 1;
    present = false;
    return true;
  }
  present = true;
  for (;;) {
    const size_t chunkAt = pos;
    if (chunkAt >= end) return truncatedString(err, chunkAt);
    const uint8_t c = f[chunkAt];
    uint32_t units;
    bool final = true;
    if (c < 0x20) {
      units = c;
      pos = chunkAt + 1;
    } else if (c >= 0x30 && c <= 0x33) {
      if (chunkAt + 1 >= end) return truncatedString(err, chunkAt + 1);
      units = (static_cast<uint32_t>(c - 0x30) << 8) | f[chunkAt + 1];
      pos = chunkAt + 2;
    } else if (c == 0x52 || c == 0x53) {
      if (chunkAt + 1 >= end) return truncatedString(err, chunkAt + 1);
      if (chunkAt + 2 >= end) return truncatedString(err, chunkAt + 2);
      units = (static_cast<uint32_t>(f[chunkAt + 1]) << 8) | f[chunkAt + 2];
      pos = chunkAt + 3;
      final = c == 0x53;
    } else {
      return fail(err, "MESHPORT_DUBBO_BAD_BODY", chunkAt, "expected a hessian2 string, found code 0x" + hexBare(c));
    }
    if (!readerSkipUnits(f, pos, end, units, err)) return false;
    if (final) return true;
  }
}

// The header of the string chunk at p within [p, limit): characters start at `chars`. False when it is none (the
// range was validated before, so only a caller's mistake gets here).
bool chunkHeader(const uint8_t* f, size_t p, size_t limit, size_t& chars, uint32_t& units, bool& final) {
  if (p >= limit) return false;
  const uint8_t c = f[p];
  final = true;
  if (c < 0x20) {
    units = c;
    chars = p + 1;
  } else if (c >= 0x30 && c <= 0x33) {
    if (p + 1 >= limit) return false;
    units = (static_cast<uint32_t>(c - 0x30) << 8) | f[p + 1];
    chars = p + 2;
  } else if (c == 0x52 || c == 0x53) {
    if (p + 2 >= limit) return false;
    units = (static_cast<uint32_t>(f[p + 1]) << 8) | f[p + 2];
    chars = p + 3;
    final = c == 0x53;
  } else {
    return false;
  }
  return true;
}

// Where `units` units from `p` end (bounded by `limit`; the range was validated).
size_t unitsEnd(const uint8_t* f, size_t p, size_t limit, uint32_t units) {
  for (uint32_t n = 0; n < units && p < limit; n++) {
    if (!unitStep(f[p], p, n)) return limit;
  }
  return p < limit ? p : limit;
}

// The reference's JS string of the validated hessian string [at, after): a view when it is one chunk of ASCII (bytes
// equal units only then), else its WTF-8 in the scratch.
std::string_view h2View(const uint8_t* f, size_t at, size_t after) {
  size_t chars;
  uint32_t units;
  bool final;
  if (!chunkHeader(f, at, after, chars, units, final)) return std::string_view(reinterpret_cast<const char*>(f + at), 0);
  if (final && after - chars == units) return std::string_view(reinterpret_cast<const char*>(f + chars), units);
  scratch.ensure();
  const size_t from = scratch.buf.size();
  Wtf8Writer w{scratch.buf};
  size_t p = at;
  while (chunkHeader(f, p, after, chars, units, final)) {
    const size_t stop = unitsEnd(f, chars, after, units);
    cesu8ToWtf8(f + chars, f + stop, w);
    if (final) break;
    p = stop;
  }
  w.finish();
  return scratchView(from);
}

// ------------------------------------------------------------------------------------------------------------------
// Skip-only Hessian 2.0 scan of a Dubbo request after its leading strings (hessian-skip.ts DubboAttachmentScanner).
// Positions are int64: negative once a failure is recorded. Reasons are static strings: the reference's reason with
// each interpolated value written as "…".

constexpr int kMaxDepth = 64;
constexpr size_t kMaxClassDefinitions = 65536;
const char* const kTruncated = "the body ends inside a value";

struct FixedSizeTable {
  uint8_t t[256] = {};
  FixedSizeTable() {
    auto set = [this](int from, int to, uint8_t size) {
      for (int c = from; c <= to; c++) t[c] = size;
    };
    set(0x80, 0xbf, 1);  // int, one byte
    set(0xc0, 0xcf, 2);  // int, two bytes
    set(0xd0, 0xd7, 3);  // int, three bytes
    set(0x49, 0x49, 5);  // 'I' int
    set(0xd8, 0xef, 1);  // long, one byte
    set(0xf0, 0xff, 2);  // long, two bytes
    set(0x38, 0x3f, 3);  // long, three bytes
    set(0x59, 0x59, 5);  // long as int32
    set(0x4c, 0x4c, 9);  // 'L' long
    set(0x44, 0x44, 9);  // 'D' double
    set(0x5b, 0x5c, 1);  // double 0.0, 1.0
    set(0x5d, 0x5d, 2);  // double from a byte
    set(0x5e, 0x5e, 3);  // double from a short
    set(0x5f, 0x5f, 5);  // double from a float
    set(0x4a, 0x4a, 9);  // date, ms
    set(0x4b, 0x4b, 5);  // date, minutes
    set(0x4e, 0x4e, 1);  // 'N'
    set(0x46, 0x46, 1);  // 'F'
    set(0x54, 0x54, 1);  // 'T'
    for (int c = 0x20; c <= 0x2f; c++) t[c] = static_cast<uint8_t>(1 + c - 0x20);  // short binary
  }
};
const FixedSizeTable kFixed;

// Dubbo's ReflectUtils.DESC_PATTERN as the reference's state machine (hessian-skip.ts DESCRIPTOR): states 0 at a
// type, 1 after '[', 2 at an identifier's first character, 3 inside one; entry = next state, plus 4 when a type
// ends there, or -1.
struct DescriptorTable {
  int8_t t[4 << 7];
  DescriptorTable() {
    std::memset(t, -1, sizeof t);
    const char* letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_$";
    for (int state = 0; state <= 1; state++) {
      for (const char* c = "BCDFIJSZ"; *c; c++) t[(state << 7) | *c] = 4;
      t[(state << 7) | '['] = 1;
      t[(state << 7) | 'L'] = 2;
    }
    for (const char* c = letters; *c; c++) {
      t[(2 << 7) | *c] = 3;
      t[(3 << 7) | *c] = 3;
    }
    for (const char* c = "0123456789"; *c; c++) t[(3 << 7) | *c] = 3;
    t[(3 << 7) | '/'] = 2;
    t[(3 << 7) | ';'] = 4;
  }
};
const DescriptorTable kDescriptor;

inline bool isStringCode(uint8_t c) { return c < 0x20 || (c >= 0x30 && c <= 0x33) || c == 0x52 || c == 0x53; }

enum AttachmentKey : uint8_t { kOther, kGroup, kInterface, kPath, kVersion, kTraceparent, kSofaTraceId, kSofaRpcId };

class AttachmentScanner {
 public:
  // The last value of each key as the range of its string ([start, end), headers included); absent when not a
  // string, or after a failure. '' is filtered when the views are made.
  struct Value {
    bool present = false;
    size_t start = 0, end = 0;
  };
  Value group, path, version;
  // With traceKeys (off on the routing path, which never needs them): the trace attachments, by the same rules.
  bool traceKeys = false;
  Value traceparent, sofaTraceId, sofaRpcId;
  const char* error = nullptr;

  AttachmentScanner() { classFields_.reserve(64); }

  void scan(const uint8_t* buf, size_t pos, size_t end) {
    buf_ = buf;
    end_ = static_cast<int64_t>(end);
    group = path = version = Value{};
    traceparent = sofaTraceId = sofaRpcId = Value{};
    error = nullptr;
    refCount_ = typeCount_ = 0;
    classFields_.clear();
    argCount_ = 0;
    int64_t p = static_cast<int64_t>(pos);
    if (p >= end_) return;  // the leading strings alone: nothing more to read
    part_ = -1;
    p = countArguments(p);
    for (int64_t i = 0; i < argCount_ && p >= 0; i++) {
      part_ = i;
      p = p < end_ ? skipValue(p, 0) : fail(p, "the body ends before it");
    }
    part_ = argCount_;
    if (p >= 0 && p < end_) p = readAttachments(p);  // ending right after the arguments is clean too
    if (p < 0) {
      error = reason_;
      group = path = version = Value{};  // a body read halfway routes nowhere
      traceparent = sofaTraceId = sofaRpcId = Value{};
    }
    // A body with thousands of class definitions grew the table: give it back rather than keep it per thread.
    if (classFields_.capacity() > 4096) std::vector<int32_t>().swap(classFields_);
  }

 private:
  const uint8_t* buf_ = nullptr;
  int64_t end_ = 0;
  int64_t argCount_ = 0;
  uint32_t units_ = 0;
  bool final_ = false;
  int64_t int_ = 0;
  AttachmentKey key_ = kOther;
  int64_t refCount_ = 0;
  int64_t typeCount_ = 0;
  // Field counts of the class definitions seen; at most kMaxClassDefinitions entries (256 KiB).
  std::vector<int32_t> classFields_;
  const char* reason_ = nullptr;
  // Which part is being read: -1 the descriptor, then the argument's index, then argCount_ for the attachments.
  int64_t part_ = 0;
  int64_t errAt_ = 0, errPart_ = 0, errArgs_ = 0, errA_ = 0, errB_ = 0;

 public:
  // The reference's message for the failure (hessian-skip.ts message()): the reason filled in, the part, the offset.
  // Only for the frame just scanned (it reads the byte at the offset).
  std::string message() const {
    std::string out;
    const std::string_view reason(reason_ != nullptr ? reason_ : "");
    const std::string_view ellipsis("\xe2\x80\xa6");
    int filled = 0;
    for (size_t i = 0; i < reason.size();) {
      if (reason.compare(i, ellipsis.size(), ellipsis) != 0) {
        out.push_back(reason[i++]);
        continue;
      }
      if (i >= 5 && reason.compare(i - 5, 5, "byte ") == 0) {
        out += errAt_ < end_ ? "0x" + hex2(buf_[errAt_]) : std::string("end");
      } else {
        out += std::to_string(filled++ == 0 ? errA_ : errB_);
      }
      i += ellipsis.size();
    }
    out += ", in ";
    if (errPart_ < 0) out += "the parameter-types descriptor";
    else if (errPart_ < errArgs_) out += "argument " + std::to_string(errPart_ + 1) + " of " + std::to_string(errArgs_);
    else out += "the attachments";
    out += " (at byte " + std::to_string(errAt_) + ")";
    return out;
  }

 private:

  // Where and why the scan failed, kept as numbers: the message is only written when asked for (see message()).
  int64_t fail(int64_t at, const char* reason, int64_t a = 0, int64_t b = 0) {
    reason_ = reason;
    errAt_ = at;
    errPart_ = part_;
    errArgs_ = argCount_;
    errA_ = a;
    errB_ = b;
    return -1;
  }

  bool isAscii(int64_t from, int64_t to) const {
    if (to > end_) return false;
    for (int64_t i = from; i < to; i++)
      if (buf_[i] >= 0x80) return false;
    return true;
  }

  bool equalsAt(int64_t at, const char* name, size_t n) const { return std::memcmp(buf_ + at, name, n) == 0; }

  // The trace keys, matched only as one short ASCII string (hessian-skip.ts traceKey).
  AttachmentKey traceKey(int64_t at, size_t n) const {
    if (n == 11 && equalsAt(at, "traceparent", 11)) return kTraceparent;
    if (n == 29 && equalsAt(at, "rpc_trace_context.sofaTraceId", 29)) return kSofaTraceId;
    if (n == 27 && equalsAt(at, "rpc_trace_context.sofaRpcId", 27)) return kSofaRpcId;
    return kOther;
  }

  int64_t countArguments(int64_t p) {
    if (p < end_ && buf_[p] == 0x4e) return fail(p, "the descriptor is null");
    int state = 0;
    int64_t count = 0;
    argCount_ = 0;
    for (;;) {
      const int64_t start = chunk(p);
      if (start < 0) return start;
      const int64_t stop = start + units_;
      if (stop > end_) return fail(end_, kTruncated);
      for (p = start; p < stop; p++) {
        const uint8_t b = buf_[p];
        const int next = b < 0x80 ? kDescriptor.t[(state << 7) | b] : -1;
        if (next < 0) return fail(p, state <= 1 ? "byte … is not a JVM parameter type" : "byte … cannot be part of a class name");
        state = next & 3;
        count += next >> 2;
      }
      if (final_) break;
    }
    if (state != 0) return fail(p, "the descriptor ends inside a type");
    argCount_ = count;
    return p;
  }

  // ((p >= end || buf[p] == 'C') && (p = skipClassDefinitions(p)) < 0) of the reference, as one step.
  int64_t beforeValue(int64_t p) {
    if (p >= end_ || buf_[p] == 0x43) return skipClassDefinitions(p);
    return p;
  }

  int64_t readAttachments(int64_t p) {
    p = skipClassDefinitions(p);
    if (p < 0) return p;
    const uint8_t first = buf_[p];
    if (first == 0x4e) return p + 1;
    if (first == 0x48) p++;
    else if (first == 0x4d) p = skipType(p + 1);
    else return fail(p, "expected the attachments map (H, M or N), found byte …");
    refCount_++;
    for (;;) {
      if (p < 0) return p;
      p = beforeValue(p);
      if (p < 0) return p;
      uint8_t c = buf_[p];
      if (c == 0x5a) return p + 1;
      AttachmentKey key = kOther;
      if (c < 0x20 && isAscii(p + 1, p + 1 + c)) {
        if (c == 5 && equalsAt(p + 1, "group", 5)) key = kGroup;
        else if (c == 9 && equalsAt(p + 1, "interface", 9)) key = kInterface;
        else if (c == 4 && equalsAt(p + 1, "path", 4)) key = kPath;
        else if (c == 7 && equalsAt(p + 1, "version", 7)) key = kVersion;
        else if (traceKeys) key = traceKey(p + 1, c);
        p += 1 + c;
      } else if (isStringCode(c)) {
        p = skipKey(p);
        key = key_;
      } else {
        p = skipValue(p, 1);
      }
      if (p < 0) return p;
      p = beforeValue(p);
      if (p < 0) return p;
      c = buf_[p];
      // The `interface` value is read as any other: the engine routes by path, version and group only.
      if (key == kOther || key == kInterface) {
        p = c < 0x20 && isAscii(p + 1, p + 1 + c) ? p + 1 + c : skipValue(p, 1);
        continue;
      }
      // As in the Java HashMap the provider fills, the last entry of a key wins; a value that is not a string
      // (null included) leaves the key without one.
      Value value;
      if (isStringCode(c)) {
        const int64_t after = skipString(p);
        if (after < 0) return after;
        value = Value{true, static_cast<size_t>(p), static_cast<size_t>(after)};
        p = after;
      } else {
        p = skipValue(p, 1);
      }
      if (key == kGroup) group = value;
      else if (key == kPath) path = value;
      else if (key == kVersion) version = value;
      else if (key == kTraceparent) traceparent = value;
      else if (key == kSofaTraceId) sofaTraceId = value;
      else sofaRpcId = value;
    }
  }

  int64_t skipClassDefinitions(int64_t p) {
    while (p < end_ && buf_[p] == 0x43) {
      p = skipClassDefinition(p);
      if (p < 0) return p;
    }
    return p < end_ ? p : fail(end_, kTruncated);
  }

  int64_t skipClassDefinition(int64_t p) {
    p = skipString(p + 1);
    if (p < 0) return p;
    const int64_t at = p;
    p = readInt(p);
    if (p < 0) return p;
    const int64_t fields = int_;
    if (fields < 0) return fail(at, "a class definition has a negative field count");
    for (int64_t i = 0; i < fields && p >= 0; i++) p = skipString(p);
    if (p < 0) return p;
    if (classFields_.size() >= kMaxClassDefinitions) return fail(at, "more than 65536 class definitions");
    classFields_.push_back(static_cast<int32_t>(fields));
    return p;
  }

  int64_t skipValue(int64_t p, int depth) {
    for (;;) {
      if (p >= end_) return fail(end_, kTruncated);
      const uint8_t c = buf_[p];
      const uint8_t size = kFixed.t[c];
      if (size != 0) return p + size <= end_ ? p + size : fail(end_, kTruncated);
      if (c < 0x20) return skipUnits(p + 1, c);
      if (isStringCode(c)) return skipString(p);
      if (c >= 0x70 && c <= 0x7f) {
        // Compact fixed lists: 0x70-0x77 typed, 0x78-0x7f untyped, the length in the code.
        const int64_t q = c < 0x78 ? skipType(p + 1) : p + 1;
        return q < 0 ? q : skipItems(q, c & 7, depth, p);
      }
      if (c >= 0x60 && c <= 0x6f) return skipInstance(p + 1, c - 0x60, p, depth);
      switch (c) {
        case 0x43:  // 'C': a class definition, then the value it precedes
          p = skipClassDefinition(p);
          if (p < 0) return p;
          continue;
        case 0x4f: {  // 'O' int: an object of that class definition
          const int64_t q = readInt(p + 1);
          return q < 0 ? q : skipInstance(q, int_, p, depth);
        }
        case 0x51: {  // 'Q' int: a reference to an earlier map, list or object
          const int64_t q = readInt(p + 1);
          if (q < 0) return q;
          return int_ >= 0 && int_ < refCount_ ? q : fail(p, "a reference to value … of …", int_, refCount_);
        }
        case 0x48:  // 'H' untyped map
          return skipEntries(p + 1, depth, p);
        case 0x4d: {  // 'M' typed map
          const int64_t q = skipType(p + 1);
          return q < 0 ? q : skipEntries(q, depth, p);
        }
        case 0x55: {  // typed list up to 'Z'
          const int64_t q = skipType(p + 1);
          return q < 0 ? q : skipItems(q, -1, depth, p);
        }
        case 0x57:  // untyped list up to 'Z'
          return skipItems(p + 1, -1, depth, p);
        case 0x56:
        case 0x58: {  // 'V' typed / 'X' untyped list with an int length
          int64_t q = c == 0x56 ? skipType(p + 1) : p + 1;
          if (q < 0) return q;
          const int64_t at = q;
          q = readInt(q);
          if (q < 0) return q;
          return int_ >= 0 ? skipItems(q, int_, depth, p) : fail(at, "a list has a negative length");
        }
        case 0x34:
        case 0x35:
        case 0x36:
        case 0x37:
        case 0x41:
        case 0x42:
          return skipBinary(p);
        default:
          return fail(p, "byte … cannot start a hessian2 value");
      }
    }
  }

  // `length` values, or values up to 'Z' when length is -1.
  int64_t skipItems(int64_t p, int64_t length, int depth, int64_t at) {
    if (depth >= kMaxDepth) return fail(at, "values nest deeper than 64");
    refCount_++;
    if (length < 0) {
      for (;;) {
        if (p >= end_) return fail(end_, kTruncated);
        if (buf_[p] == 0x5a) return p + 1;
        p = skipValue(p, depth + 1);
        if (p < 0) return p;
      }
    }
    // Every value takes at least one byte, so a huge declared length ends at the end of the body.
    for (int64_t i = 0; i < length && p >= 0; i++) p = skipValue(p, depth + 1);
    return p;
  }

  int64_t skipEntries(int64_t p, int depth, int64_t at) {
    if (depth >= kMaxDepth) return fail(at, "values nest deeper than 64");
    refCount_++;
    for (;;) {
      if (p >= end_) return fail(end_, kTruncated);
      if (buf_[p] == 0x5a) return p + 1;
      p = skipValue(p, depth + 1);
      if (p < 0) return p;
      p = skipValue(p, depth + 1);
      if (p < 0) return p;
    }
  }

  int64_t skipInstance(int64_t p, int64_t ref, int64_t at, int depth) {
    const int64_t defined = static_cast<int64_t>(classFields_.size());
    if (ref < 0 || ref >= defined) return fail(at, "an object of class definition …, of … defined", ref, defined);
    if (depth >= kMaxDepth) return fail(at, "values nest deeper than 64");
    refCount_++;
    const int32_t fields = classFields_[static_cast<size_t>(ref)];
    for (int32_t i = 0; i < fields && p >= 0; i++) p = skipValue(p, depth + 1);
    return p;
  }

  int64_t skipType(int64_t p) {
    if (p >= end_) return fail(end_, kTruncated);
    if (isStringCode(buf_[p])) {
      p = skipString(p);
      if (p >= 0) typeCount_++;
      return p;
    }
    const int64_t at = p;
    p = readInt(p);
    if (p < 0) return p;
    return int_ >= 0 && int_ < typeCount_ ? p : fail(at, "a reference to type … of …", int_, typeCount_);
  }

  int64_t skipBinary(int64_t p) {
    for (bool first = true;; first = false) {
      if (p >= end_) return fail(end_, kTruncated);
      const uint8_t c = buf_[p];
      int64_t next;
      if (c == 0x41 || c == 0x42) {
        if (p + 2 >= end_) return fail(end_, kTruncated);
        next = p + 3 + ((buf_[p + 1] << 8) | buf_[p + 2]);
      } else if (c >= 0x34 && c <= 0x37) {
        if (p + 1 >= end_) return fail(end_, kTruncated);
        next = p + 2 + (((c - 0x34) << 8) | buf_[p + 1]);
      } else if (!first && c >= 0x20 && c <= 0x2f) {
        next = p + 1 + c - 0x20;
      } else {
        return fail(p, "byte … cannot continue a chunked binary");
      }
      if (next > end_) return fail(end_, kTruncated);
      p = next;
      if (c != 0x41) return p;
    }
  }

  // An int where the grammar requires one; the value goes to int_. Multiplications, not shifts: the high part
  // of the compact forms is negative.
  int64_t readInt(int64_t p) {
    if (p >= end_) return fail(end_, kTruncated);
    const uint8_t c = buf_[p];
    if (c >= 0x80 && c <= 0xbf) {
      int_ = c - 0x90;
      return p + 1;
    }
    if (c >= 0xc0 && c <= 0xcf) {
      if (p + 1 >= end_) return fail(end_, kTruncated);
      int_ = (c - 0xc8) * 256 + buf_[p + 1];
      return p + 2;
    }
    if (c >= 0xd0 && c <= 0xd7) {
      if (p + 2 >= end_) return fail(end_, kTruncated);
      int_ = (c - 0xd4) * 65536 + buf_[p + 1] * 256 + buf_[p + 2];
      return p + 3;
    }
    if (c == 0x49) {
      if (p + 4 >= end_) return fail(end_, kTruncated);
      int_ = s32(buf_ + p + 1);
      return p + 5;
    }
    return fail(p, "expected a hessian2 int, found byte …");
  }

  // The header of the string chunk at p: sets units_ and final_, returns where its characters start.
  int64_t chunk(int64_t p) {
    if (p >= end_) return fail(end_, kTruncated);
    const uint8_t c = buf_[p];
    if (c < 0x20) {
      units_ = c;
      final_ = true;
      return p + 1;
    }
    if (c >= 0x30 && c <= 0x33) {
      if (p + 1 >= end_) return fail(end_, kTruncated);
      units_ = (static_cast<uint32_t>(c - 0x30) << 8) | buf_[p + 1];
      final_ = true;
      return p + 2;
    }
    if (c == 0x52 || c == 0x53) {
      if (p + 2 >= end_) return fail(end_, kTruncated);
      units_ = (static_cast<uint32_t>(buf_[p + 1]) << 8) | buf_[p + 2];
      final_ = c == 0x53;
      return p + 3;
    }
    return fail(p, "expected a hessian2 string, found byte …");
  }

  int64_t skipString(int64_t p) {
    if (p < end_) {
      const uint8_t c = buf_[p];
      if (c < 0x20 && isAscii(p + 1, p + 1 + c)) return p + 1 + c;
    }
    for (;;) {
      const int64_t start = chunk(p);
      if (start < 0) return start;
      const bool final = final_;
      p = skipUnits(start, units_);
      if (p < 0 || final) return p;
    }
  }

  int64_t skipUnits(int64_t p, uint32_t units) {
    for (uint32_t n = 0; n < units; n++) {
      if (p >= end_) return fail(end_, kTruncated);
      size_t q = static_cast<size_t>(p);
      if (!unitStep(buf_[p], q, n)) return fail(p, "byte … cannot start a character");
      p = static_cast<int64_t>(q);
    }
    return p <= end_ ? p : fail(end_, kTruncated);
  }

  // Steps over the string key at p and sets key_ to the name it spells however chunked and encoded, characters
  // compared as Java's reader decodes them (overlong forms included, so no key the provider reads as `group`
  // passes here as another).
  int64_t skipKey(int64_t p) {
    static const char* const names[4] = {"group", "interface", "path", "version"};
    static const int lengths[4] = {5, 9, 4, 7};
    int match[4] = {0, 0, 0, 0};  // how much of each name the characters so far spell; -1 once they cannot
    for (;;) {
      const int64_t start = chunk(p);
      if (start < 0) return start;
      const bool final = final_;
      const uint32_t units = units_;
      int64_t q = start;
      uint32_t left = units;
      for (; left > 0; left--) {
        if (q >= end_) break;
        const uint8_t b = buf_[q];
        uint32_t unit;
        if (b < 0x80) {
          unit = b;
          q += 1;
        } else if (b >= 0xc0 && b < 0xe0 && q + 1 < end_) {
          unit = ((b & 0x1fu) << 6) | (buf_[q + 1] & 0x3fu);
          q += 2;
        } else if (b >= 0xe0 && b < 0xf0 && q + 2 < end_) {
          unit = ((b & 0x0fu) << 12) | ((buf_[q + 1] & 0x3fu) << 6) | (buf_[q + 2] & 0x3fu);
          q += 3;
        } else {
          break;  // a surrogate pair (in no name), or bytes skipUnits refuses below
        }
        for (int k = 0; k < 4; k++) {
          const int m = match[k];
          match[k] = m >= 0 && m < lengths[k] && unit == static_cast<uint8_t>(names[k][m]) ? m + 1 : -1;
        }
      }
      if (left > 0) match[0] = match[1] = match[2] = match[3] = -1;
      p = skipUnits(start, units);
      if (p < 0) return p;
      if (final) break;
    }
    key_ = match[0] == 5 ? kGroup : match[1] == 9 ? kInterface : match[2] == 4 ? kPath : match[3] == 7 ? kVersion : kOther;
    return p;
  }
};

thread_local AttachmentScanner attachmentScanner;

// An attachment's value as the reference keeps it: `readString() || undefined`, so '' is absent.
std::string_view attachmentView(const uint8_t* f, const AttachmentScanner::Value& v) {
  if (!v.present) return std::string_view();
  const std::string_view s = h2View(f, v.start, v.end);
  return s.empty() ? std::string_view() : s;
}

bool present(std::string_view v) { return v.data() != nullptr; }

const char* const kPathDisagrees = "the path attachment names …, the request …";
const char* const kVersionDisagrees = "the version attachment names …, the request …";

bool decodeDubbo(const uint8_t* f, size_t len, FrameHeader& out, CodecError& err) {
  if (len < kDubboHeader) {
    return fail(err, "MESHPORT_FRAME_TRUNCATED", len, "Dubbo header needs 16 bytes, got " + std::to_string(len));
  }
  uint64_t frameLength = 0;
  if (!dubboFrameLength(f, frameLength, err)) return false;
  if (len < frameLength) {
    return fail(err, "MESHPORT_FRAME_TRUNCATED", len,
                "Dubbo frame declares " + std::to_string(frameLength) + " bytes, got " + std::to_string(len));
  }
  const size_t end = static_cast<size_t>(frameLength);
  const uint8_t flag = f[2];
  const bool isRequest = (flag & 0x80) != 0;
  const bool isEvent = (flag & 0x20) != 0;
  out.proto = Proto::Dubbo;
  out.kind = isEvent ? (isRequest ? Kind::Heartbeat : Kind::HeartbeatAck)
                     : !isRequest ? Kind::Response : (flag & 0x40) != 0 ? Kind::Request : Kind::Oneway;
  out.boltVersion = 0;  // not Bolt
  out.ver1 = 0;
  out.switchFlags = 0;
  out.codec = flag & 0x1f;
  out.status = isRequest ? 0 : f[3];
  out.timeoutMs = 0;
  out.idHigh = be32(f + 4);
  out.idLow = be32(f + 8);
  if (!isRequest || isEvent || out.codec != 2) return true;
  // Body order: dubbo version, service path, service version (may be null), method, descriptor, arguments,
  // attachments. A string converts to at most 1.5x its bytes (a 4-byte sequence to two 3-byte units), rounded up.
  scratch.begin((end - kDubboHeader) * 3 / 2 + 16);
  size_t pos = kDubboHeader;
  size_t at[4];
  bool has[4];
  for (int i = 0; i < 4; i++) {
    at[i] = pos;
    if (!readH2String(f, pos, end, has[i], err)) return false;
  }
  attachmentScanner.scan(f, pos, end);
  const size_t after[4] = {at[1], at[2], at[3], pos};
  if (has[1]) out.service = h2View(f, at[1], after[1]);
  if (has[2]) out.version = h2View(f, at[2], after[2]);
  if (has[3]) out.method = h2View(f, at[3], after[3]);
  const AttachmentScanner& a = attachmentScanner;
  if (a.error != nullptr) {
    out.attachmentsError = a.error;
    return true;
  }
  // Java providers serve what the `path` and `version` attachments name, read over the leading strings: a request
  // whose attachments name another service is routed by neither.
  const std::string_view path = attachmentView(f, a.path);
  const std::string_view version = attachmentView(f, a.version);
  if (present(path) && (!present(out.service) || path != out.service)) {
    out.attachmentsError = kPathDisagrees;
    return true;
  }
  if (present(version) && (out.version.empty() || version != out.version)) {
    out.attachmentsError = kVersionDisagrees;
    return true;
  }
  out.group = attachmentView(f, a.group);
  return true;
}

// Route keys are compared as UTF-8 (what Buffer.from(key) makes of the reference's string): a lone surrogate that
// WTF-8 keeps as ED A0..BF xx becomes U+FFFD.
void appendUtf8(std::string& out, std::string_view s) {
  size_t copied = 0;
  for (size_t i = 0; i + 2 < s.size(); i++) {
    if (static_cast<uint8_t>(s[i]) == 0xed && static_cast<uint8_t>(s[i + 1]) >= 0xa0) {
      out.append(s.data() + copied, i - copied);
      out.append("\xef\xbf\xbd");
      i += 2;
      copied = i + 1;
    }
  }
  out.append(s.data() + copied, s.size() - copied);
}

// ------------------------------------------------------------------------------------------------------------------
// Made frames (bolt.ts encodeBoltFrame, dubbo.ts dubboFrame, hessian.ts hessianString).

// WTF-8 (or UTF-8) text to UTF-16 units; a byte that starts no sequence counts as U+FFFD.
void toUnits(std::string_view s, std::u16string& units) {
  units.clear();
  size_t i = 0;
  const size_t n = s.size();
  const auto cont = [&](size_t k) { return k < n && (static_cast<uint8_t>(s[k]) & 0xc0) == 0x80; };
  while (i < n) {
    const uint8_t b = static_cast<uint8_t>(s[i]);
    if (b < 0x80) {
      units.push_back(b);
      i += 1;
    } else if (b >= 0xc0 && b < 0xe0 && cont(i + 1)) {
      units.push_back(static_cast<char16_t>(((b & 0x1f) << 6) | (s[i + 1] & 0x3f)));
      i += 2;
    } else if (b >= 0xe0 && b < 0xf0 && cont(i + 1) && cont(i + 2)) {
      units.push_back(static_cast<char16_t>(((b & 0x0f) << 12) | ((s[i + 1] & 0x3f) << 6) | (s[i + 2] & 0x3f)));
      i += 3;
    } else if (b >= 0xf0 && b < 0xf8 && cont(i + 1) && cont(i + 2) && cont(i + 3)) {
      const uint32_t cp = ((b & 0x07u) << 18) | ((s[i + 1] & 0x3fu) << 12) | ((s[i + 2] & 0x3fu) << 6) | (s[i + 3] & 0x3fu);
      const uint32_t v = cp >= 0x10000 && cp <= 0x10ffff ? cp - 0x10000 : 0xfffd - 0x10000;
      if (cp >= 0x10000 && cp <= 0x10ffff) {
        units.push_back(static_cast<char16_t>(0xd800 + (v >> 10)));
        units.push_back(static_cast<char16_t>(0xdc00 + (v & 0x3ff)));
      } else {
        units.push_back(0xfffd);
      }
      i += 4;
    } else {
      units.push_back(0xfffd);
      i += 1;
    }
  }
}

void appendCesu8(std::string& out, const char16_t* u, size_t n);

// JSON.stringify of the JavaScript string a WTF-8 view holds ("null" when absent): quotes, backslashes and control
// characters escaped, a lone surrogate as \\uXXXX, everything else as UTF-8.
void appendJson(std::string& out, std::string_view s) {
  if (s.data() == nullptr) {
    out += "null";
    return;
  }
  std::u16string units;
  toUnits(s, units);
  const auto escape = [&out](uint32_t u) {
    out += "\\u";
    for (int shift = 12; shift >= 0; shift -= 4) out.push_back(kHex[(u >> shift) & 15]);
  };
  out.push_back('"');
  for (size_t i = 0; i < units.size(); i++) {
    const uint32_t u = units[i];
    if (u >= 0xd800 && u <= 0xdbff && i + 1 < units.size() && units[i + 1] >= 0xdc00 && units[i + 1] <= 0xdfff) {
      const uint32_t cp = 0x10000 + ((u - 0xd800) << 10) + (units[i + 1] - 0xdc00);
      out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
      i++;
    } else if (u >= 0xd800 && u <= 0xdfff) {
      escape(u);
    } else if (u == '"' || u == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(u));
    } else if (u < 0x20) {
      const char* named = u == 0x08 ? "\\b" : u == 0x0c ? "\\f" : u == 0x0a ? "\\n" : u == 0x0d ? "\\r" : u == 0x09 ? "\\t" : nullptr;
      if (named != nullptr) out += named;
      else escape(u);
    } else {
      const char16_t one[1] = {static_cast<char16_t>(u)};
      appendCesu8(out, one, 1);  // below U+D800 or above U+DFFF, CESU-8 is UTF-8
    }
  }
  out.push_back('"');
}

void appendCesu8(std::string& out, const char16_t* u, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const uint32_t c = u[i];
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
      out.push_back(static_cast<char>(0xc0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
    } else {
      out.push_back(static_cast<char>(0xe0 | (c >> 12)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
    }
  }
}

// A hessian string: 0xffff units per chunk at most; short (< 32 units) and, in Hessian 2.0 only, medium (< 1024)
// final chunks; 'S' final, 'R' (2.0) or 's' (draft) otherwise.
void appendHessianString(std::string& out, std::string_view text, bool draft) {
  std::u16string units;
  toUnits(text, units);
  size_t i = 0;
  do {
    const size_t n = units.size() - i < 0xffff ? units.size() - i : 0xffff;
    const size_t from = i;
    i += n;
    const bool final = i >= units.size();
    if (final && n < 32) {
      out.push_back(static_cast<char>(n));
    } else if (final && n < 1024 && !draft) {
      out.push_back(static_cast<char>(0x30 + (n >> 8)));
      out.push_back(static_cast<char>(n & 0xff));
    } else {
      out.push_back(final ? 'S' : draft ? 's' : 'R');
      out.push_back(static_cast<char>(n >> 8));
      out.push_back(static_cast<char>(n & 0xff));
    }
    appendCesu8(out, units.data() + from, n);
  } while (i < units.size());
}

const char kSofaResponseClass[] = "com.alipay.sofa.rpc.core.response.SofaResponse";
const char kRpcServerExceptionClass[] = "com.alipay.remoting.rpc.exception.RpcServerException";

void appendCompactInt(std::string& out, int32_t n) {
  if (n >= -16 && n <= 47) {
    out.push_back(static_cast<char>(0x90 + n));
  } else {
    uint8_t b[5] = {0x49};
    put32(b + 1, static_cast<uint32_t>(n));
    out.append(reinterpret_cast<const char*>(b), 5);
  }
}

// RpcServerException{detailMessage, cause, stackTrace} in the Hessian 3.1.3 draft grammar SOFA bodies use.
std::string rpcServerException(std::string_view message) {
  std::string out;
  out.push_back('O');
  const size_t nameLen = sizeof kRpcServerExceptionClass - 1;
  appendCompactInt(out, static_cast<int32_t>(nameLen));
  out.append(kRpcServerExceptionClass, nameLen);
  appendCompactInt(out, 3);
  appendHessianString(out, "detailMessage", true);
  appendHessianString(out, "cause", true);
  appendHessianString(out, "stackTrace", true);
  out.push_back('o');
  appendCompactInt(out, 0);
  appendHessianString(out, message, true);
  out.push_back('N');  // cause
  out.push_back('N');  // stackTrace
  return out;
}

struct BoltAnswer {
  uint8_t version, ver1, switchFlags, codec;
};

// responses.ts boltOptions: only a CRC-capable frame (ver1 2) keeps the CRC switch.
BoltAnswer boltAnswerOf(const FrameHeader& who) {
  const uint8_t ver1 = who.ver1 == 2 ? 2 : 1;
  return BoltAnswer{static_cast<uint8_t>(who.boltVersion == 2 ? 2 : 1), ver1,
                    static_cast<uint8_t>(ver1 == 2 ? who.switchFlags : 0), who.codec};
}

std::string boltFrame(const BoltAnswer& a, uint8_t type, uint16_t cmd, uint32_t id, uint32_t timeoutOrStatus,
                      std::string_view className, std::string_view content) {
  const bool v2 = a.version == kBoltV2;
  const BoltLayout l = boltLayout(v2, type == 0);
  const bool withCrc = v2 && a.ver1 == 2 && (a.switchFlags & 1) == 1;
  const size_t bodyEnd = l.fixed + className.size() + content.size();
  std::string frame(bodyEnd + (withCrc ? 4 : 0), '\0');
  uint8_t* f = reinterpret_cast<uint8_t*>(&frame[0]);
  const size_t s = v2 ? 1 : 0;
  f[0] = a.version;
  if (v2) {
    f[1] = a.ver1;
    f[11] = a.switchFlags;
  }
  f[1 + s] = type;
  put16(f + 2 + s, cmd);
  f[4 + s] = 1;  // ver2
  put32(f + 5 + s, id);
  f[9 + s] = a.codec;
  if (type == 0) put16(f + l.status, static_cast<uint16_t>(timeoutOrStatus));
  else put32(f + 10 + 2 * s, timeoutOrStatus);
  put16(f + l.classLen, static_cast<uint16_t>(className.size()));
  put16(f + l.headerLen, 0);
  put32(f + l.contentLen, static_cast<uint32_t>(content.size()));
  if (!className.empty()) std::memcpy(f + l.fixed, className.data(), className.size());
  if (!content.empty()) std::memcpy(f + l.fixed + className.size(), content.data(), content.size());
  if (withCrc) put32(f + bodyEnd, crc32(f, bodyEnd));
  return frame;
}

std::string dubboFrame(uint8_t flag, uint8_t status, uint32_t high, uint32_t low, std::string_view body) {
  std::string frame(kDubboHeader + body.size(), '\0');
  uint8_t* f = reinterpret_cast<uint8_t*>(&frame[0]);
  f[0] = 0xda;
  f[1] = 0xbb;
  f[2] = flag;
  f[3] = status;
  put32(f + 4, high);
  put32(f + 8, low);
  put32(f + 12, static_cast<uint32_t>(body.size()));
  if (!body.empty()) std::memcpy(f + kDubboHeader, body.data(), body.size());
  return frame;
}

}  // namespace

// ====================================================================================================================

Measure measureFrame(const uint8_t* p, size_t avail, size_t maxFrame, size_t& need, CodecError& err) {
  if (avail < 1) {
    need = 1;
    return Measure::NeedMore;
  }
  uint64_t length = 0;
  const uint8_t b = p[0];
  if (b == kBoltV1 || b == kBoltV2) {
    size_t fixed = 0;
    if (!boltHeaderNeed(p, avail, fixed, err)) return Measure::Bad;
    if (avail < fixed) {
      need = fixed;
      return Measure::NeedMore;
    }
    if (!boltFrameLength(p, length, err)) return Measure::Bad;
  } else if (b == kDubboMagicHigh) {
    if (avail < kDubboHeader) {
      need = kDubboHeader;
      return Measure::NeedMore;
    }
    if (!dubboFrameLength(p, length, err)) return Measure::Bad;
  } else {
    badMagic(p, err);
    return Measure::Bad;
  }
  // Checked before anything is buffered: a header alone never makes a framer allocate what it claims.
  if (length > maxFrame) {
    fail(err, "MESHPORT_FRAME_OVERSIZE", 0,
         "frame declares " + std::to_string(length) + " bytes, more than the " + std::to_string(maxFrame) + "-byte maximum");
    return Measure::Bad;
  }
  need = static_cast<size_t>(length);
  return Measure::Ok;
}

bool decodeHeader(const uint8_t* p, size_t len, FrameHeader& out, CodecError& err) {
  out = FrameHeader{};
  scratch.begin(0);
  if (len == 0) return fail(err, "MESHPORT_FRAME_TRUNCATED", 0, "an empty input holds no frame");
  if (p[0] == kBoltV1 || p[0] == kBoltV2) return decodeBolt(p, len, out, err);
  if (p[0] == kDubboMagicHigh) return decodeDubbo(p, len, out, err);
  return badMagic(p, err);
}

bool peekIdentity(const uint8_t* p, size_t len, FrameHeader& out) {
  out = FrameHeader{};
  if (len < 1) return false;
  const uint8_t b = p[0];
  if (b == kDubboMagicHigh) {
    if (len < 12) return false;
    const uint8_t flag = p[2];
    out.proto = Proto::Dubbo;
    out.boltVersion = 0;
    // What an answer needs: peekFrameIdentity expects a response only of a two-way request that is no event.
    out.kind = (flag & 0xe0) == 0xc0 ? Kind::Request : (flag & 0x80) != 0 ? Kind::Oneway
             : (flag & 0x20) != 0 ? Kind::HeartbeatAck : Kind::Response;
    out.codec = flag & 0x1f;
    out.idHigh = be32(p + 4);
    out.idLow = be32(p + 8);
    return true;
  }
  if (b != kBoltV1 && b != kBoltV2) return false;
  const size_t s = b == kBoltV2 ? 1 : 0;
  if (len < 10 + 2 * s) return false;
  const uint8_t type = p[1 + s];
  const uint16_t cmd = be16(p + 2 + s);
  out.proto = Proto::Bolt;
  // Only type 1 expects a response (peekFrameIdentity), whatever the cmdcode says.
  out.kind = type == 1 ? (cmd == 0 ? Kind::Heartbeat : Kind::Request)
           : type == 0 ? (cmd == 0 ? Kind::HeartbeatAck : Kind::Response) : Kind::Oneway;
  out.boltVersion = s ? 2 : 1;
  out.ver1 = s ? p[1] : 0;
  out.switchFlags = s ? p[11] : 0;
  out.codec = p[9 + s];
  out.idLow = be32(p + 5 + s);
  return true;
}

bool peekKind(const uint8_t* p, size_t len, Kind& kind) {
  if (len < 1) return false;
  if (p[0] == kDubboMagicHigh) {
    if (len < 3) return false;
    const uint8_t flag = p[2];
    if ((flag & 0x20) != 0) kind = (flag & 0x80) != 0 ? Kind::Heartbeat : Kind::HeartbeatAck;
    else kind = (flag & 0x80) == 0 ? Kind::Response : (flag & 0x40) != 0 ? Kind::Request : Kind::Oneway;
    return true;
  }
  const size_t s = p[0] == kBoltV2 ? 1 : 0;
  if (len < 4 + s) return false;
  const uint8_t type = p[1 + s];
  const uint16_t cmd = be16(p + 2 + s);
  if (cmd == 0 && type == 1) kind = Kind::Heartbeat;
  else if (cmd == 0 && type == 0) kind = Kind::HeartbeatAck;
  else if (cmd == 1 && type == 1) kind = Kind::Request;
  else if (cmd == 1 && type == 2) kind = Kind::Oneway;
  else if (cmd == 2 && type == 0) kind = Kind::Response;
  else return false;
  return true;
}

void peekId(const uint8_t* p, uint32_t& high, uint32_t& low) {
  if (p[0] == kDubboMagicHigh) {
    high = be32(p + 4);
    low = be32(p + 8);
    return;
  }
  high = 0;
  low = be32(p + (p[0] == kBoltV2 ? 6 : 5));
}

uint16_t peekStatus(const uint8_t* p) {
  if (p[0] == kDubboMagicHigh) return p[3];
  return p[0] == kBoltV2 ? be16(p + 12) : be16(p + 10);
}

void setRequestId(uint8_t* p, size_t len, uint32_t high, uint32_t low) {
  if (len < 1) return;
  if (p[0] == kDubboMagicHigh) {
    if (len < 12) return;
    put32(p + 4, high);
    put32(p + 8, low);
    return;
  }
  if (p[0] == kBoltV1) {
    if (len >= 9) put32(p + 5, low);
    return;
  }
  if (p[0] != kBoltV2 || len < 12) return;
  if (!boltHasCrc(p)) {
    put32(p + 6, low);
    return;
  }
  // The CRC covers the id: a frame that is not whole here is left as it is rather than given a wrong CRC.
  size_t fixed = 0;
  uint64_t length = 0;
  CodecError ignored;
  if (!boltHeaderNeed(p, len, fixed, ignored) || len < fixed || !boltFrameLength(p, length, ignored) || length > len) return;
  const size_t end = static_cast<size_t>(length) - 4;
  put32(p + 6, low);
  put32(p + end, crc32(p, end));
}

bool routeKey(const FrameHeader& h, std::string& out) {
  out.clear();
  if (!present(h.service)) return false;
  if (h.proto != Proto::Dubbo) {
    appendUtf8(out, h.service);
    return true;
  }
  // router.ts routeKey: `group/interface:version`, each part left out when empty.
  if (!h.group.empty()) {
    appendUtf8(out, h.group);
    out.push_back('/');
  }
  appendUtf8(out, h.service);
  if (!h.version.empty()) {
    out.push_back(':');
    appendUtf8(out, h.version);
  }
  return true;
}

uint16_t failureStatus(Proto proto, Failure f) {
  if (proto == Proto::Bolt) {
    switch (f) {
      case Failure::NoRoute: return 0x06;         // NO_PROCESSOR
      case Failure::Timeout: return 0x07;         // TIMEOUT
      case Failure::Busy: return 0x04;            // SERVER_THREADPOOL_BUSY
      case Failure::Unavailable: return 0x05;     // ERROR_COMM
      case Failure::UpstreamClosed: return 0x10;  // CONNECTION_CLOSED
      case Failure::BadRequest: return 0x09;      // CODEC_EXCEPTION
      case Failure::Draining: return 0x04;        // SERVER_THREADPOOL_BUSY
      case Failure::Denied: return 0x02;          // SERVER_EXCEPTION
    }
    return 0x01;  // ERROR
  }
  switch (f) {
    case Failure::NoRoute: return 60;         // SERVICE_NOT_FOUND
    case Failure::Timeout: return 31;         // SERVER_TIMEOUT
    case Failure::Busy: return 100;           // SERVER_THREADPOOL_EXHAUSTED_ERROR
    case Failure::Unavailable: return 35;     // CHANNEL_INACTIVE
    case Failure::UpstreamClosed: return 35;  // CHANNEL_INACTIVE
    case Failure::BadRequest: return 40;      // BAD_REQUEST
    case Failure::Draining: return 100;       // SERVER_THREADPOOL_EXHAUSTED_ERROR
    case Failure::Denied: return 40;          // BAD_REQUEST
  }
  return 80;  // SERVER_ERROR
}

std::string errorResponse(const FrameHeader& who, Failure f, std::string_view message) {
  const uint16_t status = failureStatus(who.proto, f);
  if (who.proto == Proto::Dubbo) {
    // Proxy-made Dubbo frames are hessian2 whatever the caller used: every Dubbo peer reads it.
    std::string body;
    appendHessianString(body, message, false);
    return dubboFrame(0x02, static_cast<uint8_t>(status), who.idHigh, who.idLow, body);
  }
  const BoltAnswer a = boltAnswerOf(who);
  // Other codecs get the status alone, which every Bolt client maps to an error too.
  const std::string content = a.codec == 1 ? rpcServerException(message) : std::string();
  return boltFrame(a, 0, 2, who.idLow, status, std::string_view(kSofaResponseClass, sizeof kSofaResponseClass - 1), content);
}

bool dubboTraceAttachments(const uint8_t* p, size_t len, TraceAttachments& out) {
  out = TraceAttachments{};
  if (len < kDubboHeader || p[0] != kDubboMagicHigh || p[1] != 0xbb) return false;
  const uint8_t flag = p[2];
  if ((flag & 0x80) == 0 || (flag & 0x20) != 0 || (flag & 0x1f) != 2) return false;
  const int32_t body = s32(p + 12);
  if (body < 0 || kDubboHeader + static_cast<uint64_t>(body) > len) return false;
  const size_t end = kDubboHeader + static_cast<size_t>(body);
  // The leading strings are walked, not viewed: nothing here touches the scratch a caller's FrameHeader views.
  size_t pos = kDubboHeader;
  CodecError err;
  for (int i = 0; i < 4; i++) {
    bool has;
    if (!readH2String(p, pos, end, has, err)) return false;
  }
  thread_local AttachmentScanner traceScanner;
  traceScanner.traceKeys = true;
  traceScanner.scan(p, pos, end);
  if (traceScanner.error != nullptr) return false;
  const auto copy = [](const AttachmentScanner::Value& v, TraceAttachments::Range& r) {
    r = TraceAttachments::Range{v.present, v.start, v.end};
  };
  copy(traceScanner.traceparent, out.traceparent);
  copy(traceScanner.sofaTraceId, out.sofaTraceId);
  copy(traceScanner.sofaRpcId, out.sofaRpcId);
  return true;
}

std::string attachmentsErrorText(const uint8_t* p, size_t len) {
  FrameHeader h;
  CodecError err;
  if (!decodeHeader(p, len, h, err) || h.attachmentsError == nullptr) return std::string();
  const AttachmentScanner& a = attachmentScanner;
  if (a.error != nullptr) return a.message();
  // dubbo.ts disagreement(): the attachment's value and the leading string, as JSON.stringify writes them.
  const bool path = h.attachmentsError == kPathDisagrees;
  std::string out = path ? "the path attachment names " : "the version attachment names ";
  appendJson(out, attachmentView(p, path ? a.path : a.version));
  out += ", the request ";
  appendJson(out, path ? h.service : h.version);
  return out;
}

std::string heartbeatAck(const FrameHeader& who) {
  if (who.proto == Proto::Dubbo) return dubboFrame(0x22, 20, who.idHigh, who.idLow, "N");
  return boltFrame(boltAnswerOf(who), 0, 0, who.idLow, 0, std::string_view(), std::string_view());
}

std::string heartbeatRequest(Proto proto, uint32_t id) {
  if (proto == Proto::Dubbo) return dubboFrame(0xe2, 0, 0, id, "N");
  return boltFrame(BoltAnswer{kBoltV1, 1, 0, 1}, 1, 0, id, 1000, std::string_view(), std::string_view());
}

uint32_t crc32(const uint8_t* p, size_t len) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < len; i++) c = kCrc.t[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

}  // namespace meshport
