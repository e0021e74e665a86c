// Pass-through of captured connections that carry nothing to route: byte for byte to their original destination in
// both directions, half-closes passed on, a reset on either side ending both.

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>

#include <cstring>

#include "loop.h"

namespace meshport {

void Loop::relay(Fd app, const sockaddr_storage& to, socklen_t toLen, std::vector<uint8_t> head) {
  if (draining_) return;
  Fd up(socket(to.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!up.valid()) {
    log("warn", "pass-through connection to the original destination failed", "\"err\":" + jsonString(strerror(errno)));
    return;
  }
  int one = 1;
  setsockopt(up.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(app.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int flags = fcntl(app.get(), F_GETFL);
  if (flags >= 0) fcntl(app.get(), F_SETFL, flags | O_NONBLOCK);
  if (connect(up.get(), reinterpret_cast<const sockaddr*>(&to), toLen) != 0 && errno != EINPROGRESS) {
    log("warn", "pass-through connection to the original destination failed", "\"err\":" + jsonString(strerror(errno)));
    return;
  }
  auto* r = new Relay();
  r->side[0].relay = r->side[1].relay = r;
  r->side[0].fd = std::move(app);
  r->side[1].fd = std::move(up);
  r->side[1].connecting = true;
  if (!head.empty()) r->side[1].out.append(head.data(), head.size());
  relays_.insert(r);
  stats_->relaysActive.fetch_add(1, std::memory_order_relaxed);
  stats_->relaysTotal.fetch_add(1, std::memory_order_relaxed);
  // The app is not read until the destination answers the connect; its bytes wait in its socket.
  for (int i = 0; i < 2; i++) {
    RelaySide& side = r->side[i];
    side.events = i == 0 ? EPOLLRDHUP : EPOLLOUT;
    epoll_event ev{};
    ev.events = side.events;
    ev.data.ptr = &side;
    epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, side.fd.get(), &ev);
  }
}

void Loop::relayEvent(RelaySide* s, uint32_t ev) {
  Relay* r = s->relay;
  if (r->closed) return;
  RelaySide& other = r->side[s == &r->side[0] ? 1 : 0];
  if (s->connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s->fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0 || (ev & (EPOLLERR | EPOLLHUP))) {
      log("warn", "pass-through connection to the original destination failed",
          "\"err\":" + jsonString(strerror(err != 0 ? err : ECONNREFUSED)));
      return closeRelay(r);
    }
    s->connecting = false;
  }
  if (ev & (EPOLLERR | EPOLLHUP)) {
    if (!(ev & EPOLLIN)) return closeRelay(r);
  }
  if ((ev & EPOLLOUT) && !flushRelay(*s)) return;
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    // Read while the other end keeps up; its backlog past the high mark stops us until it drains.
    size_t total = 0;
    while (!s->eof && other.out.size() <= kHighWater && total < 4 * kReadChunk) {
      ssize_t n = read(s->fd.get(), scratch_.data(), scratch_.size());
      if (n > 0) {
        total += size_t(n);
        stats_->relayBytes.fetch_add(size_t(n), std::memory_order_relaxed);
        other.out.append(scratch_.data(), size_t(n));
        if (size_t(n) < scratch_.size()) break;
        continue;
      }
      if (n == 0) {
        s->eof = true;
        break;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return closeRelay(r);  // a reset on one side ends both
    }
    if (!flushRelay(other)) return;
  }
  relayInterest(*r);
}

// Writes what it can to one end; passes a FIN on once the other end's bytes are all out. False when closed.
inline bool Loop::flushRelay(RelaySide& s) {
  Relay* r = s.relay;
  if (s.connecting) return true;
  while (!s.out.empty()) {
    ssize_t n = write(s.fd.get(), s.out.data(), s.out.size());
    if (n > 0) {
      s.out.consume(size_t(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    closeRelay(r);
    return false;
  }
  RelaySide& other = r->side[&s == &r->side[0] ? 1 : 0];
  if (s.out.empty() && other.eof && !s.finSent) {
    shutdown(s.fd.get(), SHUT_WR);
    s.finSent = true;
  }
  if (r->side[0].finSent && r->side[1].finSent) {
    closeRelay(r);
    return false;
  }
  relayInterest(*r);
  return true;
}

inline void Loop::relayInterest(Relay& r) {
  if (r.closed) return;
  for (int i = 0; i < 2; i++) {
    RelaySide& s = r.side[i];
    RelaySide& other = r.side[1 - i];
    uint32_t want = 0;
    if (s.connecting) want = EPOLLOUT;
    else {
      // Read only once the destination is up and while the other end keeps up.
      if (!s.eof && !other.connecting && other.out.size() <= kHighWater) want |= EPOLLIN | EPOLLRDHUP;
      if (!s.out.empty()) want |= EPOLLOUT;
    }
    setEvents(&s, s.fd.get(), s.events, want);
  }
}

void Loop::closeRelay(Relay* r) {
  if (r->closed) return;
  r->closed = true;
  for (RelaySide& s : r->side) {
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, s.fd.get(), nullptr);
    s.fd.reset();
    s.out.clear();
  }
  relays_.erase(r);
  deadRelays_.push_back(r);
  stats_->relaysActive.fetch_sub(1, std::memory_order_relaxed);
}


}  // namespace meshport
