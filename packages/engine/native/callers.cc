// Accepted app connections (callers): admission at accept, reading and framing their requests, routing each to a
// cluster (or holding, refusing, answering it here), writing the answers back, and closing them.

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "loop.h"
#include "trace_context.h"

namespace meshport {

namespace {

std::string addressText(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, buf, sizeof buf);
  } else if (ss.ss_family == AF_INET6) {
    const auto& a6 = reinterpret_cast<const sockaddr_in6&>(ss);
    inet_ntop(AF_INET6, &a6.sin6_addr, buf, sizeof buf);
    // Node names an IPv4 peer of a dual-stack socket ::ffff:a.b.c.d; the caps count it under that name too.
  }
  return buf;
}

// A peer whose address is the very address it dialled is in this host (network namespace): an app in the pod
// dialling a listener bound to the pod IP. No other host can complete a handshake from one of our own addresses.
bool dialledItself(int fd, const sockaddr_storage& peer) {
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0 || local.ss_family != peer.ss_family) return false;
  if (peer.ss_family == AF_INET) {
    return reinterpret_cast<const sockaddr_in&>(local).sin_addr.s_addr == reinterpret_cast<const sockaddr_in&>(peer).sin_addr.s_addr;
  }
  return peer.ss_family == AF_INET6 &&
         std::memcmp(&reinterpret_cast<const sockaddr_in6&>(local).sin6_addr, &reinterpret_cast<const sockaddr_in6&>(peer).sin6_addr,
                     sizeof(in6_addr)) == 0;
}

bool isLoopback(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) {
    return (ntohl(reinterpret_cast<const sockaddr_in&>(ss).sin_addr.s_addr) >> 24) == 127;
  }
  if (ss.ss_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(&a)) return true;
    return IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127;
  }
  return false;
}

uint32_t be32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3]; }

// The value of one Bolt header (for consistent hashing), read from a frame decodeHeader has accepted.
bool boltHeaderValue(const uint8_t* p, size_t len, std::string_view name, std::string& out) {
  const size_t s = p[0] == 0x02 ? 1 : 0;
  const size_t classLenAt = 14 + 2 * s, headerLenAt = 16 + 2 * s, fixed = 22 + 2 * s;
  if (len < fixed) return false;
  const size_t classLen = (size_t(p[classLenAt]) << 8) | p[classLenAt + 1];
  const size_t headerLen = (size_t(p[headerLenAt]) << 8) | p[headerLenAt + 1];
  size_t at = fixed + classLen;
  const size_t end = at + headerLen;
  if (end > len) return false;
  while (at + 4 <= end) {
    const uint32_t klen = be32(p + at);
    at += 4;
    if (klen > end - at) return false;
    std::string_view key(reinterpret_cast<const char*>(p + at), klen);
    at += klen;
    if (at + 4 > end) return false;
    const uint32_t vlen = be32(p + at);
    at += 4;
    if (vlen > end - at) return false;
    if (key == name) {
      out.assign(reinterpret_cast<const char*>(p + at), vlen);
      return true;
    }
    at += vlen;
  }
  return false;
}

}  // namespace

void Loop::addListener(Fd fd, int which, AllowList allow) {
  auto l = std::make_unique<Listener>();
  l->fd = std::move(fd);
  l->which = which;
  l->allow = std::move(allow);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = l.get();
  epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, l->fd.get(), &ev);
  if (s_.startupHoldMs > 0 && holdUntil_ == 0) holdUntil_ = now_ + s_.startupHoldMs;
  listeners_.push_back(std::move(l));
}

void Loop::adopt(Fd fd, int which, std::vector<uint8_t> head) {
  if (draining_) return;  // fd closes
  Caller* c = newCaller(std::move(fd), which, nullptr);
  if (c == nullptr) return;
  if (!head.empty() && c->sniff) {
    // Mutual TLS on the inbound listener: the head's first byte tells a handshake from plaintext.
    c->in.append(head.data(), head.size());
    if (sniffCaller(c) && c->tls) driveCallerTls(c);
    return;
  }
  if (!head.empty()) {
    c->in.append(head.data(), head.size());
    stats_->bytesIn[which].fetch_add(head.size(), std::memory_order_relaxed);
    processCaller(c);
  }
}

