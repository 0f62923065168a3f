#!/usr/bin/env bash
# Full-size ImageNet Perceivers (Fourier and conv by default): perceiver-cl's CPU path and an
# OpenCL device against Hugging Face transformers (PyTorch CPU), same random-weight checkpoint,
# one after the other in one run. Prints images/s and GFLOP/s.
#
#   tools/bench_images.sh [DEVICE] [REPEAT] [ARCH...]      (defaults: 0, 3, fourier conv)
#
# Checkpoints: /tmp/vp-<arch>, made by tools/check_fullsize_image.py --make if missing (needs
# the reference venv: VENV, default .venv-ref). Both sides use all cores.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=${1:-0}
REPEAT=${2:-3}
shift $(( $# > 2 ? 2 : $# )) || true
ARCHS=("$@")
[ ${#ARCHS[@]} -gt 0 ] || ARCHS=(fourier conv)
BIN=${BIN:-build/perceiver-cl}
VENV=${VENV:-.venv-ref}
T=$(nproc)
for a in "${ARCHS[@]}"; do
  M=/tmp/vp-$a
  [ -f "$M/model.safetensors" ] || "$VENV/bin/python" tools/check_fullsize_image.py --arch "$a" --make "$M" --bin "$BIN" >/dev/null
  echo "== $a =="
  for d in cpu "$DEV"; do
    "$BIN" bench -q -m "$M" -d "$d" -t "$T" --repeat "$REPEAT" | sed "s/^/  [$d] /"
  done
  fl=$("$BIN" bench -q -m "$M" --repeat 1 -o json | "$VENV/bin/python" -c "import json, sys; print(json.load(sys.stdin)['results'][0]['gflop'] * 1e9)")
  "$VENV/bin/python" tools/bench_hf.py --model "$M" --repeat "$REPEAT" --threads "$T" \
    --flops "$fl" | grep -E 'hf_forward_s|hf_gflop_s' | sed 's/^/  [transformers] /'
done
