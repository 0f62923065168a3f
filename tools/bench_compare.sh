#!/usr/bin/env bash
# Full-size masked-LM forward: perceiver-cl's CPU path vs Hugging Face transformers (PyTorch CPU),
# same random-weight checkpoint, same input, same machine, one after the other in one run.
#
#   tools/bench_compare.sh [MODEL_DIR] [REPEAT]
#
# MODEL_DIR defaults to /tmp/pcv-language-perceiver, created with `perceiver-cl init-random
# --preset language-perceiver` if missing. Needs the reference venv (tools/setup_venv.sh;
# VENV=path to override, default .venv-ref). Both sides use all cores (nproc threads).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-/tmp/pcv-language-perceiver}
REPEAT=${2:-5}
BIN=${BIN:-build/perceiver-cl}
VENV=${VENV:-.venv-ref}
THREADS=$(nproc)
[ -f "$MODEL/model.safetensors" ] || "$BIN" init-random --preset language-perceiver --out "$MODEL"

echo "== perceiver-cl (CPU path) =="
"$BIN" bench --model "$MODEL" --repeat "$REPEAT" --threads "$THREADS"
"$BIN" bench -q --model "$MODEL" --repeat "$REPEAT" --threads "$THREADS" --json >/tmp/pcv-bench.json
echo
echo "== Hugging Face transformers (PyTorch CPU) =="
FLOPS=$("$VENV/bin/python" -c "import json; print(json.load(open('/tmp/pcv-bench.json'))['results'][0]['gflop'] * 1e9)")
"$VENV/bin/python" tools/bench_hf.py --model "$MODEL" --repeat "$REPEAT" --threads "$THREADS" \
  --flops "$FLOPS" | tee /tmp/pcv-bench-hf.txt
echo
ours=$("$VENV/bin/python" -c "import json; print(json.load(open('/tmp/pcv-bench.json'))['results'][0]['forward_s']['mean'])")
theirs=$(sed -n 's/.*hf_forward_s=\([0-9.]*\).*/\1/p' /tmp/pcv-bench-hf.txt)
python3 -c "o=$ours; h=$theirs; print(f'forward: perceiver-cl {o*1e3:.1f} ms (mean), transformers {h*1e3:.1f} ms, speed ratio (transformers/perceiver-cl) {h/o:.2f}x')"