void Loop::acceptAll(Listener* l) {
  for (int i = 0; i < 256; i++) {
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    int fd = accept4(l->fd.get(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) log("warn", "accept failed: " + std::string(strerror(errno)));
      return;
    }
    Fd owned(fd);
    if (!isLoopback(peer) && !l->allow.allows(peer) && !dialledItself(owned.get(), peer)) {
      // The listener's allowRemote gate: closed before a byte is read; logged once per address.
      const std::string who = addressText(peer);
      if (l->refusedLogged.size() < 1024 && l->refusedLogged.insert(who).second) {
        // The same line the TypeScript engine's ClientGate writes.
        log("warn", "refused a connection from a non-loopback address; allow it with allowRemote in the config (logged once per address)",
            "\"server\":\"" + std::string(kListenerNames[l->which]) + " listener\",\"remote\":" + jsonString(who));
      }
      continue;
    }
    if (connectionCount_[l->which] >= s_.maxConnections) {
      stats_->refusedMax[l->which].fetch_add(1, std::memory_order_relaxed);
      if (l->maxWarnedAt < 0 || now_ - l->maxWarnedAt > 10000) {
        l->maxWarnedAt = now_;
        log("warn", "closing new connections at accept: the listener holds maxConnections (" + std::to_string(s_.maxConnections) +
                        "); more are counted in meshport_connections_refused_total",
            "\"listener\":\"" + std::string(kListenerNames[l->which]) + "\",\"reason\":\"max-connections\"");
      }
      continue;
    }
    std::string source = addressText(peer);
    uint32_t& held = perSource_[l->which][source];
    if (held >= s_.maxConnectionsPerSource) {
      stats_->refusedPerSource[l->which].fetch_add(1, std::memory_order_relaxed);
      auto& warned = perSourceWarned_[l->which];
      if (warned.insert(source).second) {
        log("warn", "closing new connections at accept: " + source + " holds maxConnectionsPerSource (" +
                        std::to_string(s_.maxConnectionsPerSource) + ") connections; more are counted in meshport_connections_refused_total",
            "\"listener\":\"" + std::string(kListenerNames[l->which]) + "\",\"source\":" + jsonString(source) +
                ",\"reason\":\"per-source-cap\"");
      }
      continue;
    }
    newCaller(std::move(owned), l->which, &peer);
  }
}

inline Caller* Loop::newCaller(Fd fd, int which, const sockaddr_storage* accepted) {
  int one = 1;
  setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_storage peer{};
  if (accepted != nullptr) {
    peer = *accepted;
  } else {
    socklen_t len = sizeof peer;
    if (getpeername(fd.get(), reinterpret_cast<sockaddr*>(&peer), &len) != 0) peer.ss_family = AF_UNSPEC;
  }
  int flags = fcntl(fd.get(), F_GETFL);
  if (flags >= 0) fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK);
  auto* c = new Caller();
  c->fd = std::move(fd);
  c->listener = which;
  c->source = addressText(peer);
  // The caller as metrics, logs and spans name it: an IPv4 peer of a dual-stack listener by its IPv4 address.
  c->ip = c->source.compare(0, 7, "::ffff:") == 0 && c->source.find('.') != std::string::npos ? c->source.substr(7) : c->source;
  const uint16_t port = peer.ss_family == AF_INET    ? ntohs(reinterpret_cast<const sockaddr_in&>(peer).sin_port)
                        : peer.ss_family == AF_INET6 ? ntohs(reinterpret_cast<const sockaddr_in6&>(peer).sin6_port)
                                                     : 0;
  c->address = c->ip.find(':') != std::string::npos ? "[" + c->ip + "]:" + std::to_string(port) : c->ip + ":" + std::to_string(port);
  c->events = EPOLLIN | EPOLLRDHUP;
  epoll_event ev{};
  ev.events = c->events;
  ev.data.ptr = c;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c->fd.get(), &ev) != 0) {
    delete c;
    return nullptr;
  }
  callers_.insert(c);
  // Security on: an inbound connection's first byte decides between a TLS handshake and plaintext (sniffCaller).
  c->sniff = which == 1 && security_ != nullptr && security_->mode != TlsMode::Off;
  perSource_[which][c->source]++;
  c->countedPerSource = true;
  connectionCount_[which]++;
  stats_->connectionsActive[which].fetch_add(1, std::memory_order_relaxed);
  stats_->connectionsTotal[which].fetch_add(1, std::memory_order_relaxed);
  return c;
}

