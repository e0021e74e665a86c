// Upstream connections and the calls on them: pooled per endpoint and protocol, dialled on demand, each call given
// an id of the connection's own (CallSlots) and matched back to its caller by it; connect and heartbeat timers;
// retries of calls that never left, failures of those that did, and the Call pool.

#include <errno.h>
#include <netinet/tcp.h>

#include <algorithm>
#include <cstring>

#include "loop.h"

namespace meshport {

// Picks an endpoint (none this call already failed on) and writes the call to a pooled connection.
void Loop::send(Call* call, uint8_t* p, size_t len) {
  Cluster& cluster = *call->cluster;
  Host* host = balancer_.pick(cluster, &call->route, now_, false);
  if (host == nullptr) host = balancer_.pick(cluster, &call->route, now_, true);
  if (host == nullptr) return fail(call, Failure::Unavailable, "meshport: no endpoint of " + cluster.name + " accepted a connection");
  call->host = host;
  host->active++;
  if (call->record && call->record->on) call->record->endpoint = host->key;
  Upstream* u = connectionFor(*host, call->who.proto);
  if (u == nullptr) {
    host->active--;
    call->host = nullptr;
    call->route.tried.push_back(host);
    // A connect refused at once counts toward ejection like one refused later (docs/router.md: every failed connect).
    recordFailure(cluster, *host);
    if (call->route.tried.size() > s_.connectRetries) {
      return fail(call, Failure::Unavailable, "meshport: could not connect to " + cluster.name + ": " + dialError_);
    }
    return send(call, p, len);
  }
  const uint32_t id = u->calls.add(call);
  call->conn = u;
  call->upstreamId = id;
  setRequestId(p, len, 0, id);
  if (!u->connected) {
    // Kept until the connection is up: if it never comes up, the call never left and goes to another endpoint.
    if (call->frame.data() != p) call->frame.assign(p, p + len);
    call->pending = true;
    cluster.pending++;
  }
  u->out.append(p, len);
  markDirty(u);
  if (u->out.size() > kHighWater) {
    // That upstream's socket is full: stop reading from this caller until it drains.
    pauseCaller(call->caller, kPauseUpstream);
    call->caller->refs++;
    u->blocked.push_back(call->caller);
  }
}

inline void Loop::finish(Call* call) {
  call->done = true;
  if (call->list) call->list->remove(call);
  if (call->pending) {
    call->pending = false;
    call->cluster->pending--;
  }
  live_.remove(call);
  stats_->inflight.store(live_.count, std::memory_order_relaxed);
  call->cluster->active--;
  if (call->host) call->host->active--;
  ClusterCounters& m = *call->cluster->counters;
  MethodCounters& mm = *call->method;
  const uint64_t micros = uint64_t(std::max<int64_t>(0, monotonicMicros() - call->startedMicros));
  call->durationMicros = int64_t(micros);
  size_t i = 0;
  while (i < kLatencyBuckets && micros > kBucketMicros[i]) i++;
  m.latency[i].fetch_add(1, std::memory_order_relaxed);
  m.latencyCount.fetch_add(1, std::memory_order_relaxed);
  m.latencySumMicros.fetch_add(micros, std::memory_order_relaxed);
  mm.latency[i].fetch_add(1, std::memory_order_relaxed);
  mm.latencyCount.fetch_add(1, std::memory_order_relaxed);
  mm.latencySumMicros.fetch_add(micros, std::memory_order_relaxed);
}

inline void Loop::release(Call* call) {
  Caller* c = call->caller;
  c->refs--;
  if (!c->closed) callDone(c);
  else maybeFree(c);
  freeCall(call);
}

void Loop::fail(Call* call, Failure f, const std::string& message) {
  if (call->done) return;
  finish(call);
  forget(call);
  countOutcome(*call->cluster->counters, *call->method, f);
  const std::string answer = errorResponse(call->who, f, message);
  reply(call->caller, answer);
  if (call->record && call->record->on) endRecord(call, f, answer.size());
  release(call);
}

Upstream* Loop::connectionFor(Host& host, Proto proto) {
  // An endpoint with an identity is dialled with mutual TLS while security is on; its TLS connections are a pool of
  // their own, keyed by the identity too, so a connection never serves an identity it did not verify.
  const bool tls = !host.identity.empty() && security_ != nullptr;
  PoolEntry*& entry = host.pool[(proto == Proto::Bolt ? 0 : 1) + (tls ? 2 : 0)];
  if (entry == nullptr) {
    // Entries are never erased (one per endpoint, protocol and identity ever used), so the pointer stays good.
    poolKey_.assign(1, proto == Proto::Bolt ? 'b' : 'd');
    if (tls) {
      poolKey_ += "tls ";
      poolKey_ += host.identity;
      poolKey_ += ' ';
    }
    poolKey_ += host.key;
    entry = &pool_[poolKey_];
  }
  auto& list = entry->list;
  list.erase(std::remove_if(list.begin(), list.end(), [&](Upstream* u) {
               if (!u->closed) return false;
               deadUpstreams_.push_back(u);
               return true;
             }),
             list.end());
  if (list.size() < std::max<uint32_t>(1, s_.connectionsPerEndpoint)) {
    Upstream* u = dial(host, proto, tls);
    if (u == nullptr) return nullptr;
    list.push_back(u);
    return u;
  }
  return list[entry->next++ % list.size()];
}

inline Upstream* Loop::dial(Host& host, Proto proto, bool tls) {
  Fd fd(socket(host.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    dialError_ = strerror(errno);
    log("warn", "upstream socket failed: " + dialError_, "\"endpoint\":" + jsonString(host.key));
    return nullptr;
  }
  int one = 1;
  setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  auto* u = new Upstream();
  u->key = host.key;
  u->proto = proto;
  if (tls) {
    // The context of the security in force now: a later rotation leaves this connection as it is.
    u->tls = std::make_unique<TlsConn>(security_->client.get(), false, host.identity);
    if (!u->tls->valid()) {
      delete u;
      dialError_ = "TLS could not be set up for the connection";
      log("warn", "upstream connect failed", "\"endpoint\":" + jsonString(host.key) + ",\"err\":" + jsonString(dialError_));
      return nullptr;
    }
  }
  u->connectDeadline = now_ + s_.connectTimeoutMs;
  u->lastActive = now_;
  int rc = connect(fd.get(), reinterpret_cast<const sockaddr*>(&host.addr), host.addrLen);
  if (rc != 0 && errno != EINPROGRESS) {
    const int e = errno;
    delete u;
    dialError_ = strerror(e);
    log("warn", "upstream connect failed", "\"endpoint\":" + jsonString(host.key) + ",\"err\":" + jsonString(dialError_));
    return nullptr;
  }
  u->fd = std::move(fd);
  u->connected = false;
  u->events = EPOLLOUT | EPOLLIN | EPOLLRDHUP;
  epoll_event ev{};
  ev.events = u->events;
  ev.data.ptr = u;
  epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, u->fd.get(), &ev);
  stats_->upstreamConnections.fetch_add(1, std::memory_order_relaxed);
  openUpstreams_++;
  upstreamDue_ = std::min(upstreamDue_, u->connectDeadline);
  {
    std::lock_guard<std::mutex> lock(stats_->upstreamsMutex);
    stats_->upstreamsByEndpoint[u->key]++;
  }
  return u;
}

void Loop::upstreamEvent(Upstream* u, uint32_t ev) {
  if (u->closed) return;
  if (!u->tcpUp) {
    if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(u->fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0 || (ev & (EPOLLERR | EPOLLHUP))) {
        return closeUpstream(u, std::string("connect failed: ") + strerror(err != 0 ? err : ECONNREFUSED), true);
      }
      u->tcpUp = true;
      // A TLS connection is up once its handshake is done (secure.cc).
      if (!u->tls) connected(u);
    } else {
      return;
    }
  }
  if (u->tls) return upstreamTlsEvent(u, ev);
  if (ev & EPOLLOUT) flushUpstream(u);
  if (!u->closed && (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) readUpstream(u);
}

inline void Loop::connected(Upstream* u) {
  u->connected = true;
  u->lastActive = now_;
  u->calls.forEach([](Call* call) {
    if (!call->pending) return;
    call->pending = false;
    call->cluster->pending--;
    std::vector<uint8_t>().swap(call->frame);
  });
  markDirty(u);
}

inline void Loop::readUpstream(Upstream* u) {
  size_t total = 0;
  while (!u->closed) {
    ssize_t n = read(u->fd.get(), scratch_.data(), scratch_.size());
    if (n > 0) {
      total += size_t(n);
      u->lastActive = now_;
      stats_->bytesIn[2].fetch_add(size_t(n), std::memory_order_relaxed);
      if (u->in.empty()) {
        const size_t used = takeUpstreamFrames(u, scratch_.data(), size_t(n));
        if (!u->closed && used < size_t(n)) u->in.append(scratch_.data() + used, size_t(n) - used);
      } else {
        u->in.append(scratch_.data(), size_t(n));
        processUpstream(u);
      }
      if (size_t(n) < scratch_.size() || total >= 4 * kReadChunk) return;
      continue;
    }
    if (n == 0) return closeUpstream(u, "closed by the endpoint", false);
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) closeUpstream(u, strerror(errno), false);
    return;
  }
}

