// exports.codec: the native codec's functions for JavaScript, so tests and tools (the differential test,
// `meshport decode`) can hold it to @meshport/protocol. Not on the forwarding path: it converts freely.

#include <napi.h>

#include <cmath>
#include <string>

#include "codec.h"
#include "trace_context.h"

namespace meshport {
namespace {

struct Bytes {
  uint8_t* data;
  size_t length;
};

Napi::TypeError typeError(Napi::Env env, const char* fn, const std::string& what) {
  return Napi::TypeError::New(env, std::string("codec.") + fn + ": " + what);
}

Bytes bytesArg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  if (info.Length() > i && info[i].IsTypedArray()) {
    const Napi::TypedArray array = info[i].As<Napi::TypedArray>();
    if (array.TypedArrayType() == napi_uint8_array) {
      Napi::Uint8Array u8 = array.As<Napi::Uint8Array>();
      return Bytes{u8.Data(), u8.ElementLength()};
    }
  }
  throw typeError(info.Env(), fn, std::string(name) + " must be a Buffer or Uint8Array");
}

double integerArg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, double min, double max) {
  if (info.Length() > i && info[i].IsNumber()) {
    const double v = info[i].As<Napi::Number>().DoubleValue();
    if (std::isfinite(v) && std::floor(v) == v && v >= min && v <= max) return v;
  }
  throw typeError(info.Env(), fn, std::string(name) + " must be an integer from " + std::to_string(static_cast<long long>(min)) +
                                      " to " + std::to_string(static_cast<long long>(max)));
}

// A 32-bit word given as int32 or uint32 (JavaScript holds ids both ways).
uint32_t wordArg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  const double v = integerArg(info, i, fn, name, -2147483648.0, 4294967295.0);
  return static_cast<uint32_t>(static_cast<int64_t>(v));
}

std::string stringArg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  if (info.Length() > i && info[i].IsString()) return info[i].As<Napi::String>().Utf8Value();
  throw typeError(info.Env(), fn, std::string(name) + " must be a string");
}

// The codec's refusal as the reference throws it: message with the offset, `code`, `offset`.
Napi::Error codecError(Napi::Env env, const CodecError& err) {
  Napi::Error e = Napi::Error::New(env, err.message + " (at byte " + std::to_string(err.offset) + ")");
  e.Set("code", Napi::String::New(env, err.code != nullptr ? err.code : "MESHPORT_UNKNOWN"));
  e.Set("offset", Napi::Number::New(env, static_cast<double>(err.offset)));
  return e;
}

// WTF-8 (the codec's strings: UTF-8, lone surrogates in their 3-byte form) to a JavaScript string, unit for unit.
Napi::Value jsString(Napi::Env env, std::string_view s) {
  std::u16string units;
  units.reserve(s.size());
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const uint8_t b = static_cast<uint8_t>(s[i]);
    const auto cont = [&](size_t k) { return static_cast<uint32_t>(static_cast<uint8_t>(s[k]) & 0x3f); };
    if (b < 0x80) {
      units.push_back(b);
      i += 1;
    } else if (b < 0xe0 && i + 1 < n) {
      units.push_back(static_cast<char16_t>(((b & 0x1f) << 6) | cont(i + 1)));
      i += 2;
    } else if (b < 0xf0 && i + 2 < n) {
      units.push_back(static_cast<char16_t>(((b & 0x0f) << 12) | (cont(i + 1) << 6) | cont(i + 2)));
      i += 3;
    } else if (i + 3 < n) {
      const uint32_t cp = (((b & 0x07u) << 18) | (cont(i + 1) << 12) | (cont(i + 2) << 6) | cont(i + 3)) - 0x10000;
      units.push_back(static_cast<char16_t>(0xd800 + (cp >> 10)));
      units.push_back(static_cast<char16_t>(0xdc00 + (cp & 0x3ff)));
      i += 4;
    } else {
      // Never made by the codec; shown rather than hidden.
      units.push_back(0xfffd);
      i += 1;
    }
  }
  return Napi::String::New(env, units.data(), units.size());
}

