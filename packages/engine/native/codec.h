// The native codec: Bolt v1/v2 and Dubbo frames measured, header-decoded to a route key, ids rewritten, and the
// frames the engine answers with itself. Pure functions over byte ranges: no I/O, no allocation on the decode path,
// every length from the wire checked against the bytes that are there. Mirrors @meshport/protocol (the reference);
// the differential test in test/codec.test.ts holds the two to the same answers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace meshport {

enum class Proto : uint8_t { Bolt, Dubbo };
enum class Kind : uint8_t { Request, Oneway, Response, Heartbeat, HeartbeatAck };

// Why a frame was refused. `code` is one of @meshport/protocol's PROTOCOL_ERROR_CODES names (a static string);
// `offset` is relative to the first byte of the frame.
struct CodecError {
  const char* code = nullptr;
  std::string message;
  size_t offset = 0;
};

// Step 1 of framing. Given the `avail` bytes at the start of a frame:
//  - NeedMore: fewer bytes than the fixed header needs; `need` says how many must be there (never more than the
//    shortest possible frame, so reading exactly that many never swallows the next frame);
//  - Ok: `need` is the whole frame's length (header included), already checked against maxFrame;
//  - Bad: not a frame (bad magic, bad version/type/cmdcode, negative lengths, over maxFrame: MESHPORT_FRAME_OVERSIZE).
enum class Measure : uint8_t { NeedMore, Ok, Bad };
Measure measureFrame(const uint8_t* p, size_t avail, size_t maxFrame, size_t& need, CodecError& err);

// What the engine needs of a frame: who sent it (to answer it), what it is, and where it goes. The string views
// point into the frame and live as long as its bytes.
struct FrameHeader {
  Proto proto = Proto::Bolt;
  Kind kind = Kind::Request;
  // Bolt: 1 or 2; ver1 and switch byte of a v2 frame, codec byte. Dubbo: serialization id in `codec`.
  uint8_t boltVersion = 1;
  uint8_t ver1 = 0;
  uint8_t switchFlags = 0;
  uint8_t codec = 0;
  // Request id as two words: Dubbo's int64 is high:low, Bolt's int32 is low (high 0).
  uint32_t idHigh = 0;
  uint32_t idLow = 0;
  // Bolt request timeout from the frame (0: none). Responses: the status (Bolt respStatus, Dubbo status byte).
  uint32_t timeoutMs = 0;
  uint16_t status = 0;
  // Route identity. Bolt: `service` is the `service` header (interface:version[:uniqueId]), `method` the
  // `sofa_head_method_name` header. Dubbo requests: `service` the path, `version`, `method`, and `group` from the
  // attachments (empty when absent); `attachmentsError` set (a static string) when they cannot be read or disagree
  // with the leading strings: such a request is answered BAD_REQUEST, never routed.
  std::string_view service;
  std::string_view version;
  std::string_view group;
  std::string_view method;
  const char* attachmentsError = nullptr;
  // Whether the request expects an answer (request or heartbeat; not oneway, not a response).
  bool expectsResponse() const { return kind == Kind::Request || kind == Kind::Heartbeat; }
};

// Decodes the header of the whole frame [p, p+len) (len as measureFrame said). A Bolt v2 frame with a CRC that does
// not match is refused (MESHPORT_BOLT_BAD_CRC). Reads no argument values and builds nothing.
bool decodeHeader(const uint8_t* p, size_t len, FrameHeader& out, CodecError& err);

// Reads protocol, id and kind from the first bytes of a frame that failed to decode, without validating the rest, so
// it can still be answered. False when too few bytes are there or the first byte is no protocol.
bool peekIdentity(const uint8_t* p, size_t len, FrameHeader& out);

// Kind and id of a whole frame from its fixed header alone (measured already): for responses to ids the engine
// assigned. Kind false when the Bolt cmdcode/type pair means nothing.
bool peekKind(const uint8_t* p, size_t len, Kind& kind);
void peekId(const uint8_t* p, uint32_t& high, uint32_t& low);
uint16_t peekStatus(const uint8_t* p);

// Rewrites a whole frame's request id in place; a Bolt v2 CRC is recomputed. Bolt takes `low` only.
void setRequestId(uint8_t* p, size_t len, uint32_t high, uint32_t low);

// The route key the TypeScript side files routes under (see routeKey in @meshport/router): Bolt the service header;
// Dubbo `group/interface:version`, `interface:version` without a group, `interface` without a version. Appends to
// `out` after clearing it (a reused buffer: no allocation once it has grown). False when the frame names no service.
bool routeKey(const FrameHeader& h, std::string& out);

// The answers the engine makes itself, copying what the caller's frame says (version, ver1, switch, codec, id).
// Denied: the inbound authorization policy does not let the caller call the service (authz.h).
enum class Failure : uint8_t { NoRoute, Timeout, Busy, Unavailable, UpstreamClosed, BadRequest, Draining, Denied };
inline constexpr size_t kFailures = 8;
uint16_t failureStatus(Proto proto, Failure f);
std::string errorResponse(const FrameHeader& who, Failure f, std::string_view message);
std::string heartbeatAck(const FrameHeader& who);
// A heartbeat the engine sends on an idle upstream connection (Bolt v1 / Dubbo), with the id given.
std::string heartbeatRequest(Proto proto, uint32_t id);

// The full text of a frame's attachmentsError as @meshport/protocol words it ("" when its decode sets none): the
// reason with the byte, numbers or names filled in, the part of the body and the offset, so an answer's message can
// say what the TypeScript router's says. A refusal path: it decodes the frame again and allocates, and string views
// of an earlier decode on this thread end with it (views the codec had to convert live in a per-thread scratch).
std::string attachmentsErrorText(const uint8_t* p, size_t len);

// The trace attachments of a Dubbo hessian2 request (trace_context.cc reads them): where the last `traceparent`,
// `rpc_trace_context.sofaTraceId` and `rpc_trace_context.sofaRpcId` entries' string values lie in the frame (hessian
// string headers included; absent when the entry is missing or not a string). False when the frame is no hessian2
// request or its body cannot be read to the end of the attachments. Keys match only as one short ASCII string.
// Uses the codec's scanner with its own state: views of an earlier decodeHeader stay valid.
struct TraceAttachments {
  struct Range {
    bool present = false;
    size_t start = 0, end = 0;
  };
  Range traceparent, sofaTraceId, sofaRpcId;
};
bool dubboTraceAttachments(const uint8_t* p, size_t len, TraceAttachments& out);

// Whether `s` is well-formed UTF-8 (no surrogates, no overlong forms, nothing past U+10FFFF): what every route key
// routeKey makes is, whatever the frame held.
bool validUtf8(std::string_view s);

// Appends one code point as UTF-8; a lone surrogate is written as its 3-byte form (WTF-8), as the codec keeps strings.
void appendCodePoint(std::string& out, uint32_t cp);

// CRC32 (IEEE, zlib's) of a byte range.
uint32_t crc32(const uint8_t* p, size_t len);

}  // namespace meshport
