// The addon's entry point and the error helpers every part uses.
#include "addon.h"

#include <cerrno>
#include <cstring>
#include <string>

namespace meshport {

static const char *ErrnoName(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EBADF: return "EBADF";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EINVAL: return "EINVAL";
    case ENOTSOCK: return "ENOTSOCK";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EADDRINUSE: return "EADDRINUSE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case ENOTCONN: return "ENOTCONN";
    case ENOMEM: return "ENOMEM";
    case ENOSYS: return "ENOSYS";
    case E2BIG: return "E2BIG";
    case EEXIST: return "EEXIST";
    case EBUSY: return "EBUSY";
    case EAGAIN: return "EAGAIN";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case EINPROGRESS: return "EINPROGRESS";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case ENETUNREACH: return "ENETUNREACH";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ETIMEDOUT: return "ETIMEDOUT";
    default: return "UNKNOWN";
  }
}

void ThrowErrno(Napi::Env env, int err, const char *syscall) {
  Napi::Error error = Napi::Error::New(env, std::string(syscall) + " failed: " + std::strerror(err));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("code", Napi::String::New(env, ErrnoName(err)));
  error.Set("syscall", Napi::String::New(env, syscall));
  throw error;
}

void ThrowNotSupported(Napi::Env env, const std::string &reason) {
  Napi::Error error = Napi::Error::New(env, "not supported: " + reason);
  error.Set("code", Napi::String::New(env, "NotSupported"));
  error.Set("reason", Napi::String::New(env, reason));
  throw error;
}

}  // namespace meshport

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  meshport::InitSocketOps(env, exports);
  meshport::InitBpf(env, exports);
  return exports;
}

NODE_API_MODULE(meshport_socket, Init)
