// What the loop's files share: the objects of the loop thread (callers, upstream connections, calls, relays) and
// the Loop class, whose members are defined by concern in loop.cc, callers.cc, upstreams.cc, routes.cc and relay.cc.
// The small helpers several of those files call per request or per event are defined here, so they stay inline.
#pragma once

#include <sys/epoll.h>
#include <time.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "buffers.h"
#include "clusters.h"
#include "codec.h"
#include "engine.h"
#include "telemetry.h"
#include "tls.h"

namespace meshport {

inline constexpr size_t kReadChunk = 64 * 1024;
// A peer's unsent bytes past which we stop reading what produces them (a caller's answers, an upstream's requests).
inline constexpr size_t kHighWater = 256 * 1024;
inline constexpr size_t kLowWater = 64 * 1024;
// Plaintext encrypted per SSL_write (four full records): the ciphertext queue stays near this size.
inline constexpr size_t kTlsWriteChunk = 64 * 1024;
inline constexpr const char* kListenerNames[] = {"outbound", "inbound", "upstream"};
// LATENCY_BUCKETS of packages/router/src/stats.ts, in microseconds.
inline constexpr uint64_t kBucketMicros[kLatencyBuckets] = {100,    250,    500,     1000,    2500,    5000,    10000,   25000,
                                                            50000,  100000, 250000,  500000,  1000000, 2500000, 5000000, 10000000};
inline constexpr size_t kOkSlot = kFailures;

inline int64_t monotonicMicros() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

// `s` as a JSON string literal, quotes included (log fields, /routes).
std::string jsonString(std::string_view s);

// What an epoll event points at: the tag says which of the loop's objects it is.
enum class Tag : uint8_t { Wake, Listener, Caller, Upstream, Relay };

struct Handler {
  explicit Handler(Tag t) : tag(t) {}
  Tag tag;
};

// ---------------------------------------------------------------------------------------------------------------
// The loop's objects. All of them belong to the loop thread.

// The pooled upstream connections to one endpoint for one protocol, shared by every cluster that names it.
struct PoolEntry {
  std::vector<struct Upstream*> list;
  uint32_t next = 0;
};

struct Caller;
struct Upstream;

struct Call {
  Caller* caller = nullptr;
  FrameHeader who;  // identity fields only (its views are cleared)
  Cluster* cluster = nullptr;  // kept alive while it counts this call in `active` (see retiredClusters_)
  MethodCounters* method = nullptr;  // its method's counters in cluster->counters (they live as long as the engine)
  Host* host = nullptr;  // kept alive while it counts this call in `active` (see retiredHosts_)
  Upstream* conn = nullptr;
  uint32_t upstreamId = 0;
  std::vector<uint8_t> frame;  // kept while the connection is still connecting: a never-sent call is retried
  int64_t startedMicros = 0;
  int64_t durationMicros = 0;  // set by finish()
  int64_t deadline = 0;
  int64_t timeoutMs = 0;
  CallRoute route;  // what the balancer reads of it
  std::unique_ptr<CallRecord> record;  // its access log line and span (telemetry on); kept with the pooled call
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
  std::string source;   // its address as the per-source cap counts it
  std::string ip;       // its address, an IPv4 one of a dual-stack listener unmapped (the metrics' caller)
  std::string address;  // ip:port ([ip]:port for IPv6), as access logs and spans show it
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
  // Mutual TLS (inbound listener, security on): `sniff` until the first byte tells TLS (0x16) from plaintext; then
  // `tls` carries it, and `peer` is the caller's verified identity (empty: a plaintext caller).
  bool sniff = false;
  bool tlsAgain = false;  // in Loop::tlsAgain_: ciphertext waits in tls->in while the socket may be empty
  std::unique_ptr<TlsConn> tls;
  std::string peer;
  // The caller's entry in the per-service metrics of the cluster it called last: a connection mostly calls one
  // service, so most requests find it here without a lookup. Counters live as long as the engine.
  ClusterCounters* lastCounters = nullptr;
  CallerCounters* lastCaller = nullptr;
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
  // TCP is up; `connected` waits for the TLS handshake too when `tls` is set (an endpoint with an identity).
  bool tcpUp = false;
  std::unique_ptr<TlsConn> tls;
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

// The calls in flight, linked through the calls themselves.
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
};

// ---------------------------------------------------------------------------------------------------------------

// The loop thread. Each section names the file that defines its members. Members declared inline are used in that
// file only, where the compiler may inline them as it could when the loop was one file; the others are called from
// other files or from the Engine's commands (or, like markPartial, stay out of line as the one-file build kept them).
class Loop {
 public:
  // ---- loop.cc: the thread, commands, timers, drain
  Loop(const EngineSettings& s, std::shared_ptr<EngineStats> stats, EventSink sink);
  ~Loop();
  // From the JavaScript thread: runs `command` on the loop thread.
  void post(std::function<void()> command);
  void run();
  void beginDrain(int64_t deadlineMs, uint64_t token);
  void stop() { stopped_ = true; }