// A caller we have ended (plaintext or TLS alike): read and drop what it still sends until the socket is empty, so
// its FIN is seen and the connection can close.
void Loop::drainEndedCaller(Caller* c) {
  uint8_t sink[4096];
  while (!c->closed) {
    ssize_t n = read(c->fd.get(), sink, sizeof sink);
    if (n > 0) continue;
    if (n == 0) return closeCaller(c);
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) closeCaller(c);
    return;
  }
}

void Loop::readCaller(Caller* c) {
  if (c->tls || c->sniff) return readCallerTls(c);
  size_t total = 0;
  while (!c->closed) {
    if (c->finSent || c->closing) return drainEndedCaller(c);
    if (c->paused != 0) return;
    // Into the loop's scratch buffer: whole frames are handled where they lie, and only a frame cut by the end
    // of the read is kept, so an idle connection holds no read buffer.
    ssize_t n = read(c->fd.get(), scratch_.data(), scratch_.size());
    if (n > 0) {
      total += size_t(n);
      stats_->bytesIn[c->listener].fetch_add(size_t(n), std::memory_order_relaxed);
      processChunk(c, scratch_.data(), size_t(n));
      // A short read emptied the socket: asking again would cost a read that finds nothing. Level-triggered
      // epoll wakes us for what comes next; a long run yields too, so other connections get their turn.
      if (size_t(n) < scratch_.size() || total >= 4 * kReadChunk) return;
      continue;
    }
    if (n == 0) {
      // The caller closed its side: what it sent is answered, then the connection closes.
      c->peerClosed = true;
      if (c->inflight == 0 && c->out.empty()) return closeCaller(c);
      c->closing = true;
      markPartial(c, 0);
      endIfIdle(c);
      if (!c->closed) updateCallerEvents(c);
      return;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) closeCaller(c);
    return;
  }
}

// Frames whole requests out of the caller's buffer and handles each, until it needs more bytes or is paused.
inline void Loop::processCaller(Caller* c) {
  if (c->processing) return;
  c->processing = true;
  processFrames(c);
  c->processing = false;
}

inline void Loop::processFrames(Caller* c) {
  bool completed = false;
  const size_t used = takeFrames(c, c->in.data(), c->in.size(), completed);
  if (!c->closed) c->in.consume(used);
  trackPartial(c, completed);
}

// Fresh bytes of a caller, in the scratch buffer: handled in place unless part of a frame is already held.
inline void Loop::processChunk(Caller* c, uint8_t* p, size_t n) {
  if (!c->in.empty() || c->processing) {
    c->in.append(p, n);
    processCaller(c);
    return;
  }
  c->processing = true;
  bool completed = false;
  const size_t used = takeFrames(c, p, n, completed);
  if (!c->closed && !c->closing && used < n) c->in.append(p + used, n - used);
  c->processing = false;
  trackPartial(c, completed);
}

// Handles the whole frames at the start of [p, p+len); returns the bytes they took. Stops at a frame cut short,
// a pause, or the connection's end (a bad frame takes everything after it with it).
inline size_t Loop::takeFrames(Caller* c, uint8_t* p, size_t len, bool& completed) {
  size_t off = 0;
  while (!c->closed && !c->closing && c->paused == 0 && off < len) {
    size_t need = 0;
    CodecError err;
    const Measure m = measureFrame(p + off, len - off, s_.maxFrameSize, need, err);
    if (m == Measure::Bad) {
      rejectCaller(c, err, p + off, len - off);
      return len;
    }
    if (m == Measure::NeedMore || len - off < need) break;
    completed = true;
    handleCallerFrame(c, p + off, need);
    off += need;
  }
  return off;
}

inline void Loop::trackPartial(Caller* c, bool completed) {
  if (c->closed || c->closing) return;
  // The partial-frame clock: starts at a frame's first byte, restarts when a frame completed and another began.
  if (c->in.empty()) {
    if (c->inPartial) markPartial(c, 0);
  } else if (!c->inPartial || completed) {
    markPartial(c, now_);
  }
}

