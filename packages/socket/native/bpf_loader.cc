// The libbpf loader for meshport's BPF programs (bpf/*.bpf.c).
#include "addon.h"

namespace meshport {

void InitBpf(Napi::Env, Napi::Object) {}

}  // namespace meshport
