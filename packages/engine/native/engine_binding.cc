// The engine as JavaScript sees it: `new Engine(settings, onEvents)`, commands, and counters read when scraped.
// Arguments are checked here (TypeError naming the argument); system errors carry errno, code and syscall.

#include <arpa/inet.h>
#include <fcntl.h>
#include <napi.h>
#include <uv.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <system_error>

#include "engine.h"
#include "tls.h"

namespace meshport {

namespace {

constexpr const char* kListenerNames[] = {"outbound", "inbound", "upstream"};

// A batch of lines as a Buffer over the engine's own bytes (moved out of the batch, freed when the Buffer is
// collected): no copy, no UTF-8 decoding; the sink writes the bytes as they are. A runtime that refuses external
// buffers (a V8 sandbox) gets a copy.
napi_value linesBuffer(napi_env env, std::string& s) {
  napi_value v = nullptr;
  auto* owned = new std::string(std::move(s));
  const napi_status st = napi_create_external_buffer(
      env, owned->size(), owned->data(),
      [](napi_env, void*, void* hint) { delete static_cast<std::string*>(hint); }, owned, &v);
  if (st == napi_ok) return v;
  void* copy = nullptr;
  const napi_status copied = napi_create_buffer_copy(env, owned->size(), owned->data(), &copy, &v);
  delete owned;
  return copied == napi_ok ? v : nullptr;
}

int listenerIndex(const Napi::Value& v, const char* arg) {
  if (v.IsString()) {
    const std::string s = v.As<Napi::String>();
    if (s == "outbound") return 0;
    if (s == "inbound") return 1;
  }
  throw Napi::TypeError::New(v.Env(), std::string(arg) + " must be 'outbound' or 'inbound'");
}

double number(const Napi::Object& o, const char* key, double fallback, double min, double max) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("settings.") + key + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  // NaN fails both comparisons: refused here, never cast.
  if (!(d >= min && d <= max)) {
    throw Napi::RangeError::New(o.Env(), std::string("settings.") + key + " must be between " + std::to_string(int64_t(min)) +
                                             " and " + std::to_string(int64_t(max)));
  }
  return d;
}

Napi::Error systemError(Napi::Env env, const std::system_error& e) {
  const int err = e.code().value();
  Napi::Error error = Napi::Error::New(env, std::string(e.what()));
  error.Set("errno", Napi::Number::New(env, -err));
  error.Set("code", Napi::String::New(env, uv_err_name(-err)));
  // what() is "syscall: message"
  const std::string what = e.what();
  error.Set("syscall", Napi::String::New(env, what.substr(0, what.find(':'))));
  return error;
}

bool parseEndpoint(const std::string& host, uint32_t port, EndpointSpec& out) {
  sockaddr_storage ss{};
  in_addr a4{};
  in6_addr a6{};
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) {
    auto& sin = reinterpret_cast<sockaddr_in&>(ss);
    sin.sin_family = AF_INET;
    sin.sin_addr = a4;
    sin.sin_port = htons(uint16_t(port));
    out.addrLen = sizeof sin;
    out.key = host + ":" + std::to_string(port);
  } else if (inet_pton(AF_INET6, host.c_str(), &a6) == 1) {
    auto& sin6 = reinterpret_cast<sockaddr_in6&>(ss);
    sin6.sin6_family = AF_INET6;
    sin6.sin6_addr = a6;
    sin6.sin6_port = htons(uint16_t(port));
    out.addrLen = sizeof sin6;
    out.key = "[" + host + "]:" + std::to_string(port);
  } else {
    return false;
  }
  out.addr = ss;
  return true;
}

std::vector<std::string> strings(const Napi::Value& v) {
  std::vector<std::string> out;
  if (!v.IsArray()) return out;
  auto a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value x = a.Get(i);
    if (x.IsString()) out.push_back(x.As<Napi::String>());
  }
  return out;
}

