// The loop thread: one epoll wait carrying every connection, commands from JavaScript run between waits, writes
// batched per round, and the timers (call deadlines, stalled frames, FINs never answered, the start-up hold, the
// drain). Events go back to JavaScript as log lines and replies, in batches.

#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "loop.h"

namespace meshport {

std::string jsonString(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out + "\"";
}

Loop::Loop(const EngineSettings& s, std::shared_ptr<EngineStats> stats, EventSink sink)
    : s_(s), stats_(std::move(stats)), sink_(std::move(sink)), balancer_(s_) {
  epoll_ = Fd(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  wake_.fd = Fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_.fd.valid()) throw std::system_error(errno, std::generic_category(), "eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &wake_;
  epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.fd.get(), &ev);
  nowMicros_ = monotonicMicros();
  now_ = nowMicros_ / 1000;
}

Loop::~Loop() {
  for (Caller* c : callers_) delete c;
  for (auto& [k, entry] : pool_)
    for (Upstream* u : entry.list) delete u;
  for (Upstream* u : deadUpstreams_) delete u;
  for (Caller* c : deadCallers_) delete c;
  for (Relay* r : relays_) delete r;
  for (Relay* r : deadRelays_) delete r;
  while (live_.head != nullptr) {
    Call* c = live_.head;
    live_.remove(c);
    delete c;
  }
  for (Call* c : freeCalls_) delete c;
}

void Loop::post(std::function<void()> command) {
  {
    std::lock_guard<std::mutex> lock(commandsMutex_);
    commands_.push_back(std::move(command));
  }
  uint64_t one = 1;
  ssize_t n = write(wake_.fd.get(), &one, sizeof one);
  (void)n;  // a full eventfd counter still wakes the loop
}

void Loop::run() {
  epoll_event events[256];
  while (!stopped_) {
    const int timeout = waitMs();
    int n = epoll_wait(epoll_.get(), events, 256, timeout);
    nowMicros_ = monotonicMicros();
    now_ = nowMicros_ / 1000;
    if (n < 0 && errno != EINTR) {
      log("error", "epoll_wait failed: " + std::string(strerror(errno)));
      break;
    }
    // Commands first: a route set before a request was sent is in force when that request is read, even when
    // both became ready in the same wait.
    for (int i = 0; i < n; i++)
      if (static_cast<Handler*>(events[i].data.ptr)->tag == Tag::Wake) runCommands();
    for (int i = 0; i < n; i++) {
      auto* h = static_cast<Handler*>(events[i].data.ptr);
      if (h->tag != Tag::Wake) dispatch(h, events[i].events);
    }
    flushDirty();
    if (now_ - lastTick_ >= 5) {
      lastTick_ = now_;
      tick();
      flushDirty();
    }
    if (!tlsAgain_.empty()) {
      retryTls();
      flushDirty();
    }
    reap();
    sendEvents();
  }
  shutdownAll();
  flushTelemetry_ = true;
  sendEvents();
}

inline void Loop::dispatch(Handler* h, uint32_t ev) {
  switch (h->tag) {
    case Tag::Wake: runCommands(); break;
    case Tag::Listener: {
      auto* l = static_cast<Listener*>(h);
      if (l->fd.valid()) acceptAll(l);
      break;
    }
    case Tag::Caller: callerEvent(static_cast<Caller*>(h), ev); break;
    case Tag::Upstream: upstreamEvent(static_cast<Upstream*>(h), ev); break;
    case Tag::Relay: relayEvent(static_cast<RelaySide*>(h), ev); break;
  }
}

inline void Loop::runCommands() {
  uint64_t v;
  while (read(wake_.fd.get(), &v, sizeof v) > 0) {
  }
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> lock(commandsMutex_);
    batch.swap(commands_);
  }
  for (auto& f : batch) f();
}

inline void Loop::flushDirty() {
  // Upstreams first: requests leave as early as possible; then the answers of this round, one write each.
  for (size_t i = 0; i < dirtyUpstreams_.size(); i++) {
    Upstream* u = dirtyUpstreams_[i];
    u->dirty = false;
    if (!u->closed && u->connected) flushUpstream(u);
  }
  dirtyUpstreams_.clear();
  for (size_t i = 0; i < dirtyCallers_.size(); i++) {
    Caller* c = dirtyCallers_[i];
    c->dirty = false;
    if (!c->closed) flushCaller(c);
  }
  dirtyCallers_.clear();
}

inline void Loop::reap() {
  deadListeners_.clear();
  for (Relay* r : deadRelays_) delete r;
  deadRelays_.clear();
  for (Caller* c : deadCallers_) delete c;
  deadCallers_.clear();
  for (Upstream* u : deadUpstreams_) delete u;
  deadUpstreams_.clear();
}

