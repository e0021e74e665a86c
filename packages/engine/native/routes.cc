// The route table the loop routes by: snapshots from JavaScript applied whole or in part, clusters that leave kept
// while calls still count on them, per-cluster counters, and the description /routes shows.

#include <algorithm>

#include "loop.h"

namespace meshport {

namespace {

const char* policyName(Policy p) {
  switch (p) {
    case Policy::WeightedRandom: return "weighted-random";
    case Policy::LeastRequest: return "least-request";
    case Policy::ConsistentHash: return "consistent-hash";
    default: return "round-robin";
  }
}

}  // namespace

void Loop::setRoutes(std::shared_ptr<const RouteSnapshot> snap) {
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
        updateCluster(*found->second, spec, retiredHosts_);
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
      updateCluster(*c, spec, retiredHosts_);
      const std::string_view key(c->name);
      next.emplace(key, std::move(c));
    }
    for (auto& [name, c] : table)
      if (next.count(name) == 0) retire(c);
    table.swap(next);
  }
  if (!held_.empty()) releaseHeld(false);
}

// A cluster leaving the table while calls still count on it lives on until they finish.
inline void Loop::retire(const ClusterPtr& c) {
  if (c->active > 0 || c->pending > 0) retiredClusters_.push_back(c);
}

inline ClusterPtr Loop::makeCluster(int which, const std::string& name) {
  auto c = std::make_shared<Cluster>();
  c->name = name;
  c->listener = which;
  c->counters = countersFor(which, name);
  return c;
}

std::shared_ptr<ClusterCounters> Loop::countersFor(int which, const std::string& name) {
  std::lock_guard<std::mutex> lock(stats_->clustersMutex);
  auto& slot = stats_->clusters[std::string(kListenerNames[which]) + "|" + name];
  if (!slot) {
    slot = std::make_shared<ClusterCounters>();
    slot->listener = kListenerNames[which];
    slot->cluster = name;
  }
  return slot;
}

void Loop::describe(uint64_t token) {
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

inline std::string Loop::describeCluster(const Cluster& c) {
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
           ",\"ejectedForMs\":" + std::to_string(ejected ? h.ejectedUntil - now_ : 0) +
           (h.identity.empty() ? std::string() : ",\"identity\":" + jsonString(h.identity)) + "}";
  }
  return out + "]}";
}


}  // namespace meshport
