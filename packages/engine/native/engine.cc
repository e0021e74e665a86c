// The engine's loop: one epoll thread that accepts callers, frames and routes their requests, multiplexes them on
// pooled upstream connections with rewritten ids, restores the ids of the answers, and answers failures itself.
// Behavior follows the TypeScript router (packages/router/src, docs/router.md) rule for rule: the shared suites
// decide where the two could differ.

#include "engine.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <system_error>

namespace meshport {

namespace {

constexpr size_t kReadChunk = 64 * 1024;
// A peer's unsent bytes past which we stop reading what produces them (a caller's answers, an upstream's requests).
constexpr size_t kHighWater = 256 * 1024;
constexpr size_t kLowWater = 64 * 1024;
constexpr int kListenBacklog = 511;
constexpr const char* kListenerNames[] = {"outbound", "inbound", "upstream"};
// LATENCY_BUCKETS of packages/router/src/stats.ts, in microseconds.
constexpr uint64_t kBucketMicros[kLatencyBuckets] = {100,    250,    500,     1000,    2500,    5000,    10000,   25000,
                                                     50000,  100000, 250000,  500000,  1000000, 2500000, 5000000, 10000000};
constexpr size_t kOkSlot = 7;

int64_t monotonicMicros() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

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

// A method-name glob as Dubbo's UrlUtils.isMatchGlobPattern reads it (one '*' at most is honored, the last).
bool globMatches(const std::string& pattern, std::string_view value) {
  if (pattern == "*") return true;
  if (pattern.empty() && value.empty()) return true;
  if (pattern.empty() || value.empty()) return false;
  size_t i = pattern.rfind('*');
  if (i == std::string::npos) return value == pattern;
  std::string_view p(pattern);
  auto starts = [&](std::string_view pre) { return value.size() >= pre.size() && value.substr(0, pre.size()) == pre; };
  auto ends = [&](std::string_view suf) {
    return value.size() >= suf.size() && value.substr(value.size() - suf.size()) == suf;
  };
  if (i == pattern.size() - 1) return starts(p.substr(0, i));
  if (i == 0) return ends(p.substr(1));
  return starts(p.substr(0, i)) && ends(p.substr(i + 1));
}

bool conditionHolds(const MethodCondition& c, std::string_view method) {
  auto any = [&](const std::vector<std::string>& ps) {
    for (const auto& p : ps)
      if (globMatches(p, method)) return true;
    return false;
  };
  if (!c.matches.empty() && c.mismatches.empty()) return any(c.matches);
  if (!c.mismatches.empty() && c.matches.empty()) return !any(c.mismatches);
  if (!c.matches.empty() && !c.mismatches.empty()) return !any(c.mismatches) && any(c.matches);
  return false;
}

uint32_t hash32(std::string_view s) {
  // FNV-1a with murmur3's finalizer: a stable, well-mixed point on the ring.
  uint32_t h = 2166136261u;
  for (unsigned char c : s) {
    h ^= c;
    h *= 16777619u;
  }
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
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

enum class Tag : uint8_t { Wake, Listener, Caller, Upstream, Relay };

struct Handler {
  explicit Handler(Tag t) : tag(t) {}
  Tag tag;
};

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// The loop's objects. All of them belong to the loop thread.

struct Host {
  std::string key;
  sockaddr_storage addr{};
  socklen_t addrLen = 0;
  uint32_t weight = 100;
  int64_t credit = 0;
  uint32_t active = 0;
  uint32_t consecutiveFailures = 0;
  int64_t ejectedUntil = 0;
  uint32_t ejections = 0;
  struct PoolEntry* pool[2] = {nullptr, nullptr};  // its connections by protocol, found once
  bool isEjected(int64_t now) const { return ejectedUntil > now; }
};

// The pooled upstream connections to one endpoint for one protocol, shared by every cluster that names it.
struct PoolEntry {
  std::vector<struct Upstream*> list;
  uint32_t next = 0;
};
using HostPtr = std::shared_ptr<Host>;

struct Cluster {
  std::string name;
  int listener = 0;
  std::vector<HostPtr> hosts;
  Policy policy = Policy::RoundRobin;
  std::string hashHeader;
  int64_t timeoutMs = -1;
  std::vector<MethodRouterSpec> routers;
  std::unordered_map<std::string, std::vector<Host*>> hostsByMethod;
  uint32_t pending = 0;
  uint32_t active = 0;
  bool allWeighted = true;
  bool equalWeights = true;
  uint32_t rrNext = 0;
  int64_t ejectionsEndAt = 0;
  std::vector<std::pair<uint32_t, Host*>> ring;
  bool ringBuilt = false;
  std::shared_ptr<ClusterCounters> counters;
};
using ClusterPtr = std::shared_ptr<Cluster>;

struct Caller;
struct Upstream;

struct Call {
  Caller* caller = nullptr;
  FrameHeader who;  // identity fields only (its views are cleared)
  Cluster* cluster = nullptr;  // kept alive while it counts this call in `active` (see retiredClusters_)
  Host* host = nullptr;  // kept alive while it counts this call in `active` (see retiredHosts_)
  Upstream* conn = nullptr;
  uint32_t upstreamId = 0;
  std::vector<uint8_t> frame;  // kept while the connection is still connecting: a never-sent call is retried
  int64_t startedMicros = 0;
  int64_t deadline = 0;
  int64_t timeoutMs = 0;
  std::vector<Host*> tried;
  std::string method;
  std::string hashKey;
  bool hasHashKey = false;
  bool pending = false;
  bool done = false;
  Call* livePrev = nullptr;
  Call* liveNext = nullptr;
  // Deadline list links (calls of one timeout value, in deadline order).
  Call* prev = nullptr;
  Call* next = nullptr;
  struct DeadlineList* list = nullptr;
};

struct DeadlineList {
  Call* head = nullptr;
  Call* tail = nullptr;
  void push(Call* c) {
    c->list = this;
    c->prev = tail;
    c->next = nullptr;
    if (tail) tail->next = c; else head = c;
    tail = c;
  }
  void remove(Call* c) {
    if (c->prev) c->prev->next = c->next; else head = c->next;
    if (c->next) c->next->prev = c->prev; else tail = c->prev;
    c->prev = c->next = nullptr;
    c->list = nullptr;
  }
};

enum : uint8_t { kPauseOwnBacklog = 1, kPauseInflight = 2, kPauseUpstream = 4 };

struct Listener : Handler {
  Listener() : Handler(Tag::Listener) {}
  Fd fd;
  int which = 0;
  AllowList allow;
  std::unordered_set<std::string> refusedLogged;
  int64_t maxWarnedAt = -1;
};

struct Caller : Handler {
  Caller() : Handler(Tag::Caller) {}
  Fd fd;
  int listener = 0;
  std::string source;
  ByteQueue in;
  ByteQueue out;
  uint32_t inflight = 0;
  uint32_t refs = 0;  // calls and held requests that point here
  uint8_t paused = 0;
  bool closed = false;
  bool closing = false;  // no more requests; FIN once every accepted call is answered
  bool destroyWhenIdle = false;
  bool finSent = false;
  bool dirty = false;
  bool countedPerSource = false;
  uint32_t events = 0;
  bool processing = false;  // inside processCaller: a resume from within must not re-enter it
  bool peerClosed = false;  // its FIN arrived: nothing more to read
  int64_t partialSince = 0;  // ms; 0: no unfinished frame
  int64_t finAt = 0;
  Caller* partialPrev = nullptr;
  Caller* partialNext = nullptr;
  bool inPartial = false;
};

// The calls in flight on one upstream connection, by the id the engine gave each. Ids are handed out so that each
// gets a slot of its own (id & mask): a lookup is one index, and nothing is allocated once the table has grown to
// the load. Call ids stay below 2^31; ids of our own heartbeats and oneways have the top bit set and never meet one.
class CallSlots {
 public:
  static constexpr uint32_t kOwnIdBit = 0x80000000u;

  uint32_t add(Call* call) {
    if ((count_ + 1) * 2 > slots_.size()) grow();
    for (;;) {
      const uint32_t id = next_;
      next_ = next_ >= kOwnIdBit - 1 ? 1 : next_ + 1;
      Slot& slot = slots_[id & mask_];
      if (slot.call != nullptr) continue;
      slot.id = id;
      slot.call = call;
      count_++;
      return id;
    }
  }

  Call* find(uint32_t id) const {
    if (slots_.empty()) return nullptr;
    const Slot& slot = slots_[id & mask_];
    return slot.call != nullptr && slot.id == id ? slot.call : nullptr;
  }

  void erase(uint32_t id) {
    if (slots_.empty()) return;
    Slot& slot = slots_[id & mask_];
    if (slot.call != nullptr && slot.id == id) {
      slot.call = nullptr;
      count_--;
    }
  }

  size_t size() const { return count_; }

  // Every call, in id order of their slots, and the table emptied.
  std::vector<Call*> takeAll() {
    std::vector<Call*> out;
    out.reserve(count_);
    for (Slot& slot : slots_) {
      if (slot.call != nullptr) out.push_back(slot.call);
      slot.call = nullptr;
    }
    count_ = 0;
    return out;
  }

  template <typename F>
  void forEach(F f) const {
    for (const Slot& slot : slots_)
      if (slot.call != nullptr) f(slot.call);
  }

 private:
  struct Slot {
    uint32_t id = 0;
    Call* call = nullptr;
  };

  // Doubling keeps every id in a slot of its own: two ids apart in the larger table were apart in the smaller.
  void grow() {
    std::vector<Slot> bigger(slots_.empty() ? 64 : slots_.size() * 2);
    const uint32_t mask = uint32_t(bigger.size() - 1);
    for (const Slot& slot : slots_)
      if (slot.call != nullptr) bigger[slot.id & mask] = slot;
    slots_.swap(bigger);
    mask_ = mask;
  }

  std::vector<Slot> slots_;
  uint32_t mask_ = 0;
  uint32_t next_ = 1;
  size_t count_ = 0;
};

struct Upstream : Handler {
  Upstream() : Handler(Tag::Upstream) {}
  Fd fd;
  std::string key;
  Proto proto = Proto::Bolt;
  bool connected = false;
  bool closed = false;
  bool dirty = false;
  uint32_t events = 0;
  ByteQueue in;
  ByteQueue out;
  CallSlots calls;
  uint32_t ownId = 0;  // heartbeats and oneways: CallSlots::kOwnIdBit | ownId
  int64_t connectDeadline = 0;
  int64_t lastActive = 0;
  bool heartbeatOutstanding = false;
  uint32_t heartbeatId = 0;
  int64_t heartbeatSentAt = 0;
  std::vector<Caller*> blocked;
};

// One end of a relayed connection: the app's socket or the one to its original destination. `out` holds what the
// other end sent that this one has not taken yet.
struct Relay;
struct RelaySide : Handler {
  RelaySide() : Handler(Tag::Relay) {}
  Relay* relay = nullptr;
  Fd fd;
  ByteQueue out;
  uint32_t events = 0;
  bool eof = false;       // it sent its FIN: nothing more to read from it
  bool finSent = false;   // we passed the other end's FIN on to it
  bool connecting = false;
};

struct Relay {
  RelaySide side[2];  // [0] the app, [1] the original destination
  bool closed = false;
};

struct Held {
  Caller* caller;
  std::vector<uint8_t> frame;
};

// ---------------------------------------------------------------------------------------------------------------

class Loop {
 public:
  Loop(const EngineSettings& s, std::shared_ptr<EngineStats> stats, EventSink sink)
      : s_(s), stats_(std::move(stats)), sink_(std::move(sink)), rng_(std::random_device{}()) {
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

  ~Loop() {
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

  // ---- commands from the JavaScript thread

  void post(std::function<void()> command) {
    {
      std::lock_guard<std::mutex> lock(commandsMutex_);
      commands_.push_back(std::move(command));
    }
    uint64_t one = 1;
    ssize_t n = write(wake_.fd.get(), &one, sizeof one);
    (void)n;  // a full eventfd counter still wakes the loop
  }

  void run() {
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
      reap();
      sendEvents();
    }
    shutdownAll();
    sendEvents();
  }

  void addListener(Fd fd, int which, AllowList allow) {
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

  void relay(Fd app, const sockaddr_storage& to, socklen_t toLen, std::vector<uint8_t> head) {
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

  void adopt(Fd fd, int which, std::vector<uint8_t> head) {
    if (draining_) return;  // fd closes
    Caller* c = newCaller(std::move(fd), which, "");
    if (c == nullptr) return;
    if (!head.empty()) {
      c->in.append(head.data(), head.size());
      stats_->bytesIn[which].fetch_add(head.size(), std::memory_order_relaxed);
      processCaller(c);
    }
  }

  void setRoutes(std::shared_ptr<const RouteSnapshot> snap) {
    if (snap->partial) {
      for (int which = 0; which < 2; which++) {
        auto& table = clusters_[which];
        for (const ClusterSpec& spec : snap->listeners[which]) {
          auto found = table.find(std::string_view(spec.name));
          if (spec.remove) {
            if (found != table.end()) {
              ClusterPtr gone = std::move(found->second);
              table.erase(found);  // before the cluster (whose name the key views) can go
              retire(gone);
            }
            continue;
          }
          if (found == table.end()) {
            ClusterPtr c = makeCluster(which, spec.name);
            found = table.emplace(std::string_view(c->name), std::move(c)).first;
          }
          updateCluster(*found->second, spec);
        }
      }
      if (!held_.empty()) releaseHeld(false);
      return;
    }
    for (int which = 0; which < 2; which++) {
      auto& table = clusters_[which];
      ClusterTable next;
      next.reserve(snap->listeners[which].size());
      for (const ClusterSpec& spec : snap->listeners[which]) {
        auto found = table.find(std::string_view(spec.name));
        ClusterPtr c = found != table.end() ? found->second : makeCluster(which, spec.name);
        updateCluster(*c, spec);
        const std::string_view key(c->name);
        next.emplace(key, std::move(c));
      }
      for (auto& [name, c] : table)
        if (next.count(name) == 0) retire(c);
      table.swap(next);
    }
    if (!held_.empty()) releaseHeld(false);
  }

  void beginDrain(int64_t deadlineMs, uint64_t token) {
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

  void describe(uint64_t token) {
    std::string out = "{\"type\":\"reply\",\"token\":" + std::to_string(token) + ",\"clusters\":[";
    bool first = true;
    for (int which = 0; which < 2; which++) {
      std::vector<const Cluster*> sorted;
      for (auto& [name, c] : clusters_[which]) sorted.push_back(c.get());
      std::sort(sorted.begin(), sorted.end(), [](const Cluster* a, const Cluster* b) { return a->name < b->name; });
      for (const Cluster* c : sorted) {
        if (!first) out += ',';
        first = false;
        out += describeCluster(*c);
      }
    }
    out += "]}";
    events_.push_back(std::move(out));
  }

  void stop() { stopped_ = true; }

 private:
  // ---- clusters

  // A cluster leaving the table while calls still count on it lives on until they finish.
  void retire(const ClusterPtr& c) {
    if (c->active > 0 || c->pending > 0) retiredClusters_.push_back(c);
  }

  ClusterPtr makeCluster(int which, const std::string& name) {
    auto c = std::make_shared<Cluster>();
    c->name = name;
    c->listener = which;
    c->counters = countersFor(which, name);
    return c;
  }

  std::shared_ptr<ClusterCounters> countersFor(int which, const std::string& name) {
    std::lock_guard<std::mutex> lock(stats_->clustersMutex);
    auto& slot = stats_->clusters[std::string(kListenerNames[which]) + "|" + name];
    if (!slot) {
      slot = std::make_shared<ClusterCounters>();
      slot->listener = kListenerNames[which];
      slot->cluster = name;
    }
    return slot;
  }

  // New endpoint set: hosts that stay (same key and weight) keep their counters and ejection state.
  void updateCluster(Cluster& c, const ClusterSpec& spec) {
    std::unordered_map<std::string, HostPtr> old;
    for (auto& h : c.hosts) old.emplace(h->key, h);
    std::vector<HostPtr> hosts;
    hosts.reserve(spec.endpoints.size());
    for (const EndpointSpec& e : spec.endpoints) {
      auto kept = old.find(e.key);
      if (kept != old.end() && kept->second->weight == e.weight) {
        hosts.push_back(kept->second);
        continue;
      }
      auto h = std::make_shared<Host>();
      h->key = e.key;
      h->addr = e.addr;
      h->addrLen = e.addrLen;
      h->weight = e.weight;
      hosts.push_back(std::move(h));
    }
    // Hosts that leave while calls still count on them live on until those calls finish.
    for (auto& [key, h] : old) {
      if (h->active > 0 && std::find(hosts.begin(), hosts.end(), h) == hosts.end()) retiredHosts_.push_back(h);
    }
    c.hosts = std::move(hosts);
    c.allWeighted = true;
    c.equalWeights = true;
    c.ejectionsEndAt = 0;
    for (auto& h : c.hosts) {
      if (h->weight == 0) c.allWeighted = false;
      if (h->weight != c.hosts[0]->weight) c.equalWeights = false;
      c.ejectionsEndAt = std::max(c.ejectionsEndAt, h->ejectedUntil);
    }
    c.policy = spec.policy;
    c.hashHeader = spec.hashHeader;
    c.timeoutMs = spec.timeoutMs;
    c.routers = spec.routers;
    c.hostsByMethod.clear();
    c.ring.clear();
    c.ringBuilt = false;
  }

  const std::vector<Host*>* hostsFor(Cluster& c, const std::string& method) {
    if (c.routers.empty()) return nullptr;
    auto known = c.hostsByMethod.find(method);
    if (known != c.hostsByMethod.end()) return &known->second;
    std::vector<Host*> hosts;
    for (auto& h : c.hosts) hosts.push_back(h.get());
    for (const MethodRouterSpec& r : c.routers) {
      bool all = true;
      for (const MethodCondition& cond : r.methods) all = all && conditionHolds(cond, method);
      if (!all) continue;
      if (r.blacklist) {
        hosts.clear();
        continue;
      }
      std::vector<Host*> kept;
      for (Host* h : hosts)
        if (std::find(r.allowed.begin(), r.allowed.end(), h->key) != r.allowed.end()) kept.push_back(h);
      if (!kept.empty() || r.force) hosts = std::move(kept);
    }
    hosts.erase(std::remove_if(hosts.begin(), hosts.end(), [](Host* h) { return h->weight == 0; }), hosts.end());
    // Names come from the wire: bounded, as the TypeScript cluster's cache.
    if (c.hostsByMethod.size() >= 1024) c.hostsByMethod.clear();
    return &c.hostsByMethod.emplace(method, std::move(hosts)).first->second;
  }

  // Chooses an endpoint by the cluster's policy among those usable; `panic` treats none as ejected (Envoy's panic
  // mode when every usable endpoint is ejected).
  Host* pick(Cluster& c, Call* call, bool panic) {
    const std::vector<Host*>* allowed = call != nullptr ? hostsFor(c, call->method) : nullptr;
    const int64_t now = panic ? INT64_MAX : now_;
    auto usable = [&](Host* h) {
      if (h->isEjected(now) || h->weight == 0) return false;
      if (call != nullptr && std::find(call->tried.begin(), call->tried.end(), h) != call->tried.end()) return false;
      return allowed == nullptr || std::find(allowed->begin(), allowed->end(), h) != allowed->end();
    };
    const bool everyHost = (call == nullptr || call->tried.empty()) && c.allWeighted && now >= c.ejectionsEndAt && allowed == nullptr;
    if (everyHost && c.equalWeights && c.policy == Policy::RoundRobin) {
      // The common case needs no filtered list: plain rotation over every host.
      if (c.hosts.empty()) return nullptr;
      Host* h = c.hosts[c.rrNext % c.hosts.size()].get();
      c.rrNext = (c.rrNext + 1) % 0x7fffffff;
      return h;
    }
    candidates_.clear();
    for (auto& h : c.hosts)
      if (everyHost || usable(h.get())) candidates_.push_back(h.get());
    if (candidates_.empty()) return nullptr;
    switch (c.policy) {
      case Policy::WeightedRandom: {
        uint64_t total = 0;
        for (Host* h : candidates_) total += h->weight;
        uint64_t r = std::uniform_int_distribution<uint64_t>(0, total - 1)(rng_);
        for (Host* h : candidates_) {
          if (r < h->weight) return h;
          r -= h->weight;
        }
        return candidates_.back();
      }
      case Policy::LeastRequest: {
        if (candidates_.size() == 1) return candidates_[0];
        // Power of two choices over two distinct hosts (Envoy's least_request default).
        const size_t n = candidates_.size();
        const size_t i = std::uniform_int_distribution<size_t>(0, n - 1)(rng_);
        size_t j = std::uniform_int_distribution<size_t>(0, n - 2)(rng_);
        if (j == i) j = n - 1;
        Host* a = candidates_[i];
        Host* b = candidates_[j];
        return b->active < a->active ? b : a;
      }
      case Policy::ConsistentHash:
        if (call != nullptr && call->hasHashKey) return byHash(c, call->hashKey, usable);
        [[fallthrough]];
      case Policy::RoundRobin:
        break;
    }
    if (c.equalWeights) {
      Host* h = candidates_[c.rrNext % candidates_.size()];
      c.rrNext = (c.rrNext + 1) % 0x7fffffff;
      return h;
    }
    // Smooth weighted round-robin (as nginx): interleaves by weight instead of sending runs.
    Host* best = candidates_[0];
    int64_t total = 0;
    for (Host* h : candidates_) {
      h->credit += h->weight;
      total += h->weight;
      if (h->credit > best->credit) best = h;
    }
    best->credit -= total;
    return best;
  }

  template <typename Usable>
  Host* byHash(Cluster& c, const std::string& key, Usable usable) {
    if (!c.ringBuilt) {
      c.ring.clear();
      for (auto& h : c.hosts) {
        const uint32_t replicas = std::max<uint32_t>(1, h->weight);
        for (uint32_t i = 0; i < replicas; i++) c.ring.emplace_back(hash32(h->key + "_" + std::to_string(i)), h.get());
      }
      std::sort(c.ring.begin(), c.ring.end(), [](auto& a, auto& b) { return a.first < b.first; });
      c.ringBuilt = true;
    }
    if (c.ring.empty()) return nullptr;
    const uint32_t point = hash32(key);
    size_t lo = std::lower_bound(c.ring.begin(), c.ring.end(), point, [](auto& e, uint32_t v) { return e.first < v; }) - c.ring.begin();
    for (size_t i = 0; i < c.ring.size(); i++) {
      Host* h = c.ring[(lo + i) % c.ring.size()].second;
      if (usable(h)) return h;
    }
    return nullptr;
  }

  void recordFailure(Cluster& c, Host& h) {
    h.consecutiveFailures++;
    if (h.consecutiveFailures < s_.consecutiveFailures || h.isEjected(now_)) return;
    size_t ejected = 0;
    for (auto& x : c.hosts)
      if (x->isEjected(now_)) ejected++;
    const size_t allowed = std::max<size_t>(1, c.hosts.size() * s_.maxEjectionPercent / 100);
    if (ejected >= allowed) return;
    h.ejections++;
    h.ejectedUntil = now_ + s_.baseEjectionMs * h.ejections;
    c.ejectionsEndAt = std::max(c.ejectionsEndAt, h.ejectedUntil);
    h.consecutiveFailures = 0;
    log("warn", "endpoint ejected", "\"cluster\":" + jsonString(c.name) + ",\"endpoint\":" + jsonString(h.key) +
                                        ",\"forMs\":" + std::to_string(s_.baseEjectionMs * h.ejections));
  }

  std::string describeCluster(const Cluster& c) {
    std::string out = "{\"listener\":\"" + std::string(kListenerNames[c.listener]) + "\",\"name\":" + jsonString(c.name) +
                      ",\"policy\":\"" + policyName(c.policy) + "\",\"pending\":" + std::to_string(c.pending) +
                      ",\"active\":" + std::to_string(c.active) + ",\"limits\":{\"maxPendingRequests\":" +
                      std::to_string(s_.maxPendingRequests) + ",\"maxActiveRequests\":" + std::to_string(s_.maxActiveRequests) + "}";
    if (c.timeoutMs >= 0) out += ",\"timeoutMs\":" + std::to_string(c.timeoutMs);
    out += ",\"endpoints\":[";
    for (size_t i = 0; i < c.hosts.size(); i++) {
      const Host& h = *c.hosts[i];
      const bool ejected = h.isEjected(now_);
      if (i) out += ',';
      out += "{\"address\":" + jsonString(h.key) + ",\"weight\":" + std::to_string(h.weight) + ",\"active\":" +
             std::to_string(h.active) + ",\"healthy\":" + (ejected ? "false" : "true") + ",\"consecutiveFailures\":" +
             std::to_string(h.consecutiveFailures) + ",\"ejections\":" + std::to_string(h.ejections) +
             ",\"ejectedForMs\":" + std::to_string(ejected ? h.ejectedUntil - now_ : 0) + "}";
    }
    return out + "]}";
  }

  static const char* policyName(Policy p) {
    switch (p) {
      case Policy::WeightedRandom: return "weighted-random";
      case Policy::LeastRequest: return "least-request";
      case Policy::ConsistentHash: return "consistent-hash";
      default: return "round-robin";
    }
  }

  // ---- events

  void dispatch(Handler* h, uint32_t ev) {
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

  void runCommands() {
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

  void acceptAll(Listener* l) {
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
      newCaller(std::move(owned), l->which, source);
    }
  }

  Caller* newCaller(Fd fd, int which, std::string source) {
    int one = 1;
    setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (source.empty()) {
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      if (getpeername(fd.get(), reinterpret_cast<sockaddr*>(&peer), &len) == 0) source = addressText(peer);
    }
    int flags = fcntl(fd.get(), F_GETFL);
    if (flags >= 0) fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK);
    auto* c = new Caller();
    c->fd = std::move(fd);
    c->listener = which;
    c->source = std::move(source);
    c->events = EPOLLIN | EPOLLRDHUP;
    epoll_event ev{};
    ev.events = c->events;
    ev.data.ptr = c;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c->fd.get(), &ev) != 0) {
      delete c;
      return nullptr;
    }
    callers_.insert(c);
    perSource_[which][c->source]++;
    c->countedPerSource = true;
    connectionCount_[which]++;
    stats_->connectionsActive[which].fetch_add(1, std::memory_order_relaxed);
    stats_->connectionsTotal[which].fetch_add(1, std::memory_order_relaxed);
    return c;
  }

  void setEvents(Handler* h, int fd, uint32_t& current, uint32_t want) {
    if (current == want) return;
    current = want;
    epoll_event ev{};
    ev.events = want;
    ev.data.ptr = h;
    epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev);
  }

  // Reading a caller: on while it may send (not paused by us); after we end it, still on so its FIN is seen.
  void updateCallerEvents(Caller* c) {
    if (c->closed) return;
    // Not reading means not asking for RDHUP either: level-triggered, a FIN we are not reading yet would wake us
    // in a loop.
    uint32_t want = 0;
    if (!c->peerClosed && (c->paused == 0 || c->finSent)) want |= EPOLLIN | EPOLLRDHUP;
    if (!c->out.empty()) want |= EPOLLOUT;
    setEvents(c, c->fd.get(), c->events, want);
  }

  void callerEvent(Caller* c, uint32_t ev) {
    if (c->closed) return;
    if (ev & EPOLLOUT) {
      if (!flushCaller(c)) return;
    }
    const bool reading = (c->events & EPOLLIN) != 0;
    if ((ev & (EPOLLHUP | EPOLLERR)) && !reading) return closeCaller(c);  // reset while not read: nothing to deliver
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) readCaller(c);
  }

  void readCaller(Caller* c) {
    size_t total = 0;
    while (!c->closed) {
      if (c->finSent || c->closing) {
        // Ended by us: read and drop, so the caller's FIN is seen.
        uint8_t sink[4096];
        ssize_t n = read(c->fd.get(), sink, sizeof sink);
        if (n > 0) continue;
        if (n == 0) return closeCaller(c);
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) closeCaller(c);
        return;
      }
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
  void processCaller(Caller* c) {
    if (c->processing) return;
    c->processing = true;
    processFrames(c);
    c->processing = false;
  }

  void processFrames(Caller* c) {
    bool completed = false;
    const size_t used = takeFrames(c, c->in.data(), c->in.size(), completed);
    if (!c->closed) c->in.consume(used);
    trackPartial(c, completed);
  }

  // Fresh bytes of a caller, in the scratch buffer: handled in place unless part of a frame is already held.
  void processChunk(Caller* c, uint8_t* p, size_t n) {
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
  size_t takeFrames(Caller* c, uint8_t* p, size_t len, bool& completed) {
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

  void trackPartial(Caller* c, bool completed) {
    if (c->closed || c->closing) return;
    // The partial-frame clock: starts at a frame's first byte, restarts when a frame completed and another began.
    if (c->in.empty()) {
      if (c->inPartial) markPartial(c, 0);
    } else if (!c->inPartial || completed) {
      markPartial(c, now_);
    }
  }

  void markPartial(Caller* c, int64_t since) {
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

  void closeStalled(Caller* c, const char* code, const std::string& message) {
    countBadFrame(c->listener, code);
    log("warn", message + "; closing that connection once its calls are answered",
        "\"listener\":\"" + std::string(kListenerNames[c->listener]) + "\",\"remote\":" + jsonString(c->source) + ",\"code\":\"" + code + "\"");
    c->destroyWhenIdle = true;
    markPartial(c, 0);
    closeWhenIdle(c);
  }

  void countBadFrame(int listener, const std::string& code) {
    std::lock_guard<std::mutex> lock(stats_->badFramesMutex);
    stats_->badFrames[{listener, code}]++;
  }

  void rejectCaller(Caller* c, const CodecError& err, const uint8_t* head, size_t len) {
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

  void closeWhenIdle(Caller* c) {
    c->closing = true;
    c->in.clear();
    endIfIdle(c);
    if (!c->closed) updateCallerEvents(c);
  }

  void endIfIdle(Caller* c) {
    if (c->closed || !c->closing || c->inflight > 0) return;
    if (c->destroyWhenIdle || c->peerClosed) {
      // Answers already queued go first; then the socket goes.
      if (c->out.empty()) closeCaller(c);
      return;
    }
    if (!c->out.empty()) return;  // flushCaller calls back once the answers are out
    if (c->finAt == 0) {
      shutdown(c->fd.get(), SHUT_WR);
      c->finAt = now_;
      c->finSent = true;
      updateCallerEvents(c);
    }
  }

  void handleCallerFrame(Caller* c, uint8_t* p, size_t len) {
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

  // ---- requests

  ClusterCounters& noneCounters(int which) {
    if (!none_[which]) none_[which] = countersFor(which, "none");
    return *none_[which];
  }

  void countRequest(ClusterCounters& m, Proto proto) {
    (proto == Proto::Bolt ? m.requestsBolt : m.requestsDubbo).fetch_add(1, std::memory_order_relaxed);
  }

  void countOutcome(ClusterCounters& m, Failure f) { m.failures[size_t(f)].fetch_add(1, std::memory_order_relaxed); }

  void request(Caller* c, uint8_t* p, size_t len, const FrameHeader& h) {
    const int which = c->listener;
    if (h.proto == Proto::Dubbo && h.attachmentsError != nullptr) {
      ClusterCounters& m = noneCounters(which);
      countRequest(m, h.proto);
      // The full reason, with the names that disagree, is rebuilt only here, on the refusal path.
      return refuse(c, h, m, Failure::BadRequest,
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
    countRequest(m, h.proto);
    if (draining_) return refuse(c, h, m, Failure::Draining, "meshport is shutting down");
    if (!routable) {
      return refuse(c, h, m, Failure::NoRoute,
                    "meshport: no route for service " + (cluster != nullptr ? cluster->name : named ? key_ : std::string("(none in the frame)")) + " on the " +
                        kListenerNames[which] + " listener");
    }
    if (cluster->active >= s_.maxActiveRequests || cluster->pending >= s_.maxPendingRequests) {
      return refuse(c, h, m, Failure::Busy, "meshport: cluster " + cluster->name + " is at its request limit");
    }
    Call* call = allocCall();
    call->who = h;
    call->who.service = call->who.version = call->who.group = call->who.method = std::string_view();
    call->cluster = cluster;
    call->caller = c;
    if (!cluster->routers.empty()) call->method.assign(h.method.data(), h.method.size());
    if (cluster->policy == Policy::ConsistentHash) {
      if (h.proto == Proto::Dubbo) {
        call->hashKey.assign(h.method.data(), h.method.size());
        call->hasHashKey = true;
      } else if (!cluster->hashHeader.empty()) {
        call->hasHashKey = boltHeaderValue(p, len, cluster->hashHeader, call->hashKey);
      }
    }
    if (!cluster->routers.empty() && hostsFor(*cluster, call->method)->empty()) {
      const std::string method = call->method;
      freeCall(call);
      return refuse(c, h, m, Failure::NoRoute,
                    "meshport: the registry's routing rules leave no endpoint of " + cluster->name + " for method " +
                        (method.empty() ? std::string("(unnamed)") : method));
    }
    if (!h.expectsResponse()) {
      // Oneway: forwarded without tracking; nothing will answer it.
      Host* host = pick(*cluster, call, false);
      if (host == nullptr) host = pick(*cluster, call, true);
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
      return;
    }
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

  Call* allocCall() {
    if (freeCalls_.empty()) return new Call();
    Call* c = freeCalls_.back();
    freeCalls_.pop_back();
    return c;
  }

  void freeCall(Call* c) {
    c->caller = nullptr;
    c->cluster = nullptr;
    c->host = nullptr;
    c->conn = nullptr;
    c->upstreamId = 0;
    if (c->frame.capacity() > ByteQueue::kKeepWhenIdle) std::vector<uint8_t>().swap(c->frame);
    else c->frame.clear();
    c->tried.clear();
    c->method.clear();
    c->hashKey.clear();
    c->hasHashKey = c->pending = c->done = false;
    c->prev = c->next = nullptr;
    c->list = nullptr;
    if (freeCalls_.size() < 4096) freeCalls_.push_back(c);
    else delete c;
  }

  void refuse(Caller* c, const FrameHeader& who, ClusterCounters& m, Failure f, const std::string& message) {
    countOutcome(m, f);
    if (who.expectsResponse()) reply(c, errorResponse(who, f, message));
  }

  void callStarted(Caller* c) {
    c->inflight++;
    if (c->inflight >= s_.maxCallerInflight) pauseCaller(c, kPauseInflight);
  }

  void callDone(Caller* c) {
    c->inflight--;
    if (c->inflight < s_.maxCallerInflight) resumeCaller(c, kPauseInflight);
    endIfIdle(c);
  }

  void pauseCaller(Caller* c, uint8_t why) {
    if (c->paused & why) return;
    c->paused |= why;
    updateCallerEvents(c);
  }

  void resumeCaller(Caller* c, uint8_t why) {
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
  }

  // Picks an endpoint (none this call already failed on) and writes the call to a pooled connection.
  void send(Call* call, uint8_t* p, size_t len) {
    Cluster& cluster = *call->cluster;
    Host* host = pick(cluster, call, false);
    if (host == nullptr) host = pick(cluster, call, true);
    if (host == nullptr) return fail(call, Failure::Unavailable, "meshport: no endpoint of " + cluster.name + " accepted a connection");
    call->host = host;
    host->active++;
    Upstream* u = connectionFor(*host, call->who.proto);
    if (u == nullptr) {
      host->active--;
      call->host = nullptr;
      call->tried.push_back(host);
      if (call->tried.size() > s_.connectRetries) return fail(call, Failure::Unavailable, "meshport: could not connect to " + cluster.name);
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

  void finish(Call* call) {
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
    const uint64_t micros = uint64_t(std::max<int64_t>(0, monotonicMicros() - call->startedMicros));
    size_t i = 0;
    while (i < kLatencyBuckets && micros > kBucketMicros[i]) i++;
    m.latency[i].fetch_add(1, std::memory_order_relaxed);
    m.latencyCount.fetch_add(1, std::memory_order_relaxed);
    m.latencySumMicros.fetch_add(micros, std::memory_order_relaxed);
  }

  void release(Call* call) {
    Caller* c = call->caller;
    c->refs--;
    if (!c->closed) callDone(c);
    else maybeFree(c);
    freeCall(call);
  }

  void fail(Call* call, Failure f, const std::string& message) {
    if (call->done) return;
    finish(call);
    forget(call);
    countOutcome(*call->cluster->counters, f);
    reply(call->caller, errorResponse(call->who, f, message));
    release(call);
  }

  // Removes a call from its upstream connection's table (a late answer is then dropped).
  void forget(Call* call) {
    if (call->conn != nullptr) {
      call->conn->calls.erase(call->upstreamId);
      call->conn = nullptr;
    }
  }

  void reply(Caller* c, const std::string& frame) {
    if (c->closed) return;
    c->out.append(frame.data(), frame.size());
    stats_->bytesOut[c->listener].fetch_add(frame.size(), std::memory_order_relaxed);
    markDirty(c);
  }

  void reply(Caller* c, const uint8_t* p, size_t len) {
    if (c->closed) return;
    c->out.append(p, len);
    stats_->bytesOut[c->listener].fetch_add(len, std::memory_order_relaxed);
    markDirty(c);
  }

  // ---- upstream connections

  Upstream* connectionFor(Host& host, Proto proto) {
    PoolEntry*& entry = host.pool[proto == Proto::Bolt ? 0 : 1];
    if (entry == nullptr) {
      // Entries are never erased (one per endpoint and protocol ever used), so the pointer stays good.
      poolKey_.assign(1, proto == Proto::Bolt ? 'b' : 'd');
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
      Upstream* u = dial(host, proto);
      if (u == nullptr) return nullptr;
      list.push_back(u);
      return u;
    }
    return list[entry->next++ % list.size()];
  }

  Upstream* dial(Host& host, Proto proto) {
    Fd fd(socket(host.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
      log("warn", "upstream socket failed: " + std::string(strerror(errno)), "\"endpoint\":" + jsonString(host.key));
      return nullptr;
    }
    int one = 1;
    setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto* u = new Upstream();
    u->key = host.key;
    u->proto = proto;
    u->connectDeadline = now_ + s_.connectTimeoutMs;
    u->lastActive = now_;
    int rc = connect(fd.get(), reinterpret_cast<const sockaddr*>(&host.addr), host.addrLen);
    if (rc != 0 && errno != EINPROGRESS) {
      const int e = errno;
      delete u;
      log("warn", "upstream connect failed", "\"endpoint\":" + jsonString(host.key) + ",\"err\":" + jsonString(strerror(e)));
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

  void upstreamEvent(Upstream* u, uint32_t ev) {
    if (u->closed) return;
    if (!u->connected) {
      if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(u->fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0 || (ev & (EPOLLERR | EPOLLHUP))) {
          return closeUpstream(u, std::string("connect failed: ") + strerror(err != 0 ? err : ECONNREFUSED), true);
        }
        connected(u);
      } else {
        return;
      }
    }
    if (ev & EPOLLOUT) flushUpstream(u);
    if (!u->closed && (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) readUpstream(u);
  }

  void connected(Upstream* u) {
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

  void readUpstream(Upstream* u) {
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

  void processUpstream(Upstream* u) {
    const size_t used = takeUpstreamFrames(u, u->in.data(), u->in.size());
    if (!u->closed) u->in.consume(used);
  }

  size_t takeUpstreamFrames(Upstream* u, uint8_t* p, size_t len) {
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

  void upstreamFrame(Upstream* u, uint8_t* p, size_t len) {
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
    } else {
      std::lock_guard<std::mutex> lock(m.statusMutex);
      m.statuses[status]++;
    }
    setRequestId(p, len, call->who.idHigh, call->who.idLow);
    reply(call->caller, p, len);
    release(call);
  }

  // Fails or retries every call on a connection that is gone. `neverUp`: it never connected, so no call left.
  void closeUpstream(Upstream* u, const std::string& reason, bool neverUp) {
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
        call->tried.push_back(host);
        if (call->tried.size() > s_.connectRetries) {
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

  // ---- relays

  void relayEvent(RelaySide* s, uint32_t ev) {
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
  bool flushRelay(RelaySide& s) {
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

  void relayInterest(Relay& r) {
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

  void closeRelay(Relay* r) {
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

  // ---- writing

  template <typename T>
  void markDirty(T* conn) {
    if (conn->dirty) return;
    conn->dirty = true;
    if constexpr (std::is_same_v<T, Caller>) dirtyCallers_.push_back(conn);
    else dirtyUpstreams_.push_back(conn);
  }

  void flushDirty() {
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

  // Writes what it can; false when the caller was closed.
  bool flushCaller(Caller* c) {
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
    if (c->out.size() > kHighWater) pauseCaller(c, kPauseOwnBacklog);
    else if (c->out.size() < kLowWater && (c->paused & kPauseOwnBacklog)) resumeCaller(c, kPauseOwnBacklog);
    if (c->closed) return false;
    if (c->out.empty()) endIfIdle(c);
    if (!c->closed) updateCallerEvents(c);
    return !c->closed;
  }

  void flushUpstream(Upstream* u) {
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
    if (u->out.size() < kLowWater && !u->blocked.empty()) {
      std::vector<Caller*> blocked;
      blocked.swap(u->blocked);
      for (Caller* c : blocked) {
        c->refs--;
        if (c->closed) maybeFree(c);
        else resumeCaller(c, kPauseUpstream);
      }
    }
  }

  // ---- closing

  void closeCaller(Caller* c) {
    if (c->closed) return;
    c->closed = true;
    markPartial(c, 0);
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

  void maybeFree(Caller* c) {
    if (c->closed && c->refs == 0) deadCallers_.push_back(c);
  }

  void reap() {
    deadListeners_.clear();
    for (Relay* r : deadRelays_) delete r;
    deadRelays_.clear();
    for (Caller* c : deadCallers_) delete c;
    deadCallers_.clear();
    for (Upstream* u : deadUpstreams_) delete u;
    deadUpstreams_.clear();
  }

  // ---- time

  // How long epoll may sleep: a tick's length while anything is timed (calls, unfinished frames, held requests, a
  // drain, callers we sent a FIN); otherwise until the first upstream needs a heartbeat or a timeout checked.
  int waitMs() const {
    if (live_.count > 0 || partialCount_ > 0 || !held_.empty() || draining_ || finPending_ > 0 || !dirtyCallers_.empty()) return 5;
    if (openUpstreams_ == 0 || upstreamDue_ == INT64_MAX) return 500;
    return int(std::clamp<int64_t>(upstreamDue_ - now_, 5, 500));
  }

  void tick() {
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
    retiredHosts_.erase(std::remove_if(retiredHosts_.begin(), retiredHosts_.end(), [](const HostPtr& h) { return h->active == 0; }),
                        retiredHosts_.end());
    retiredClusters_.erase(std::remove_if(retiredClusters_.begin(), retiredClusters_.end(),
                                          [](const ClusterPtr& c) { return c->active == 0 && c->pending == 0; }),
                           retiredClusters_.end());
    if (draining_) drainStep();
  }

  void upstreamTimers() {
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
    for (Upstream* u : connectTimeouts) closeUpstream(u, "connect timed out after " + std::to_string(s_.connectTimeoutMs) + " ms", true);
    for (Upstream* u : heartbeatTimeouts) {
      log("warn", "upstream heartbeat unanswered; closing the connection", "\"endpoint\":" + jsonString(u->key));
      closeUpstream(u, "heartbeat unanswered", false);
    }
  }

  void releaseHeld(bool all) {
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

  void drainStep() {
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
      log("info", "drained");
      for (uint64_t token : drainTokens_) events_.push_back("{\"type\":\"reply\",\"token\":" + std::to_string(token) + "}");
      drainTokens_.clear();
    }
  }

  void shutdownAll() {
    std::vector<Caller*> all(callers_.begin(), callers_.end());
    for (Caller* c : all) closeCaller(c);
    for (auto& [key, entry] : pool_)
      for (Upstream* u : entry.list) {
        u->closed = true;
        u->fd.reset();
      }
    listeners_.clear();
  }

  // ---- events to JavaScript

  void log(const char* level, const std::string& msg, const std::string& fields = "") {
    std::string e = "{\"type\":\"log\",\"level\":\"" + std::string(level) + "\",\"msg\":" + jsonString(msg);
    if (!fields.empty()) e += "," + fields;
    events_.push_back(e + "}");
  }

  void sendEvents() {
    if (events_.empty()) return;
    // Bounded: a storm of bad frames must not grow this without end; what is cut is counted in the last line.
    if (events_.size() > 1000) {
      const size_t cut = events_.size() - 1000;
      events_.resize(1000);
      log("warn", std::to_string(cut) + " more engine events were dropped");
    }
    std::vector<std::string> batch;
    batch.swap(events_);
    sink_(std::move(batch));
  }

  EngineSettings s_;
  std::shared_ptr<EngineStats> stats_;
  EventSink sink_;
  Fd epoll_;
  struct Wake : Handler {
    Wake() : Handler(Tag::Wake) {}
    Fd fd;
  } wake_;
  std::mutex commandsMutex_;
  std::vector<std::function<void()>> commands_;
  bool stopped_ = false;
  int64_t now_ = 0;
  int64_t nowMicros_ = 0;
  int64_t lastTick_ = 0;
  std::mt19937_64 rng_;

  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<std::unique_ptr<Listener>> deadListeners_;
  std::unordered_set<Caller*> callers_;
  std::unordered_map<std::string, uint32_t> perSource_[2];
  std::unordered_set<std::string> perSourceWarned_[2];
  uint32_t connectionCount_[2] = {0, 0};
  // Keys view the name each cluster owns: a lookup by the bytes of a frame builds no string.
  using ClusterTable = std::unordered_map<std::string_view, ClusterPtr>;
  ClusterTable clusters_[2];
  std::shared_ptr<ClusterCounters> none_[2];
  std::unordered_map<std::string, PoolEntry> pool_;
  int64_t upstreamDue_ = INT64_MAX;
  size_t openUpstreams_ = 0;
  // Every call in flight, and the finished ones kept for reuse (a call costs no allocation once warm).
  struct LiveCalls {
    Call* head = nullptr;
    size_t count = 0;
    void push(Call* c) {
      c->livePrev = nullptr;
      c->liveNext = head;
      if (head) head->livePrev = c;
      head = c;
      count++;
    }
    void remove(Call* c) {
      if (c->livePrev) c->livePrev->liveNext = c->liveNext; else head = c->liveNext;
      if (c->liveNext) c->liveNext->livePrev = c->livePrev;
      c->livePrev = c->liveNext = nullptr;
      count--;
    }
  } live_;
  std::vector<Call*> freeCalls_;
  std::map<int64_t, DeadlineList> deadlines_;
  std::vector<Held> held_;
  int64_t holdUntil_ = 0;

  Caller* partialHead_ = nullptr;
  Caller* partialTail_ = nullptr;
  uint32_t partialCount_ = 0;
  uint32_t finPending_ = 0;

  bool draining_ = false;
  bool drainCallsDone_ = false;
  int64_t drainDeadline_ = 0;
  std::vector<uint64_t> drainTokens_;

  std::vector<Caller*> dirtyCallers_;
  std::vector<Upstream*> dirtyUpstreams_;
  std::vector<Caller*> deadCallers_;
  std::unordered_set<Relay*> relays_;
  std::vector<Relay*> deadRelays_;
  std::vector<Upstream*> deadUpstreams_;
  std::vector<Host*> candidates_;
  std::vector<uint8_t> scratch_ = std::vector<uint8_t>(kReadChunk);
  std::vector<HostPtr> retiredHosts_;
  std::vector<ClusterPtr> retiredClusters_;
  std::string key_;
  std::string poolKey_;
  std::vector<std::string> events_;
};

// ---------------------------------------------------------------------------------------------------------------

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
