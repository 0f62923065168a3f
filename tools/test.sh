#!/usr/bin/env bash
# Sets up (tools/setup.sh) and runs the whole test suite with ctest.
#   tools/test.sh [--sanitize] [--fuzz SECONDS] [CTEST_ARGS...]
# Extra arguments go to ctest (e.g. -R golden).
#   --sanitize      then builds the suite with AddressSanitizer + UBSan into $BUILD_DIR-asan and runs
#                   it there too (every test, the CPU path and PoCL's device; Mesa's rusticl is left
#                   out of this pass: it runs the same host code as PoCL, and its slow compiler and
#                   llvmpipe would double CI's time): any sanitizer report fails the test (exit code
#                   86); LeakSanitizer ignores the third-party leaks listed in tools/lsan.supp
#                   (OpenCL drivers and compilers only)
#   --fuzz SECONDS  then builds the libFuzzer targets with clang into $BUILD_DIR-fuzz and runs each
#                   one for SECONDS on its committed corpus (fuzz/run.sh; longer runs: call it
#                   directly)
# .ci/run uses both.
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=0
fuzz=0
while [ $# -gt 0 ]; do
  case $1 in
    --sanitize) sanitize=1; shift ;;
    --fuzz) fuzz=${2:?--fuzz needs a number of seconds}; shift 2 ;;
    *) break ;;
  esac
done
BUILD_DIR=${BUILD_DIR:-build}
tools/setup.sh
(cd "$BUILD_DIR" && ctest --output-on-failure "$@")

if [ "$sanitize" = 1 ]; then
  echo "test: the suite under AddressSanitizer + UBSan ($BUILD_DIR-asan)" >&2
  # shellcheck disable=SC2086
  cmake -S . -B "$BUILD_DIR-asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPCV_SANITIZE=ON ${CMAKE_ARGS:-} >/dev/null
  cmake --build "$BUILD_DIR-asan" -j"$(nproc)"
  # fast_unwind_on_malloc=0: the drivers have no frame pointers, and only full stacks name the
  # library a leak comes from (which the suppressions match)
  export ASAN_OPTIONS=exitcode=86:fast_unwind_on_malloc=0:detect_leaks=1
  # use_tls=0: LeakSanitizer (GCC 12) crashes with "Tracer caught signal 11" reading the dynamic
  # thread-local storage of the libraries an OpenCL driver loads (a DTLS block at a bogus
  # address); without scanning TLS, what only TLS points to counts as leaked (stricter, not
  # looser: third-party such blocks are listed in tools/lsan.supp)
  export LSAN_OPTIONS=suppressions=$PWD/tools/lsan.supp:print_suppressions=0:use_tls=0
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=86
  # PoCL only (see --sanitize above); PCV_REQUIRE_PLATFORMS keeps requiring it when it was set
  (cd "$BUILD_DIR-asan" && env -u RUSTICL_ENABLE \
    ${PCV_REQUIRE_PLATFORMS:+PCV_REQUIRE_PLATFORMS="Portable Computing Language"} \
    ctest --output-on-failure -j"$(nproc)" "$@")
fi

if [ "$fuzz" != 0 ]; then
  echo "test: every fuzz target for ${fuzz}s ($BUILD_DIR-fuzz)" >&2
  # the parsers alone (fuzz/CMakeLists.txt as its own project: no BLIS, OpenMP or OpenCL)
  CC=clang cmake -S fuzz -B "$BUILD_DIR-fuzz" >/dev/null
  cmake --build "$BUILD_DIR-fuzz" -j"$(nproc)"
  fuzz/run.sh "$BUILD_DIR-fuzz" "$fuzz"
fi
