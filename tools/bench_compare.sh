#!/usr/bin/env bash
# perceiver-cl's CPU path vs Hugging Face transformers (PyTorch CPU, float32 eager), same
# random-weight full-size checkpoint, same input shape, same machine, in interleaved pairs
# (transformers, perceiver-cl, transformers, perceiver-cl, ...) so that a change in the machine's
# load hits both sides alike.
#
#   tools/bench_compare.sh [PRESET|MODEL_DIR] [PAIRS] [REPEAT]
#
# PRESET (default language-perceiver; also vision-perceiver-fourier, -conv, -learned) makes
# /tmp/pcv-PRESET with `perceiver-cl init-random` if missing; a folder is used as it is. Each pair
# runs tools/bench_hf.py and `perceiver-cl bench`, each timing REPEAT forwards (default 3) after one
# warm-up; the figure of a side in a pair is the median of its REPEAT. Prints one row per pair
# (with the load average and how perceiver-cl's OpenMP threads waited: README) and a summary:
# the median (and range) of each side and of the ratio transformers/perceiver-cl, with the CPU
# model. Inputs: the Hugging Face test sentence padded to 2048 bytes (text), random
# pixel_values [1,3,224,224] (images; the values differ between the two sides, the shapes and
# the work do not).
# Environment: BIN (default build/perceiver-cl), VENV (default .venv-ref, else /work/venv-ref),
# THREADS (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
ARG=${1:-language-perceiver}
PAIRS=${2:-3}
REPEAT=${3:-3}
BIN=${BIN:-build/perceiver-cl}
VENV=${VENV:-.venv-ref}
[ -x "$VENV/bin/python" ] || VENV=/work/venv-ref
THREADS=${THREADS:-$(nproc)}
if [ -d "$ARG" ]; then
  MODEL=$ARG
else
  MODEL=/tmp/pcv-$ARG
  [ -f "$MODEL/model.safetensors" ] || "$BIN" init-random --preset "$ARG" --out "$MODEL" >&2
fi
PY="$VENV/bin/python"
TMPD=$(mktemp -d)
trap 'rm -rf "$TMPD"' EXIT

echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cores; threads $THREADS"
echo "model: $MODEL; $PAIRS interleaved pairs, each side the median of $REPEAT forwards after a warm-up"
echo
echo "| pair | transformers s | perceiver-cl s | ratio | load avg | perceiver-cl threads wait |"
echo "|---:|---:|---:|---:|---:|---|"
for i in $(seq 1 "$PAIRS"); do
  "$PY" tools/bench_hf.py --model "$MODEL" --repeat "$REPEAT" --threads "$THREADS" >"$TMPD/hf.$i"
  "$BIN" bench -q --model "$MODEL" --repeat "$REPEAT" --threads "$THREADS" --json >"$TMPD/pcv.$i.json"
  h=$(sed -n 's/^hf_forward_s=\([0-9.]*\).*/\1/p' "$TMPD/hf.$i")
  o=$(python3 -c "import json,statistics,sys; print(statistics.median(json.load(open(sys.argv[1]))['results'][0]['forward_s']['samples']))" "$TMPD/pcv.$i.json")
  echo "$h $o" >>"$TMPD/pairs"
  w=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['driver'].partition('threads wait: ')[2])" "$TMPD/pcv.$i.json")
  python3 -c "import sys; h,o=float(sys.argv[1]),float(sys.argv[2]); print(f'| {sys.argv[3]} | {h:.3f} | {o:.3f} | {h/o:.2f}x | {sys.argv[4]} | {sys.argv[5]} |')" \
    "$h" "$o" "$i" "$(cut -d' ' -f1 /proc/loadavg)" "$w"
done
echo
python3 - "$TMPD/pairs" "$TMPD/pcv.1.json" "$TMPD/hf.1" <<'EOF'
import json, statistics, sys
p = [tuple(map(float, l.split())) for l in open(sys.argv[1])]
h = [a for a, _ in p]; o = [b for _, b in p]; r = [a / b for a, b in p]
d = json.load(open(sys.argv[2]))
res = d["results"][0]
g = res["gflop"]
info = " ".join(open(sys.argv[3]).read().split("\n")[1].split()[:2])
print(f"{d['architecture']}, {res['input']}, {g:.1f} GFLOP per forward; perceiver-cl on {d['device']}; {info}")
print(f"transformers: median {statistics.median(h):.3f} s ({g / statistics.median(h):.1f} GFLOP/s), range {min(h):.3f}-{max(h):.3f}")
print(f"perceiver-cl: median {statistics.median(o):.3f} s ({g / statistics.median(o):.1f} GFLOP/s), range {min(o):.3f}-{max(o):.3f}; "
      f"measured SGEMM peak {d['peak_gflops']:.1f} GFLOP/s; peak RSS {res['memory']['peak_rss_bytes'] / 2**20:.0f} MiB")
print(f"ratio transformers/perceiver-cl: median {statistics.median(r):.2f}x, range {min(r):.2f}-{max(r):.2f}x")
EOF
