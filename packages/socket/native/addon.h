// What the parts of the addon share: error construction with errno/code/syscall, and each part's registration.
#pragma once

#include <napi.h>

namespace meshport {

// A JS Error with `errno` (the positive value), `code` ("EPERM"...) and `syscall`, thrown as a C++ exception.
[[noreturn]] void ThrowErrno(Napi::Env env, int err, const char *syscall);

// A JS Error with code "NotSupported" and the reason, for features this kernel or build lacks.
[[noreturn]] void ThrowNotSupported(Napi::Env env, const std::string &reason);

void InitSocketOps(Napi::Env env, Napi::Object exports);
void InitBpf(Napi::Env env, Napi::Object exports);

}  // namespace meshport
