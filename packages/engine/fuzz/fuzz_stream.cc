// libFuzzer target: a byte stream framed as the engine frames a connection, in chunk sizes the input chooses,
// against the same stream framed in one piece: the frames cut, how each decodes, and where framing stops must not
// depend on how the bytes arrived.
//
// Input: [cap selector][4 chunk-size bytes][stream...]. Every frame is decoded from its own exact-size allocation,
// so ASan sees any read past a frame's end.

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "codec.h"

using namespace meshport;

namespace {

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "framing invariant broken: %s\n", what);
  std::abort();
}
#define CHECK(cond) \
  do {              \
    if (!(cond)) broken(#cond); \
  } while (0)

struct Cut {
  size_t length;
  bool decoded;
  std::string outcome;  // error code, or the route key
  bool operator==(const Cut& o) const { return length == o.length && decoded == o.decoded && outcome == o.outcome; }
};

struct Framed {
  std::vector<Cut> frames;
  std::string stoppedBy;  // the code that ended framing, or "" when the stream ran out
  size_t held = 0;        // bytes left over (a partial frame)
};

// The framer: bytes in, whole frames out, nothing buffered beyond what arrived.
class Framer {
 public:
  explicit Framer(size_t maxFrame) : maxFrame_(maxFrame) {}

  void write(const uint8_t* p, size_t n, Framed& out) {
    if (!out.stoppedBy.empty()) return;
    held_.insert(held_.end(), p, p + n);
    for (;;) {
      size_t need = 0;
      CodecError err;
      const Measure m = measureFrame(held_.data(), held_.size(), maxFrame_, need, err);
      if (m == Measure::Bad) {
        out.stoppedBy = err.code;
        break;
      }
      if (m == Measure::NeedMore) {
        // Never asks for more than the shortest frame: reading exactly `need` never swallows the next frame.
        CHECK(need > held_.size() && need <= 24);
        break;
      }
      CHECK(need <= maxFrame_);
      if (need > held_.size()) break;
      std::vector<uint8_t> frame(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(need));
      FrameHeader h;
      Cut cut{need, decodeHeader(frame.data(), frame.size(), h, err), ""};
      if (cut.decoded) {
        std::string key;
        if (routeKey(h, key)) cut.outcome = "key:" + key;
      } else {
        cut.outcome = err.code;
      }
      out.frames.push_back(cut);
      held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(need));
    }
    out.held = held_.size();
  }

 private:
  size_t maxFrame_;
  std::vector<uint8_t> held_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 5) return 0;
  const size_t maxFrame = data[0] < 16 ? static_cast<size_t>(data[0]) * 64 + 16 : 16u << 20;
  const uint8_t* sizes = data + 1;
  const uint8_t* stream = data + 5;
  const size_t n = size - 5;

  Framed whole;
  Framer(maxFrame).write(stream, n, whole);

  Framed chunked;
  Framer framer(maxFrame);
  for (size_t off = 0, i = 0; off < n; i++) {
    // Chunk sizes from the input: mostly small (header splits), sometimes large.
    const uint8_t s = sizes[i % 4];
    size_t take = s < 200 ? (s % 23) + 1 : static_cast<size_t>(s) * 4;
    if (take > n - off) take = n - off;
    framer.write(stream + off, take, chunked);
    off += take;
  }
  CHECK(chunked.frames.size() == whole.frames.size());
  for (size_t i = 0; i < whole.frames.size(); i++) CHECK(chunked.frames[i] == whole.frames[i]);
  CHECK(chunked.stoppedBy == whole.stoppedBy);
  if (whole.stoppedBy.empty()) CHECK(chunked.held == whole.held);
  return 0;
}
