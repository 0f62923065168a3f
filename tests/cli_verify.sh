# verify of one device against another (--against) and of every OpenCL device (--all): two
# identical PoCL devices (POCL_DEVICES="pthread pthread") agree, the CPU path against a device
# passes, the summary table and its JSON, a device that cannot run is a named FAIL row while
# the others still run, a broken kernel fails, and a bad or repeated device is refused.
# With PCV_REQUIRE_OPENCL=1 (CI) a machine without two OpenCL devices fails.
. "$(dirname "$0")/clilib.sh"
export PERCEIVER_CACHE_DIR=${PERCEIVER_CACHE_DIR:-${PCV_TEST_TMP:-/tmp}/kernel-cache}
unset RUSTICL_ENABLE PERCEIVER_DEVICE
export POCL_DEVICES="pthread pthread"
SRC=${PCV_SOURCE_DIR:?}
M=$FIX/mlm_language_like

# ---- usage, without a device ----
expect 2 '--all verifies every OpenCL device; it takes no --device' -- "$BIN" verify -m "$M" --all -d cpu
expect 2 'both the CPU path' -- "$BIN" verify -m "$M" -d cpu --against CPU
check '[ ! -s "$TMP/out" ]' "a refused verify wrote a report"
check '"$BIN" verify --help | grep -q -- "--against B"' "verify --help shows --against"
check '"$BIN" verify --help | grep -q -- "--all "' "verify --help shows --all"

n=$("$BIN" devices --json | grep -c '"index":')
require_devices 2 "$n" "the device-against-device tests (POCL_DEVICES='pthread pthread')"

# ---- one device against another ----
expect 0 'verify PerceiverForMaskedLM on OpenCL device 1.* against OpenCL device 0' -- \
  "$BIN" verify -m "$M" -d 1 --against 0
check 'grep -q "^reference  OpenCL device 0" "$TMP/out" && grep -q "^device     OpenCL device 1" "$TMP/out"' \
  "--against 0: the reference is device 0"
check 'grep -q "^PASS: 8 of 8 tensors" "$TMP/out"' "device 1 against device 0 passes every stage"
expect 0 'on CPU reference path.* against OpenCL device 0' -- "$BIN" verify -m "$M" -d cpu --against 0
check 'grep -q "^PASS: 8 of 8 tensors" "$TMP/out"' "the CPU path against device 0 passes every stage"
# without --device, the first OpenCL device that is not the reference
expect 0 'on OpenCL device 1.* against OpenCL device 0' -- "$BIN" verify -m "$M" --against 0 --json
check 'grep -q "\"reference\": \"OpenCL device 0" "$TMP/out" && grep -q "\"device\": \"OpenCL device 1" "$TMP/out"' \
  "verify --against 0 --json names both devices"

# ---- every device ----
expect 0 '' -- "$BIN" verify -m "$M" --all
rows=$(grep -Ec '^[0-9]+ +.* (PASS|FAIL) ' "$TMP/out")
check '[ "$rows" -eq "$n" ]' "verify --all shows $rows rows for $n devices"
drv=$("$BIN" devices --json | grep -m1 '"driver"' | sed 's/.*"driver": "\(.*\)",/\1/')
for i in 0 1; do
  check "grep -E '^$i +' \"\$TMP/out\" | grep -F \" \$drv \" | grep -Eq ' PASS +[a-z_.0-9]+ +[0-9.e+]+% +[0-9.]+\$'" \
    "verify --all: device $i passes, with its driver, worst stage, share of the tolerance and time"
done
check 'grep -q "^PASS: 2 of 2 OpenCL devices" "$TMP/out"' "verify --all sums up"
check 'grep -q "^reference  CPU reference path" "$TMP/out"' "verify --all: the CPU path is the default reference"
expect 0 '' -- "$BIN" verify -m "$M" --all --json
for f in '"devices": \[' '"devices_passed": 2' '"devices_failed": 0' '"pass": true' '"worst_stage": "' \
  '"worst_of_tolerance": [0-9]' '"forward_s": [0-9]' '"error": null' '"index": 1' '"stages": \['; do
  check "grep -q '$f' \"\$TMP/out\"" "verify --all --json has $f"
done
expect 0 '' -- "$BIN" verify -m "$M" --all --against 1
check '[ "$(grep -Ec "^[0-9]+ +.* (PASS|FAIL) " "$TMP/out")" -eq "$((n - 1))" ] && grep -Eq "^0 +.* PASS " "$TMP/out"' \
  "verify --all --against 1 compares every other device"
