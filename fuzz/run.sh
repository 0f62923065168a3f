#!/usr/bin/env bash
# Runs every libFuzzer target for a while on a seed corpus made from the test fixtures.
#   fuzz/run.sh BUILD_DIR [SECONDS_PER_TARGET (default 60)]
# Exits nonzero if a target finds a crash (the reproducer is left in BUILD_DIR/fuzz-artifacts).
set -euo pipefail
build=${1:?usage: fuzz/run.sh BUILD_DIR [SECONDS]}
secs=${2:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
fx=$root/tests/fixtures
bin=$build
[ -x "$bin/fuzz_pickle" ] || bin=$build/fuzz
work=$build/fuzz-corpus
art=$build/fuzz-artifacts
mkdir -p "$art"
seed() { # target files...
  local d=$work/$1; shift
  mkdir -p "$d"
  for f in "$@"; do [ -f "$f" ] && cp "$f" "$d/$(echo "$f" | md5sum | cut -c1-12)"; done
}
seed pickle "$fx"/haiku_dtypes/*.pickle "$fx"/haiku_hostile/*.pickle
# the model pickles are large for a fuzzer: seed with their first 4 KiB
for f in "$fx"/haiku_mlm/p*_np*.pickle; do head -c 4096 "$f" >"$work/pickle-$(basename "$f")" ; done
mkdir -p "$work/pickle" && mv "$work"/pickle-* "$work/pickle/" 2>/dev/null || true
seed zip "$fx"/torch_mlm/pytorch_model.bin "$fx"/torch_mlm_legacy/pytorch_model.bin "$fx"/haiku_hostile/pytorch_model.bin
seed safetensors "$fx"/torch_sharded/*.safetensors "$fx"/mlm_q_shape/inputs.safetensors
seed config "$fx"/*/config.json
status=0
for t in pickle zip safetensors config; do
  echo "== fuzz_$t: ${secs}s"
  if ! "$bin/fuzz_$t" "$work/$t" -max_total_time="$secs" -rss_limit_mb=2048 -max_len=262144 \
       -artifact_prefix="$art/$t-" -print_final_stats=1 2>"$build/fuzz_$t.log"; then
    echo "fuzz_$t FOUND A PROBLEM: see $build/fuzz_$t.log and $art" >&2
    status=1
  fi
  grep -E 'stat::number_of_executed_units|stat::peak_rss_mb|cov:' "$build/fuzz_$t.log" | tail -3
done
exit $status
