#!/usr/bin/env bash
# One idempotent set-up for every entry point (npm test, npm run demo, npm run bench):
# Debian packages the suites need, then `npm ci` when the lockfile changed, then the TypeScript build.
#   scripts/bootstrap.sh           set up whatever is missing or stale
#   scripts/bootstrap.sh --check   change nothing; say what would be done, exit 1 if anything would be
set -euo pipefail
cd "$(dirname "$0")/.."
check_only=0
[ "${1:-}" = "--check" ] && check_only=1

# Keep in step with the README's "What gets installed" table.
DEBIAN_PACKAGES=(
  zookeeper redis-server haproxy            # real registry servers and the benchmark peer
  iptables nftables conntrack iproute2      # transparent hijacking and its tests
  clang llvm libbpf-dev bpftool             # eBPF programs of packages/socket
  libclang-rt-14-dev                        # libFuzzer + ASan/UBSan runtimes for the native codec's fuzz targets
  openjdk-17-jdk-headless libhessian-java   # Caucho's Java Hessian, which the SOFA Registry bodies are held to
  openssl libssl-dev tcpdump               # mTLS: test certificates, the native engine's OpenSSL headers, wire captures
  tmux                                      # a real terminal for meshport top's test
)

log() { printf '[bootstrap] %s\n' "$*" >&2; }

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -gt 0 ] && [ "$check_only" = 1 ]; then
  log "would install Debian packages: ${missing[*]}"
elif [ ${#missing[@]} -gt 0 ]; then
  cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    log "missing Debian packages: ${missing[*]}"
    log "run this as root, then run the same npm command again:"
    printf '  sudo sh -c "%s"\n' "$cmd" >&2
    exit 1
  fi
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# npm ci only when package-lock.json differs from the one the installed tree was made from.
stamp=node_modules/.meshport-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
npm_stale=0
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then npm_stale=1; fi
if [ "$check_only" = 1 ]; then
  [ "$npm_stale" = 1 ] && log "would install npm packages (npm ci): package-lock.json changed since the last install"
  [ ${#missing[@]} -eq 0 ] && [ "$npm_stale" = 0 ] && log "nothing to do"
  [ ${#missing[@]} -eq 0 ] && [ "$npm_stale" = 0 ]
  exit
fi
if [ "$npm_stale" = 1 ]; then
  log "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund >&2
  echo "$want" > "$stamp"
fi

# The native addon and the BPF objects of packages/socket: rebuilt when a source is newer than what was built
# (npm 11 does not run install scripts by default, so the build is ours to run). node-gyp builds against the
# machine's own Node headers (npm's nodedir, read here at the root: inside a workspace `npm config` refuses to run);
# nothing is downloaded.
nodedir="$(npm config get nodedir)"
socket=packages/socket
addon=$socket/build/Release/meshport_socket.node
if [ ! -f "$addon" ] || [ -n "$(find "$socket/native" "$socket/binding.gyp" -newer "$addon" -print -quit)" ]; then
  log "building the native addon ($addon)"
  (cd "$socket" && npx --no-install node-gyp rebuild --nodedir="$nodedir" >&2)
fi
if [ -f "$socket/bpf/Makefile" ]; then make -s -C "$socket/bpf" >&2; fi

# The native forwarding engine (packages/engine), the same way.
engine=packages/engine
engine_addon=$engine/build/Release/meshport_engine.node
if [ ! -f "$engine_addon" ] || [ -n "$(find "$engine/native" "$engine/binding.gyp" -newer "$engine_addon" -print -quit)" ]; then
  log "building the native engine ($engine_addon)"
  (cd "$engine" && npx --no-install node-gyp rebuild --nodedir="$nodedir" >&2)
fi

# tsc --build is incremental: it rebuilds only projects whose inputs changed.
npx --no-install tsc --build >&2
