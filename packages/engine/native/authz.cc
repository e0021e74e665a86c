// The authorization rule (authz.h), as packages/router/src/security.ts words it.

#include "authz.h"

namespace meshport {

bool identityMatches(std::string_view allowed, std::string_view caller) {
  if (allowed.size() >= 2 && allowed.substr(allowed.size() - 2) == "/*") {
    const std::string_view prefix = allowed.substr(0, allowed.size() - 1);  // keeps the '/'
    return caller.substr(0, prefix.size()) == prefix;
  }
  return allowed == caller;
}

bool trustDomainOf(std::string_view identity, std::string_view& domain) {
  constexpr std::string_view kScheme = "spiffe://";
  if (identity.substr(0, kScheme.size()) != kScheme) return false;
  const std::string_view rest = identity.substr(kScheme.size());
  const size_t slash = rest.find('/');
  domain = rest.substr(0, slash);  // npos: the whole rest
  return !domain.empty();
}

bool authorize(const AuthzPolicy& policy, std::string_view service, const std::string_view* method, const std::string_view* caller) {
  auto rule = policy.services.find(service);
  if (rule != policy.services.end()) {
    const std::vector<std::string>* list = &rule->second.allow;
    if (method != nullptr) {
      auto m = rule->second.methods.find(*method);
      if (m != rule->second.methods.end()) list = &m->second;
    }
    if (caller == nullptr) return false;
    for (const std::string& allowed : *list)
      if (identityMatches(allowed, *caller)) return true;
    return false;
  }
  switch (policy.fallback) {
    case AuthzPolicy::Default::AllowAll: return true;
    case AuthzPolicy::Default::Deny: return false;
    default: break;
  }
  if (caller == nullptr) return true;
  std::string_view domain;
  return trustDomainOf(*caller, domain) && domain == policy.trustDomain;
}

}  // namespace meshport