void Loop::markPartial(Caller* c, int64_t since) {
  if (c->inPartial) {
    if (c->partialPrev) c->partialPrev->partialNext = c->partialNext; else partialHead_ = c->partialNext;
    if (c->partialNext) c->partialNext->partialPrev = c->partialPrev; else partialTail_ = c->partialPrev;
    c->partialPrev = c->partialNext = nullptr;
    c->inPartial = false;
    partialCount_--;
  }
  c->partialSince = since;
  if (since == 0) {
    stats_->partialFrames.store(partialCount_, std::memory_order_relaxed);
    return;
  }
  c->inPartial = true;
  c->partialPrev = partialTail_;
  if (partialTail_) partialTail_->partialNext = c; else partialHead_ = c;
  partialTail_ = c;
  partialCount_++;
  stats_->partialFrames.store(partialCount_, std::memory_order_relaxed);
  if (partialCount_ <= s_.maxPartialFrames) return;
  for (Caller* oldest = partialHead_; oldest != nullptr; oldest = oldest->partialNext) {
    if (oldest->paused != 0 && oldest != c) continue;
    closeStalled(oldest, "partial-frames-cap", "more than " + std::to_string(s_.maxPartialFrames) +
                                                   " connections hold an unfinished frame; closing the one whose frame began earliest");
    return;
  }
}

void Loop::closeStalled(Caller* c, const char* code, const std::string& message) {
  countBadFrame(c->listener, code);
  log("warn", message + "; closing that connection once its calls are answered",
      "\"listener\":\"" + std::string(kListenerNames[c->listener]) + "\",\"remote\":" + jsonString(c->source) + ",\"code\":\"" + code + "\"");
  c->destroyWhenIdle = true;
  markPartial(c, 0);
  closeWhenIdle(c);
}

inline void Loop::countBadFrame(int listener, const std::string& code) {
  std::lock_guard<std::mutex> lock(stats_->badFramesMutex);
  stats_->badFrames[{listener, code}]++;
}

inline void Loop::rejectCaller(Caller* c, const CodecError& err, const uint8_t* head, size_t len) {
  if (c->closing) return;
  countBadFrame(c->listener, err.code);
  const std::string text = std::string(err.code) + ": " + err.message + " (at byte " + std::to_string(err.offset) + ")";
  log("warn", "bad frame; closing that connection once its calls are answered",
      "\"listener\":\"" + std::string(kListenerNames[c->listener]) + "\",\"remote\":" + jsonString(c->source) +
          ",\"code\":\"" + err.code + "\",\"err\":" + jsonString(text));
  FrameHeader who;
  if (peekIdentity(head, len, who) && who.expectsResponse()) {
    reply(c, errorResponse(who, Failure::BadRequest, "meshport: " + text));
  }
  markPartial(c, 0);
  closeWhenIdle(c);
}

void Loop::endIfIdle(Caller* c) {
  if (c->closed || !c->closing || c->inflight > 0) return;
  if (c->destroyWhenIdle || c->peerClosed) {
    // Answers already queued go first; then the socket goes.
    if (outEmpty(c)) closeCaller(c);
    return;
  }
  if (!outEmpty(c)) return;  // flushCaller calls back once the answers are out
  if (c->tls && c->tls->open() && c->finAt == 0 && !c->tls->closing()) {
    // A TLS stream ends with close_notify before the FIN; flushCaller calls back once it is out.
    c->tls->close();
    if (!flushCallerTls(c)) return;
    if (!c->tls->out.empty()) return updateCallerEvents(c);
  }
  if (c->finAt == 0) {
    shutdown(c->fd.get(), SHUT_WR);
    c->finAt = now_;
    c->finSent = true;
    updateCallerEvents(c);
  }
}

inline void Loop::handleCallerFrame(Caller* c, uint8_t* p, size_t len) {
  FrameHeader h;
  CodecError err;
  if (!decodeHeader(p, len, h, err)) return rejectCaller(c, err, p, len);
  switch (h.kind) {
    case Kind::Heartbeat:
      reply(c, heartbeatAck(h));
      return;
    case Kind::Request:
    case Kind::Oneway:
      return request(c, p, len, h);
    default:
      return;  // responses and acks from a caller answer nothing we sent
  }
}

inline ClusterCounters& Loop::noneCounters(int which) {
  if (!none_[which]) none_[which] = countersFor(which, "none");
  return *none_[which];
}

