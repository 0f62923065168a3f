# The OpenCL side of perceiver-cl: device listing and selection, verify (passes on fixtures,
# fails on a broken kernel), and the error paths (kernel build failure with its log, allocation
# over the device's limit, a lost device): a clear message, a nonzero exit, no output file.
# With PCV_REQUIRE_OPENCL=1 (CI) a machine without an OpenCL device fails.
. "$(dirname "$0")/clilib.sh"
export PERCEIVER_CACHE_DIR=${PERCEIVER_CACHE_DIR:-${PCV_TEST_TMP:-/tmp}/kernel-cache}
SRC=${PCV_SOURCE_DIR:?}
M=$FIX/mlm_language_like
IN=$M/inputs.safetensors

# ---- listing ----
expect 0 '' -- "$BIN" devices --help
expect 0 '' -- "$BIN" devices
check 'grep -q "^cpu " "$TMP/out"' "devices lists the cpu path"
n=$(grep -Ec '^[0-9]+ ' "$TMP/out")
expect 0 '' -- "$BIN" devices --json
check 'grep -q "\"opencl\": \[" "$TMP/out"' "devices --json has the OpenCL list"
require_devices 1 "$n" "the OpenCL CLI tests"
expect 0 '' -- "$BIN" devices
for f in type platform vendor driver OpenCL compute memory; do
  check "grep -Eq '^ +$f ' \"\$TMP/out\"" "devices shows '$f'"
done
check 'grep -Eq "OpenCL C [0-9]+\.[0-9]+" "$TMP/out"' "devices shows the OpenCL C version"
check 'grep -Eq "memory .*GiB global, .* max allocation" "$TMP/out"' "devices shows global and max-alloc memory"

# ---- selection ----
expect 1 "device '99' does not exist.*devices are" -- "$BIN" run -m "$M" -i "$IN" -o "$TMP/o.st" --device 99
check 'grep -Eq "^ +0 +.+\[(CPU|GPU|accelerator|custom)\]" "$TMP/err"' "the error lists the devices"
check 'grep -Eq "^ +cpu " "$TMP/err"' "the error lists the cpu path"
expect 1 "device '99' does not exist" -- env PERCEIVER_DEVICE=99 "$BIN" run -m "$M" -i "$IN" -o "$TMP/o.st"
expect 1 "matches no device" -- "$BIN" run -m "$M" -i "$IN" -o "$TMP/o.st" --device no-such-gpu
check '[ ! -e "$TMP/o.st" ]' "a failed run left an output file"
expect 0 'on OpenCL device 0' -- "$BIN" run -m "$M" -i "$IN" -o "$TMP/o.st" --device 0
expect 0 'on OpenCL device 0' -- env PERCEIVER_DEVICE=0 "$BIN" run -m "$M" -i "$IN" -o "$TMP/o.st"
name=$("$BIN" devices --json | grep -m1 '"name"' | sed 's/.*"name": "\([^" ]*\).*/\1/')
expect 0 'on OpenCL device' -- "$BIN" run -m "$M" -i "$IN" -o "$TMP/o.st" --device "$name"
expect 0 'on CPU reference path' -- "$BIN" run -m "$M" -i "$IN" -o "$TMP/o.st" --device cpu

# ---- verify ----
expect 0 '' -- "$BIN" verify --help
expect 0 'verify PerceiverForMaskedLM on OpenCL device 0' -- "$BIN" verify -d 0 -m "$M"
check 'grep -q "^PASS: 8 of 8 tensors" "$TMP/out"' "verify passes every stage of $M"
for s in stage.preprocess stage.encoder.cross stage.encoder.self.2 stage.decoder logits last_hidden_state; do
  check "grep -Eq '^[0-9]+ +$s .*PASS\$' \"\$TMP/out\"" "verify reports $s"
done
# its tolerance is the test policy's (tests/tolerances.json, device_vs_cpu.verify)
pol=$(tr -d ' \n' <"$SRC/tests/tolerances.json" | grep -o '"verify":{"nmse":[^,]*,"max_rel":[^,]*')
nm=$(echo "$pol" | sed 's/.*"nmse":\([^,]*\),.*/\1/')
mr=$(echo "$pol" | sed 's/.*"max_rel":\(.*\)/\1/')
check "grep -Eq 'NMSE <= $(printf %g "$nm") and max rel err <= $(printf %g "$mr")' \"\$TMP/out\"" \
  "verify's tolerance ($(grep -m1 '^tolerance' "$TMP/out")) differs from tests/tolerances.json ($nm, $mr)"
