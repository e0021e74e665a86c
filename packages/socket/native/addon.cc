// The addon's entry point and the error helpers every part uses.
#include "addon.h"

#include <uv.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>

namespace meshport {

namespace {

// Every errno Linux defines (asm-generic/errno-base.h, errno.h), for the names libuv does not know.
// Aliases (EWOULDBLOCK, EDEADLOCK, ENOTSUP) are left out: they share a value with a listed name.
#define MESHPORT_LINUX_ERRNOS(X) \
  X(EPERM) X(ENOENT) X(ESRCH) X(EINTR) X(EIO) X(ENXIO) X(E2BIG) X(ENOEXEC) X(EBADF) X(ECHILD) X(EAGAIN) X(ENOMEM) \
  X(EACCES) X(EFAULT) X(ENOTBLK) X(EBUSY) X(EEXIST) X(EXDEV) X(ENODEV) X(ENOTDIR) X(EISDIR) X(EINVAL) X(ENFILE) \
  X(EMFILE) X(ENOTTY) X(ETXTBSY) X(EFBIG) X(ENOSPC) X(ESPIPE) X(EROFS) X(EMLINK) X(EPIPE) X(EDOM) X(ERANGE) \
  X(EDEADLK) X(ENAMETOOLONG) X(ENOLCK) X(ENOSYS) X(ENOTEMPTY) X(ELOOP) X(ENOMSG) X(EIDRM) X(ECHRNG) X(EL2NSYNC) \
  X(EL3HLT) X(EL3RST) X(ELNRNG) X(EUNATCH) X(ENOCSI) X(EL2HLT) X(EBADE) X(EBADR) X(EXFULL) X(ENOANO) X(EBADRQC) \
  X(EBADSLT) X(EBFONT) X(ENOSTR) X(ENODATA) X(ETIME) X(ENOSR) X(ENONET) X(ENOPKG) X(EREMOTE) X(ENOLINK) X(EADV) \
  X(ESRMNT) X(ECOMM) X(EPROTO) X(EMULTIHOP) X(EDOTDOT) X(EBADMSG) X(EOVERFLOW) X(ENOTUNIQ) X(EBADFD) X(EREMCHG) \
  X(ELIBACC) X(ELIBBAD) X(ELIBSCN) X(ELIBMAX) X(ELIBEXEC) X(EILSEQ) X(ERESTART) X(ESTRPIPE) X(EUSERS) X(ENOTSOCK) \
  X(EDESTADDRREQ) X(EMSGSIZE) X(EPROTOTYPE) X(ENOPROTOOPT) X(EPROTONOSUPPORT) X(ESOCKTNOSUPPORT) X(EOPNOTSUPP) \
  X(EPFNOSUPPORT) X(EAFNOSUPPORT) X(EADDRINUSE) X(EADDRNOTAVAIL) X(ENETDOWN) X(ENETUNREACH) X(ENETRESET) \
  X(ECONNABORTED) X(ECONNRESET) X(ENOBUFS) X(EISCONN) X(ENOTCONN) X(ESHUTDOWN) X(ETOOMANYREFS) X(ETIMEDOUT) \
  X(ECONNREFUSED) X(EHOSTDOWN) X(EHOSTUNREACH) X(EALREADY) X(EINPROGRESS) X(ESTALE) X(EUCLEAN) X(ENOTNAM) \
  X(ENAVAIL) X(EISNAM) X(EREMOTEIO) X(EDQUOT) X(ENOMEDIUM) X(EMEDIUMTYPE) X(ECANCELED) X(ENOKEY) X(EKEYEXPIRED) \
  X(EKEYREVOKED) X(EKEYREJECTED) X(EOWNERDEAD) X(ENOTRECOVERABLE) X(ERFKILL) X(EHWPOISON)

// Kernel-internal values (include/linux/errno.h) that are not in the UAPI but do reach user space, notably
// ENOTSUPP from bpf() when the kernel lacks a program or attach type.
#define MESHPORT_KERNEL_ERRNOS(X) \
  X(ERESTARTSYS, 512) X(ERESTARTNOINTR, 513) X(ERESTARTNOHAND, 514) X(ENOIOCTLCMD, 515) \
  X(ERESTART_RESTARTBLOCK, 516) X(EPROBE_DEFER, 517) X(EOPENSTALE, 518) X(ENOPARAM, 519) X(EBADHANDLE, 521) \
  X(ENOTSYNC, 522) X(EBADCOOKIE, 523) X(ENOTSUPP, 524) X(ETOOSMALL, 525) X(ESERVERFAULT, 526) X(EBADTYPE, 527) \
  X(EJUKEBOX, 528) X(EIOCBQUEUED, 529) X(ERECALLCONFLICT, 530) X(ENOGRACE, 531)

const char *LinuxErrnoName(int err) {
  switch (err) {
#define MESHPORT_NAME_CASE(name) \
  case name:                     \
    return #name;
    MESHPORT_LINUX_ERRNOS(MESHPORT_NAME_CASE)
#undef MESHPORT_NAME_CASE
#define MESHPORT_KERNEL_CASE(name, value) \
  case value:                             \
    return #name;
    MESHPORT_KERNEL_ERRNOS(MESHPORT_KERNEL_CASE)
#undef MESHPORT_KERNEL_CASE
    default:
      return nullptr;
  }
}

// libuv's name for -err when it has one. uv_err_name() would leak a string for unknown values; the _r form
// writes "Unknown system error N" instead, which is how an unknown value is told apart.
const char *UvErrnoName(int err, char *buffer, size_t size) {
  uv_err_name_r(-err, buffer, size);
  return std::strncmp(buffer, "Unknown", 7) == 0 ? nullptr : buffer;
}

}  // namespace

std::string ErrnoName(int err) {
  char buffer[64];
  if (err <= 0) return "UNKNOWN";
  if (const char *name = UvErrnoName(err, buffer, sizeof(buffer))) return name;
  if (const char *name = LinuxErrnoName(err)) return name;
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

void ThrowNotSupported(Napi::Env env, const std::string &reason) {
  Napi::Error error = Napi::Error::New(env, "not supported: " + reason);
  error.Set("code", Napi::String::New(env, "NotSupported"));
  error.Set("reason", Napi::String::New(env, reason));
  throw error;
}

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