// { name, endpoints: [{ host, port, weight? }], policy?, hashHeader?, timeoutMs?, routers? } -> ClusterSpec
ClusterSpec parseCluster(const Napi::Object& o) {
  Napi::Env env = o.Env();
  ClusterSpec c;
  Napi::Value name = o.Get("name");
  if (!name.IsString()) throw Napi::TypeError::New(env, "routes: every cluster needs a string name");
  c.name = name.As<Napi::String>();
  Napi::Value eps = o.Get("endpoints");
  if (!eps.IsArray()) throw Napi::TypeError::New(env, "routes: cluster " + c.name + " needs an endpoints array");
  auto list = eps.As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value ev = list.Get(i);
    if (!ev.IsObject()) throw Napi::TypeError::New(env, "routes: an endpoint of " + c.name + " is not an object");
    auto e = ev.As<Napi::Object>();
    Napi::Value host = e.Get("host");
    Napi::Value port = e.Get("port");
    if (!host.IsString() || !port.IsNumber()) throw Napi::TypeError::New(env, "routes: an endpoint of " + c.name + " needs host and port");
    const double p = port.As<Napi::Number>().DoubleValue();
    if (!(p >= 0 && p <= 65535)) throw Napi::RangeError::New(env, "routes: an endpoint port of " + c.name + " is out of range");
    EndpointSpec spec;
    if (!parseEndpoint(host.As<Napi::String>(), uint32_t(p), spec)) {
      throw Napi::TypeError::New(env, "routes: endpoint host " + std::string(host.As<Napi::String>()) + " of " + c.name +
                                          " is not an IP address (names are resolved before routes reach the engine)");
    }
    Napi::Value id = e.Get("identity");
    if (id.IsString()) spec.identity = id.As<Napi::String>();
    else if (!id.IsUndefined()) throw Napi::TypeError::New(env, "routes: an endpoint identity of " + c.name + " is not a string");
    Napi::Value w = e.Get("weight");
    if (w.IsNumber()) {
      const double d = w.As<Napi::Number>().DoubleValue();
      spec.weight = d > 0 && d < 4294967295.0 ? uint32_t(std::lround(d)) : 0;
      if (d > 0 && spec.weight == 0) spec.weight = 1;
    }
    c.endpoints.push_back(std::move(spec));
  }
  Napi::Value policy = o.Get("policy");
  if (policy.IsString()) {
    const std::string p = policy.As<Napi::String>();
    if (p == "weighted-random") c.policy = Policy::WeightedRandom;
    else if (p == "least-request") c.policy = Policy::LeastRequest;
    else if (p == "consistent-hash") c.policy = Policy::ConsistentHash;
    else if (p == "round-robin") c.policy = Policy::RoundRobin;
    else throw Napi::TypeError::New(env, "routes: cluster " + c.name + " has an unknown policy " + p);
  }
  c.remove = o.Get("remove").ToBoolean();
  Napi::Value hh = o.Get("hashHeader");
  if (hh.IsString()) c.hashHeader = hh.As<Napi::String>();
  Napi::Value t = o.Get("timeoutMs");
  if (t.IsNumber()) {
    const double d = t.As<Napi::Number>().DoubleValue();
    if (d >= 0 && d < 1e12) c.timeoutMs = int64_t(d);
  }
  Napi::Value routers = o.Get("routers");
  if (routers.IsArray()) {
    auto rs = routers.As<Napi::Array>();
    for (uint32_t i = 0; i < rs.Length(); i++) {
      Napi::Value rv = rs.Get(i);
      if (!rv.IsObject()) continue;
      auto r = rv.As<Napi::Object>();
      MethodRouterSpec spec;
      Napi::Value methods = r.Get("methods");
      if (methods.IsArray()) {
        auto ms = methods.As<Napi::Array>();
        for (uint32_t j = 0; j < ms.Length(); j++) {
          Napi::Value mv = ms.Get(j);
          if (!mv.IsObject()) continue;
          auto m = mv.As<Napi::Object>();
          spec.methods.push_back(MethodCondition{strings(m.Get("matches")), strings(m.Get("mismatches"))});
        }
      }
      spec.allowed = strings(r.Get("allowed"));
      spec.force = r.Get("force").ToBoolean();
      spec.blacklist = r.Get("blacklist").ToBoolean();
      c.routers.push_back(std::move(spec));
    }
  }
  return c;
}

std::string stringField(const Napi::Object& o, const char* key, const std::string& where) {
  Napi::Value v = o.Get(key);
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), where + "." + key + " must be a string");
  return v.As<Napi::String>();
}

std::vector<std::string> identities(const Napi::Value& v, const std::string& where) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), where + " must be an array of identities");
  auto a = v.As<Napi::Array>();
  std::vector<std::string> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value x = a.Get(i);
    if (!x.IsString()) throw Napi::TypeError::New(v.Env(), where + "[" + std::to_string(i) + "] must be a string");
    out.push_back(x.As<Napi::String>());
  }
  return out;
}

