// The addon's entry point and the error helpers every part uses.
#include "addon.h"

#include <uv.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>

namespace meshport {

namespace {

// Kernel-internal values (include/linux/errno.h): no user-space header names them, yet some reach user space,
// notably ENOTSUPP from bpf() when the kernel lacks a program or attach type. Neither libuv nor glibc knows them.
struct KernelErrno {
  int value;
  const char *name;
};
constexpr KernelErrno kKernelErrnos[] = {
    {512, "ERESTARTSYS"}, {513, "ERESTARTNOINTR"}, {514, "ERESTARTNOHAND"}, {515, "ENOIOCTLCMD"},
    {516, "ERESTART_RESTARTBLOCK"}, {517, "EPROBE_DEFER"}, {518, "EOPENSTALE"}, {519, "ENOPARAM"},
    {521, "EBADHANDLE"}, {522, "ENOTSYNC"}, {523, "EBADCOOKIE"}, {524, "ENOTSUPP"}, {525, "ETOOSMALL"},
    {526, "ESERVERFAULT"}, {527, "EBADTYPE"}, {528, "EJUKEBOX"}, {529, "EIOCBQUEUED"}, {530, "ERECALLCONFLICT"},
    {531, "ENOGRACE"},
};

// libuv's name for a positive errno (UV_E* is -E* on Unix). uv_err_name() would leak a string for an unknown
// value; the _r form writes "Unknown system error N" instead, which is how an unknown value is told apart.
const char *UvErrnoName(int err, char *buffer, size_t size) {
  uv_err_name_r(-err, buffer, size);
  return std::strncmp(buffer, "Unknown", 7) == 0 ? nullptr : buffer;
}

// The C library's name for the errnos libuv leaves out (ENOLINK, EDEADLK...): glibc 2.32's strerrorname_np.
const char *LibcErrnoName(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  return strerrorname_np(err);
#else
  (void)err;
  return nullptr;
#endif
}

const char *KernelErrnoName(int err) {
  for (const KernelErrno &known : kKernelErrnos) {
    if (known.value == err) return known.name;
  }
  return nullptr;
}

}  // namespace

std::string ErrnoName(int err) {
  char buffer[64];
  if (err <= 0) return "UNKNOWN";
  if (const char *name = UvErrnoName(err, buffer, sizeof(buffer))) return name;
  if (const char *name = LibcErrnoName(err)) return name;
  if (const char *name = KernelErrnoName(err)) return name;
  return "UNKNOWN";
}

Napi::Error ErrnoError(Napi::Env env, int err, const char *syscall) {
  std::string code = ErrnoName(err);
  // strerror() knows only the UAPI values; ENOTSUPP is what bpf() says when the kernel lacks a program or attach type.
  std::string text = err == 524               ? std::string("Operation is not supported")
                     : err > 0 && err < 512 ? std::string(std::strerror(err))
                                            : std::string("errno ") + std::to_string(err);
  Napi::Error error = Napi::Error::New(env, std::string(syscall) + " failed: " + text + " (" + code + ")");
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("code", Napi::String::New(env, code));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

void ThrowErrno(Napi::Env env, int err, const char *syscall) { throw ErrnoError(env, err, syscall); }

namespace {

template <typename ErrorType>
[[noreturn]] void ThrowArgError(Napi::Env env, const std::string &argument, const std::string &expected) {
  ErrorType error = ErrorType::New(env, argument + " must be " + expected);
  error.Set("code", Napi::String::New(env, kBadArgumentCode));
  error.Set("argument", Napi::String::New(env, argument));
  throw error;
}

}  // namespace

void ThrowArgTypeError(Napi::Env env, const std::string &argument, const std::string &expected) {
  ThrowArgError<Napi::TypeError>(env, argument, expected);
}

void ThrowArgRangeError(Napi::Env env, const std::string &argument, const std::string &expected) {
  ThrowArgError<Napi::RangeError>(env, argument, expected);
}

int64_t CheckInteger(Napi::Env env, const Napi::Value &value, const std::string &argument, int64_t min, int64_t max) {
  std::string expected = "an integer from " + std::to_string(min) + " to " + std::to_string(max);
  if (!value.IsNumber()) ThrowArgTypeError(env, argument, expected);
  double d = value.As<Napi::Number>().DoubleValue();
  // The comparisons are false for NaN, so NaN fails here before any cast; min/max fit a double exactly.
  if (!(std::isfinite(d) && d >= static_cast<double>(min) && d <= static_cast<double>(max) && std::trunc(d) == d)) {
    ThrowArgRangeError(env, argument, expected);
  }
  return static_cast<int64_t>(d);
}

// _errnoError(errno, syscall) -> the Error the addon throws for that errno, returned rather than thrown: lets the
// tests check names of values (ENOTSUPP, ENOLINK, ENOSPC) that are hard to provoke from a real syscall.
static Napi::Value ErrnoErrorForTest(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int err = static_cast<int>(CheckInteger(env, info[0], "errno", 1, 4095));
  if (!info[1].IsString()) ThrowArgTypeError(env, "syscall", "a string");
  std::string syscall = info[1].As<Napi::String>().Utf8Value();
  return ErrnoError(env, err, syscall.c_str()).Value();
}

}  // namespace meshport

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  meshport::InitSocketOps(env, exports);
  meshport::InitBpf(env, exports);
  exports.Set("_errnoError", Napi::Function::New(env, meshport::ErrnoErrorForTest, "_errnoError"));
  return exports;
}

NODE_API_MODULE(meshport_socket, Init)
