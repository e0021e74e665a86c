// Load balancing and outlier ejection over a cluster's endpoints, and the method routers that narrow them: the
// choices of the loop, made from plain data (no socket, no loop state) so they can be read and tested on their own.

#include "clusters.h"

#include <algorithm>
#include <climits>
#include <string_view>

namespace meshport {

namespace {

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

}  // namespace

void updateCluster(Cluster& c, const ClusterSpec& spec, std::vector<HostPtr>& retired) {
  std::unordered_map<std::string, HostPtr> old;
  for (auto& h : c.hosts) old.emplace(h->key, h);
  std::vector<HostPtr> hosts;
  hosts.reserve(spec.endpoints.size());
  for (const EndpointSpec& e : spec.endpoints) {
    auto kept = old.find(e.key);
    if (kept != old.end() && kept->second->weight == e.weight && kept->second->identity == e.identity) {
      hosts.push_back(kept->second);
      continue;
    }
    auto h = std::make_shared<Host>();
    h->key = e.key;
    h->addr = e.addr;
    h->addrLen = e.addrLen;
    h->weight = e.weight;
    h->identity = e.identity;
    hosts.push_back(std::move(h));
  }
  // Hosts that leave while calls still count on them live on until those calls finish.
  for (auto& [key, h] : old) {
    if (h->active > 0 && std::find(hosts.begin(), hosts.end(), h) == hosts.end()) retired.push_back(h);
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

const std::vector<Host*>* routedHosts(Cluster& c, const std::string& method) {
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

Balancer::Balancer(const EngineSettings& s)
    : consecutiveFailures_(s.consecutiveFailures),
      baseEjectionMs_(s.baseEjectionMs),
      maxEjectionPercent_(s.maxEjectionPercent),
      rng_(std::random_device{}()) {}

template <typename Usable>
Host* Balancer::byHash(Cluster& c, const std::string& key, Usable usable) {
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

Host* Balancer::pick(Cluster& c, const CallRoute* call, int64_t nowMs, bool panic) {
  const std::vector<Host*>* allowed = call != nullptr ? hostsFor(c, call->method) : nullptr;
  const int64_t now = panic ? INT64_MAX : nowMs;
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

bool Balancer::recordFailure(Cluster& c, Host& h, int64_t now) {
  h.consecutiveFailures++;
  if (h.consecutiveFailures < consecutiveFailures_ || h.isEjected(now)) return false;
  size_t ejected = 0;
  for (auto& x : c.hosts)
    if (x->isEjected(now)) ejected++;
  const size_t allowed = std::max<size_t>(1, c.hosts.size() * maxEjectionPercent_ / 100);
  if (ejected >= allowed) return false;
  h.ejections++;
  h.ejectedUntil = now + baseEjectionMs_ * h.ejections;
  c.ejectionsEndAt = std::max(c.ejectionsEndAt, h.ejectedUntil);
  h.consecutiveFailures = 0;
  return true;
}

}  // namespace meshport