// RouterSecurity of packages/router/src/security.ts: { mode, material: { certChain, key, trustBundle, identity },
// policy: { default, trustDomain, services: { [routeKey]: { allow, methods? } } } }.
SecurityInput parseSecurity(const Napi::Object& o) {
  Napi::Env env = o.Env();
  SecurityInput in;
  const std::string mode = stringField(o, "mode", "security");
  if (mode == "off") in.mode = TlsMode::Off;
  else if (mode == "permissive") in.mode = TlsMode::Permissive;
  else if (mode == "strict") in.mode = TlsMode::Strict;
  else throw Napi::TypeError::New(env, "security.mode must be 'off', 'permissive' or 'strict'");
  Napi::Value material = o.Get("material");
  if (!material.IsObject()) throw Napi::TypeError::New(env, "security.material must be an object");
  auto m = material.As<Napi::Object>();
  in.certChain = stringField(m, "certChain", "security.material");
  in.key = stringField(m, "key", "security.material");
  in.trustBundle = stringField(m, "trustBundle", "security.material");
  in.identity = stringField(m, "identity", "security.material");
  Napi::Value policy = o.Get("policy");
  if (!policy.IsObject()) throw Napi::TypeError::New(env, "security.policy must be an object");
  auto p = policy.As<Napi::Object>();
  Napi::Value fallback = p.Get("default");
  const std::string byDefault = fallback.IsUndefined() ? "allow-trust-domain" : fallback.IsString() ? std::string(fallback.As<Napi::String>()) : "";
  if (byDefault == "allow-trust-domain") in.policy.fallback = AuthzPolicy::Default::AllowTrustDomain;
  else if (byDefault == "allow-all") in.policy.fallback = AuthzPolicy::Default::AllowAll;
  else if (byDefault == "deny") in.policy.fallback = AuthzPolicy::Default::Deny;
  else throw Napi::TypeError::New(env, "security.policy.default must be 'allow-trust-domain', 'allow-all' or 'deny'");
  in.policy.trustDomain = stringField(p, "trustDomain", "security.policy");
  Napi::Value services = p.Get("services");
  if (!services.IsUndefined()) {
    if (!services.IsObject()) throw Napi::TypeError::New(env, "security.policy.services must be an object");
    auto byService = services.As<Napi::Object>();
    Napi::Array names = byService.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); i++) {
      const std::string name = names.Get(i).ToString();
      const std::string where = "security.policy.services[" + name + "]";
      Napi::Value rv = byService.Get(name);
      if (!rv.IsObject()) throw Napi::TypeError::New(env, where + " must be an object");
      auto r = rv.As<Napi::Object>();
      AuthzPolicy::Rule rule;
      rule.allow = identities(r.Get("allow"), where + ".allow");
      Napi::Value methods = r.Get("methods");
      if (!methods.IsUndefined()) {
        if (!methods.IsObject()) throw Napi::TypeError::New(env, where + ".methods must be an object");
        auto byMethod = methods.As<Napi::Object>();
        Napi::Array ms = byMethod.GetPropertyNames();
        for (uint32_t j = 0; j < ms.Length(); j++) {
          const std::string method = ms.Get(j).ToString();
          rule.methods[method] = identities(byMethod.Get(method), where + ".methods[" + method + "]");
        }
      }
      in.policy.services[name] = std::move(rule);
    }
  }
  return in;
}

}  // namespace

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Engine",
                       {InstanceMethod("listen", &EngineWrap::Listen), InstanceMethod("adopt", &EngineWrap::Adopt),
                        InstanceMethod("setRoutes", &EngineWrap::SetRoutes), InstanceMethod("drain", &EngineWrap::Drain),
                        InstanceMethod("describe", &EngineWrap::Describe), InstanceMethod("stats", &EngineWrap::Stats),
                        InstanceMethod("ref", &EngineWrap::Ref), InstanceMethod("unref", &EngineWrap::Unref),
                        InstanceMethod("close", &EngineWrap::Close), InstanceMethod("dupFd", &EngineWrap::DupFd),
                        InstanceMethod("relay", &EngineWrap::Relay), InstanceMethod("setSecurity", &EngineWrap::SetSecurity),
                        InstanceMethod("setTelemetry", &EngineWrap::SetTelemetry)});
  }

  explicit EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "settings must be an object");
    if (!info[1].IsFunction()) throw Napi::TypeError::New(env, "onEvents must be a function");
    auto o = info[0].As<Napi::Object>();
    EngineSettings s;
    const double kMaxMs = 86400000.0 * 365;
    s.connectionsPerEndpoint = uint32_t(number(o, "connectionsPerEndpoint", s.connectionsPerEndpoint, 1, 1024));
    s.maxFrameSize = uint64_t(number(o, "maxFrameSize", double(s.maxFrameSize), 64, 2147483647.0));
    s.boltDefaultTimeoutMs = int64_t(number(o, "boltDefaultTimeoutMs", double(s.boltDefaultTimeoutMs), 1, kMaxMs));
    s.dubboTimeoutMs = int64_t(number(o, "dubboTimeoutMs", double(s.dubboTimeoutMs), 1, kMaxMs));
    s.connectRetries = uint32_t(number(o, "connectRetries", s.connectRetries, 0, 1000));
    s.connectTimeoutMs = int64_t(number(o, "connectTimeoutMs", double(s.connectTimeoutMs), 1, kMaxMs));
    s.heartbeatIntervalMs = int64_t(number(o, "heartbeatIntervalMs", double(s.heartbeatIntervalMs), 1, kMaxMs));
    s.heartbeatTimeoutMs = int64_t(number(o, "heartbeatTimeoutMs", double(s.heartbeatTimeoutMs), 1, kMaxMs));
    s.maxCallerInflight = uint32_t(number(o, "maxCallerInflight", s.maxCallerInflight, 1, 1e9));
    s.frameTimeoutMs = int64_t(number(o, "frameTimeoutMs", double(s.frameTimeoutMs), 1, kMaxMs));
    s.maxPartialFrames = uint32_t(number(o, "maxPartialFrames", s.maxPartialFrames, 1, 1e9));
    s.maxConnectionsPerSource = uint32_t(number(o, "maxConnectionsPerSource", s.maxConnectionsPerSource, 1, 1e9));
    s.maxConnections = uint32_t(number(o, "maxConnections", s.maxConnections, 1, 1e9));
    s.startupHoldMs = int64_t(number(o, "startupHoldMs", double(s.startupHoldMs), 0, kMaxMs));
    s.consecutiveFailures = uint32_t(number(o, "consecutiveFailures", s.consecutiveFailures, 1, 1e9));
    s.baseEjectionMs = int64_t(number(o, "baseEjectionMs", double(s.baseEjectionMs), 0, kMaxMs));
    s.maxEjectionPercent = uint32_t(number(o, "maxEjectionPercent", s.maxEjectionPercent, 0, 100));
    s.maxPendingRequests = uint32_t(number(o, "maxPendingRequests", s.maxPendingRequests, 1, 1e9));
    s.maxActiveRequests = uint32_t(number(o, "maxActiveRequests", s.maxActiveRequests, 1, 1e9));
    Napi::Value caps = o.Get("labelCaps");
    if (caps.IsObject()) {
      auto c = caps.As<Napi::Object>();
      s.methodLabelCap = uint32_t(number(c, "methods", s.methodLabelCap, 0, 1e6));
      s.callerLabelCap = uint32_t(number(c, "callers", s.callerLabelCap, 0, 1e6));
    } else if (!caps.IsUndefined()) {
      throw Napi::TypeError::New(env, "settings.labelCaps must be an object");
    }

    tsfn_ = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "meshport-engine-events", 0, 1);
    tsfn_.Unref(env);
    auto tsfn = tsfn_;
    engine_ = std::make_unique<Engine>(s, [tsfn](EngineEvents&& batch) mutable {
      auto* data = new EngineEvents(std::move(batch));
      napi_status st = tsfn.NonBlockingCall(data, [](Napi::Env env, Napi::Function fn, EngineEvents* events) {
        std::unique_ptr<EngineEvents> owned(events);
        if (env == nullptr || fn.IsEmpty()) return;
        Napi::Array arr = Napi::Array::New(env, owned->lines.size());
        for (size_t i = 0; i < owned->lines.size(); i++) arr.Set(uint32_t(i), Napi::String::New(env, owned->lines[i]));
        // Access log lines and spans as one Buffer each: JavaScript hands them on without looking inside.
        auto bytes = [&](std::string& s) -> Napi::Value {
          if (s.empty()) return env.Undefined();
          napi_value v = linesBuffer(env, s);
          return v == nullptr ? env.Undefined() : Napi::Value(env, v);
        };
        fn.Call({arr, bytes(owned->access), bytes(owned->spans)});
      });
      if (st != napi_ok) delete data;
    });
  }

  ~EngineWrap() override { shutdown(); }

 private:
  void shutdown() {
    if (engine_) {
      engine_->close();
      engine_.reset();
      tsfn_.Release();
    }
  }

  Engine& engine(Napi::Env env) {
    if (!engine_) throw Napi::Error::New(env, "the engine is closed");
    return *engine_;
  }

  Napi::Value Listen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const int which = listenerIndex(info[0], "listener");
    if (!info[1].IsString()) throw Napi::TypeError::New(env, "host must be a string");
    if (!info[2].IsNumber()) throw Napi::TypeError::New(env, "port must be a number");
    const double port = info[2].As<Napi::Number>().DoubleValue();
    if (!(port >= 0 && port <= 65535)) throw Napi::RangeError::New(env, "port must be between 0 and 65535");
    AllowList allow;
    if (info[3].IsBoolean()) {
      allow.any = info[3].As<Napi::Boolean>();
    } else if (info[3].IsArray()) {
      auto list = info[3].As<Napi::Array>();
      for (uint32_t i = 0; i < list.Length(); i++) {
        Napi::Value v = list.Get(i);
        if (!v.IsString() || !allow.add(v.As<Napi::String>())) {
          throw Napi::TypeError::New(env, "allow[" + std::to_string(i) + "] is not an IP address or CIDR");
        }
      }
    } else if (!info[3].IsUndefined()) {
      throw Napi::TypeError::New(env, "allow must be a boolean or a list of addresses and CIDRs");
    }
    try {
      return Napi::Number::New(env, engine(env).listen(which, info[1].As<Napi::String>(), int(port), std::move(allow)));
    } catch (const std::system_error& e) {
      throw systemError(env, e);
    } catch (const std::invalid_argument& e) {
      throw Napi::TypeError::New(env, e.what());
    }
  }

  Napi::Value Adopt(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const int which = listenerIndex(info[0], "listener");
    if (!info[1].IsNumber()) throw Napi::TypeError::New(env, "fd must be a number");
    const double fd = info[1].As<Napi::Number>().DoubleValue();
    if (!(fd >= 0 && fd <= 2147483647.0) || fd != std::floor(fd)) throw Napi::RangeError::New(env, "fd must be a non-negative integer");
    std::vector<uint8_t> head;
    if (info[2].IsBuffer()) {
      auto b = info[2].As<Napi::Buffer<uint8_t>>();
      head.assign(b.Data(), b.Data() + b.Length());
    }
    engine(env).adopt(which, int(fd), std::move(head));
    return env.Undefined();
  }

  // A duplicate of a socket Node owns, for adopt(): Node closes its own descriptor, the engine keeps the connection.
  Napi::Value DupFd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "fd must be a number");
    const double fd = info[0].As<Napi::Number>().DoubleValue();
    if (!(fd >= 0 && fd <= 2147483647.0) || fd != std::floor(fd)) throw Napi::RangeError::New(env, "fd must be a non-negative integer");
    const int dup = fcntl(int(fd), F_DUPFD_CLOEXEC, 0);
    if (dup < 0) throw systemError(env, std::system_error(errno, std::generic_category(), "fcntl"));
    return Napi::Number::New(env, dup);
  }

  // relay(fd, host, port, head?): the engine owns fd from here (a duplicate the caller made with dupFd).
  Napi::Value Relay(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "fd must be a number");
    const double fd = info[0].As<Napi::Number>().DoubleValue();
    if (!(fd >= 0 && fd <= 2147483647.0) || fd != std::floor(fd)) throw Napi::RangeError::New(env, "fd must be a non-negative integer");
    if (!info[1].IsString()) throw Napi::TypeError::New(env, "host must be a string");
    if (!info[2].IsNumber()) throw Napi::TypeError::New(env, "port must be a number");
    const double port = info[2].As<Napi::Number>().DoubleValue();
    if (!(port >= 1 && port <= 65535)) throw Napi::RangeError::New(env, "port must be between 1 and 65535");
    EndpointSpec to;
    if (!parseEndpoint(info[1].As<Napi::String>(), uint32_t(port), to)) throw Napi::TypeError::New(env, "host must be an IP address");
    std::vector<uint8_t> head;
    if (info[3].IsBuffer()) {
      auto b = info[3].As<Napi::Buffer<uint8_t>>();
      head.assign(b.Data(), b.Data() + b.Length());
    }
    engine(env).relay(int(fd), to.addr, to.addrLen, std::move(head));
    return env.Undefined();
  }

  Napi::Value SetRoutes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "routes must be an object");
    auto o = info[0].As<Napi::Object>();
    auto snap = std::make_shared<RouteSnapshot>();
    snap->partial = info[1].ToBoolean();
    for (int which = 0; which < 2; which++) {
      Napi::Value list = o.Get(kListenerNames[which]);
      if (list.IsUndefined()) continue;
      if (!list.IsArray()) throw Napi::TypeError::New(env, std::string("routes.") + kListenerNames[which] + " must be an array");
      auto a = list.As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); i++) {
        Napi::Value c = a.Get(i);
        if (!c.IsObject()) throw Napi::TypeError::New(env, "routes: a cluster is not an object");
        snap->listeners[which].push_back(parseCluster(c.As<Napi::Object>()));
      }
    }
    engine(env).setRoutes(snap);
    return env.Undefined();
  }

  // setSecurity(security | undefined): the contexts are built here, on the calling thread, so a PEM that does not
  // parse or a key that does not match throws where it was asked for; the loop gets the finished snapshot.
  Napi::Value SetSecurity(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = engine(env);
    if (info[0].IsUndefined() || info[0].IsNull()) {
      e.setSecurity(nullptr);
      return env.Undefined();
    }
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "security must be an object or undefined");
    SecurityInput in = parseSecurity(info[0].As<Napi::Object>());
    std::shared_ptr<const SecuritySnapshot> snap;
    try {
      snap = buildSecurity(std::move(in));
    } catch (const std::runtime_error& err) {
      throw Napi::Error::New(env, std::string("security: ") + err.what());
    }
    e.setSecurity(std::move(snap));
    return env.Undefined();
  }

  // setTelemetry({ accessLog?: { everyN, errors, slowMs }, tracing?: { everyN } } | undefined): RouterTelemetry of
  // packages/router/src/telemetry.ts, a missing field taking its default there.
  Napi::Value SetTelemetry(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& e = engine(env);
    TelemetrySettings t;
    if (!info[0].IsUndefined() && !info[0].IsNull()) {
      if (!info[0].IsObject()) throw Napi::TypeError::New(env, "telemetry must be an object or undefined");
      auto o = info[0].As<Napi::Object>();
      Napi::Value log = o.Get("accessLog");
      if (log.IsObject()) {
        auto l = log.As<Napi::Object>();
        t.accessLog = true;
        t.logEveryN = uint64_t(std::max(1.0, std::floor(telemetryNumber(l, "accessLog.everyN", 100))));
        Napi::Value errors = l.Get("errors");
        t.logErrors = errors.IsUndefined() ? true : errors.ToBoolean().Value();
        t.slowMs = telemetryNumber(l, "accessLog.slowMs", 1000);
      } else if (!log.IsUndefined()) {
        throw Napi::TypeError::New(env, "telemetry.accessLog must be an object");
      }
      Napi::Value tracing = o.Get("tracing");
      if (tracing.IsObject()) {
        t.tracing = true;
        t.traceEveryN = telemetryNumber(tracing.As<Napi::Object>(), "tracing.everyN", 1);
      } else if (!tracing.IsUndefined()) {
        throw Napi::TypeError::New(env, "telemetry.tracing must be an object");
      }
    }
    e.setTelemetry(t);
    return env.Undefined();
  }

  static double telemetryNumber(const Napi::Object& o, const char* name, double fallback) {
    const char* key = std::strchr(name, '.') + 1;
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return fallback;
    const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d < 1e18)) throw Napi::RangeError::New(o.Env(), std::string("telemetry.") + name + " must be a number from 0");
    return d;
  }

  Napi::Value Drain(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber() || !info[1].IsNumber()) throw Napi::TypeError::New(env, "drain(deadlineMs, token) takes two numbers");
    const double deadline = info[0].As<Napi::Number>().DoubleValue();
    if (!(deadline >= 0 && deadline < 1e12)) throw Napi::RangeError::New(env, "deadlineMs must be a non-negative number");
    engine(env).drain(int64_t(deadline), uint64_t(info[1].As<Napi::Number>().Int64Value()));
    return env.Undefined();
  }

  Napi::Value Describe(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "token must be a number");
    engine(env).describe(uint64_t(info[0].As<Napi::Number>().Int64Value()));
    return env.Undefined();
  }

  // Counters as plain numbers: read with relaxed loads while the loop runs (a scrape may be a request behind).
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EngineStats& st = engine(env).stats();
    auto n = [&](const std::atomic<uint64_t>& a) { return Napi::Number::New(env, double(a.load(std::memory_order_relaxed))); };
    Napi::Object out = Napi::Object::New(env);
    for (int which = 0; which < 2; which++) {
      Napi::Object l = Napi::Object::New(env);
      l.Set("connectionsActive", n(st.connectionsActive[which]));
      l.Set("connectionsTotal", n(st.connectionsTotal[which]));
      l.Set("refusedPerSource", n(st.refusedPerSource[which]));
      l.Set("refusedMaxConnections", n(st.refusedMax[which]));
      out.Set(kListenerNames[which], l);
    }
    Napi::Object bytes = Napi::Object::New(env);
    for (int i = 0; i < 3; i++) {
      Napi::Object d = Napi::Object::New(env);
      d.Set("in", n(st.bytesIn[i]));
      d.Set("out", n(st.bytesOut[i]));
      bytes.Set(kListenerNames[i], d);
    }
    out.Set("bytes", bytes);
    out.Set("inflight", n(st.inflight));
    out.Set("partialFrames", n(st.partialFrames));
    out.Set("upstreamConnections", n(st.upstreamConnections));
    out.Set("relaysActive", n(st.relaysActive));
    out.Set("relaysTotal", n(st.relaysTotal));
    out.Set("relayBytes", n(st.relayBytes));
    {
      std::lock_guard<std::mutex> lock(st.upstreamsMutex);
      Napi::Object by = Napi::Object::New(env);
      for (auto& [endpoint, count] : st.upstreamsByEndpoint) by.Set(endpoint, double(count));
      out.Set("upstreamsByEndpoint", by);
    }
    {
      std::lock_guard<std::mutex> lock(st.badFramesMutex);
      Napi::Array bad = Napi::Array::New(env);
      uint32_t i = 0;
      for (auto& [key, count] : st.badFrames) {
        Napi::Object b = Napi::Object::New(env);
        b.Set("listener", kListenerNames[key.first]);
        b.Set("code", key.second);
        b.Set("count", double(count));
        bad.Set(i++, b);
      }
      out.Set("badFrames", bad);
    }
    const char* const* failureNames = kOutcomeNames;
    std::vector<std::shared_ptr<ClusterCounters>> clusters;
    {
      std::lock_guard<std::mutex> lock(st.clustersMutex);
      for (auto& [k, c] : st.clusters) clusters.push_back(c);
    }
    Napi::Array list = Napi::Array::New(env, clusters.size());
    for (size_t i = 0; i < clusters.size(); i++) {
      ClusterCounters& c = *clusters[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("listener", c.listener);
      o.Set("cluster", c.cluster);
      o.Set("requestsBolt", n(c.requestsBolt));
      o.Set("requestsDubbo", n(c.requestsDubbo));
      Napi::Object outcomes = Napi::Object::New(env);
      for (size_t f = 0; f <= kFailures; f++) {
        const uint64_t v = c.failures[f].load(std::memory_order_relaxed);
        if (v > 0) outcomes.Set(failureNames[f], double(v));
      }
      {
        std::lock_guard<std::mutex> lock(c.statusMutex);
        for (auto& [status, count] : c.statuses) outcomes.Set("status-" + std::to_string(status), double(count));
      }
      o.Set("outcomes", outcomes);
      Napi::Array buckets = Napi::Array::New(env, kLatencyBuckets + 1);
      for (size_t b = 0; b <= kLatencyBuckets; b++) buckets.Set(uint32_t(b), n(c.latency[b]));
      o.Set("latencyCounts", buckets);
      o.Set("latencyCount", n(c.latencyCount));
      o.Set("latencySumSeconds", Napi::Number::New(env, double(c.latencySumMicros.load(std::memory_order_relaxed)) / 1e6));
      // The per-service metrics: every method and caller the loop has published so far.
      Napi::Array methods = Napi::Array::New(env);
      uint32_t nm = 0;
      for (const MethodCounters* m = c.methods.head(); m != nullptr; m = m->next.load(std::memory_order_acquire)) {
        Napi::Object mo = Napi::Object::New(env);
        mo.Set("method", m->name);
        mo.Set("requests", n(m->requests));
        Napi::Object mout = Napi::Object::New(env);
        for (size_t f = 0; f <= kFailures; f++) {
          const uint64_t v = m->failures[f].load(std::memory_order_relaxed);
          if (v > 0) mout.Set(failureNames[f], double(v));
        }
        {
          std::lock_guard<std::mutex> lock(c.statusMutex);
          for (auto& [status, count] : m->statuses) mout.Set("status-" + std::to_string(status), double(count));
        }
        mo.Set("outcomes", mout);
        Napi::Array mb = Napi::Array::New(env, kLatencyBuckets + 1);
        for (size_t b = 0; b <= kLatencyBuckets; b++) mb.Set(uint32_t(b), n(m->latency[b]));
        mo.Set("latencyCounts", mb);
        mo.Set("latencyCount", n(m->latencyCount));
        mo.Set("latencySumSeconds", Napi::Number::New(env, double(m->latencySumMicros.load(std::memory_order_relaxed)) / 1e6));
        methods.Set(nm++, mo);
      }
      o.Set("methods", methods);
      Napi::Array callers = Napi::Array::New(env);
      uint32_t nc = 0;
      for (const CallerCounters* k = c.callers.head(); k != nullptr; k = k->next.load(std::memory_order_acquire)) {
        Napi::Object ko = Napi::Object::New(env);
        ko.Set("caller", k->name);
        ko.Set("requests", n(k->requests));
        callers.Set(nc++, ko);
      }
      o.Set("callers", callers);
      o.Set("foldedMethods", n(c.foldedMethods));
      o.Set("foldedCallers", n(c.foldedCallers));
      list.Set(uint32_t(i), o);
    }
    out.Set("clusters", list);
    // Mutual TLS and authorization: handshakes by direction, failures by direction and reason, denials by service.
    Napi::Object tls = Napi::Object::New(env);
    Napi::Object handshakes = Napi::Object::New(env);
    Napi::Array failures = Napi::Array::New(env);
    uint32_t nf = 0;
    for (int d = 0; d < 2; d++) {
      const char* direction = d == 0 ? "inbound" : "outbound";
      handshakes.Set(direction, n(st.tlsHandshakes[d]));
      for (size_t r = 0; r < kHandshakeFailures; r++) {
        const uint64_t v = st.tlsFailures[d][r].load(std::memory_order_relaxed);
        if (v == 0) continue;
        Napi::Object f = Napi::Object::New(env);
        f.Set("direction", direction);
        f.Set("reason", kHandshakeFailureNames[r]);
        f.Set("count", double(v));
        failures.Set(nf++, f);
      }
    }
    tls.Set("handshakes", handshakes);
    tls.Set("failures", failures);
    out.Set("tls", tls);
    {
      std::lock_guard<std::mutex> lock(st.deniedMutex);
      Napi::Array denied = Napi::Array::New(env);
      uint32_t i = 0;
      for (auto& [service, count] : st.denied) {
        Napi::Object d = Napi::Object::New(env);
        d.Set("service", service);
        d.Set("count", double(count));
        denied.Set(i++, d);
      }
      out.Set("denied", denied);
    }
    return out;
  }

  // While the engine serves listeners, its event callback keeps the process alive, as a listening server would.
  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (engine_) tsfn_.Ref(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (engine_) tsfn_.Unref(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    shutdown();
    return info.Env().Undefined();
  }

  std::unique_ptr<Engine> engine_;
  Napi::ThreadSafeFunction tsfn_;
};

void InitEngine(Napi::Env env, Napi::Object exports) {
  // Built against OpenSSL headers, linked against the OpenSSL in node: when they are not the same major.minor, the
  // engine is not offered (nativeEngineUnavailable says why, and the router runs the TypeScript engine).
  const std::string mismatch = opensslMismatch();
  if (!mismatch.empty()) {
    exports.Set("unavailable", Napi::String::New(env, mismatch));
    return;
  }
  exports.Set("Engine", EngineWrap::Define(env));
}

}  // namespace meshport