  // ---- callers.cc
  void addListener(Fd fd, int which, AllowList allow);
  void adopt(Fd fd, int which, std::vector<uint8_t> head);

  // ---- routes.cc
  void setRoutes(std::shared_ptr<const RouteSnapshot> snap);
  void describe(uint64_t token);

  // ---- secure.cc
  void setSecurity(std::shared_ptr<const SecuritySnapshot> security);

  // ---- records.cc
  void setTelemetry(const TelemetrySettings& telemetry);

  // ---- relay.cc
  void relay(Fd app, const sockaddr_storage& to, socklen_t toLen, std::vector<uint8_t> head);

 private:
  // ---- loop.cc
  inline void dispatch(Handler* h, uint32_t ev);
  inline void runCommands();
  inline void flushDirty();
  inline void reap();
  inline int waitMs() const;
  inline int idleWaitMs() const;
  inline void tick();
  void releaseHeld(bool all);
  inline void drainStep();
  inline void shutdownAll();
  void log(const char* level, const std::string& msg, const std::string& fields = "");
  inline void sendEvents();

  // ---- callers.cc: accepted app connections, their frames and requests
  void acceptAll(Listener* l);
  inline Caller* newCaller(Fd fd, int which, const sockaddr_storage* peer);
  void readCaller(Caller* c);
  void drainEndedCaller(Caller* c);
  inline void processCaller(Caller* c);
  inline void processFrames(Caller* c);
  // Always inlined into readCaller, as it was when the loop was one file: the split must not add a call per read.
  [[gnu::always_inline]] inline void processChunk(Caller* c, uint8_t* p, size_t n);
  inline size_t takeFrames(Caller* c, uint8_t* p, size_t len, bool& completed);
  inline void trackPartial(Caller* c, bool completed);
  void markPartial(Caller* c, int64_t since);
  void closeStalled(Caller* c, const char* code, const std::string& message);
  inline void countBadFrame(int listener, const std::string& code);
  inline void rejectCaller(Caller* c, const CodecError& err, const uint8_t* head, size_t len);
  void endIfIdle(Caller* c);
  inline void handleCallerFrame(Caller* c, uint8_t* p, size_t len);
  inline ClusterCounters& noneCounters(int which);
  // Counts a request in its cluster's counters and the per-service metrics (method, caller); returns its method's.
  inline MethodCounters& countRequest(ClusterCounters& m, Caller* c, const uint8_t* p, size_t len, const FrameHeader& h);
  void request(Caller* c, uint8_t* p, size_t len, const FrameHeader& h);
  inline void refuse(Caller* c, const FrameHeader& who, ClusterCounters& m, MethodCounters& mm, Failure f, const std::string& message);
  bool authorized(Caller* c, const uint8_t* p, size_t len, const FrameHeader& h, std::string_view service, Cluster* cluster);
  inline void callStarted(Caller* c);
  void resumeCaller(Caller* c, uint8_t why);
  bool flushCaller(Caller* c);
  void closeCaller(Caller* c);
  // TLS callers (mutual TLS on the inbound listener)
  void readCallerTls(Caller* c);
  bool sniffCaller(Caller* c);
  bool driveCallerTls(Caller* c);
  bool flushCallerTls(Caller* c);
  void callerEnded(Caller* c);