check 'grep -q "^reference  OpenCL device 1" "$TMP/out"' "verify --all --against 1: device 1 is the reference"

# ---- bad devices ----
expect 1 "reference device \(--against '7'\): device '7' does not exist" -- "$BIN" verify -m "$M" -d 0 --against 7
check '[ ! -s "$TMP/out" ]' "verify with a bad --against wrote a report"
expect 1 "--against 'no-such-gpu'.*matches no device" -- "$BIN" verify -m "$M" --all --against no-such-gpu
expect 1 "device '9' does not exist" -- "$BIN" verify -m "$M" -d 9 --against 0
expect 2 'same device \(OpenCL device 0\)' -- "$BIN" verify -m "$M" -d 0 --against 0
expect 1 'empty device name' -- "$BIN" verify -m "$M" -d '' --against 0
expect 2 'same device \(OpenCL device 0\)' -- "$BIN" verify -m "$M" -d pthread --against 0
expect 2 '\$PERCEIVER_DEVICE 1 and --against 1 are the same device' -- env PERCEIVER_DEVICE=1 "$BIN" verify -m "$M" --against 1

# ---- a device that cannot run: a FAIL row with the reason; the other devices still run ----
mkdir -p "$TMP/cl_syntax"
cp "$SRC"/cl/*.cl "$TMP/cl_syntax/"
printf '\n__kernel void broken(__global float *x) { x[0] = undeclared_thing; }\n' >>"$TMP/cl_syntax/rows.cl"
expect 1 "OpenCL device 1 '.*': OpenCL kernel build failed for cl/rows.cl" -- \
  env PERCEIVER_CL_DIR="$TMP/cl_syntax" "$BIN" verify -m "$M" --all
for i in 0 1; do
  check "grep -Eq '^$i +.* FAIL +did not run: .*kernel build failed for cl/rows.cl' \"\$TMP/out\"" \
    "verify --all names device $i that could not run, with the reason"
done
check 'grep -q "^FAIL: 2 of 2 OpenCL devices failed" "$TMP/out"' "verify --all counts the devices that did not run"
expect 1 '' -- env PERCEIVER_CL_DIR="$TMP/cl_syntax" "$BIN" verify -m "$M" --all --json
check 'grep -q "\"error\": \"OpenCL kernel build failed" "$TMP/out" && grep -q "\"devices_failed\": 2" "$TMP/out"' \
  "verify --all --json reports the error of each device"

# ---- a broken kernel (the tanh GELU in place of erf, as in cli_opencl.sh) fails ----
mkdir -p "$TMP/cl_tanh"
cp "$SRC"/cl/*.cl "$TMP/cl_tanh/"
# (the GELU of the elementwise kernels and of the GEMM epilogues: one macro in common.cl)
sed -i 's/erf((v) \* 0.70710678118654752440f)/tanh(0.79788456080286535588f * ((v) + 0.044715f * (v) * (v) * (v)))/' \
  "$TMP/cl_tanh/common.cl"
check '! cmp -s "$SRC/cl/common.cl" "$TMP/cl_tanh/common.cl"' "the broken kernel was not made"
expect 1 '' -- env PERCEIVER_CL_DIR="$TMP/cl_tanh" "$BIN" verify -m "$M" --all
for i in 0 1; do
  check "grep -Eq '^$i +.* FAIL +stage\.[a-z.0-9]+ +[0-9.e+]+% ' \"\$TMP/out\"" "verify --all: device $i fails"
  check "grep -q '^  device $i: .* first appears in stage.encoder.cross' \"\$TMP/out\"" \
    "verify --all names the first failing stage of device $i"
done
expect 1 '' -- env PERCEIVER_CL_DIR="$TMP/cl_tanh" "$BIN" verify -m "$M" --all --json
check 'grep -q "\"first_failure\": \"stage.encoder.cross\"" "$TMP/out" && grep -q "\"devices_failed\": 2" "$TMP/out"' \
  "verify --all --json reports the failure"
expect 1 '' -- env PERCEIVER_CL_DIR="$TMP/cl_tanh" "$BIN" verify -m "$M" -d cpu --against 1
check 'grep -q "^FAIL: .* first appears in stage.encoder.cross" "$TMP/out"' "the CPU path against a broken device fails"
# two devices with the same broken kernel agree: only the CPU path as reference catches it
expect 0 '' -- env PERCEIVER_CL_DIR="$TMP/cl_tanh" "$BIN" verify -m "$M" -d 1 --against 0

finish
