// The JavaScript-facing handle of the engine: listening sockets bound on the calling thread (so their errors are
// thrown where they are asked for), every other command posted to the loop thread (loop.h), and the allow-lists
// listeners admit peers by.

#include "engine.h"

#include <arpa/inet.h>
#include <errno.h>

#include <cstring>
#include <stdexcept>
#include <system_error>

#include "loop.h"

namespace meshport {

namespace {

constexpr int kListenBacklog = 511;

}  // namespace

Engine::Engine(const EngineSettings& settings, EventSink sink) : settings_(settings), stats_(std::make_shared<EngineStats>()) {
  loop_ = std::make_unique<Loop>(settings_, stats_, std::move(sink));
  thread_ = std::thread([loop = loop_.get()] { loop->run(); });
}

Engine::~Engine() { close(); }

bool AllowList::add(const std::string& text) {
  Cidr c;
  std::string addr = text;
  const size_t slash = text.find('/');
  int prefix = -1;
  if (slash != std::string::npos) {
    addr = text.substr(0, slash);
    const std::string bits = text.substr(slash + 1);
    if (bits.empty() || bits.size() > 3 || bits.find_first_not_of("0123456789") != std::string::npos) return false;
    prefix = std::stoi(bits);
  }
  if (inet_pton(AF_INET, addr.c_str(), c.bytes) == 1) {
    c.family = AF_INET;
    c.prefix = prefix < 0 ? 32 : prefix;
    if (c.prefix > 32) return false;
  } else if (inet_pton(AF_INET6, addr.c_str(), c.bytes) == 1) {
    c.family = AF_INET6;
    c.prefix = prefix < 0 ? 128 : prefix;
    if (c.prefix > 128) return false;
  } else {
    return false;
  }
  cidrs.push_back(c);
  return true;
}

bool AllowList::allows(const sockaddr_storage& peer) const {
  if (any) return true;
  uint8_t bytes[16];
  int family;
  if (peer.ss_family == AF_INET) {
    family = AF_INET;
    std::memcpy(bytes, &reinterpret_cast<const sockaddr_in&>(peer).sin_addr, 4);
  } else if (peer.ss_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<const sockaddr_in6&>(peer).sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&a)) {
      // A dual-stack listener's IPv4 peer is held to the IPv4 entries.
      family = AF_INET;
      std::memcpy(bytes, a.s6_addr + 12, 4);
    } else {
      family = AF_INET6;
      std::memcpy(bytes, a.s6_addr, 16);
    }
  } else {
    return false;
  }
  for (const Cidr& c : cidrs) {
    if (c.family != family) continue;
    const int full = c.prefix / 8, rest = c.prefix % 8;
    if (std::memcmp(bytes, c.bytes, size_t(full)) != 0) continue;
    if (rest != 0) {
      const uint8_t mask = uint8_t(0xff << (8 - rest));
      if ((bytes[full] & mask) != (c.bytes[full] & mask)) continue;
    }
    return true;
  }
  return false;
}

int Engine::listen(int listener, const std::string& host, int port, AllowList allow) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  in6_addr a6{};
  in_addr a4{};
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) {
    auto& sin = reinterpret_cast<sockaddr_in&>(ss);
    sin.sin_family = AF_INET;
    sin.sin_addr = a4;
    sin.sin_port = htons(uint16_t(port));
    len = sizeof sin;
  } else if (inet_pton(AF_INET6, host.c_str(), &a6) == 1) {
    auto& sin6 = reinterpret_cast<sockaddr_in6&>(ss);
    sin6.sin6_family = AF_INET6;
    sin6.sin6_addr = a6;
    sin6.sin6_port = htons(uint16_t(port));
    len = sizeof sin6;
  } else {
    throw std::invalid_argument("listen host must be an IP address, got " + host);
  }
  Fd fd(socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) throw std::system_error(errno, std::generic_category(), "socket");
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) throw std::system_error(errno, std::generic_category(), "bind");
  if (::listen(fd.get(), kListenBacklog) != 0) throw std::system_error(errno, std::generic_category(), "listen");
  sockaddr_storage bound{};
  socklen_t blen = sizeof bound;
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &blen);
  const int boundPort = ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in&>(bound).sin_port
                                                         : reinterpret_cast<sockaddr_in6&>(bound).sin6_port);
  auto shared = std::make_shared<Fd>(std::move(fd));
  auto gate = std::make_shared<AllowList>(std::move(allow));
  loop_->post([loop = loop_.get(), shared, gate, listener] { loop->addListener(std::move(*shared), listener, std::move(*gate)); });
  return boundPort;
}

void Engine::adopt(int listener, int fd, std::vector<uint8_t> head) {
  auto shared = std::make_shared<Fd>(fd);
  auto bytes = std::make_shared<std::vector<uint8_t>>(std::move(head));
  loop_->post([loop = loop_.get(), shared, bytes, listener] { loop->adopt(std::move(*shared), listener, std::move(*bytes)); });
}

void Engine::relay(int fd, const sockaddr_storage& to, socklen_t toLen, std::vector<uint8_t> head) {
  auto shared = std::make_shared<Fd>(fd);
  auto bytes = std::make_shared<std::vector<uint8_t>>(std::move(head));
  loop_->post([loop = loop_.get(), shared, bytes, to, toLen] { loop->relay(std::move(*shared), to, toLen, std::move(*bytes)); });
}

void Engine::setRoutes(std::shared_ptr<const RouteSnapshot> routes) {
  loop_->post([loop = loop_.get(), routes] { loop->setRoutes(routes); });
}

void Engine::setSecurity(std::shared_ptr<const SecuritySnapshot> security) {
  loop_->post([loop = loop_.get(), security] { loop->setSecurity(security); });
}

void Engine::setTelemetry(const TelemetrySettings& telemetry) {
  loop_->post([loop = loop_.get(), telemetry] { loop->setTelemetry(telemetry); });
}

void Engine::drain(int64_t deadlineMs, uint64_t token) {
  loop_->post([loop = loop_.get(), deadlineMs, token] { loop->beginDrain(deadlineMs, token); });
}

void Engine::describe(uint64_t token) {
  loop_->post([loop = loop_.get(), token] { loop->describe(token); });
}

void Engine::close() {
  if (closed_) return;
  closed_ = true;
  loop_->post([loop = loop_.get()] { loop->stop(); });
  if (thread_.joinable()) thread_.join();
  loop_.reset();
}

}  // namespace meshport