  // ---- upstreams.cc: pooled upstream connections and the calls on them
  void send(Call* call, uint8_t* p, size_t len);
  inline void finish(Call* call);
  inline void release(Call* call);
  void fail(Call* call, Failure f, const std::string& message);
  Upstream* connectionFor(Host& host, Proto proto);
  inline Upstream* dial(Host& host, Proto proto, bool tls);
  /** Why the last dial failed at once (socket() or connect() refused before any event): for the caller's error. */
  std::string dialError_;
  void upstreamEvent(Upstream* u, uint32_t ev);
  inline void connected(Upstream* u);
  inline void readUpstream(Upstream* u);
  inline void processUpstream(Upstream* u);
  inline size_t takeUpstreamFrames(Upstream* u, uint8_t* p, size_t len);
  void unblock(Upstream* u);
  void upstreamTlsEvent(Upstream* u, uint32_t ev);  // the TLS side of upstreamEvent
  void flushUpstreamTls(Upstream* u);
  inline void upstreamFrame(Upstream* u, uint8_t* p, size_t len);
  void closeUpstream(Upstream* u, const std::string& reason, bool neverUp);
  void flushUpstream(Upstream* u);
  void upstreamTimers();
  // Counts a failure of an endpoint toward its ejection (clusters.cc decides), and says when it is ejected.
  void recordFailure(Cluster& c, Host& h);

  // ---- routes.cc: the route table
  inline void retire(const ClusterPtr& c);
  inline ClusterPtr makeCluster(int which, const std::string& name);
  std::shared_ptr<ClusterCounters> countersFor(int which, const std::string& name);
  inline std::string describeCluster(const Cluster& c);

  // ---- secure.cc: what TLS callers and upstreams share (counting, deadlines, writing ciphertext) and the
  // authorization of inbound calls. Reading and writing TLS connections is in callers.cc and upstreams.cc, beside
  // the plaintext paths whose framing it feeds.
  void retryTls();
  void tlsTimers();
  void handshakeDone(int direction);
  void handshakeFailed(int direction, HandshakeFailure f, const std::string& text, const std::string& remote);
  // Writes t.out to the socket until it is empty or the socket is full; false (errno in `err`) when it broke.
  static bool writeCipher(int fd, TlsConn& t, int& err);

  // ---- records.cc: access log lines and spans
  // With telemetry on, what the call's line needs of its request (the frame is not kept), in pendingRecord_.
  void startRecord(const uint8_t* p, size_t len, const FrameHeader& h, std::string_view method);
  // The call ended: its line and span, if the sampling says so, into the batches.
  // `startedMicros` (monotonic) and the duration place it in time.
  void endRecord(CallRecord& r, Caller* c, Proto proto, std::string_view service, std::string_view status,
                 int64_t startedMicros, int64_t durationMicros, uint64_t bytesOut);
  void syncWallClock();
  // A call answered (or refused) with a router failure; an upstream's answer with its status.
  void endRecord(Call* call, Failure f, uint64_t bytesOut);
  void endRecordAnswered(Call* call, uint16_t status, uint64_t bytesOut);
  void startBatch(std::string& batch, int64_t& since);
  void readKeptContext(CallRecord& r);
  // Whether a batch waits long enough (or has grown enough) to go; `force` on a drain and at the end.
  bool telemetryDue(bool force) const;
  // How long the loop may sleep before a batch is due (INT64_MAX: none waits).
  int64_t telemetryWaitMs() const;

  // ---- relay.cc: captured connections passed through byte for byte
  void relayEvent(RelaySide* s, uint32_t ev);
  inline bool flushRelay(RelaySide& s);
  inline void relayInterest(Relay& r);
  void closeRelay(Relay* r);

  // ---- here: what every file calls, per request or per event

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
    if (c->tls ? !c->tls->out.empty() || (c->tls->open() && !c->out.empty()) : !c->out.empty()) want |= EPOLLOUT;
    setEvents(c, c->fd.get(), c->events, want);
  }

  // Nothing left to write to the caller: no answer, and (TLS) no ciphertext.
  static bool outEmpty(const Caller* c) { return c->out.empty() && (!c->tls || c->tls->out.empty()); }

