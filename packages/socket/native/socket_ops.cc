// Socket options meshport needs on Linux: the original destination, transparent sockets, marks.
#include "addon.h"
#include "fd.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>

// The netfilter headers that define these clash with glibc's <netinet/in.h>; the values are kernel ABI.
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif
#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75
#endif
#ifndef SO_MARK
#define SO_MARK 36
#endif

namespace meshport {

namespace {

// An IPv4 or IPv6 socket address built from text, as the kernel wants it.
struct InetAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = AF_UNSPEC;
};

// Every argument is checked by name before use: a missing one arrives as undefined and fails the type check.
int ArgFd(const Napi::CallbackInfo &info, size_t index) {
  return static_cast<int>(CheckInteger(info.Env(), info[index], "fd", 0, INT32_MAX));
}

uint32_t ArgUint32(const Napi::CallbackInfo &info, size_t index, const char *name, uint32_t max = UINT32_MAX) {
  return static_cast<uint32_t>(CheckInteger(info.Env(), info[index], name, 0, max));
}

int ArgFamily(const Napi::CallbackInfo &info, size_t index) {
  Napi::Value value = info[index];
  if (!value.IsNumber()) ThrowArgTypeError(info.Env(), "family", "4 or 6");
  double family = value.As<Napi::Number>().DoubleValue();
  if (family != 4 && family != 6) ThrowArgRangeError(info.Env(), "family", "4 or 6");
  return static_cast<int>(family);
}

std::string ArgString(const Napi::CallbackInfo &info, size_t index, const char *name) {
  if (!info[index].IsString()) ThrowArgTypeError(info.Env(), name, "a string");
  return info[index].As<Napi::String>().Utf8Value();
}

// Numeric addresses only: name resolution belongs to the JS side, never to a blocking call on the loop.
InetAddress ParseAddress(Napi::Env env, const std::string &host, uint16_t port, int family) {
  InetAddress address;
  if (family == 4) {
    auto *sin = reinterpret_cast<sockaddr_in *>(&address.storage);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, host.c_str(), &sin->sin_addr) != 1) {
      ThrowArgTypeError(env, "host", "a numeric IPv4 address, got '" + host + "'");
    }
    address.length = sizeof(sockaddr_in);
    address.family = AF_INET;
  } else if (family == 6) {
    auto *sin6 = reinterpret_cast<sockaddr_in6 *>(&address.storage);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, host.c_str(), &sin6->sin6_addr) != 1) {
      ThrowArgTypeError(env, "host", "a numeric IPv6 address, got '" + host + "'");
    }
    address.length = sizeof(sockaddr_in6);
    address.family = AF_INET6;
  } else {
    ThrowArgRangeError(env, "family", "4 or 6");
  }
  return address;
}

// {address, port, family} in the shape of net.Socket#address().
Napi::Object AddressToJs(Napi::Env env, const sockaddr_storage &storage) {
  char text[INET6_ADDRSTRLEN] = {0};
  Napi::Object result = Napi::Object::New(env);
  if (storage.ss_family == AF_INET) {
    const auto *sin = reinterpret_cast<const sockaddr_in *>(&storage);
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
    result.Set("address", Napi::String::New(env, text));
    result.Set("port", Napi::Number::New(env, ntohs(sin->sin_port)));
    result.Set("family", Napi::String::New(env, "IPv4"));
  } else {
    const auto *sin6 = reinterpret_cast<const sockaddr_in6 *>(&storage);
    inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
    result.Set("address", Napi::String::New(env, text));
    result.Set("port", Napi::Number::New(env, ntohs(sin6->sin6_port)));
    result.Set("family", Napi::String::New(env, "IPv6"));
  }
  return result;
}

void SetIntOption(Napi::Env env, int fd, int level, int name, int value) {
  if (setsockopt(fd, level, name, &value, sizeof(value)) != 0) ThrowErrno(env, errno, "setsockopt");
}