inline void Loop::processUpstream(Upstream* u) {
  const size_t used = takeUpstreamFrames(u, u->in.data(), u->in.size());
  if (!u->closed) u->in.consume(used);
}

inline size_t Loop::takeUpstreamFrames(Upstream* u, uint8_t* p, size_t len) {
  size_t off = 0;
  while (!u->closed && off < len) {
    size_t need = 0;
    CodecError err;
    const Measure m = measureFrame(p + off, len - off, s_.maxFrameSize, need, err);
    if (m == Measure::Bad) {
      closeUpstream(u, std::string("bad frame from the endpoint: ") + err.code, false);
      return len;
    }
    if (m == Measure::NeedMore || len - off < need) break;
    upstreamFrame(u, p + off, need);
    off += need;
  }
  return off;
}

inline void Loop::upstreamFrame(Upstream* u, uint8_t* p, size_t len) {
  Kind kind;
  if (!peekKind(p, len, kind)) return;
  uint32_t high, low;
  peekId(p, high, low);
  if (kind == Kind::HeartbeatAck) {
    if (u->heartbeatOutstanding && low == u->heartbeatId) u->heartbeatOutstanding = false;
    return;
  }
  if (kind == Kind::Heartbeat) {
    FrameHeader who;
    if (peekIdentity(p, len, who)) {
      std::string ack = heartbeatAck(who);
      u->out.append(ack.data(), ack.size());
      markDirty(u);
    }
    return;
  }
  if (kind != Kind::Response || high != 0) return;
  Call* call = u->calls.find(low);
  if (call == nullptr) return;  // a late answer to a call that timed out
  u->calls.erase(low);
  call->conn = nullptr;
  if (call->done) return;
  finish(call);
  call->host->consecutiveFailures = 0;
  const uint16_t status = peekStatus(p);
  ClusterCounters& m = *call->cluster->counters;
  if (status == 0 || status == 20) {
    m.failures[kOkSlot].fetch_add(1, std::memory_order_relaxed);
    call->method->failures[kOkSlot].fetch_add(1, std::memory_order_relaxed);
  } else {
    std::lock_guard<std::mutex> lock(m.statusMutex);
    m.statuses[status]++;
    call->method->statuses[status]++;
  }
  setRequestId(p, len, call->who.idHigh, call->who.idLow);
  reply(call->caller, p, len);
  if (call->record && call->record->on) endRecordAnswered(call, status, len);
  release(call);
}

