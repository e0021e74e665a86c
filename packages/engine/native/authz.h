// Who may call what on the inbound side: the rule of authorize() in packages/router/src/security.ts, ported so the
// native engine decides every call exactly as the TypeScript one does. Plain strings, no OpenSSL, no loop state: the
// rule can be read, tested and fuzzed (fuzz/fuzz_authz.cc) on its own.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace meshport {

struct AuthzPolicy {
  // With no rule for the service: AllowTrustDomain lets in callers of `trustDomain` and plaintext callers; AllowAll
  // everyone; Deny no one.
  enum class Default : uint8_t { AllowTrustDomain, AllowAll, Deny };
  struct Rule {
    std::vector<std::string> allow;
    // Per method, when finer than the service's list.
    std::map<std::string, std::vector<std::string>, std::less<>> methods;
  };
  Default fallback = Default::AllowTrustDomain;
  std::string trustDomain;
  // By route key; std::less<> finds a key by the string_view of a frame without building a string.
  std::map<std::string, Rule, std::less<>> services;
};

// Whether `caller` (nullptr: a plaintext caller) may call `method` (nullptr: the frame names none) of `service`:
// the method's list if the service's rule has one for it, else the service's list, else the policy's default.
bool authorize(const AuthzPolicy& policy, std::string_view service, const std::string_view* method, const std::string_view* caller);

// `spiffe://td/ns/a/sa/b` matches itself; `spiffe://td/ns/a/*` every identity that starts with `spiffe://td/ns/a/`.
bool identityMatches(std::string_view allowed, std::string_view caller);

// The trust domain of a `spiffe://` identity (what lies between `spiffe://` and the next `/` or the end, at least
// one byte); false when `identity` is not one.
bool trustDomainOf(std::string_view identity, std::string_view& domain);

}  // namespace meshport
