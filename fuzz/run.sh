#!/usr/bin/env bash
# Runs the libFuzzer targets, each for a while, on the committed seed corpus (fuzz/corpus/<target>,
# see fuzz/make_corpus.sh) plus seeds made from the test fixtures.
#   fuzz/run.sh BUILD_DIR [SECONDS_PER_TARGET (default 60)] [TARGET...]
# BUILD_DIR is a fuzz build (CC=clang cmake -S . -B BUILD_DIR -DPCV_FUZZ=ON, or -S fuzz).
# New inputs go to BUILD_DIR/fuzz-work/<target> (the committed corpus is never written); a crash,
# leak, sanitizer report, timeout or out-of-memory input is left in BUILD_DIR/fuzz-artifacts and
# makes the script exit 1. A summary table (executions, coverage, peak memory) ends the output.
# CI runs it for a short time (.ci/run); long runs are the same command with more seconds.
set -euo pipefail
build=${1:?usage: fuzz/run.sh BUILD_DIR [SECONDS] [TARGET...]}
secs=${2:-60}
shift $(($# >= 2 ? 2 : $#))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(pickle haiku zip safetensors config image masked)
root=$(cd "$(dirname "$0")/.." && pwd)
fx=$root/tests/fixtures
bin=$build
[ -x "$bin/fuzz_pickle" ] || bin=$build/fuzz
seeds=$build/fuzz-seeds
work=$build/fuzz-work
art=$build/fuzz-artifacts
mkdir -p "$art"

seed() { # target files...
  local d=$seeds/$1; shift
  mkdir -p "$d"
  for f in "$@"; do [ -f "$f" ] && cp "$f" "$d/$(echo "$f" | md5sum | cut -c1-12)"; done
  return 0
}
rm -rf "$seeds"
seed pickle "$fx"/haiku_dtypes/*.pickle "$fx"/haiku_hostile/*.pickle
# the model pickles are large for a fuzzer: their first 4 KiB
for f in "$fx"/haiku_mlm/p*_np*.pickle; do
  mkdir -p "$seeds/pickle" && head -c 4096 "$f" >"$seeds/pickle/head-$(basename "$f")"
done
# haiku: a selector byte (0: detect the architecture, 1: MLM) then a whole pickle
mkdir -p "$seeds/haiku"
for f in "$fx"/haiku_mlm/p4_np2_dict.pickle "$fx"/haiku_dtypes/dtypes_p4_np2.pickle; do
  { printf '\x00'; cat "$f"; } >"$seeds/haiku/0-$(basename "$f")"
  { printf '\x01'; cat "$f"; } >"$seeds/haiku/1-$(basename "$f")"
done
seed zip "$fx"/torch_mlm/pytorch_model.bin "$fx"/torch_mlm_legacy/pytorch_model.bin "$fx"/haiku_hostile/pytorch_model.bin
seed safetensors "$fx"/torch_sharded/*.safetensors "$fx"/mlm_q_shape/inputs.safetensors "$fx"/mlm_heads_default/inputs.safetensors
seed config "$fx"/*/config.json
seed image "$fx"/images/*.png "$fx"/images/*.jpg "$fx"/images/unsupported.*
seed masked "$fx"/fill/lines.txt "$fx"/tokenizer/*.txt

# sanitizer findings are fatal, with a stack
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
status=0
summary=()
for t in "${targets[@]}"; do
  [ -x "$bin/fuzz_$t" ] || { echo "fuzz_$t: not built in $bin" >&2; status=1; continue; }
  mkdir -p "$work/$t" "$seeds/$t"
  echo "== fuzz_$t: ${secs}s"
  log=$build/fuzz_$t.log
  if ! "$bin/fuzz_$t" "$work/$t" "$root/fuzz/corpus/$t" "$seeds/$t" -max_total_time="$secs" -rss_limit_mb=2048 \
       -max_len=262144 -timeout=25 -artifact_prefix="$art/$t-" -print_final_stats=1 2>"$log"; then
    echo "fuzz_$t FOUND A PROBLEM: see $log and $art" >&2
    grep -E 'ERROR|SUMMARY|runtime error' "$log" | head -5 >&2 || true
    status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
  summary+=("$(printf '%-18s %6ss %12s %8s %8s' "fuzz_$t" "$secs" "$execs" "$cov" "$rss")")
done
printf '\n%-18s %7s %12s %8s %8s\n' target time executions coverage peak_MB
printf '%s\n' "${summary[@]}"
exit $status
