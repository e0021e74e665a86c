// libFuzzer target: the authorization rule (native/authz.cc) against a reference written the way
// packages/router/src/security.ts words it (a std::regex for the trust domain, plain loops for the rest). Any input
// on which the two disagree aborts: the native engine must allow and deny exactly the calls the TypeScript one does.
//
// The input is read with FuzzedDataProvider: a default, a trust domain, up to 4 service rules (each with identities
// and up to 3 method lists), then the call: a service (a rule's name or anything), a method and a caller, each
// possibly absent.

#include <fuzzer/FuzzedDataProvider.h>

#include <cstdio>
#include <cstdlib>
#include <regex>
#include <string>
#include <vector>

#include "authz.h"

using namespace meshport;

namespace {

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "authz invariant broken: %s\n", what);
  std::abort();
}
#define CHECK(cond) \
  do {              \
    if (!(cond)) broken(#cond); \
  } while (0)

// security.ts trustDomainOf: /^spiffe:\/\/([^/]+)(\/|$)/ (ECMAScript: `$` is the end, `[^/]` any other byte).
bool refTrustDomain(const std::string& identity, std::string& domain) {
  static const std::regex re("^spiffe://([^/]+)(/|$)", std::regex::ECMAScript);
  std::smatch m;
  if (!std::regex_search(identity, m, re)) return false;
  domain = m[1].str();
  return true;
}

// security.ts identityMatches.
bool refMatches(const std::string& allowed, const std::string& caller) {
  const bool wildcard = allowed.size() >= 2 && allowed.compare(allowed.size() - 2, 2, "/*") == 0;
  if (!wildcard) return allowed == caller;
  const std::string prefix = allowed.substr(0, allowed.size() - 1);
  return caller.size() >= prefix.size() && caller.compare(0, prefix.size(), prefix) == 0;
}

// security.ts authorize.
bool refAuthorize(const AuthzPolicy& p, const std::string& service, const std::string* method, const std::string* caller) {
  for (const auto& [name, rule] : p.services) {
    if (name != service) continue;
    const std::vector<std::string>* list = &rule.allow;
    if (method != nullptr) {
      for (const auto& [m, ids] : rule.methods)
        if (m == *method) list = &ids;
    }
    if (caller == nullptr) return false;
    for (const std::string& a : *list)
      if (refMatches(a, *caller)) return true;
    return false;
  }
  if (p.fallback == AuthzPolicy::Default::AllowAll) return true;
  if (p.fallback == AuthzPolicy::Default::Deny) return false;
  if (caller == nullptr) return true;
  std::string domain;
  return refTrustDomain(*caller, domain) && domain == p.trustDomain;
}

// Identities worth matching often: a spiffe:// prefix, a wildcard tail, or raw bytes.
std::string identity(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0: return "spiffe://" + in.ConsumeRandomLengthString(24);
    case 1: return "spiffe://" + in.ConsumeRandomLengthString(12) + "/*";
    case 2: return "spiffe://td/ns/a/sa/" + in.ConsumeRandomLengthString(8);
    default: return in.ConsumeRandomLengthString(32);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  AuthzPolicy p;
  p.fallback = static_cast<AuthzPolicy::Default>(in.ConsumeIntegralInRange<int>(0, 2));
  p.trustDomain = in.ConsumeBool() ? "td" : in.ConsumeRandomLengthString(16);
  std::vector<std::string> names;
  const int rules = in.ConsumeIntegralInRange<int>(0, 4);
  for (int i = 0; i < rules; i++) {
    const std::string name = in.ConsumeRandomLengthString(16);
    names.push_back(name);
    AuthzPolicy::Rule rule;
    const int allowed = in.ConsumeIntegralInRange<int>(0, 4);
    for (int j = 0; j < allowed; j++) rule.allow.push_back(identity(in));
    const int methods = in.ConsumeIntegralInRange<int>(0, 3);
    for (int j = 0; j < methods; j++) {
      std::vector<std::string> ids;
      const int n = in.ConsumeIntegralInRange<int>(0, 3);
      for (int k = 0; k < n; k++) ids.push_back(identity(in));
      rule.methods[in.ConsumeRandomLengthString(8)] = std::move(ids);
    }
    p.services[name] = std::move(rule);
  }
  const std::string service = !names.empty() && in.ConsumeBool() ? names[in.ConsumeIntegralInRange<size_t>(0, names.size() - 1)]
                                                                  : in.ConsumeRandomLengthString(16);
  const bool hasMethod = in.ConsumeBool();
  const std::string method = in.ConsumeRandomLengthString(8);
  const bool hasCaller = in.ConsumeBool();
  const std::string caller = identity(in);

  const std::string_view methodView(method), callerView(caller);
  const bool got = authorize(p, service, hasMethod ? &methodView : nullptr, hasCaller ? &callerView : nullptr);
  const bool want = refAuthorize(p, service, hasMethod ? &method : nullptr, hasCaller ? &caller : nullptr);
  CHECK(got == want);

  std::string_view domain;
  std::string refDomain;
  const bool hasDomain = trustDomainOf(caller, domain);
  CHECK(hasDomain == refTrustDomain(caller, refDomain));
  if (hasDomain) {
    CHECK(std::string(domain) == refDomain);
    CHECK(!domain.empty() && domain.find('/') == std::string_view::npos);
  }
  const std::string other = identity(in);
  CHECK(identityMatches(other, caller) == refMatches(other, caller));
  // Every identity matches itself (a wildcard `x/*` too: it starts with its own prefix `x/`).
  CHECK(identityMatches(caller, caller));
  return 0;
}
