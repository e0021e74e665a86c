# OpenSSL (mutual TLS, native/tls.h): the one node itself links. Node 20 carries OpenSSL 3.0.x statically and exports
# its SSL_*/X509_* symbols; the addon compiles against the headers node ships with it (<nodedir>/include/node/openssl,
# which node-gyp puts on the include path before /usr/include) and is NOT linked with -lssl/-lcrypto: its undefined
# OpenSSL symbols resolve against the node binary at load. -z now makes a node without them fail the load (the engine
# then reports itself unavailable and the router runs the TypeScript engine) instead of failing at the first call.
# The headers' major is checked at build time (static_assert in tls.h), the running library's major.minor at load.
{
  "targets": [
    {
      "target_name": "meshport_engine",
      "sources": [
        "native/addon.cc", "native/codec.cc", "native/codec_binding.cc",
        "native/engine.cc", "native/engine_binding.cc",
        "native/loop.cc", "native/callers.cc", "native/upstreams.cc", "native/clusters.cc", "native/routes.cc", "native/relay.cc",
        "native/authz.cc", "native/tls.cc", "native/secure.cc", "native/trace_context.cc", "native/telemetry.cc", "native/records.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-O2"],
      "ldflags": ["-Wl,-z,now"]
    }
  ]
}