expect 0 '' -- "$BIN" verify -d 0 -m "$M" --json
check 'grep -q "\"pass\": true" "$TMP/out" && grep -q "\"first_failure\": null" "$TMP/out"' "verify --json passes"
check 'grep -q "\"nmse\":" "$TMP/out" && grep -q "\"max_rel_err\":" "$TMP/out"' "verify --json has the metrics"
expect 0 '' -- "$BIN" verify -d 0 -m "$FIX/seqcls_basic" "$FIX/seqcls_basic/inputs.safetensors"
expect 0 '' -- "$BIN" verify -d 0 -m "$FIX/image_conv"
expect 0 '' -- "$BIN" verify -d 0 -m "$FIX/mlm_q_shape" --text 'Paris is nice'
expect 2 'replaces --text' -- "$BIN" verify -d 0 -m "$M" "$IN" --text x
expect 2 '--model' -- "$BIN" verify -d 0

# A real kernel bug, injected through the kernel-development override: the tanh GELU in place
# of the exact erf one. verify must fail and name the first stage that uses the kernel.
mkdir -p "$TMP/cl_tanh"
cp "$SRC"/cl/*.cl "$TMP/cl_tanh/"
# (the GELU of the elementwise kernels and of the GEMM epilogues: one macro in common.cl)
sed -i 's/erf((v) \* 0.70710678118654752440f)/tanh(0.79788456080286535588f * ((v) + 0.044715f * (v) * (v) * (v)))/' \
  "$TMP/cl_tanh/common.cl"
check '! cmp -s "$SRC/cl/common.cl" "$TMP/cl_tanh/common.cl"' "the broken kernel was not made"
expect 1 '' -- env PERCEIVER_CL_DIR="$TMP/cl_tanh" "$BIN" verify -d 0 -m "$M"
check 'grep -q "^FAIL: .* first appears in stage.encoder.cross" "$TMP/out"' "verify names the first failing stage"
check 'grep -Eq "^1 +stage.preprocess .*PASS$" "$TMP/out"' "stages before the broken kernel pass"
expect 1 '' -- env PERCEIVER_CL_DIR="$TMP/cl_tanh" "$BIN" verify -d 0 -m "$M" --json
check 'grep -q "\"pass\": false" "$TMP/out" && grep -q "\"first_failure\": \"stage.encoder.cross\"" "$TMP/out"' \
  "verify --json reports the failure"

# ---- errors ----
rm -f "$TMP/o.st"
# a kernel that does not compile: the message names the file and shows the driver's build log
mkdir -p "$TMP/cl_syntax"
cp "$SRC"/cl/*.cl "$TMP/cl_syntax/"
printf '\n__kernel void broken(__global float *x) { x[0] = undeclared_thing; }\n' >>"$TMP/cl_syntax/rows.cl"
expect 1 'kernel build failed for cl/rows.cl' -- env PERCEIVER_CL_DIR="$TMP/cl_syntax" "$BIN" run -m "$M" -i "$IN" -o "$TMP/o.st" -d 0
check 'grep -q "undeclared_thing" "$TMP/err"' "the build log is shown"
check 'grep -Eq "rows\.cl:[0-9]+" "$TMP/err"' "the build log points at rows.cl and a line"
expect 1 'kernel source folder: cannot read .*nothere/common.cl' -- env PERCEIVER_CL_DIR="$TMP/nothere" "$BIN" run -m "$M" -i "$IN" -o "$TMP/o.st" -d 0

# an allocation over the device's limit (PERCEIVER_MAX_ALLOC lowers the limit)
expect 1 "allocation of [0-9]+ bytes .* exceeds the device's maximum allocation of 20000 bytes" -- \
  env PERCEIVER_MAX_ALLOC=20000 "$BIN" run -m "$M" -i "$IN" -o "$TMP/o.st" -d 0
check '[ ! -e "$TMP/o.st" ]' "a failed run left an output file"

# ---- the kernel cache can be turned off; the benchmark of single operations runs ----
expect 0 '' -- env PERCEIVER_KERNEL_CACHE=0 "$BIN" run -m "$M" -i "$IN" -o "$TMP/o.st" -d 0
expect 0 '' -- "$BIN" bench-ops -d 0 --only layernorm --repeat 1 --no-cpu
check 'grep -q "layernorm 2048x768" "$TMP/out"' "bench-ops prints its operations"
expect 0 '' -- "$BIN" bench-ops -d 0 --model image --only "self attention" --repeat 1 --no-cpu --check
check 'grep -q "attention-hf b1 h8 nq512 nk512 d128/128" "$TMP/out" && grep -Eq "[0-9]\.[0-9]e-[0-9]+" "$TMP/out"' "bench-ops --model image --check"
expect 2 "--only 'nothing' matches no operation of model 'lm'" -- "$BIN" bench-ops -d 0 --only nothing

finish