  void callerEvent(Caller* c, uint32_t ev) {
    if (c->closed) return;
    if (ev & EPOLLOUT) {
      if (!flushCaller(c)) return;
    }
    const bool reading = (c->events & EPOLLIN) != 0;
    if ((ev & (EPOLLHUP | EPOLLERR)) && !reading) return closeCaller(c);  // reset while not read: nothing to deliver
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) readCaller(c);
  }

  template <typename T>
  void markDirty(T* conn) {
    if (conn->dirty) return;
    conn->dirty = true;
    if constexpr (std::is_same_v<T, Caller>) dirtyCallers_.push_back(conn);
    else dirtyUpstreams_.push_back(conn);
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

  void countOutcome(ClusterCounters& m, MethodCounters& mm, Failure f) {
    m.failures[size_t(f)].fetch_add(1, std::memory_order_relaxed);
    mm.failures[size_t(f)].fetch_add(1, std::memory_order_relaxed);
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
    c->method = nullptr;
    c->host = nullptr;
    c->conn = nullptr;
    c->upstreamId = 0;
    if (c->frame.capacity() > ByteQueue::kKeepWhenIdle) std::vector<uint8_t>().swap(c->frame);
    else c->frame.clear();
    c->route.tried.clear();
    c->route.method.clear();
    c->route.hashKey.clear();
    c->route.hasHashKey = c->pending = c->done = false;
    if (c->record) c->record->reset();
    c->prev = c->next = nullptr;
    c->list = nullptr;
    if (freeCalls_.size() < 4096) freeCalls_.push_back(c);
    else delete c;
  }

  // Removes a call from its upstream connection's table (a late answer is then dropped).
  void forget(Call* call) {
    if (call->conn != nullptr) {
      call->conn->calls.erase(call->upstreamId);
      call->conn = nullptr;
    }
  }

  void pauseCaller(Caller* c, uint8_t why) {
    if (c->paused & why) return;
    c->paused |= why;
    updateCallerEvents(c);
  }

  void callDone(Caller* c) {
    c->inflight--;
    if (c->inflight < s_.maxCallerInflight) resumeCaller(c, kPauseInflight);
    endIfIdle(c);
  }

  void maybeFree(Caller* c) {
    if (c->closed && c->refs == 0) deadCallers_.push_back(c);
  }

  void closeWhenIdle(Caller* c) {
    c->closing = true;
    c->in.clear();
    endIfIdle(c);
    if (!c->closed) updateCallerEvents(c);
  }

  // ---- state

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
  Balancer balancer_;

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
  LiveCalls live_;
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
  std::vector<uint8_t> scratch_ = std::vector<uint8_t>(kReadChunk);
  std::vector<HostPtr> retiredHosts_;
  std::vector<ClusterPtr> retiredClusters_;
  std::string key_;
  std::string poolKey_;
  std::string bodyMethod_;  // a SofaRequest body's method name (boltBodyMethod), reused
  std::string_view method_;  // the method of the request countRequest counted last (valid while its frame is)
  // Telemetry (records.cc): the sampling in force, the access log's call count, the record of the request being
  // handled (moved to its Call when it becomes one), the batches waiting and since when (ms; 0: empty).
  TelemetrySettings telemetry_;
  bool telemetryOn_ = false;
  uint64_t accessCalls_ = 0;
  std::unique_ptr<CallRecord> pendingRecord_;  // swapped with a started call's (no copy of its strings)
  bool recording() const { return pendingRecord_ != nullptr && pendingRecord_->on; }
  std::string accessBatch_;
  std::string spanBatch_;
  int64_t accessSince_ = 0;
  int64_t spanSince_ = 0;
  bool flushTelemetry_ = false;
  int64_t wallOffsetMicros_ = 0;  // CLOCK_REALTIME minus CLOCK_MONOTONIC, µs (syncWallClock)
  // Bytes of lines handed over and not yet delivered to JavaScript (EngineEvents::Hold); past the bound lines are
  // dropped, counted, and the count logged (sendEvents).
  static constexpr size_t kMaxTelemetryBytesWaiting = 8 * 1024 * 1024;
  std::shared_ptr<std::atomic<size_t>> telemetryWaiting_ = std::make_shared<std::atomic<size_t>>(0);
  uint64_t droppedAccess_ = 0;
  uint64_t droppedSpans_ = 0;
  int64_t droppedLoggedAt_ = 0;  // ms
  IdSource ids_;
  std::vector<std::string> events_;
  // Mutual TLS and authorization in force (nullptr: plaintext everywhere, every call allowed).
  std::shared_ptr<const SecuritySnapshot> security_;
  std::vector<Caller*> tlsAgain_;  // TLS callers resumed with ciphertext already read (run() drives them)
  std::unordered_set<Caller*> handshaking_;  // inbound handshakes under way, for their deadline
  int64_t failureLoggedAt_[2][kHandshakeFailures] = {};  // ms a failure of each direction and reason was last logged
};

}  // namespace meshport