// How long epoll may sleep: a tick's length while anything is timed (calls, unfinished frames, held requests, a
// drain, callers we sent a FIN); otherwise until the first upstream needs a heartbeat or a timeout checked.
inline int Loop::waitMs() const {
  if (!tlsAgain_.empty()) return 0;
  // A batch of access log lines or spans waiting: wake when it is due, whatever else sleeps longer.
  const int64_t telemetry = telemetryWaitMs();
  if (telemetry < 500) return int(std::min<int64_t>(telemetry, idleWaitMs()));
  return idleWaitMs();
}

inline int Loop::idleWaitMs() const {
  if (!handshaking_.empty()) return 5;  // their deadlines
  if (live_.count > 0 || partialCount_ > 0 || !held_.empty() || draining_ || finPending_ > 0 || !dirtyCallers_.empty()) return 5;
  if (openUpstreams_ == 0 || upstreamDue_ == INT64_MAX) return 500;
  return int(std::clamp<int64_t>(upstreamDue_ - now_, 5, 500));
}

inline void Loop::tick() {
  if (telemetryOn_) syncWallClock();
  // Timeouts: each list holds calls of one timeout value in deadline order. A Bolt caller picks its own timeout,
  // so emptied lists go: a caller cycling through values must not grow this map.
  for (auto it = deadlines_.begin(); it != deadlines_.end();) {
    DeadlineList& list = it->second;
    while (list.head != nullptr && list.head->deadline <= now_) {
      Call* call = list.head;
      list.remove(call);
      forget(call);
      if (call->host) recordFailure(*call->cluster, *call->host);
      const std::string where = call->host ? call->host->key : call->cluster->name;
      fail(call, Failure::Timeout, "meshport: no response from " + where + " within " + std::to_string(call->timeoutMs) + " ms");
    }
    it = list.head == nullptr ? deadlines_.erase(it) : std::next(it);
  }
  // Stalled frames: begin order, so the sweep stops at the first that is young enough.
  const int64_t before = now_ - s_.frameTimeoutMs;
  for (Caller* c = partialHead_; c != nullptr;) {
    Caller* next = c->partialNext;
    if (c->partialSince > before) break;
    if (c->paused == 0) {
      closeStalled(c, "frame-timeout", "a frame was not finished within " + std::to_string(s_.frameTimeoutMs) + " ms of its first byte");
    }
    c = next;
  }
  // Callers we sent a FIN that never closed their side.
  finPending_ = 0;
  std::vector<Caller*> expired;
  for (Caller* c : callers_) {
    if (c->finAt == 0) continue;
    if (now_ - c->finAt >= s_.frameTimeoutMs) expired.push_back(c);
    else finPending_++;
  }
  for (Caller* c : expired) closeCaller(c);
  if (holdUntil_ != 0 && now_ >= holdUntil_) {
    holdUntil_ = 0;
    releaseHeld(true);
  }
  upstreamTimers();
  tlsTimers();
  retiredHosts_.erase(std::remove_if(retiredHosts_.begin(), retiredHosts_.end(), [](const HostPtr& h) { return h->active == 0; }),
                      retiredHosts_.end());
  retiredClusters_.erase(std::remove_if(retiredClusters_.begin(), retiredClusters_.end(),
                                        [](const ClusterPtr& c) { return c->active == 0 && c->pending == 0; }),
                         retiredClusters_.end());
  if (draining_) drainStep();
}

void Loop::releaseHeld(bool all) {
  std::vector<Held> waiting;
  waiting.swap(held_);
  for (Held& h : waiting) {
    FrameHeader header;
    CodecError err;
    Caller* c = h.caller;
    bool ready = all;
    if (!ready && decodeHeader(h.frame.data(), h.frame.size(), header, err) && routeKey(header, key_)) {
      auto found = clusters_[c->listener].find(std::string_view(key_));
      ready = found != clusters_[c->listener].end() && !found->second->hosts.empty();
    }
    if (!ready) {
      held_.push_back(std::move(h));
      continue;
    }
    c->refs--;
    if (c->closed) {
      maybeFree(c);
      continue;
    }
    c->inflight--;
    if (decodeHeader(h.frame.data(), h.frame.size(), header, err)) request(c, h.frame.data(), h.frame.size(), header);
    if (!c->closed) {
      if (c->inflight < s_.maxCallerInflight) resumeCaller(c, kPauseInflight);
      endIfIdle(c);
    }
  }
}

