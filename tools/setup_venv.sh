#!/usr/bin/env bash
# Create (or bring up to date) the Python reference environment used by tools/*.py.
#
#   tools/setup_venv.sh            # venv at <repo>/.venv-ref
#   tools/setup_venv.sh DIR        # venv at DIR
#   PYTHON=python3.11 tools/setup_venv.sh
#
# Idempotent: when DIR already holds a venv whose installed requirements match
# tools/requirements.txt (checked by a hash stamp plus an import test), it does nothing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
venv="${1:-$root/.venv-ref}"
req="$here/requirements.txt"
python="${PYTHON:-python3}"
stamp="$venv/.perceiver-cl-requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"

check() {
    "$venv/bin/python" -c 'import torch, transformers, safetensors, numpy' >/dev/null 2>&1
}

if [ ! -x "$venv/bin/python" ]; then
    echo "creating venv $venv"
    if ! "$python" -m venv "$venv"; then
        echo "error: '$python -m venv' failed (on Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
fi

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && check; then
    echo "up to date: $venv"
else
    "$venv/bin/python" -m pip install --disable-pip-version-check -r "$req"
    check || { echo "error: imports fail after installing $req" >&2; exit 1; }
    echo "$want" > "$stamp"
fi
"$venv/bin/python" -c 'import torch, transformers, safetensors, numpy
print("python ok: torch", torch.__version__, "transformers", transformers.__version__,
      "safetensors", safetensors.__version__, "numpy", numpy.__version__)'
