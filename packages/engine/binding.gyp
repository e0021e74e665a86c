{
  "targets": [
    {
      "target_name": "meshport_engine",
      "sources": [
        "native/addon.cc", "native/codec.cc", "native/codec_binding.cc",
        "native/engine.cc", "native/engine_binding.cc",
        "native/loop.cc", "native/callers.cc", "native/upstreams.cc", "native/clusters.cc", "native/routes.cc", "native/relay.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-O2"]
    }
  ]
}
