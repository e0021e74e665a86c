// Placeholder until the engine lands in this file.
#include <napi.h>
namespace meshport {
void InitEngine(Napi::Env, Napi::Object) {}
}  // namespace meshport