Napi::Value optionalString(Napi::Env env, std::string_view s) {
  return s.data() == nullptr ? env.Null() : jsString(env, s);
}

// A JavaScript string as WTF-8, so a message with a lone surrogate reaches the codec as the reference sees it.
std::string wtf8Of(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  if (info.Length() <= i || !info[i].IsString()) throw typeError(info.Env(), fn, std::string(name) + " must be a string");
  const std::u16string u = info[i].As<Napi::String>().Utf16Value();
  std::string out;
  out.reserve(u.size() * 3);
  for (size_t k = 0; k < u.size(); k++) {
    uint32_t c = u[k];
    if (c >= 0xd800 && c <= 0xdbff && k + 1 < u.size() && u[k + 1] >= 0xdc00 && u[k + 1] <= 0xdfff) {
      c = 0x10000 + ((c - 0xd800) << 10) + (u[k + 1] - 0xdc00);
      k++;
    }
    appendCodePoint(out, c);
  }
  return out;
}


const char* protocolName(Proto p) { return p == Proto::Bolt ? "bolt" : "dubbo"; }

const char* kindName(Kind k) {
  switch (k) {
    case Kind::Request: return "request";
    case Kind::Oneway: return "oneway";
    case Kind::Response: return "response";
    case Kind::Heartbeat: return "heartbeat";
    case Kind::HeartbeatAck: return "heartbeat-ack";
  }
  return "unknown";
}

Napi::Buffer<uint8_t> bufferOf(Napi::Env env, const std::string& bytes) {
  return Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

// The frame's header, or the decode error thrown.
FrameHeader decoded(Napi::Env env, const Bytes& b) {
  FrameHeader h;
  CodecError err;
  if (!decodeHeader(b.data, b.length, h, err)) throw codecError(env, err);
  return h;
}

// Who an answer goes to: the decoded header, or (as the router answers a frame that failed to decode) what
// peekIdentity reads of its first bytes. Throws the decode error when not even that can be read.
FrameHeader answeredFrame(Napi::Env env, const Bytes& b) {
  FrameHeader h;
  CodecError err;
  if (decodeHeader(b.data, b.length, h, err)) return h;
  if (peekIdentity(b.data, b.length, h)) return h;
  throw codecError(env, err);
}

// A whole measured frame at the start of the buffer, or the error that says why not.
void requireWholeFrame(Napi::Env env, const Bytes& b) {
  size_t need = 0;
  CodecError err;
  const Measure m = measureFrame(b.data, b.length, SIZE_MAX, need, err);
  if (m == Measure::Bad) throw codecError(env, err);
  if (m == Measure::NeedMore || need > b.length) {
    err.code = "MESHPORT_FRAME_TRUNCATED";
    err.offset = b.length;
    err.message = "a whole frame needs " + std::to_string(need) + " bytes, got " + std::to_string(b.length);
    throw codecError(env, err);
  }
}

Napi::Value Measure_(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Bytes b = bytesArg(info, 0, "measure", "buf");
  const double maxFrame = integerArg(info, 1, "measure", "maxFrame", 0, 9007199254740991.0);
  size_t need = 0;
  CodecError err;
  const Measure m = measureFrame(b.data, b.length, static_cast<size_t>(maxFrame), need, err);
  if (m == Measure::Bad) throw codecError(env, err);
  Napi::Object out = Napi::Object::New(env);
  out.Set("ok", Napi::Boolean::New(env, m == Measure::Ok));
  out.Set(m == Measure::Ok ? "length" : "need", Napi::Number::New(env, static_cast<double>(need)));
  return out;
}

// The header's fields; `b` the frame it was decoded from (for the attachmentsError text).
Napi::Object headerObject(Napi::Env env, const FrameHeader& h, const Bytes& b) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("protocol", protocolName(h.proto));
  o.Set("kind", kindName(h.kind));
  o.Set("idHigh", Napi::Number::New(env, h.idHigh));
  o.Set("idLow", Napi::Number::New(env, h.idLow));
  o.Set("timeoutMs", Napi::Number::New(env, h.timeoutMs));
  o.Set("status", Napi::Number::New(env, h.status));
  o.Set("service", optionalString(env, h.service));
  o.Set("version", optionalString(env, h.version));
  o.Set("group", optionalString(env, h.group));
  o.Set("method", optionalString(env, h.method));
  o.Set("boltVersion", Napi::Number::New(env, h.boltVersion));
  o.Set("ver1", Napi::Number::New(env, h.ver1));
  o.Set("switchFlags", Napi::Number::New(env, h.switchFlags));
  o.Set("codec", Napi::Number::New(env, h.codec));
  o.Set("expectsResponse", Napi::Boolean::New(env, h.expectsResponse()));
  // The static reason the engine holds, and the reference's full text (last: it decodes again, ending h's views).
  o.Set("attachmentsReason", h.attachmentsError == nullptr ? env.Null() : Napi::String::New(env, h.attachmentsError));
  o.Set("attachmentsError", h.attachmentsError == nullptr ? env.Null() : jsString(env, attachmentsErrorText(b.data, b.length)));
  return o;
}

