#!/usr/bin/env bash
# One suite, two engines (issue 15): after the main run (on the default engine), the suites that carry requests run
# again on the other engine, then the router's suites run on the native engine built with AddressSanitizer and
# UndefinedBehaviorSanitizer. Part of `npm test`.
#   scripts/test-engines.sh            both passes
#   scripts/test-engines.sh --other    only the other engine's pass
#   scripts/test-engines.sh --asan     only the sanitizer pass
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test-engines] %s\n' "$*" >&2; }

main_engine=$(node -p "require('@meshport/router').defaultEngine()")
other=js
[ "$main_engine" = js ] && other=native

# Every suite that runs a router: its own, the sidecar's, the end-to-end and reliability suites.
ROUTER_SUITES=(packages/router/dist/test/*.test.js)
# What the sanitizer pass runs: the router's suites and the engine's own.
ASAN_SUITES=("${ROUTER_SUITES[@]}" packages/engine/dist/test/engine.test.js)
CARRYING_SUITES=(
  "${ROUTER_SUITES[@]}"
  packages/sidecar/dist/test/*.test.js
  test/dist/e2e-*.test.js
  test/dist/reliability-faults.test.js
  test/dist/reliability-overload.test.js
  test/dist/security.test.js
)

other_pass() {
  log "the suites that carry requests, on the $other engine (the main run used $main_engine)"
  MESHPORT_ENGINE=$other npx --no-install mocha --no-config --require test/dist/support/dns-guard.js --timeout 120000 "${CARRYING_SUITES[@]}"
}

asan_pass() {
  local asan ubsan scratch
  asan=$(g++ -print-file-name=libasan.so)
  ubsan=$(g++ -print-file-name=libubsan.so)
  if [ ! -f "$asan" ] || [ ! -f "$ubsan" ]; then
    log "libasan/libubsan not found next to g++: cannot run the sanitizer pass"
    return 1
  fi
  # A scratch copy: the sanitized addon must not replace the one the other suites load.
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' RETURN
  cp -r packages/engine/native packages/engine/binding.gyp "$scratch/"
  ln -s "$PWD/node_modules" "$scratch/node_modules"
  log "building the native engine with -fsanitize=address,undefined"
  (cd "$scratch" && CXXFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -g" LDFLAGS="-fsanitize=address,undefined" \
    npx --no-install node-gyp rebuild --nodedir="$(npm config get nodedir 2>/dev/null || true)" >/dev/null)
  log "the router's and the engine's suites on the sanitized native engine"
  # Node itself is not built with ASan: the runtimes are preloaded, leak checking is off (V8's heap is not ours to
  # audit), and any report aborts the process, which fails the run.
  LD_PRELOAD="$asan $ubsan" ASAN_OPTIONS=detect_leaks=0,abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1,print_stacktrace=1 \
    MESHPORT_ENGINE=native MESHPORT_ENGINE_ADDON="$scratch/build/Release/meshport_engine.node" \
    npx --no-install mocha --no-config --require test/dist/support/dns-guard.js --timeout 120000 "${ASAN_SUITES[@]}"
}

case "${1:-}" in
  --other) other_pass ;;
  --asan) asan_pass ;;
  *) other_pass && asan_pass ;;
esac
