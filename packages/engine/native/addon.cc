// The addon's entry point: the codec (for the differential tests and `meshport decode`) and the engine.
#include <napi.h>

namespace meshport {
void InitCodec(Napi::Env env, Napi::Object exports);
void InitEngine(Napi::Env env, Napi::Object exports);
}  // namespace meshport

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  meshport::InitCodec(env, exports);
  meshport::InitEngine(env, exports);
  return exports;
}

NODE_API_MODULE(meshport_engine, Init)