Napi::Value Decode(const Napi::CallbackInfo& info) {
  const Bytes b = bytesArg(info, 0, "decode", "buf");
  return headerObject(info.Env(), decoded(info.Env(), b), b);
}

Napi::Value RouteKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Bytes b = bytesArg(info, 0, "routeKey", "buf");
  const FrameHeader h = decoded(env, b);
  std::string key;
  if (!routeKey(h, key)) return env.Null();
  // Keys are compared as bytes by the engine: a key that is not UTF-8 would match no route the TypeScript side made.
  if (!validUtf8(key)) throw Napi::Error::New(env, "codec.routeKey: the codec made a route key that is not UTF-8");
  return Napi::String::New(env, key);
}

Napi::Value SetRequestId(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Bytes b = bytesArg(info, 0, "setRequestId", "buf");
  const uint32_t high = wordArg(info, 1, "setRequestId", "high");
  const uint32_t low = wordArg(info, 2, "setRequestId", "low");
  requireWholeFrame(env, b);
  setRequestId(b.data, b.length, high, low);
  return env.Undefined();
}

bool failureOf(const std::string& name, Failure& f) {
  static const struct {
    const char* name;
    Failure failure;
  } names[] = {{"no-route", Failure::NoRoute},         {"timeout", Failure::Timeout},
               {"busy", Failure::Busy},                {"unavailable", Failure::Unavailable},
               {"upstream-closed", Failure::UpstreamClosed}, {"bad-request", Failure::BadRequest},
               {"draining", Failure::Draining},        {"denied", Failure::Denied}};
  for (const auto& n : names) {
    if (name == n.name) {
      f = n.failure;
      return true;
    }
  }
  return false;
}

Failure failureArg(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  Failure f;
  if (info.Length() > i && info[i].IsString() && failureOf(info[i].As<Napi::String>().Utf8Value(), f)) return f;
  throw typeError(info.Env(), fn,
                  "failure must be one of 'no-route', 'timeout', 'busy', 'unavailable', 'upstream-closed', 'bad-request', "
                  "'draining', 'denied'");
}

Proto protocolArg(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  const std::string name = stringArg(info, i, fn, "protocol");
  if (name == "bolt") return Proto::Bolt;
  if (name == "dubbo") return Proto::Dubbo;
  throw typeError(info.Env(), fn, "protocol must be 'bolt' or 'dubbo'");
}

