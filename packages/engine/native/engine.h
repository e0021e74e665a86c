// The native forwarding engine: one epoll loop on its own thread carries every request from accept to answer.
// JavaScript drives it through commands (routes, listeners, drain) and reads counters; nothing per request crosses.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "buffers.h"
#include "codec.h"
#include "telemetry.h"

namespace meshport {

struct SecuritySnapshot;  // tls.h
inline constexpr size_t kHandshakeFailureKinds = 8;  // HandshakeFailure (tls.h)

// The router's settings (packages/router/src/router.ts ROUTER_DEFAULTS; same meaning, same defaults there).
struct EngineSettings {
  uint32_t connectionsPerEndpoint = 1;
  uint64_t maxFrameSize = 16 * 1024 * 1024;
  int64_t boltDefaultTimeoutMs = 3000;
  int64_t dubboTimeoutMs = 3000;
  uint32_t connectRetries = 2;
  int64_t connectTimeoutMs = 1000;
  int64_t heartbeatIntervalMs = 10000;
  int64_t heartbeatTimeoutMs = 1000;
  uint32_t maxCallerInflight = 256;
  int64_t frameTimeoutMs = 10000;
  uint32_t maxPartialFrames = 1024;
  uint32_t maxConnectionsPerSource = 1024;
  uint32_t maxConnections = 16384;
  int64_t startupHoldMs = 0;
  // Outlier ejection (Envoy's defaults) and cluster limits.
  uint32_t consecutiveFailures = 5;
  int64_t baseEjectionMs = 30000;
  uint32_t maxEjectionPercent = 10;
  uint32_t maxPendingRequests = 1024;
  uint32_t maxActiveRequests = 1024;
  // Caps on the per-service metrics' labels, per cluster (LabelCaps of packages/router/src/telemetry.ts).
  uint32_t methodLabelCap = 64;
  uint32_t callerLabelCap = 32;
};

enum class Policy : uint8_t { RoundRobin, WeightedRandom, LeastRequest, ConsistentHash };

// One `MethodCondition` of a condition router (registry-core rules.ts): glob patterns on the method name.
struct MethodCondition {
  std::vector<std::string> matches;
  std::vector<std::string> mismatches;
};

struct MethodRouterSpec {
  std::vector<MethodCondition> methods;
  std::vector<std::string> allowed;  // endpoint keys
  bool force = false;
  bool blacklist = false;
};

struct EndpointSpec {
  std::string key;  // host:port as endpointKey() spells it
  sockaddr_storage addr{};
  socklen_t addrLen = 0;
  uint32_t weight = 100;
  // The provider sidecar's published identity: calls go over mutual TLS and its certificate must carry exactly this
  // (when security is set). Empty: plaintext.
  std::string identity;
};

struct ClusterSpec {
  std::string name;
  std::vector<EndpointSpec> endpoints;
  Policy policy = Policy::RoundRobin;
  std::string hashHeader;
  int64_t timeoutMs = -1;  // a registry rule's timeout; -1: none
  std::vector<MethodRouterSpec> routers;
  bool remove = false;  // in a partial snapshot: the route is gone
};

// Which peers a listener serves, decided at accept: loopback always, then any, or those in the CIDRs.
struct AllowList {
  struct Cidr {
    int family = AF_INET;
    uint8_t bytes[16] = {};
    int prefix = 32;
  };
  bool any = false;
  std::vector<Cidr> cidrs;
  // Parses "a.b.c.d", "a.b.c.d/n", an IPv6 address or prefix; false when it is none of them.
  bool add(const std::string& text);
  bool allows(const sockaddr_storage& peer) const;
};

// A whole route table, immutable once handed over: listener 0 outbound, 1 inbound.
struct RouteSnapshot {
  std::array<std::vector<ClusterSpec>, 2> listeners;
  // Partial: only the clusters listed change (or go, when marked remove); the others stay.
  bool partial = false;
};

// Counters of one cluster of one listener. Written by the loop thread, read by JavaScript when scraped: relaxed
// atomics, which cost a plain add on x86.
constexpr size_t kLatencyBuckets = 16;  // LATENCY_BUCKETS in packages/router/src/stats.ts

// What the calls of one method of a cluster have seen (the per-service metrics), as the cluster's own counters.
struct MethodCounters {
  explicit MethodCounters(std::string_view n) : name(n) {}
  const std::string name;
  std::atomic<uint64_t> requests{0};
  std::array<std::atomic<uint64_t>, kFailures + 1> failures{};  // by Failure, plus [kFailures] = ok
  std::map<uint16_t, uint64_t> statuses;  // guarded by the cluster's statusMutex
  std::array<std::atomic<uint64_t>, kLatencyBuckets + 1> latency{};
  std::atomic<uint64_t> latencyCount{0};
  std::atomic<uint64_t> latencySumMicros{0};
  std::atomic<MethodCounters*> next{nullptr};
};

struct CallerCounters {
  explicit CallerCounters(std::string_view n) : name(n) {}
  const std::string name;
  std::atomic<uint64_t> requests{0};
  std::atomic<CallerCounters*> next{nullptr};
};

// The label values of one cluster, first come first kept up to a cap: the loop thread appends (and finds them
// through its own index, without allocating on a hit), a scrape walks the list from `head` on any thread. An entry
// is published whole (release) and lives as long as the table.
template <typename T>
class LabelTable {
 public:
  LabelTable() = default;
  LabelTable(const LabelTable&) = delete;
  LabelTable& operator=(const LabelTable&) = delete;
  ~LabelTable() {
    for (T* e = head_.load(std::memory_order_relaxed); e != nullptr;) {
      T* next = e->next.load(std::memory_order_relaxed);
      delete e;
      e = next;
    }
  }