inline MethodCounters& Loop::countRequest(ClusterCounters& m, Caller* c, const uint8_t* p, size_t len, const FrameHeader& h) {
  (h.proto == Proto::Bolt ? m.requestsBolt : m.requestsDubbo).fetch_add(1, std::memory_order_relaxed);
  // The method: the header's; a SofaRequest without the header names it in its body (sofa-bolt-node's hessian2 mode).
  std::string_view method = h.method;
  if (method.empty() && h.proto == Proto::Bolt && boltBodyMethod(p, len, h, bodyMethod_)) method = bodyMethod_;
  if (method.empty()) method = "unknown";
  method_ = method;
  MethodCounters& mm = m.methods.find(method, s_.methodLabelCap, m.foldedMethods);
  mm.requests.fetch_add(1, std::memory_order_relaxed);
  // The caller: its verified identity (inbound mutual TLS), else its address.
  if (c->lastCounters != &m) {
    c->lastCounters = &m;
    c->lastCaller = &m.callers.find(c->peer.empty() ? c->ip : c->peer, s_.callerLabelCap, m.foldedCallers);
  } else if (c->lastCaller->name == LabelTable<CallerCounters>::kOther) {
    // Folded last time: each call past the cap is counted as folded, as a fresh lookup would.
    c->lastCaller = &m.callers.find(c->peer.empty() ? c->ip : c->peer, s_.callerLabelCap, m.foldedCallers);
  }
  c->lastCaller->requests.fetch_add(1, std::memory_order_relaxed);
  return mm;
}

void Loop::request(Caller* c, uint8_t* p, size_t len, const FrameHeader& h) {
  const int which = c->listener;
  if (h.proto == Proto::Dubbo && h.attachmentsError != nullptr) {
    ClusterCounters& m = noneCounters(which);
    MethodCounters& mm = countRequest(m, c, p, len, h);
    if (telemetryOn_) startRecord(p, len, h, method_);
    // The full reason, with the names that disagree, is rebuilt only here, on the refusal path.
    return refuse(c, h, m, mm, Failure::BadRequest,
                  "meshport: the request's identity cannot be read from its attachments: " + attachmentsErrorText(p, len));
  }
  // A Bolt service header is its route key as it lies in the frame when it is well-formed UTF-8, and every key of
  // the table is: a hit needs no copy. A miss (or Dubbo, whose key is built) goes through routeKey.
  Cluster* cluster = nullptr;
  bool named = true;
  auto direct = h.proto == Proto::Bolt && !h.service.empty() ? clusters_[which].find(h.service) : clusters_[which].end();
  if (direct != clusters_[which].end()) {
    cluster = direct->second.get();
  } else {
    named = routeKey(h, key_);
    if (named) {
      auto found = clusters_[which].find(std::string_view(key_));
      if (found != clusters_[which].end()) cluster = found->second.get();
    }
  }
  // Security on: the inbound side asks the policy first, as the TypeScript engine does (before the hold and the route).
  if (security_ != nullptr && which == 1 && named &&
      !authorized(c, p, len, h, cluster != nullptr ? std::string_view(cluster->name) : std::string_view(key_), cluster)) {
    return;
  }
  const bool routable = cluster != nullptr && !cluster->hosts.empty();
  if (!routable && named && !draining_ && holdUntil_ != 0 && now_ < holdUntil_) {
    // Waits for its route (a restarted sidecar's apps reconnect before its registries report); counted in flight
    // so the caller's close waits for it.
    callStarted(c);
    c->refs++;
    held_.push_back(Held{c, std::vector<uint8_t>(p, p + len)});
    return;
  }
  ClusterCounters& m = cluster != nullptr ? *cluster->counters : noneCounters(which);
  MethodCounters& mm = countRequest(m, c, p, len, h);
  if (telemetryOn_) startRecord(p, len, h, method_);
  if (draining_) return refuse(c, h, m, mm, Failure::Draining, "meshport is shutting down");
  if (!routable) {
    return refuse(c, h, m, mm, Failure::NoRoute,
                  "meshport: no route for service " + (cluster != nullptr ? cluster->name : named ? key_ : std::string("(none in the frame)")) + " on the " +
                      kListenerNames[which] + " listener");
  }
  if (cluster->active >= s_.maxActiveRequests || cluster->pending >= s_.maxPendingRequests) {
    return refuse(c, h, m, mm, Failure::Busy, "meshport: cluster " + cluster->name + " is at its request limit");
  }
  Call* call = allocCall();
  call->who = h;
  call->who.service = call->who.version = call->who.group = call->who.method = std::string_view();
  call->cluster = cluster;
  call->method = &mm;
  call->caller = c;
  if (!cluster->routers.empty()) call->route.method.assign(h.method.data(), h.method.size());
  if (cluster->policy == Policy::ConsistentHash) {
    if (h.proto == Proto::Dubbo) {
      call->route.hashKey.assign(h.method.data(), h.method.size());
      call->route.hasHashKey = true;
    } else if (!cluster->hashHeader.empty()) {
      call->route.hasHashKey = boltHeaderValue(p, len, cluster->hashHeader, call->route.hashKey);
    }
  }
  if (!cluster->routers.empty() && hostsFor(*cluster, call->route.method)->empty()) {
    const std::string method = call->route.method;
    freeCall(call);
    return refuse(c, h, m, mm, Failure::NoRoute,
                  "meshport: the registry's routing rules leave no endpoint of " + cluster->name + " for method " +
                      (method.empty() ? std::string("(unnamed)") : method));
  }
  if (!h.expectsResponse()) {
    // Oneway: forwarded without tracking; nothing will answer it.
    Host* host = balancer_.pick(*cluster, &call->route, now_, false);
    if (host == nullptr) host = balancer_.pick(*cluster, &call->route, now_, true);
    if (host != nullptr) {
      Upstream* u = connectionFor(*host, h.proto);
      if (u != nullptr) {
        const uint32_t id = CallSlots::kOwnIdBit | (u->ownId++ & ~CallSlots::kOwnIdBit);
        setRequestId(p, len, 0, id);
        u->out.append(p, len);
        markDirty(u);
      }
    }
    freeCall(call);
    if (recording()) {
      // Logged as sent: nothing will say more about it.
      if (host != nullptr) pendingRecord_->endpoint = host->key;
      endRecord(*pendingRecord_, c, h.proto, m.cluster, "ok", nowMicros_, monotonicMicros() - nowMicros_, 0);
    }
    return;
  }
  if (recording()) call->record.swap(pendingRecord_);
  callStarted(c);
  c->refs++;
  live_.push(call);
  stats_->inflight.store(live_.count, std::memory_order_relaxed);
  cluster->active++;
  call->startedMicros = nowMicros_;
  call->timeoutMs = cluster->timeoutMs >= 0                       ? cluster->timeoutMs
                    : h.proto == Proto::Bolt && h.timeoutMs > 0 ? int64_t(h.timeoutMs)
                    : h.proto == Proto::Bolt                    ? s_.boltDefaultTimeoutMs
                                                                : s_.dubboTimeoutMs;
  call->deadline = now_ + call->timeoutMs;
  deadlines_[call->timeoutMs].push(call);
  send(call, p, len);
}

