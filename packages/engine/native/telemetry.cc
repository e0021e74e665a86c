// See telemetry.h. The formats are packages/router/src/call-log.ts's (accessLine, spanLine), written here without
// building intermediate strings: each line is appended to its batch in place.

#include "telemetry.h"

#include <sys/random.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

namespace meshport {

const char* const kOutcomeNames[kFailures + 1] = {"no-route",    "timeout",  "busy",   "unavailable", "upstream-closed",
                                                  "bad-request", "draining", "denied", "ok"};

namespace {

constexpr char kHex[] = "0123456789abcdef";

// A JSON string: `"` and `\` backslashed, control characters as \u00xx (lowercase, no short forms: call-log.ts's
// str()), everything else as it is.
void appendEscaped(std::string& out, std::string_view s) {
  size_t plain = 0;
  for (size_t i = 0; i < s.size(); i++) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + plain, i - plain);
    plain = i + 1;
    if (c < 0x20) {
      const char esc[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
      out.append(esc, 6);
    } else {
      out += '\\';
      out += char(c);
    }
  }
  out.append(s.data() + plain, s.size() - plain);
}

void appendString(std::string& out, std::string_view s) {
  out += '"';
  appendEscaped(out, s);
  out += '"';
}

void appendStringOrNull(std::string& out, std::string_view s) {
  if (s.empty()) out += "null";
  else appendString(out, s);
}

void appendUint(std::string& out, uint64_t v) {
  char buf[20];
  size_t at = sizeof buf;
  do {
    buf[--at] = char('0' + v % 10);
    v /= 10;
  } while (v != 0);
  out.append(buf + at, sizeof buf - at);
}

// Microseconds as milliseconds with up to three decimals and no trailing zeros, as JavaScript prints
// Math.round(ms * 1000) / 1000.
void appendMillis(std::string& out, int64_t micros) {
  if (micros < 0) micros = 0;
  appendUint(out, uint64_t(micros / 1000));
  int frac = int(micros % 1000);
  if (frac == 0) return;
  char digits[4] = {char('0' + frac / 100), char('0' + frac / 10 % 10), char('0' + frac % 10), 0};
  size_t n = 3;
  while (digits[n - 1] == '0') n--;
  out += '.';
  out.append(digits, n);
}

// Date.prototype.toISOString of a wall-clock time: 2026-12-06T18:30:00.123Z.
void appendIsoTime(std::string& out, int64_t unixMicros) {
  const int64_t ms = unixMicros / 1000;
  const time_t secs = time_t(ms / 1000);
  tm t{};
  gmtime_r(&secs, &t);
  char buf[32];
  const int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday,
                              t.tm_hour, t.tm_min, t.tm_sec, int(ms % 1000));
  out.append(buf, size_t(n));
}

// A string attribute and the comma after it (the two int attributes close the list). `head`: ATTR_TEXT(key).
void appendTextAttribute(std::string& out, std::string_view head, std::string_view value) {
  out += head;
  appendString(out, value);
  out.append("}},", 3);
}

// An attribute up to its value, the key spliced in at compile time.
#define ATTR_TEXT(key) std::string_view("{\"key\":\"" key "\",\"value\":{\"stringValue\":")
#define ATTR_INT(key) std::string_view("{\"key\":\"" key "\",\"value\":{\"intValue\":\"")

}  // namespace

void appendAccessLine(std::string& out, const CallRecord& r, const CallEnd& e) {
  out += "{\"time\":\"";
  appendIsoTime(out, e.endUnixMicros);
  out += e.listener == 0 ? "\",\"direction\":\"outbound\"" : "\",\"direction\":\"inbound\"";
  out += e.proto == Proto::Bolt ? ",\"protocol\":\"bolt\",\"caller\":" : ",\"protocol\":\"dubbo\",\"caller\":";
  appendString(out, e.caller);
  out += ",\"callerIdentity\":";
  appendStringOrNull(out, e.identity);
  out += ",\"service\":";
  appendString(out, e.service);
  out += ",\"method\":";
  appendString(out, r.method);
  out += ",\"endpoint\":";
  appendStringOrNull(out, r.endpoint);
  out += ",\"status\":";
  appendString(out, e.status);
  out += ",\"durationMs\":";
  appendMillis(out, e.durationMicros);
  out += ",\"bytesIn\":";
  appendUint(out, r.bytesIn);
  out += ",\"bytesOut\":";
  appendUint(out, e.bytesOut);
  out += ",\"traceId\":";
  if (r.traced) {
    out += '"';
    out += r.ids.traceId;
    out += '"';
  } else {
    out += "null";
  }
  out += "}\n";
}