  // Loop thread: the entry of `name`; past `cap` distinct names, the entry of "other" (and `folded` counts one).
  T& find(std::string_view name, uint32_t cap, std::atomic<uint64_t>& folded) {
    auto hit = index_.find(name);
    if (hit != index_.end()) return *hit->second;
    if (index_.size() >= cap && name != kOther) {
      folded.fetch_add(1, std::memory_order_relaxed);
      return find(kOther, UINT32_MAX, folded);
    }
    T* e = new T(name);
    index_.emplace(std::string_view(e->name), e);
    if (tail_ == nullptr) head_.store(e, std::memory_order_release);
    else tail_->next.store(e, std::memory_order_release);
    tail_ = e;
    return *e;
  }

  // Any thread: the first entry (then each entry's `next`).
  const T* head() const { return head_.load(std::memory_order_acquire); }

  static constexpr std::string_view kOther = "other";  // FOLDED_LABEL

 private:
  std::atomic<T*> head_{nullptr};
  T* tail_ = nullptr;
  std::unordered_map<std::string_view, T*> index_;  // loop thread only; keys view the entries' names
};

struct ClusterCounters {
  std::string listener;
  std::string cluster;
  std::atomic<uint64_t> requestsBolt{0};
  std::atomic<uint64_t> requestsDubbo{0};
  std::mutex outcomesMutex;  // outcomes are few and change rarely in kind; the map itself is guarded
  std::map<std::string, uint64_t> outcomes;
  std::array<std::atomic<uint64_t>, kLatencyBuckets + 1> latency{};
  std::atomic<uint64_t> latencyCount{0};
  std::atomic<uint64_t> latencySumMicros{0};
  // Per-request outcome counts by index, folded into `outcomes` on read (no lock per request).
  std::array<std::atomic<uint64_t>, kFailures + 1> failures{};  // by Failure, plus [kFailures] = ok
  std::mutex statusMutex;
  std::map<uint16_t, uint64_t> statuses;  // upstream non-OK statuses (rare)
  // The per-service metrics: by method, and requests by caller (capped; folded calls counted).
  LabelTable<MethodCounters> methods;
  LabelTable<CallerCounters> callers;
  std::atomic<uint64_t> foldedMethods{0};
  std::atomic<uint64_t> foldedCallers{0};
};

struct EngineStats {
  std::atomic<uint64_t> connectionsActive[2]{};
  std::atomic<uint64_t> connectionsTotal[2]{};
  std::atomic<uint64_t> refusedPerSource[2]{};
  std::atomic<uint64_t> refusedMax[2]{};
  std::atomic<uint64_t> bytesIn[3]{};  // outbound, inbound, upstream
  std::atomic<uint64_t> bytesOut[3]{};
  std::atomic<uint64_t> inflight{0};
  std::atomic<uint64_t> partialFrames{0};
  std::atomic<uint64_t> upstreamConnections{0};
  std::atomic<uint64_t> relaysActive{0};
  std::atomic<uint64_t> relaysTotal{0};
  std::atomic<uint64_t> relayBytes{0};
  std::mutex upstreamsMutex;  // changed when a connection opens or closes, not per request
  std::map<std::string, uint32_t> upstreamsByEndpoint;
  std::mutex badFramesMutex;
  std::map<std::pair<int, std::string>, uint64_t> badFrames;  // (listener, code)
  std::mutex clustersMutex;
  std::map<std::string, std::shared_ptr<ClusterCounters>> clusters;  // "listener|cluster"
  // Mutual TLS: handshakes done and failed by direction (0 inbound, 1 outbound), failures by HandshakeFailure (tls.h);
  // calls the authorization policy denied, by service (rare: under a lock).
  std::atomic<uint64_t> tlsHandshakes[2]{};
  std::atomic<uint64_t> tlsFailures[2][kHandshakeFailureKinds]{};
  std::mutex deniedMutex;
  std::map<std::string, uint64_t> denied;
};

// What the loop tells JavaScript, in batches: log lines and answers to describe()/drain() as JSON text, and the
// access log lines and spans that waited their turn (whole lines, handed over as they are). One channel, so a
// drain's answer comes after the lines of the calls it waited for.
struct EngineEvents {
  // Counts the batch's bytes as waiting for JavaScript until it is delivered (or dropped): past a bound the loop
  // drops lines instead of queueing them without end behind a busy main thread.
  struct Hold {
    Hold() = default;
    Hold(std::shared_ptr<std::atomic<size_t>> w, size_t n) : waiting(std::move(w)), bytes(n) { waiting->fetch_add(n); }
    Hold(Hold&& o) noexcept : waiting(std::move(o.waiting)), bytes(o.bytes) {}
    Hold& operator=(Hold&& o) noexcept {
      std::swap(waiting, o.waiting);
      std::swap(bytes, o.bytes);
      return *this;
    }
    ~Hold() {
      if (waiting) waiting->fetch_sub(bytes);
    }
    std::shared_ptr<std::atomic<size_t>> waiting;
    size_t bytes = 0;
  };
  std::vector<std::string> lines;
  std::string access;
  std::string spans;
  Hold hold;
};
using EventSink = std::function<void(EngineEvents&&)>;

class Loop;

// The JavaScript-facing handle: thread-safe commands into the loop.
class Engine {
 public:
  Engine(const EngineSettings& settings, EventSink sink);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Binds and listens on the calling thread (so errors are thrown where they are asked for), then hands the socket
  // to the loop. Returns the bound port. Peers `allow` refuses are closed at accept.
  int listen(int listener, const std::string& host, int port, AllowList allow);
  // Takes ownership of a connected socket accepted elsewhere (a capture listener), with bytes already read from it.
  void adopt(int listener, int fd, std::vector<uint8_t> head);
  // Relays a captured connection that carries nothing to route to its original destination, byte for byte in both
  // directions (half-closes passed on, a reset on either side ends both): `head` was already read from it.
  void relay(int fd, const sockaddr_storage& to, socklen_t toLen, std::vector<uint8_t> head);
  void setRoutes(std::shared_ptr<const RouteSnapshot> routes);
  // Mutual TLS and the authorization policy from here on (nullptr: plaintext everywhere, every call allowed): new
  // connections use it, existing ones keep the SSL they started with.
  void setSecurity(std::shared_ptr<const SecuritySnapshot> security);
  // Which calls get access log lines and spans from here on (telemetry.h).
  void setTelemetry(const TelemetrySettings& telemetry);
  // Drain: no new connections, requests refused as draining, calls in flight get `deadlineMs`; then `token` is
  // answered through the sink ({"type":"reply","token":N}).
  void drain(int64_t deadlineMs, uint64_t token);
  // The clusters and endpoints as /routes shows them, answered through the sink.
  void describe(uint64_t token);
  // Stops the loop and closes everything at once.
  void close();

  EngineStats& stats() { return *stats_; }
  const EngineSettings& settings() const { return settings_; }

 private:
  EngineSettings settings_;
  std::shared_ptr<EngineStats> stats_;
  std::unique_ptr<Loop> loop_;
  std::thread thread_;
  bool closed_ = false;
};

}  // namespace meshport