inline void Loop::refuse(Caller* c, const FrameHeader& who, ClusterCounters& m, MethodCounters& mm, Failure f,
                         const std::string& message) {
  countOutcome(m, mm, f);
  uint64_t answered = 0;
  if (who.expectsResponse()) {
    const std::string answer = errorResponse(who, f, message);
    answered = answer.size();
    reply(c, answer);
  }
  if (recording()) {
    endRecord(*pendingRecord_, c, who.proto, m.cluster, kOutcomeNames[size_t(f)], nowMicros_, monotonicMicros() - nowMicros_,
              answered);
  }
}

// The policy's verdict on an inbound call (authorize() of security.ts); a denied one is answered here with the
// protocol's error (the connection stays open) and counted by service ('none' when it has no route, so names from
// the wire make no new series).
bool Loop::authorized(Caller* c, const uint8_t* p, size_t len, const FrameHeader& h, std::string_view service, Cluster* cluster) {
  const std::string_view method = h.method;
  const std::string_view peer = c->peer;
  if (authorize(security_->policy, service, method.empty() ? nullptr : &method, peer.empty() ? nullptr : &peer)) return true;
  ClusterCounters& m = cluster != nullptr ? *cluster->counters : noneCounters(c->listener);
  MethodCounters& mm = countRequest(m, c, p, len, h);
  if (telemetryOn_) startRecord(p, len, h, method_);
  {
    std::lock_guard<std::mutex> lock(stats_->deniedMutex);
    stats_->denied[cluster != nullptr ? std::string(service) : std::string("none")]++;
  }
  std::string message = "meshport: ";
  message += peer.empty() ? std::string_view("a plaintext caller") : peer;
  message += " may not call ";
  message += service;
  if (!method.empty()) {
    message += '#';
    message += method;
  }
  refuse(c, h, m, mm, Failure::Denied, message);
  return false;
}