void appendSpanLine(std::string& out, const CallRecord& r, const CallEnd& e) {
  // Room for the line in one go (escaping may still grow it): the appends below then rarely reallocate.
  const size_t need = out.size() + 900 + 2 * (e.service.size() + r.method.size()) + e.caller.size() + r.endpoint.size() +
                      e.identity.size() + r.context.sofaTraceId.size() + r.context.sofaRpcId.size();
  if (out.capacity() < need) out.reserve(std::max(need, 2 * out.capacity()));
  out += "{\"traceId\":\"";
  out += r.ids.traceId;
  out += "\",\"spanId\":\"";
  out += r.ids.spanId;
  out += '"';
  if (!r.ids.parentSpanId.empty()) {
    out += ",\"parentSpanId\":\"";
    out += r.ids.parentSpanId;
    out += '"';
  }
  out += ",\"name\":\"";
  appendEscaped(out, e.service);
  out += '/';
  appendEscaped(out, r.method);
  out += '"';
  out += e.listener == 0 ? ",\"kind\":3,\"startTimeUnixNano\":\"" : ",\"kind\":2,\"startTimeUnixNano\":\"";
  appendUint(out, uint64_t(e.endUnixMicros - std::max<int64_t>(0, e.durationMicros)));
  out += "000\",\"endTimeUnixNano\":\"";
  appendUint(out, uint64_t(e.endUnixMicros));
  out += "000\",\"attributes\":[";
  appendTextAttribute(out, ATTR_TEXT("rpc.system"), e.proto == Proto::Bolt ? "sofarpc" : "apache_dubbo");
  appendTextAttribute(out, ATTR_TEXT("rpc.service"), e.service);
  appendTextAttribute(out, ATTR_TEXT("rpc.method"), r.method);
  appendTextAttribute(out, ATTR_TEXT("meshport.direction"), e.listener == 0 ? "outbound" : "inbound");
  appendTextAttribute(out, ATTR_TEXT("meshport.outcome"), e.status);
  appendTextAttribute(out, ATTR_TEXT("network.peer.address"), e.caller);
  if (!r.endpoint.empty()) appendTextAttribute(out, ATTR_TEXT("server.address"), r.endpoint);
  if (!e.identity.empty()) appendTextAttribute(out, ATTR_TEXT("meshport.caller.identity"), e.identity);
  if (!r.context.sofaTraceId.empty()) {
    appendTextAttribute(out, ATTR_TEXT("sofa.trace_id"), r.context.sofaTraceId);
    const std::string& rpcId = r.context.sofaRpcId;
    appendTextAttribute(out, ATTR_TEXT("sofa.rpc_id"), rpcId.empty() ? std::string_view("0") : std::string_view(rpcId));
  }
  out += ATTR_INT("meshport.bytes_in");
  appendUint(out, r.bytesIn);
  out += "\"}},";
  out += ATTR_INT("meshport.bytes_out");
  appendUint(out, e.bytesOut);
  out += "\"}}";
  if (e.status == "ok") {
    out += "],\"status\":{\"code\":1}}\n";
  } else {
    out += "],\"status\":{\"code\":2,\"message\":";
    appendString(out, e.status);
    out += "}}\n";
  }
}

#undef ATTR_TEXT
#undef ATTR_INT

bool traceSampled(std::string_view traceId, double everyN) {
  if (!(everyN >= 1)) return false;
  if (everyN == 1) return true;
  if (traceId.empty() || traceId.size() > 32) return false;
  const std::string_view low = traceId.size() > 16 ? traceId.substr(traceId.size() - 16) : traceId;
  uint64_t v = 0;
  for (char c : low) {
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else return false;
    v = (v << 4) | uint64_t(d);
  }
  const double n = std::floor(everyN);
  if (n >= 18446744073709551616.0) return v == 0;
  return v % uint64_t(n) == 0;
}

IdSource::IdSource() {
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != ssize_t(sizeof seed)) {
    seed = uint64_t(std::chrono::steady_clock::now().time_since_epoch().count()) ^ uint64_t(reinterpret_cast<uintptr_t>(this));
  }
  state_ = seed;
}

// splitmix64: every output of a 64-bit counter, well mixed.
uint64_t IdSource::next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void IdSource::hex(std::string& out, size_t digits) {
  out.resize(digits);
  for (size_t i = 0; i < digits; i += 16) {
    uint64_t v = next();
    // An all-zero id is invalid (W3C, OTLP); one in 2^64 per word, and the next word decides.
    if (v == 0) v = 1;
    for (size_t j = 0; j < 16 && i + j < digits; j++) out[i + j] = kHex[(v >> (60 - 4 * j)) & 15];
  }
}

}  // namespace meshport