void Loop::beginDrain(int64_t deadlineMs, uint64_t token) {
  drainTokens_.push_back(token);
  if (draining_) return;
  draining_ = true;
  drainDeadline_ = now_ + deadlineMs;
  log("info", "draining", "\"inflight\":" + std::to_string(live_.count) + ",\"deadlineMs\":" + std::to_string(deadlineMs));
  releaseHeld(true);
  // Closed now, freed after this round: an event of the same wait may still name them.
  for (auto& l : listeners_) {
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, l->fd.get(), nullptr);
    l->fd.reset();
    deadListeners_.push_back(std::move(l));
  }
  listeners_.clear();
}

inline void Loop::drainStep() {
  if (live_.count > 0 && now_ < drainDeadline_) return;
  if (!drainCallsDone_) {
    drainCallsDone_ = true;
    std::vector<Call*> left;
    for (Call* c = live_.head; c != nullptr; c = c->liveNext) left.push_back(c);
    std::sort(left.begin(), left.end(), [](Call* a, Call* b) { return a->startedMicros < b->startedMicros; });
    for (Call* call : left) fail(call, Failure::Draining, "meshport is shutting down");
    std::vector<Caller*> all(callers_.begin(), callers_.end());
    for (Caller* c : all) closeWhenIdle(c);
    std::vector<Upstream*> ups;
    for (auto& [key, entry] : pool_) ups.insert(ups.end(), entry.list.begin(), entry.list.end());
    for (Upstream* u : ups) closeUpstream(u, "draining", false);
    flushDirty();
  }
  // Answers already written may still be unread by a slow caller: each got its FIN after its last answer; wait
  // (up to the deadline) for it to read and close.
  if (!callers_.empty() && now_ < drainDeadline_) return;
  std::vector<Caller*> all(callers_.begin(), callers_.end());
  for (Caller* c : all) closeCaller(c);
  if (!drainTokens_.empty()) {
    // The lines of every call the drain waited for go before its answer.
    flushTelemetry_ = true;
    log("info", "drained");
    for (uint64_t token : drainTokens_) events_.push_back("{\"type\":\"reply\",\"token\":" + std::to_string(token) + "}");
    drainTokens_.clear();
  }
}

inline void Loop::shutdownAll() {
  std::vector<Caller*> all(callers_.begin(), callers_.end());
  for (Caller* c : all) closeCaller(c);
  for (auto& [key, entry] : pool_)
    for (Upstream* u : entry.list) {
      u->closed = true;
      u->fd.reset();
    }
  listeners_.clear();
}

void Loop::log(const char* level, const std::string& msg, const std::string& fields) {
  std::string e = "{\"type\":\"log\",\"level\":\"" + std::string(level) + "\",\"msg\":" + jsonString(msg);
  if (!fields.empty()) e += "," + fields;
  events_.push_back(e + "}");
}

inline void Loop::sendEvents() {
  const bool telemetry = telemetryDue(flushTelemetry_);
  flushTelemetry_ = false;
  const bool behind = telemetryWaiting_->load(std::memory_order_relaxed) >= kMaxTelemetryBytesWaiting;
  if (telemetry && behind) {
    // JavaScript is that far behind: these lines go, counted, rather than queue without end.
    droppedAccess_ += uint64_t(std::count(accessBatch_.begin(), accessBatch_.end(), '\n'));
    droppedSpans_ += uint64_t(std::count(spanBatch_.begin(), spanBatch_.end(), '\n'));
    accessBatch_.clear();
    spanBatch_.clear();
  }
  // Said once JavaScript has caught up (then the count is the whole episode's), and every 10 s while it has not.
  if ((droppedAccess_ > 0 || droppedSpans_ > 0) && (!behind || now_ - droppedLoggedAt_ >= 10000)) {
    droppedLoggedAt_ = now_;
    log("warn", "access log lines and spans dropped: JavaScript had not taken the engine's last batches",
        "\"accessLines\":" + std::to_string(droppedAccess_) + ",\"spans\":" + std::to_string(droppedSpans_));
    droppedAccess_ = droppedSpans_ = 0;
  }
  if (events_.empty() && !telemetry) return;
  // Bounded: a storm of bad frames must not grow this without end; what is cut is counted in the last line.
  if (events_.size() > 1000) {
    const size_t cut = events_.size() - 1000;
    events_.resize(1000);
    log("warn", std::to_string(cut) + " more engine events were dropped");
  }
  EngineEvents batch;
  if (telemetry && !(accessBatch_.empty() && spanBatch_.empty())) {
    batch.access.swap(accessBatch_);
    batch.spans.swap(spanBatch_);
    batch.hold = EngineEvents::Hold(telemetryWaiting_, batch.access.size() + batch.spans.size());
  }
  if (events_.empty() && batch.access.empty() && batch.spans.empty()) return;
  batch.lines.swap(events_);
  sink_(std::move(batch));
}


}  // namespace meshport
