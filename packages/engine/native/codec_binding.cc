// Placeholder until the codec binding lands in this file.
#include <napi.h>
namespace meshport {
void InitCodec(Napi::Env, Napi::Object) {}
}  // namespace meshport