inline void Loop::callStarted(Caller* c) {
  c->inflight++;
  if (c->inflight >= s_.maxCallerInflight) pauseCaller(c, kPauseInflight);
}

void Loop::resumeCaller(Caller* c, uint8_t why) {
  if (!(c->paused & why) || c->closed) {
    c->paused &= uint8_t(~why);
    return;
  }
  c->paused &= uint8_t(~why);
  if (c->paused != 0 || c->closing) return;
  // While we were not reading, a partial frame's clock was ours, not the caller's: it starts again now.
  if (c->inPartial) markPartial(c, now_);
  updateCallerEvents(c);
  if (!c->in.empty()) processCaller(c);
  // Records read before the pause wait in the TLS queue, and the socket may have nothing more to wake us with.
  if (c->tls && !c->tls->in.empty() && !c->tlsAgain && !c->closed) {
    c->tlsAgain = true;
    c->refs++;
    tlsAgain_.push_back(c);
  }
}

// Writes what it can; false when the caller was closed.
bool Loop::flushCaller(Caller* c) {
  if (c->tls) {
    if (!flushCallerTls(c)) return false;
  } else {
    while (!c->out.empty()) {
      ssize_t n = write(c->fd.get(), c->out.data(), c->out.size());
      if (n > 0) {
        c->out.consume(size_t(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      closeCaller(c);
      return false;
    }
  }
  const size_t backlog = c->out.size() + (c->tls ? c->tls->out.size() : 0);
  if (backlog > kHighWater) pauseCaller(c, kPauseOwnBacklog);
  else if (backlog < kLowWater && (c->paused & kPauseOwnBacklog)) resumeCaller(c, kPauseOwnBacklog);
  if (c->closed) return false;
  if (outEmpty(c)) endIfIdle(c);
  if (!c->closed) updateCallerEvents(c);
  return !c->closed;
}

void Loop::closeCaller(Caller* c) {
  if (c->closed) return;
  c->closed = true;
  markPartial(c, 0);
  if (c->tls) handshaking_.erase(c);
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c->fd.get(), nullptr);
  c->fd.reset();
  c->in.clear();
  c->out.clear();
  callers_.erase(c);
  if (c->countedPerSource) {
    auto& counts = perSource_[c->listener];
    auto it = counts.find(c->source);
    if (it != counts.end() && --it->second == 0) {
      counts.erase(it);
      perSourceWarned_[c->listener].erase(c->source);
    }
  }
  connectionCount_[c->listener]--;
  stats_->connectionsActive[c->listener].fetch_sub(1, std::memory_order_relaxed);
  maybeFree(c);
}



// ---- TLS callers: the inbound listener with security on. Ciphertext is read into tls->in, decrypted into the scratch
// buffer and framed there by processChunk, exactly as a plaintext read is; answers are encrypted from `out`.

// The first bytes of a connection under security: 0x16 (a TLS handshake record) begins mutual TLS; anything else is
// a plaintext caller, served in permissive mode and closed (counted as plaintext-refused) in strict. False when the
// caller was closed.
bool Loop::sniffCaller(Caller* c) {
  if (c->in.empty()) return true;
  c->sniff = false;
  const SecuritySnapshot* sec = security_.get();
  if (sec == nullptr || sec->mode == TlsMode::Off) {
    // Security went off since the accept: today's plaintext, where a handshake is a bad frame.
  } else if (c->in.data()[0] == 0x16) {
    c->tls = std::make_unique<TlsConn>(sec->server.get(), true, std::string());
    if (!c->tls->valid()) {
      handshakeFailed(0, HandshakeFailure::Protocol, "the TLS handshake failed: the connection could not be set up", c->source);
      closeCaller(c);
      return false;
    }
    c->tls->deadline = now_ + s_.connectTimeoutMs;
    handshaking_.insert(c);
    c->tls->in.append(c->in.data(), c->in.size());
    c->in.clear();
    return true;
  } else if (sec->mode == TlsMode::Strict) {
    char first[8];
    std::snprintf(first, sizeof first, "%02x", c->in.data()[0]);
    handshakeFailed(0, HandshakeFailure::PlaintextRefused,
                    std::string("a plaintext connection (first byte 0x") + first + ") on the strict mutual-TLS inbound listener", c->source);
    closeCaller(c);
    return false;
  }
  stats_->bytesIn[c->listener].fetch_add(c->in.size(), std::memory_order_relaxed);
  processCaller(c);
  return !c->closed;
}

void Loop::readCallerTls(Caller* c) {
  size_t total = 0;
  while (!c->closed) {
    if (c->finSent || c->closing) return drainEndedCaller(c);
    if (c->paused != 0) return;
    // Before the first byte, into `in` (plaintext if it is not TLS); after, into the TLS queue.
    ByteQueue& q = c->tls ? c->tls->in : c->in;
    ssize_t n = read(c->fd.get(), q.reserve(kReadChunk), kReadChunk);
    if (n > 0) {
      q.commit(size_t(n));
      total += size_t(n);
      if (c->sniff) {
        if (!sniffCaller(c)) return;
        if (!c->tls) return;  // plaintext from here on: readCaller's own path takes the next read
      }
      if (!driveCallerTls(c)) return;
      if (size_t(n) < kReadChunk || total >= 4 * kReadChunk) return;
      continue;
    }
    if (n == 0) {
      if (c->tls) {
        // What came before the FIN is still decrypted and served; a TLS stream that ends ends the caller as a FIN does.
        c->tls->eof = true;
        driveCallerTls(c);
        return;
      }
      return callerEnded(c);
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) closeCaller(c);
    return;
  }
}

// The caller will send nothing more: what it sent is answered, then the connection closes.
void Loop::callerEnded(Caller* c) {
  c->peerClosed = true;
  if (c->inflight == 0 && outEmpty(c)) return closeCaller(c);
  c->closing = true;
  markPartial(c, 0);
  endIfIdle(c);
  if (!c->closed) updateCallerEvents(c);
}

// Advances a TLS caller with what its queue holds: the handshake, then whole records decrypted and framed. False
// when the caller was closed.
bool Loop::driveCallerTls(Caller* c) {
  TlsConn& t = *c->tls;
  if (!t.open()) {
    const TlsConn::Step step = t.handshake();
    if (step == TlsConn::Step::Failed) {
      handshaking_.erase(c);
      handshakeFailed(0, t.failure(), t.failureText(), c->source);
      int err = 0;
      writeCipher(c->fd.get(), t, err);  // an alert, if the socket takes it
      closeCaller(c);
      return false;
    }
    if (step == TlsConn::Step::Again) {
      if (!flushCallerTls(c)) return false;
      updateCallerEvents(c);
      return true;
    }
    handshaking_.erase(c);
    handshakeDone(0);
    c->peer = t.peer();
  }
  while (!c->closed && !c->closing && c->paused == 0) {
    const int n = t.read(scratch_.data(), scratch_.size());
    if (n > 0) {
      stats_->bytesIn[c->listener].fetch_add(size_t(n), std::memory_order_relaxed);
      processChunk(c, scratch_.data(), size_t(n));
      continue;
    }
    if (n == 0) break;
    if (n == -1) {
      callerEnded(c);
      return !c->closed;
    }
    log("warn", "TLS connection broke; closing it", "\"listener\":\"inbound\",\"remote\":" + jsonString(c->source) + ",\"err\":" + jsonString(t.error()));
    closeCaller(c);
    return false;
  }
  if (c->closed) return false;
  // Reading can make records to send (a key update's answer); answers written meanwhile are flushed with the round.
  if (!t.out.empty() && !flushCallerTls(c)) return false;
  updateCallerEvents(c);
  return true;
}

// Encrypts the answers and writes the ciphertext, as far as the socket takes it. False when the caller was closed.
bool Loop::flushCallerTls(Caller* c) {
  TlsConn& t = *c->tls;
  int err = 0;
  for (;;) {
    if (!writeCipher(c->fd.get(), t, err)) {
      closeCaller(c);
      return false;
    }
    // Plaintext is encrypted only once the ciphertext before it is out: the backlog stays in `out`, where the
    // high-water mark sees it.
    if (!t.out.empty() || c->out.empty() || !t.open()) return true;
    const int n = t.write(c->out.data(), std::min(c->out.size(), kTlsWriteChunk));
    if (n < 0) {
      log("warn", "TLS connection broke; closing it", "\"listener\":\"inbound\",\"remote\":" + jsonString(c->source) + ",\"err\":" + jsonString(t.error()));
      closeCaller(c);
      return false;
    }
    c->out.consume(size_t(n));
  }
}

}  // namespace meshport