Napi::Value ErrorResponse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Bytes b = bytesArg(info, 0, "errorResponse", "buf");
  const Failure f = failureArg(info, 1, "errorResponse");
  const std::string message = wtf8Of(info, 2, "errorResponse", "message");
  return bufferOf(env, errorResponse(answeredFrame(env, b), f, message));
}

Napi::Value HeartbeatAck(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Bytes b = bytesArg(info, 0, "heartbeatAck", "buf");
  return bufferOf(env, heartbeatAck(answeredFrame(env, b)));
}

Napi::Value HeartbeatRequest(const Napi::CallbackInfo& info) {
  const Proto proto = protocolArg(info, 0, "heartbeatRequest");
  const uint32_t id = wordArg(info, 1, "heartbeatRequest", "id");
  return bufferOf(info.Env(), heartbeatRequest(proto, id));
}

Napi::Value FailureStatus(const Napi::CallbackInfo& info) {
  const Proto proto = protocolArg(info, 0, "failureStatus");
  const Failure f = failureArg(info, 1, "failureStatus");
  return Napi::Number::New(info.Env(), failureStatus(proto, f));
}

Napi::Value Crc32(const Napi::CallbackInfo& info) {
  const Bytes b = bytesArg(info, 0, "crc32", "buf");
  return Napi::Number::New(info.Env(), crc32(b.data, b.length));
}

Napi::Value PeekIdentity(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Bytes b = bytesArg(info, 0, "peekIdentity", "buf");
  FrameHeader h;
  if (!peekIdentity(b.data, b.length, h)) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  o.Set("protocol", protocolName(h.proto));
  o.Set("kind", kindName(h.kind));
  o.Set("expectsResponse", Napi::Boolean::New(env, h.expectsResponse()));
  o.Set("idHigh", Napi::Number::New(env, h.idHigh));
  o.Set("idLow", Napi::Number::New(env, h.idLow));
  o.Set("boltVersion", Napi::Number::New(env, h.boltVersion));
  o.Set("ver1", Napi::Number::New(env, h.ver1));
  o.Set("switchFlags", Napi::Number::New(env, h.switchFlags));
  o.Set("codec", Napi::Number::New(env, h.codec));
  return o;
}

// peekKind / peekId / peekStatus of a whole measured frame.
Napi::Value Peek(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Bytes b = bytesArg(info, 0, "peek", "buf");
  requireWholeFrame(env, b);
  Napi::Object o = Napi::Object::New(env);
  Kind kind;
  o.Set("kind", peekKind(b.data, b.length, kind) ? Napi::Value(Napi::String::New(env, kindName(kind))) : env.Null());
  uint32_t high = 0, low = 0;
  peekId(b.data, high, low);
  o.Set("idHigh", Napi::Number::New(env, high));
  o.Set("idLow", Napi::Number::New(env, low));
  o.Set("status", Napi::Number::New(env, peekStatus(b.data)));
  return o;
}

// What trace_context.cc reads of a frame, for the differential test (trace-context.ts is the reference): null when
// the frame does not decode, as the engine never asks then.
Napi::Value BodyMethod(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Bytes b = bytesArg(info, 0, "bodyMethod", "buf");
  FrameHeader h;
  CodecError err;
  if (!decodeHeader(b.data, b.length, h, err)) return env.Null();
  std::string method;
  if (!boltBodyMethod(b.data, b.length, h, method)) return env.Null();
  return bufferOf(env, method);  // UTF-8 bytes, compared with Buffer.from of the reference's string
}

Napi::Value TraceContext_(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Bytes b = bytesArg(info, 0, "traceContext", "buf");
  FrameHeader h;
  CodecError err;
  if (!decodeHeader(b.data, b.length, h, err)) return env.Null();
  TraceContext ctx;
  if (!readTraceContext(b.data, b.length, h, ctx)) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  if (!ctx.traceparent.empty()) o.Set("traceparent", ctx.traceparent);
  if (!ctx.sofaTraceId.empty()) o.Set("sofaTraceId", ctx.sofaTraceId);
  if (!ctx.sofaRpcId.empty()) o.Set("sofaRpcId", ctx.sofaRpcId);
  return o;
}