// getOriginalDst(fd) -> {address, port, family}. The family of the question follows the socket's local address:
// an IPv4-mapped address on an IPv6 socket (a dual-stack listener on "::") was NATed by iptables, not ip6tables, or
// captured by connect4/connect6 as IPv4: SOL_IP SO_ORIGINAL_DST. A native IPv6 one (ip6tables REDIRECT, or connect6
// to the "::1" capture listener) asks SOL_IPV6 IP6T_SO_ORIGINAL_DST and gets a sockaddr_in6: family 'IPv6'.
Napi::Value GetOriginalDst(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);

  sockaddr_storage local{};
  socklen_t local_length = sizeof(local);
  if (getsockname(fd, reinterpret_cast<sockaddr *>(&local), &local_length) != 0) ThrowErrno(env, errno, "getsockname");

  bool ipv4 = local.ss_family == AF_INET;
  if (local.ss_family == AF_INET6) {
    ipv4 = IN6_IS_ADDR_V4MAPPED(&reinterpret_cast<sockaddr_in6 *>(&local)->sin6_addr);
  } else if (local.ss_family != AF_INET) {
    ThrowErrno(env, EAFNOSUPPORT, "getsockopt");
  }

  sockaddr_storage original{};
  socklen_t original_length = ipv4 ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  int level = ipv4 ? SOL_IP : SOL_IPV6;
  int name = ipv4 ? SO_ORIGINAL_DST : IP6T_SO_ORIGINAL_DST;
  if (getsockopt(fd, level, name, &original, &original_length) != 0) ThrowErrno(env, errno, "getsockopt");
  // The kernel fills the family, and meshport's BPF getsockopt does; another hook might not.
  original.ss_family = ipv4 ? AF_INET : AF_INET6;
  return AddressToJs(env, original);
}

