// libFuzzer target: one input as one frame through everything the engine does with a frame (measure, decode, route
// key, id rewrite, answers, identity peeks), checking that each step's output is something the codec itself accepts.
//
// ASan/UBSan catch reads past the input (libFuzzer hands it over in an allocation of exactly its size) and undefined
// behaviour; the checks below abort on answers that contradict each other, which the sanitizers cannot see.

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "codec.h"

using namespace meshport;

namespace {

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "codec invariant broken: %s\n", what);
  std::abort();
}
#define CHECK(cond) \
  do {              \
    if (!(cond)) broken(#cond); \
  } while (0)

// The strings of a header as owned copies: views into the scratch die at the next decode.
struct Owned {
  bool hasService;
  std::string service, version, group, method;
  explicit Owned(const FrameHeader& h)
      : hasService(h.service.data() != nullptr), service(h.service), version(h.version), group(h.group), method(h.method) {}
  bool operator==(const Owned& o) const {
    return hasService == o.hasService && service == o.service && version == o.version && group == o.group && method == o.method;
  }
};

// A made frame must measure as exactly itself and decode.
FrameHeader decodeMade(const std::string& made) {
  std::vector<uint8_t> bytes(made.begin(), made.end());  // its own allocation: reads past it are caught
  size_t need = 0;
  CodecError err;
  CHECK(measureFrame(bytes.data(), bytes.size(), SIZE_MAX, need, err) == Measure::Ok);
  CHECK(need == bytes.size());
  FrameHeader h;
  CHECK(decodeHeader(bytes.data(), bytes.size(), h, err));
  return h;
}

const Failure kFailures[] = {Failure::NoRoute,        Failure::Timeout,    Failure::Busy,    Failure::Unavailable,
                             Failure::UpstreamClosed, Failure::BadRequest, Failure::Draining};

void checkAnswers(const FrameHeader& who, const uint8_t* data, size_t size) {
  // The message: a slice of the input (any bytes, UTF-8 or not) or nothing.
  const size_t take = size > 16 ? (data[size - 1] % 200) : 0;
  const std::string message(reinterpret_cast<const char*>(data + size - (take < size ? take : size)), take < size ? take : size);
  const Failure f = kFailures[size % 7];
  const FrameHeader e = decodeMade(errorResponse(who, f, message));
  CHECK(e.kind == Kind::Response);
  CHECK(e.proto == who.proto);
  CHECK(e.status == failureStatus(who.proto, f));
  CHECK(e.idLow == who.idLow);
  if (who.proto == Proto::Dubbo) CHECK(e.idHigh == who.idHigh);
  else CHECK(e.boltVersion == (who.boltVersion == 2 ? 2 : 1));
  const FrameHeader a = decodeMade(heartbeatAck(who));
  CHECK(a.kind == Kind::HeartbeatAck);
  CHECK(a.idLow == who.idLow);
}

// Everything the engine does with one frame, checked step by step.
void exercise(const uint8_t* data, size_t size) {
  // A small cap now and then, so OVERSIZE is reached from every header.
  const size_t maxFrame = size > 0 && data[0] == 0x02 && size > 40 && data[size / 2] < 8 ? data[size / 2] * 16 : 16u << 20;
  size_t need = 0;
  CodecError err;
  const Measure m = measureFrame(data, size, maxFrame, need, err);
  if (m == Measure::NeedMore) CHECK(need > size && need <= 24);
  if (m == Measure::Bad) CHECK(err.code != nullptr && std::strncmp(err.code, "MESHPORT_", 9) == 0);

  // Identity of every prefix: once readable, it never changes as bytes are added.
  FrameHeader full;
  const bool fullPeek = peekIdentity(data, size, full);
  for (size_t len = 0; len <= size && len <= 32; len++) {
    FrameHeader h;
    if (peekIdentity(data, len, h)) {
      CHECK(fullPeek && h.proto == full.proto && h.kind == full.kind && h.idHigh == full.idHigh && h.idLow == full.idLow);
    }
  }

  FrameHeader h;
  const bool decoded = decodeHeader(data, size, h, err);
  size_t whole = 0;
  CodecError ignored;
  const Measure unbounded = measureFrame(data, size, SIZE_MAX, whole, ignored);
  if (decoded) {
    // Decoding implies a whole frame by the framer's measure.
    CHECK(unbounded == Measure::Ok && whole <= size);
  } else {
    CHECK(err.code != nullptr && err.offset <= size);
    // A frame the framer calls whole fails only on what the fixed header does not say.
    if (unbounded == Measure::Ok && whole <= size) {
      CHECK(std::strcmp(err.code, "MESHPORT_BOLT_BAD_CMDCODE") == 0 || std::strcmp(err.code, "MESHPORT_BOLT_BAD_HEADER_MAP") == 0 ||
            std::strcmp(err.code, "MESHPORT_BOLT_BAD_CRC") == 0 || std::strcmp(err.code, "MESHPORT_DUBBO_BAD_BODY") == 0);
    }
  }

  if (decoded) {
    std::string key;
    const bool routed = routeKey(h, key);
    CHECK(routed == (h.service.data() != nullptr));
    CHECK(validUtf8(key));
    // A group leads the key as it is (a lone surrogate in it becomes U+FFFD in the key, so only UTF-8 groups compare).
    if (h.proto == Proto::Dubbo && !h.group.empty() && validUtf8(std::string(h.group))) CHECK(key.compare(0, h.group.size(), h.group) == 0);
    const Owned before(h);
    const FrameHeader who = h;
    // The full text of an attachments error: there exactly when the static reason is, and UTF-8 (it goes into answers).
    const std::string text = attachmentsErrorText(data, size);
    CHECK(text.empty() == (h.attachmentsError == nullptr));
    CHECK(validUtf8(text));

    // The id rewritten on a copy of exactly the frame: still a frame, same identity, the new id.
    std::vector<uint8_t> copy(data, data + whole);
    const uint32_t high = 0x9e3779b9u ^ static_cast<uint32_t>(size);
    const uint32_t low = 0x7f4a7c15u + static_cast<uint32_t>(size);
    setRequestId(copy.data(), copy.size(), high, low);
    FrameHeader r;
    CHECK(decodeHeader(copy.data(), copy.size(), r, err));
    CHECK(r.idLow == low);
    CHECK(r.idHigh == (h.proto == Proto::Dubbo ? high : 0));
    CHECK(r.kind == h.kind && r.proto == h.proto);
    CHECK(Owned(r) == before);
    uint32_t ph = 0, pl = 0;
    peekId(copy.data(), ph, pl);
    CHECK(ph == r.idHigh && pl == low);
    Kind k;
    CHECK(peekKind(copy.data(), copy.size(), k) && k == h.kind);
    // A status is only a status in answers; in requests those bytes are the timeout (Bolt) or unused (Dubbo).
    if (h.kind == Kind::Response || h.kind == Kind::HeartbeatAck) CHECK(peekStatus(copy.data()) == h.status);

    checkAnswers(who, data, size);
  } else {
    // A frame that failed to decode is answered from what peekIdentity reads, as the router does.
    FrameHeader who;
    if (peekIdentity(data, size, who)) checkAnswers(who, data, size);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  exercise(data, size);
  // A mutated Bolt v2 CRC frame almost never keeps a matching CRC, so what lies behind the check (a decoded CRC frame's
  // id rewrite and answers) would go unfuzzed: the same frame with its CRC made right goes through too.
  size_t whole = 0;
  CodecError err;
  if (size >= 12 && data[0] == 2 && data[1] == 2 && (data[11] & 1) == 1 &&
      measureFrame(data, size, SIZE_MAX, whole, err) == Measure::Ok && whole <= size && whole >= 4) {
    std::vector<uint8_t> fixed(data, data + whole);
    const uint32_t crc = crc32(fixed.data(), whole - 4);
    for (int i = 0; i < 4; i++) fixed[whole - 4 + i] = static_cast<uint8_t>(crc >> (24 - 8 * i));
    exercise(fixed.data(), fixed.size());
  }
  return 0;
}