Napi::Value SpanIds_(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw typeError(env, "spanIds", "ctx must be an object");
  const Napi::Object in = info[0].As<Napi::Object>();
  TraceContext ctx;
  const auto field = [&](const char* name, std::string& out) {
    const Napi::Value v = in.Get(name);
    if (v.IsString()) out = v.As<Napi::String>().Utf8Value();
  };
  field("traceparent", ctx.traceparent);
  field("sofaTraceId", ctx.sofaTraceId);
  field("sofaRpcId", ctx.sofaRpcId);
  const std::string side = stringArg(info, 1, "spanIds", "side");
  if (side != "outbound" && side != "inbound") throw typeError(env, "spanIds", "side must be 'outbound' or 'inbound'");
  SpanIds ids;
  if (!deriveSpanIds(ctx, side == "outbound" ? SpanSide::Outbound : SpanSide::Inbound, ids)) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  o.Set("traceId", ids.traceId);
  o.Set("spanId", ids.spanId);
  if (!ids.parentSpanId.empty()) o.Set("parentSpanId", ids.parentSpanId);
  o.Set("sampledFlag", Napi::Boolean::New(env, ids.sampledFlag));
  return o;
}

Napi::Value Fnv1a64(const Napi::CallbackInfo& info) {
  const std::string s = stringArg(info, 0, "fnv1a64", "s");
  static const char hex[] = "0123456789abcdef";
  const uint64_t h = fnv1a64(s);
  std::string out;
  for (int shift = 60; shift >= 0; shift -= 4) out.push_back(hex[(h >> shift) & 15]);
  return Napi::String::New(info.Env(), out);
}

Napi::Value TraceSampled(const Napi::CallbackInfo& info) {
  const std::string id = stringArg(info, 0, "traceSampled", "traceId");
  const double everyN = integerArg(info, 1, "traceSampled", "everyN", 0, 9007199254740991.0);
  return Napi::Boolean::New(info.Env(), traceSampled(id, static_cast<uint64_t>(everyN)));
}

}  // namespace

void InitCodec(Napi::Env env, Napi::Object exports) {
  Napi::Object codec = Napi::Object::New(env);
  codec.Set("measure", Napi::Function::New(env, Measure_, "measure"));
  codec.Set("decode", Napi::Function::New(env, Decode, "decode"));
  codec.Set("routeKey", Napi::Function::New(env, RouteKey, "routeKey"));
  codec.Set("setRequestId", Napi::Function::New(env, SetRequestId, "setRequestId"));
  codec.Set("errorResponse", Napi::Function::New(env, ErrorResponse, "errorResponse"));
  codec.Set("heartbeatAck", Napi::Function::New(env, HeartbeatAck, "heartbeatAck"));
  codec.Set("heartbeatRequest", Napi::Function::New(env, HeartbeatRequest, "heartbeatRequest"));
  codec.Set("failureStatus", Napi::Function::New(env, FailureStatus, "failureStatus"));
  codec.Set("crc32", Napi::Function::New(env, Crc32, "crc32"));
  codec.Set("peekIdentity", Napi::Function::New(env, PeekIdentity, "peekIdentity"));
  codec.Set("peek", Napi::Function::New(env, Peek, "peek"));
  codec.Set("bodyMethod", Napi::Function::New(env, BodyMethod, "bodyMethod"));
  codec.Set("traceContext", Napi::Function::New(env, TraceContext_, "traceContext"));
  codec.Set("spanIds", Napi::Function::New(env, SpanIds_, "spanIds"));
  codec.Set("fnv1a64", Napi::Function::New(env, Fnv1a64, "fnv1a64"));
  codec.Set("traceSampled", Napi::Function::New(env, TraceSampled, "traceSampled"));
  exports.Set("codec", codec);
}

}  // namespace meshport
