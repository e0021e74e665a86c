#!/usr/bin/env bash
# Runs the native engine's libFuzzer campaigns (fuzz_codec, fuzz_stream: the codec; fuzz_trace: the body method,
# trace context and span ids; fuzz_authz, fuzz_san, fuzz_tls:
# authorization, the identity in a certificate, a TLS connection fed the peer's bytes) and prints one summary line
# per target.
#   fuzz/run.sh                 short: each target until 100000 runs or 30 s, whichever comes first (what CI runs)
#   fuzz/run.sh --runs N        short, N runs per target
#   fuzz/run.sh --long          10^7 runs per target, no time limit
#   fuzz/run.sh --max-time S    time limit per target (0: none)
#   fuzz/run.sh --keep          keep the work directory (corpora, logs) and print where it is
#   fuzz/run.sh --only T[,T]    only these targets (e.g. --only fuzz_trace)
# Seeds are copied into a temporary work directory: the committed fixtures and corpora are never written. First
# every input in fuzz/regressions/ is replayed (each is a reproducer of a bug once found). Exits non-zero when a
# replay or a campaign crashes; the crashing input is left in the work directory, which is then kept.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

runs=100000
max_time=30
keep=0
max_len=16384
targets=(fuzz_codec fuzz_stream fuzz_trace fuzz_authz fuzz_san fuzz_tls)
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --long) runs=10000000; max_time=0; shift ;;
    --max-time) max_time="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    --only) IFS=, read -r -a targets <<< "$2"; shift 2 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

command -v "${CLANGXX:-clang++}" >/dev/null || { echo "run.sh: clang++ is not installed" >&2; exit 3; }
if ! make -s -C "$here" >&2; then
  # clang links -fsanitize=fuzzer,address,undefined against compiler-rt's runtimes, a package of their own on Debian.
  echo "run.sh: building the fuzz targets failed; without libclang_rt.fuzzer/asan/ubsan, install libclang-rt-14-dev; fuzz_san and fuzz_tls need libssl-dev" >&2
  exit 4
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/meshport-codec-fuzz.XXXXXX")"
failed=0
finish() {
  if [ "$failed" = 0 ] && [ "$keep" = 0 ]; then rm -rf "$work"; else echo "work directory kept: $work" >&2; fi
}
trap finish EXIT

mkdir -p "$work/seeds/fuzz_codec" "$work/seeds/fuzz_stream" "$work/seeds/fuzz_trace" "$work/artifacts"
node "$here/seeds.js" "$work/seeds/fuzz_codec" > /dev/null
node "$here/seeds.js" "$work/seeds/fuzz_trace" > /dev/null
node "$here/seeds.js" "$work/seeds/fuzz_stream" --stream > /dev/null
node "$here/seeds-tls.js" "$work/seeds" > /dev/null
# Regression inputs join the seeds of the target they were found by (their name starts with it).
for f in "$here"/regressions/*; do
  [ -f "$f" ] && [ "${f##*.}" != md ] || continue
  for t in "${targets[@]}"; do
    case "$(basename "$f")" in "$t"-*) cp "$f" "$work/seeds/$t/regression-$(basename "$f")" ;; esac
  done
done

for t in "${targets[@]}"; do
  # Every regression input through every target, before any campaign: a bug once fixed stays fixed.
  regressions=("$here"/regressions/*)
  if [ -e "${regressions[0]}" ]; then
    inputs=()
    for f in "${regressions[@]}"; do [ "${f##*.}" != md ] && inputs+=("$f"); done
    if [ ${#inputs[@]} -gt 0 ] && ! "$here/out/$t" "${inputs[@]}" > "$work/$t.replay.log" 2>&1; then
      echo "$t: a regression input crashes again (see $work/$t.replay.log)" >&2
      failed=1
      continue
    fi
  fi
  mkdir -p "$work/corpus/$t"
  start=$(date +%s%N)
  set +e
  "$here/out/$t" -runs="$runs" -max_total_time="$max_time" -max_len="$max_len" -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/$t-" "$work/corpus/$t" "$work/seeds/$t" > "$work/$t.log" 2>&1
  status=$?
  set -e
  millis=$(( ($(date +%s%N) - start) / 1000000 ))
  executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -1)
  # libFuzzer's own average divides by whole seconds (0 for a run under one); this one counts milliseconds.
  per_sec=$(( ${executed:-0} * 1000 / (millis > 0 ? millis : 1) ))
  cov=$(grep -o 'cov: [0-9]*' "$work/$t.log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$work/$t.log" | tail -1 | cut -d' ' -f2)
  corpus=$(ls "$work/corpus/$t" | wc -l)
  crashes=$(ls "$work/artifacts" | grep -c "^$t-" || true)
  sanitizer=$(grep -c -E 'ERROR: (AddressSanitizer|libFuzzer|UndefinedBehaviorSanitizer|LeakSanitizer)|runtime error:|invariant broken' "$work/$t.log" || true)
  echo "$t: executions=${executed:-0} exec_per_sec=$per_sec seconds=$((millis / 1000)).$(printf '%03d' $((millis % 1000))) seeds=$(ls "$work/seeds/$t" | wc -l) crashes=$crashes sanitizer_reports=$sanitizer corpus=$corpus cov_edges=${cov:-0} features=${ft:-0} exit=$status"
  if [ "$status" != 0 ] || [ "$crashes" != 0 ] || [ "$sanitizer" != 0 ]; then
    failed=1
    grep -E -A12 'ERROR:|runtime error:|invariant broken' "$work/$t.log" | head -40 >&2 || true
  fi
done
exit "$failed"
