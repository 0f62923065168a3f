#!/usr/bin/env bash
# Installs perceiver-cl's build dependencies from Debian packages (idempotent, non-interactive)
# and builds it into build/ (or $BUILD_DIR).
#
#   tools/setup.sh            install packages if missing, configure, build
#   tools/setup.sh --no-apt   only configure and build
#
# Environment: BUILD_DIR (default build), CMAKE_ARGS (extra cmake arguments, e.g. -DPCV_WERROR=ON).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake pkg-config libjansson-dev libblis-dev libpng-dev libjpeg-dev zlib1g-dev)
# the OpenCL backend: ICD loader and headers, CLBlast, and PoCL (OpenCL on the CPU: what CI runs on)
PACKAGES+=(ocl-icd-opencl-dev opencl-c-headers libclblast-dev pocl-opencl-icd clinfo)
# a second OpenCL implementation: Mesa's rusticl (llvmpipe on the CPU; enable with
# RUSTICL_ENABLE=llvmpipe), the OpenCL front end Mesa's AMD and Intel GPU drivers use
PACKAGES+=(mesa-opencl-icd)
# the fuzz targets (clang + libFuzzer; tools/test.sh --fuzz, fuzz/run.sh)
PACKAGES+=(clang libclang-rt-dev)
# videos (optical flow of a video, multimodal autoencoding): FFmpeg's libraries
PACKAGES+=(libavformat-dev libavcodec-dev libswscale-dev libswresample-dev libavutil-dev)
# the tests make small lossless videos with the ffmpeg command
PACKAGES+=(ffmpeg)
# MPI (mpirun -n N shares classify, fill and flow between processes; tests/cli_devices.sh)
PACKAGES+=(libopenmpi-dev openmpi-bin)

if [ "${1:-}" != "--no-apt" ]; then
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

BUILD_DIR=${BUILD_DIR:-build}
# shellcheck disable=SC2086
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DPCV_MPI=ON ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
echo "setup: built $BUILD_DIR/perceiver-cl" >&2