// createTransparentListener(host, port, backlog, family) -> fd of a listening, non-blocking socket.
// IP_TRANSPARENT must be set before bind(): it is what lets bind() take a non-local address and what lets
// TPROXY hand this socket connections addressed to other hosts.
Napi::Value CreateTransparentListener(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string host = ArgString(info, 0, "host");
  uint16_t port = static_cast<uint16_t>(ArgUint32(info, 1, "port", 65535));
  uint32_t backlog = ArgUint32(info, 2, "backlog", INT32_MAX);
  int family = ArgFamily(info, 3);
  InetAddress address = ParseAddress(env, host, port, family);

  Fd fd(socket(address.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) ThrowErrno(env, errno, "socket");
  SetIntOption(env, fd.get(), SOL_SOCKET, SO_REUSEADDR, 1);
  if (address.family == AF_INET) {
    SetIntOption(env, fd.get(), SOL_IP, IP_TRANSPARENT, 1);
  } else {
    SetIntOption(env, fd.get(), SOL_IPV6, IPV6_TRANSPARENT, 1);
  }
  if (bind(fd.get(), reinterpret_cast<sockaddr *>(&address.storage), address.length) != 0) {
    ThrowErrno(env, errno, "bind");
  }
  int backlog_arg = backlog > 65535 ? 65535 : static_cast<int>(backlog);
  if (listen(fd.get(), backlog_arg) != 0) ThrowErrno(env, errno, "listen");
  return Napi::Number::New(env, fd.release());
}

// createMarkedSocket(family, mark) -> fd of an unconnected, non-blocking TCP socket with SO_MARK set, for
// net.Socket to connect: the mark must be on the socket before the SYN leaves so routing and iptables see it.
Napi::Value CreateMarkedSocket(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int family = ArgFamily(info, 0);
  uint32_t mark = ArgUint32(info, 1, "mark");
  Fd fd(socket(family == 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) ThrowErrno(env, errno, "socket");
  SetIntOption(env, fd.get(), SOL_SOCKET, SO_MARK, static_cast<int>(mark));
  return Napi::Number::New(env, fd.release());
}

// setMark(fd, mark): SO_MARK needs CAP_NET_ADMIN or CAP_NET_RAW (EPERM otherwise).
Napi::Value SetMark(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  uint32_t mark = ArgUint32(info, 1, "mark");
  SetIntOption(env, fd, SOL_SOCKET, SO_MARK, static_cast<int>(mark));
  return env.Undefined();
}

Napi::Value GetMark(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  uint32_t mark = 0;
  socklen_t length = sizeof(mark);
  if (getsockopt(fd, SOL_SOCKET, SO_MARK, &mark, &length) != 0) ThrowErrno(env, errno, "getsockopt");
  return Napi::Number::New(env, mark);
}

Napi::Object Feature(Napi::Env env, bool supported, const std::string &reason) {
  Napi::Object feature = Napi::Object::New(env);
  feature.Set("supported", Napi::Boolean::New(env, supported));
  if (!supported) feature.Set("reason", Napi::String::New(env, reason));
  return feature;
}

std::string Describe(const char *call, int err) {
  return std::string(call) + " failed: " + std::strerror(err) + " (errno " + std::to_string(err) + ")";
}

// probeSocketFeatures() -> {originalDst, transparent, mark}, each {supported, reason?}, by really trying.
Napi::Value ProbeSocketFeatures(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Object result = Napi::Object::New(env);

  Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    std::string reason = Describe("socket", errno);
    result.Set("originalDst", Feature(env, false, reason));
    result.Set("transparent", Feature(env, false, reason));
    result.Set("mark", Feature(env, false, reason));
    return result;
  }

  // An unconnected socket has no conntrack entry: ENOENT proves the conntrack getsockopt handler is there;
  // ENOPROTOOPT means nf_conntrack (IPv4) is not loaded, so nothing could answer.
  sockaddr_in original{};
  socklen_t length = sizeof(original);
  if (getsockopt(fd.get(), SOL_IP, SO_ORIGINAL_DST, &original, &length) == 0 || errno == ENOENT) {
    result.Set("originalDst", Feature(env, true, ""));
  } else if (errno == ENOPROTOOPT) {
    result.Set("originalDst", Feature(env, false, "SO_ORIGINAL_DST is unanswered: nf_conntrack (IPv4) is not loaded"));
  } else {
    result.Set("originalDst", Feature(env, false, Describe("getsockopt(SOL_IP, SO_ORIGINAL_DST)", errno)));
  }

  int one = 1;
  if (setsockopt(fd.get(), SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) == 0) {
    result.Set("transparent", Feature(env, true, ""));
  } else if (errno == EPERM) {
    result.Set("transparent", Feature(env, false, "IP_TRANSPARENT needs CAP_NET_ADMIN or CAP_NET_RAW"));
  } else {
    result.Set("transparent", Feature(env, false, Describe("setsockopt(SOL_IP, IP_TRANSPARENT)", errno)));
  }

  int mark = 0;
  if (setsockopt(fd.get(), SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) == 0) {
    result.Set("mark", Feature(env, true, ""));
  } else if (errno == EPERM) {
    result.Set("mark", Feature(env, false, "SO_MARK needs CAP_NET_ADMIN or CAP_NET_RAW"));
  } else {
    result.Set("mark", Feature(env, false, Describe("setsockopt(SOL_SOCKET, SO_MARK)", errno)));
  }
  return result;
}

}  // namespace

void InitSocketOps(Napi::Env env, Napi::Object exports) {
  exports.Set("getOriginalDst", Napi::Function::New(env, GetOriginalDst, "getOriginalDst"));
  exports.Set("createTransparentListener", Napi::Function::New(env, CreateTransparentListener, "createTransparentListener"));
  exports.Set("createMarkedSocket", Napi::Function::New(env, CreateMarkedSocket, "createMarkedSocket"));
  exports.Set("setMark", Napi::Function::New(env, SetMark, "setMark"));
  exports.Set("getMark", Napi::Function::New(env, GetMark, "getMark"));
  exports.Set("probeSocketFeatures", Napi::Function::New(env, ProbeSocketFeatures, "probeSocketFeatures"));
}

}  // namespace meshport