// Fails or retries every call on a connection that is gone. `neverUp`: it never connected, so no call left.
void Loop::closeUpstream(Upstream* u, const std::string& reason, bool neverUp) {
  if (u->closed) return;
  u->closed = true;
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, u->fd.get(), nullptr);
  u->fd.reset();
  stats_->upstreamConnections.fetch_sub(1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(stats_->upstreamsMutex);
    auto it = stats_->upstreamsByEndpoint.find(u->key);
    if (it != stats_->upstreamsByEndpoint.end() && --it->second == 0) stats_->upstreamsByEndpoint.erase(it);
  }
  if (neverUp) log("warn", "upstream connect failed", "\"endpoint\":" + jsonString(u->key) + ",\"err\":" + jsonString(reason));
  std::vector<Call*> calls = u->calls.takeAll();
  std::sort(calls.begin(), calls.end(), [](Call* a, Call* b) { return a->upstreamId < b->upstreamId; });
  // One failure per endpoint per connection event, however many calls it caught.
  std::unordered_set<Host*> counted;
  for (Call* call : calls) {
    call->conn = nullptr;
    if (call->done) continue;
    Host* host = call->host;
    if (host != nullptr && counted.insert(host).second) recordFailure(*call->cluster, *host);
    if (call->pending) {
      // Never sent: another endpoint may take it.
      call->pending = false;
      call->cluster->pending--;
      host->active--;
      call->host = nullptr;
      call->route.tried.push_back(host);
      if (call->route.tried.size() > s_.connectRetries) {
        fail(call, Failure::Unavailable, "meshport: could not connect to " + call->cluster->name + ": " + reason);
        continue;
      }
      std::vector<uint8_t> frame;
      frame.swap(call->frame);
      send(call, frame.data(), frame.size());  // may fail and free the call
    } else {
      fail(call, Failure::UpstreamClosed, "meshport: upstream " + u->key + " closed with the request in flight: " + reason);
    }
  }
  for (Caller* c : u->blocked) {
    c->refs--;
    if (c->closed) maybeFree(c);
    else resumeCaller(c, kPauseUpstream);
  }
  u->blocked.clear();
  u->in.clear();
  u->out.clear();
}

