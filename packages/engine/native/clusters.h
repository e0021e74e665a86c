// Clusters and their endpoints, and the choices made over them (load balancing, method routers, outlier ejection):
// plain data and arithmetic with no socket in sight, so the rules can be read, and tested, apart from the loop.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine.h"

namespace meshport {

struct PoolEntry;  // the loop's pooled connections to an endpoint (loop.h)

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
  // The provider sidecar's identity (EndpointSpec::identity): with security on, its connections are mutual TLS.
  std::string identity;
  // Its connections by protocol, plaintext [0, 1] and TLS [2, 3], found once.
  PoolEntry* pool[4] = {nullptr, nullptr, nullptr, nullptr};
  bool isEjected(int64_t now) const { return ejectedUntil > now; }
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

// What a pick reads of the call it is for: its method (method routers), its hash key (consistent hashing) and the
// endpoints it already failed on (a retry goes elsewhere).
struct CallRoute {
  std::vector<Host*> tried;
  std::string method;
  std::string hashKey;
  bool hasHashKey = false;
};

// The endpoints a cluster's method routers leave for `method`, cached per name; every endpoint when it has none.
const std::vector<Host*>* routedHosts(Cluster& c, const std::string& method);
// nullptr: the cluster has no method routers (the common case, decided here without a call).
inline const std::vector<Host*>* hostsFor(Cluster& c, const std::string& method) {
  if (c.routers.empty()) return nullptr;
  return routedHosts(c, method);
}

// A new endpoint set: hosts that stay (same key and weight) keep their counters and ejection state; those that
// leave while calls still count on them are added to `retired`, to live on until those calls finish.
void updateCluster(Cluster& c, const ClusterSpec& spec, std::vector<HostPtr>& retired);

// Chooses endpoints and ejects the failing ones. Owns the randomness and the scratch list its choices need.
class Balancer {
 public:
  explicit Balancer(const EngineSettings& s);

  // Chooses an endpoint by the cluster's policy among those usable at `now`; `panic` treats none as ejected
  // (Envoy's panic mode when every usable endpoint is ejected).
  Host* pick(Cluster& c, const CallRoute* call, int64_t now, bool panic);
  // Counts a failure of `h`; true when that ejects it (for baseEjectionMs times its ejections so far).
  bool recordFailure(Cluster& c, Host& h, int64_t now);

 private:
  template <typename Usable>
  Host* byHash(Cluster& c, const std::string& key, Usable usable);

  uint32_t consecutiveFailures_;
  int64_t baseEjectionMs_;
  uint32_t maxEjectionPercent_;
  std::mt19937_64 rng_;
  std::vector<Host*> candidates_;
};

}  // namespace meshport
