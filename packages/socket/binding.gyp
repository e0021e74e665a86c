# Linux only: SO_ORIGINAL_DST, IP_TRANSPARENT, SO_MARK, cgroup BPF and libbpf exist nowhere else. On any other OS
# there is no target, so an install still succeeds, no addon is built, and every call of @meshport/socket throws
# MESHPORT_SOCKET_NOT_SUPPORTED ("native addon not built") instead.
{
  "conditions": [
    ["OS=='linux'", {
      "targets": [
        {
          "target_name": "meshport_socket",
          "sources": ["native/addon.cc", "native/socket_ops.cc", "native/bpf_loader.cc"],
          "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
          "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
          "cflags!": ["-fno-exceptions"],
          "cflags_cc!": ["-fno-exceptions"],
          "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"],
          "libraries": ["-lbpf"]
        }
      ]
    }]
  ]
}
