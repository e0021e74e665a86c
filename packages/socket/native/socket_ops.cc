// Socket options meshport needs on Linux: the original destination, transparent sockets, marks.
#include "addon.h"

namespace meshport {

void InitSocketOps(Napi::Env, Napi::Object) {}

}  // namespace meshport