void Loop::flushUpstream(Upstream* u) {
  if (u->tls) return flushUpstreamTls(u);
  while (!u->out.empty()) {
    ssize_t n = write(u->fd.get(), u->out.data(), u->out.size());
    if (n > 0) {
      stats_->bytesOut[2].fetch_add(size_t(n), std::memory_order_relaxed);
      u->out.consume(size_t(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return closeUpstream(u, std::string("write failed: ") + strerror(errno), false);
  }
  const uint32_t want = EPOLLIN | EPOLLRDHUP | (u->out.empty() ? 0u : uint32_t(EPOLLOUT));
  setEvents(u, u->fd.get(), u->events, want);
  if (u->out.size() < kLowWater && !u->blocked.empty()) unblock(u);
}

void Loop::unblock(Upstream* u) {
  std::vector<Caller*> blocked;
  blocked.swap(u->blocked);
  for (Caller* c : blocked) {
    c->refs--;
    if (c->closed) maybeFree(c);
    else resumeCaller(c, kPauseUpstream);
  }
}

void Loop::upstreamTimers() {
  // The next time one of them needs looking at, so an idle engine sleeps until then instead of every tick.
  upstreamDue_ = INT64_MAX;
  openUpstreams_ = 0;
  std::vector<Upstream*> connectTimeouts, heartbeatTimeouts;
  for (auto& [key, entry] : pool_) {
    auto& list = entry.list;
    list.erase(std::remove_if(list.begin(), list.end(), [&](Upstream* u) {
                 if (!u->closed) return false;
                 deadUpstreams_.push_back(u);
                 return true;
               }),
               list.end());
    for (Upstream* u : list) {
      openUpstreams_++;
      if (!u->connected) {
        if (now_ >= u->connectDeadline) connectTimeouts.push_back(u);
        else upstreamDue_ = std::min(upstreamDue_, u->connectDeadline);
        continue;
      }
      if (u->heartbeatOutstanding) {
        if (now_ - u->heartbeatSentAt >= s_.heartbeatTimeoutMs) heartbeatTimeouts.push_back(u);
        else upstreamDue_ = std::min(upstreamDue_, u->heartbeatSentAt + s_.heartbeatTimeoutMs);
        continue;
      }
      if (now_ - u->lastActive < s_.heartbeatIntervalMs) {
        upstreamDue_ = std::min(upstreamDue_, u->lastActive + s_.heartbeatIntervalMs);
      } else {
        upstreamDue_ = std::min(upstreamDue_, now_ + s_.heartbeatTimeoutMs);
        const uint32_t id = CallSlots::kOwnIdBit | (u->ownId++ & ~CallSlots::kOwnIdBit);
        u->heartbeatId = id;
        u->heartbeatOutstanding = true;
        u->heartbeatSentAt = now_;
        u->lastActive = now_;
        std::string hb = heartbeatRequest(u->proto, id);
        u->out.append(hb.data(), hb.size());
        markDirty(u);
      }
    }
  }
  for (Upstream* u : connectTimeouts) {
    if (u->tls && u->tcpUp) {
      const std::string text = "the TLS handshake did not finish within " + std::to_string(s_.connectTimeoutMs) + " ms";
      handshakeFailed(1, HandshakeFailure::Timeout, text, u->key);
      closeUpstream(u, text, true);
      continue;
    }
    closeUpstream(u, "connect timed out after " + std::to_string(s_.connectTimeoutMs) + " ms", true);
  }
  for (Upstream* u : heartbeatTimeouts) {
    log("warn", "upstream heartbeat unanswered; closing the connection", "\"endpoint\":" + jsonString(u->key));
    closeUpstream(u, "heartbeat unanswered", false);
  }
}

void Loop::recordFailure(Cluster& c, Host& h) {
  if (!balancer_.recordFailure(c, h, now_)) return;
  log("warn", "endpoint ejected", "\"cluster\":" + jsonString(c.name) + ",\"endpoint\":" + jsonString(h.key) +
                                      ",\"forMs\":" + std::to_string(s_.baseEjectionMs * h.ejections));
}


// ---- TLS upstreams: an endpoint with an identity, while security is on. The handshake runs once TCP is up; the
// connection counts as connected (its calls no longer pending) only when the provider's certificate verified and
// carries the identity the registry published, so nothing is sent to an endpoint that is not the one named.

void Loop::upstreamTlsEvent(Upstream* u, uint32_t ev) {
  TlsConn& t = *u->tls;
  int err = 0;
  if ((ev & EPOLLOUT) && !writeCipher(u->fd.get(), t, err)) {
    return closeUpstream(u, std::string("write failed: ") + strerror(err), !u->connected);
  }
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    size_t total = 0;
    while (!t.eof && total < 4 * kReadChunk) {
      ssize_t n = read(u->fd.get(), t.in.reserve(kReadChunk), kReadChunk);
      if (n > 0) {
        t.in.commit(size_t(n));
        total += size_t(n);
        u->lastActive = now_;
        if (size_t(n) < kReadChunk) break;
        continue;
      }
      if (n == 0) {
        t.eof = true;
        break;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      const std::string reason = strerror(errno);
      if (!u->connected) handshakeFailed(1, HandshakeFailure::Protocol, "the TLS handshake failed: " + reason, u->key);
      return closeUpstream(u, reason, !u->connected);
    }
  }
  if (!u->connected) {
    const TlsConn::Step step = t.handshake();
    if (step == TlsConn::Step::Failed) {
      handshakeFailed(1, t.failure(), t.failureText(), u->key);
      writeCipher(u->fd.get(), t, err);  // an alert, if the socket takes it
      // Never up: its calls never left, and go to another endpoint.
      return closeUpstream(u, "mutual TLS refused (" + std::string(kHandshakeFailureNames[size_t(t.failure())]) + "): " + t.failureText(), true);
    }
    if (step == TlsConn::Step::Done) {
      handshakeDone(1);
      connected(u);  // marks it dirty: the calls that waited are encrypted and sent this round
    }
  }
  // Every whole record is decrypted now: what stays in the queue is a record cut short, whose rest wakes us.
  while (u->connected && !u->closed) {
    const int n = t.read(scratch_.data(), scratch_.size());
    if (n > 0) {
      stats_->bytesIn[2].fetch_add(size_t(n), std::memory_order_relaxed);
      if (u->in.empty()) {
        const size_t used = takeUpstreamFrames(u, scratch_.data(), size_t(n));
        if (!u->closed && used < size_t(n)) u->in.append(scratch_.data() + used, size_t(n) - used);
      } else {
        u->in.append(scratch_.data(), size_t(n));
        processUpstream(u);
      }
      continue;
    }
    if (n == 0) break;
    return closeUpstream(u, n == -1 ? std::string("closed by the endpoint") : "TLS: " + t.error(), false);
  }
  if (u->closed) return;
  if (!writeCipher(u->fd.get(), t, err)) return closeUpstream(u, std::string("write failed: ") + strerror(err), !u->connected);
  setEvents(u, u->fd.get(), u->events, EPOLLIN | EPOLLRDHUP | (t.out.empty() ? 0u : uint32_t(EPOLLOUT)));
}

void Loop::flushUpstreamTls(Upstream* u) {
  TlsConn& t = *u->tls;
  int err = 0;
  for (;;) {
    if (!writeCipher(u->fd.get(), t, err)) return closeUpstream(u, std::string("write failed: ") + strerror(err), false);
    // Plaintext is encrypted once the ciphertext before it is out: the backlog stays in `out`, where send() sees it.
    if (!t.out.empty() || u->out.empty() || !t.open()) break;
    const int n = t.write(u->out.data(), std::min(u->out.size(), kTlsWriteChunk));
    if (n < 0) return closeUpstream(u, "TLS: " + t.error(), false);
    stats_->bytesOut[2].fetch_add(size_t(n), std::memory_order_relaxed);
    u->out.consume(size_t(n));
  }
  setEvents(u, u->fd.get(), u->events, EPOLLIN | EPOLLRDHUP | (t.out.empty() ? 0u : uint32_t(EPOLLOUT)));
  if (u->out.size() < kLowWater && !u->blocked.empty()) unblock(u);
}

}  // namespace meshport
