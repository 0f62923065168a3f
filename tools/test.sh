#!/usr/bin/env bash
# Sets up (tools/setup.sh) and runs the whole test suite with ctest.
# Extra arguments go to ctest (e.g. -R golden).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure "$@"
