// What the parts of the addon share: error construction with errno/code/syscall, and each part's registration.
#pragma once

#include <napi.h>

#include <string>

namespace meshport {

// The name of a positive errno value: libuv's (what Node's own errors carry, so 95 is "ENOTSUP"), else the C
// library's (ENOLINK), else the kernel's for internal values that reach user space through bpf() (ENOTSUPP 524),
// else "UNKNOWN" for a number Linux does not define.
std::string ErrnoName(int err);

// A JS Error with `errno` (the positive value), `code` ("EPERM"...) and `syscall`.
Napi::Error ErrnoError(Napi::Env env, int err, const char *syscall);

// ErrnoError, thrown as a C++ exception.
[[noreturn]] void ThrowErrno(Napi::Env env, int err, const char *syscall);

// The stable code of an argument that has the wrong type or is out of range (docs/errors.md, @meshport/socket).
constexpr const char *kBadArgumentCode = "MESHPORT_SOCKET_BAD_ARGUMENT";

// A TypeError (wrong type) or RangeError (a number that is not a finite integer in range) with
// code MESHPORT_SOCKET_BAD_ARGUMENT and `argument` naming it; the message starts with the name.
[[noreturn]] void ThrowArgTypeError(Napi::Env env, const std::string &argument, const std::string &expected);
[[noreturn]] void ThrowArgRangeError(Napi::Env env, const std::string &argument, const std::string &expected);

// `value` as an integer in [min, max], or a thrown argument error naming `argument`: NaN, ±Infinity and
// fractions never reach a cast (casting them to an integer type is undefined behavior).
int64_t CheckInteger(Napi::Env env, const Napi::Value &value, const std::string &argument, int64_t min, int64_t max);

void InitSocketOps(Napi::Env env, Napi::Object exports);
void InitBpf(Napi::Env env, Napi::Object exports);

}  // namespace meshport
