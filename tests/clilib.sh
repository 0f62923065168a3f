# Shared helpers for the tests/cli_*.sh tests (sourced). Prints "N passed, N failed" at the end.
set -u
BIN=${PCV_BIN:?PCV_BIN must point to perceiver-cl}
FIX=${PCV_FIXTURES:?}
TMP=$(mktemp -d "${PCV_TEST_TMP:-/tmp}/cli.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
PASS=0
FAIL=0

ok() { PASS=$((PASS + 1)); }
bad() { FAIL=$((FAIL + 1)); echo "FAIL: $*" >&2; }

# expect CODE PATTERN -- command...: runs the command, checks its exit code and that stderr
# matches the extended regex PATTERN (empty: no check). Stdout is kept in $TMP/out.
expect() {
  local code=$1 pat=$2
  shift 3
  "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  if [ "$rc" -ne "$code" ]; then
    bad "exit $rc (wanted $code): $*"; sed 's/^/    stderr: /' "$TMP/err" | head -5 >&2; return
  fi
  if [ -n "$pat" ] && ! grep -Eq -- "$pat" "$TMP/err"; then
    bad "stderr of '$*' does not match /$pat/:"; sed 's/^/    stderr: /' "$TMP/err" | head -5 >&2; return
  fi
  if [ "$code" -ne 0 ] && grep -Eq 'Segmentation|Aborted|AddressSanitizer|runtime error' "$TMP/err"; then
    bad "crash: $*"; return
  fi
  ok
}

check() { if eval "$1"; then ok; else bad "$2"; fi; }

# require_devices N HAVE WHAT: when HAVE < N OpenCL devices, ends the test: a failure under
# PCV_REQUIRE_OPENCL=1 (CI), else a note that WHAT did not run.
require_devices() {
  [ "$2" -ge "$1" ] && return 0
  if [ "${PCV_REQUIRE_OPENCL:-0}" != 0 ]; then
    bad "PCV_REQUIRE_OPENCL=1 but there are $2 OpenCL device(s), not $1: $3 did not run"
  else
    echo "fewer than $1 OpenCL device(s): $3 did not run"
    ok
  fi
  finish
}

finish() {
  echo "$(basename "$0"): $PASS passed, $FAIL failed"
  [ "$FAIL" -eq 0 ] && [ "$PASS" -gt 0 ]
  exit $?
}
