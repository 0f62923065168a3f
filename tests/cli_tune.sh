# perceiver-cl tune: the usage errors; a short search on PoCL that must reject a candidate whose
# results were changed by 0.1 % (test hook PCV_TEST_TUNE_WRONG) and store a profile that later
# runs load (the profile's settings show in the OpenCL trace, the results stay right); stored
# profiles that are broken, hostile or another device's are ignored with a warning naming the
# file; --show, --reset, --dry-run; PERCEIVER_TUNED=0. With PCV_REQUIRE_OPENCL=1 (CI) a machine
# without an OpenCL device fails.
. "$(dirname "$0")/clilib.sh"
unset RUSTICL_ENABLE PERCEIVER_DEVICE PERCEIVER_TUNING PERCEIVER_TUNED PERCEIVER_ATTENTION PERCEIVER_GEMM_LAYOUT
export PERCEIVER_CACHE_DIR=$TMP/cache
M=$FIX/mlm_language_like

# ---- usage ----
expect 2 'the CPU path has nothing to tune' -- "$BIN" tune -d cpu
expect 2 '--device is empty' -- "$BIN" tune --device ''
expect 2 '--model must be lm, image, flow or all' -- "$BIN" tune --model bogus
expect 2 '--show and --reset exclude each other' -- "$BIN" tune --show --reset
expect 2 'unexpected argument' -- "$BIN" tune extra
check '"$BIN" tune --help | grep -q -- "--budget SECONDS"' "tune --help shows --budget"

require_devices 1 "$("$BIN" devices --json | grep -c '"index":')" "the tuning tests"
expect 1 "device '99' does not exist" -- "$BIN" tune -d 99

# ---- nothing stored yet ----
expect 0 '' -- "$BIN" tune -d 0 --show
check 'grep -q "^none" "$TMP/out"' "--show before tuning says none"
check '"$BIN" devices | grep -q "tuned      no (perceiver-cl tune --device 0)"' "devices: device 0 not tuned"

# ---- a short search; candidate 2 is made wrong and must be rejected ----
export PCV_TEST_TUNE_WRONG=2
expect 0 'candidate 2: .*: WRONG \(gemm .*NMSE 1e-06 against float64' -- \
  "$BIN" tune -d 0 --model lm --rows 16 --budget 3 --json
unset PCV_TEST_TUNE_WRONG
cp "$TMP/out" "$TMP/tune.json"
for f in '"best": "' '"before_ms": [0-9]' '"after_ms": [0-9]' '"speedup": [0-9]' '"tried": [0-9]' '"wrong": 1,' \
  '"status": "wrong"' '"operations": \[' '"after_gflops": [0-9]' '"profile": "'; do
  check "grep -q '$f' \"\$TMP/tune.json\"" "tune --json has $f"
done
wrong=$(grep -B1 '"status": "wrong"' "$TMP/tune.json" | sed -n 's/.*"tuning": "\(.*\)",/\1/p')
best=$(sed -n 's/^  "best": "\(.*\)",/\1/p' "$TMP/tune.json")
check '[ -n "$wrong" ] && [ "$best" != "$wrong" ]' "the wrong candidate ($wrong) is not the winner ($best)"
ops=$(grep -c '"shape": "' "$TMP/tune.json")
check '[ "$ops" -eq 14 ]' "the language model's 14 operations (GEMMs, attentions, row operations) are timed ($ops)"
prof=$(ls "$PERCEIVER_CACHE_DIR"/tuned-*.txt 2>/dev/null | head -1)
check '[ -f "$prof" ]' "the profile is stored in the cache folder"
check '[ "$(stat -c %a "$PERCEIVER_CACHE_DIR")" = 700 ]' "the cache folder is private"
check 'grep -q "^tuning: $best\$" "$prof"' "the profile holds the winner"
check 'grep -q "^clblast: .*clblast" "$prof"' "the profile names the CLBlast library it was measured with"
expect 0 '' -- "$BIN" tune -d 0 --show
check 'grep -qF "$prof" "$TMP/out"' "--show names the profile"
expect 0 '' -- "$BIN" devices --json
check 'grep -qF "\"tuning_profile\": \"$prof\"" "$TMP/out"' "devices --json names the profile"

# ---- later runs load it: the settings take effect, the results stay right ----
# (a profile's tuning line is rewritten by hand below; the identity lines are the device's)
setp() { { head -5 "$prof.orig"; echo "tuning: $1"; echo "note: test"; } >"$prof"; }
cp "$prof" "$prof.orig"
setp "gemm=clblast,layout=swap,attention=gemm"
expect 0 '' -- env PERCEIVER_CL_TRACE=1 "$BIN" fill -m "$M" -d 0 "Hello [MASK:3]"
check 'grep -q "gemm (CLBlast).*swapped" "$TMP/err" && ! grep "gemm (CLBlast)" "$TMP/err" | grep -vq swapped' \
  "profile layout=swap: every GEMM is called swapped"
check 'grep -q "trace: attention softmax" "$TMP/err" && ! grep -Eq "trace: attention +global" "$TMP/err"' \
  "profile attention=gemm: the CLBlast attention path, no fused attention kernel"
setp "gemm=clblast,layout=row"
expect 0 '' -- env PERCEIVER_CL_TRACE=1 "$BIN" fill -m "$M" -d 0 "Hello [MASK:3]"
check 'grep -q "gemm (CLBlast)" "$TMP/err" && ! grep -q "gemm (CLBlast).*swapped" "$TMP/err"' \
  "profile layout=row: no GEMM is swapped"
expect 0 '' -- env PERCEIVER_CL_TRACE=1 PERCEIVER_GEMM_LAYOUT=swap "$BIN" fill -m "$M" -d 0 \
  "Hello [MASK:3]"
check 'grep -q "gemm (CLBlast)" "$TMP/err" && ! grep "gemm (CLBlast)" "$TMP/err" | grep -vq swapped' \
  "an explicit PERCEIVER_GEMM_LAYOUT wins over the profile"
expect 0 '' -- env PERCEIVER_CL_TRACE=1 PERCEIVER_GEMM=own "$BIN" fill -m "$M" -d 0 "Hello [MASK:3]"
check 'grep -q "trace: gemm (own) " "$TMP/err" && ! grep -q "gemm (CLBlast)" "$TMP/err"' \
  "an explicit PERCEIVER_GEMM=own wins over the profile's gemm=clblast: every GEMM is our own"
setp "as=gpu,vw=8,row_ls=32"
expect 0 '' -- env PERCEIVER_CL_TRACE=1 "$BIN" verify -m "$M" -d 0
check 'grep -Eq "trace: layernorm +global 32 x" "$TMP/err" && grep -q "^PASS" "$TMP/out"' \
  "profile as=gpu,vw=8,row_ls=32: row kernels run 32 work-items per row, and verify passes"
cp "$prof.orig" "$prof"
expect 0 '' -- "$BIN" bench -m "$M" -d 0 -r 1
check 'grep -q "tuned (perceiver-cl tune)" "$TMP/out"' "bench names the tuned driver"
expect 0 '' -- "$BIN" verify -m "$M" -d 0
check 'grep -q "^PASS" "$TMP/out"' "the tuned device passes verify against the CPU path"
# without a profile or key, PoCL's CPU device runs our own GEMM (cl/gemm.cl), other devices CLBlast
expect 0 '' -- env PERCEIVER_TUNED=0 PERCEIVER_CL_TRACE=1 "$BIN" fill -m "$M" -d 0 "Hello [MASK:3]"
if "$BIN" devices --json | grep -A4 '"index": 0,' | grep -q '"platform": "Portable Computing Language"'; then
  check 'grep -q "trace: gemm (own) " "$TMP/err" && ! grep -q "gemm (CLBlast)" "$TMP/err"' \
    "PoCL's default GEMM is our own"
  expect 0 '' -- env PERCEIVER_TUNED=0 "$BIN" bench -m "$M" -d 0 -r 1
  check 'grep -q "GEMMs: our own, [0-9]* x [0-9]* tiles of float" "$TMP/out"' "bench names PoCL's GEMM and its tile"
  expect 0 '' -- env PERCEIVER_TUNED=0 PERCEIVER_GEMM=clblast "$BIN" bench -m "$M" -d 0 -r 1
  check 'grep -q "GEMMs: CLBlast" "$TMP/out"' "bench names CLBlast when it runs the GEMMs"
fi

# ---- broken, hostile or foreign profiles are ignored, named, and the run is still right ----
bad_profile() { # $1 what, $2 expected reason (regex)
  expect 0 "ignoring its tuning profile: .*$2" -- "$BIN" verify -m "$M" -d 0
  check 'grep -q "^PASS" "$TMP/out"' "$1: verify still passes on the defaults"
  expect 0 '' -- "$BIN" devices
  check 'grep -Eq "tuned +ignored: .*'"$2"'" "$TMP/out"' "$1: devices says it is ignored"
}
setp "xgemm=1:2:3"
bad_profile "a short xgemm" "xgemm needs 16 numbers"
setp "xgemm=0:1:64:4:1:1:30:1:1:8:0:0:0:0:16:1"
bad_profile "an invalid CLBlast set" "not a valid CLBlast set for this device"
setp "wg=1,as=gpu"
bad_profile "a test-only key" "'wg' is not a key of a profile"
setp "layout=diagonal"
bad_profile "a bad value" "bad value for layout"
sed 's/^driver: /driver: other-/' "$prof.orig" >"$prof"
bad_profile "another driver's profile" "is not a profile of this device and driver"
head -c 100000 /dev/zero | tr '\0' 'x' >"$prof"
bad_profile "a huge file" "(too large|larger|exceeds|bytes)"
printf '\x7fELF\0\0binary' >"$prof"
bad_profile "binary junk" "is not a profile of this device"
rm -f "$prof" && mkfifo "$prof"
expect 0 'ignoring its tuning profile: .*(not a regular file|FIFO)' -- timeout 60 "$BIN" verify -m "$M" -d 0
check 'grep -q "^PASS" "$TMP/out"' "a FIFO in place of the profile: no hang, the defaults run"
rm -f "$prof"
setp "xgemm=1:2:3"
expect 0 '' -- env PERCEIVER_TUNED=0 "$BIN" verify -m "$M" -d 0
check '! grep -q "tuning profile" "$TMP/err"' "PERCEIVER_TUNED=0: profiles are not read"

# ---- --reset, --dry-run ----
expect 0 '' -- "$BIN" tune -d 0 --reset
check '[ ! -e "$prof" ] && grep -q "^removed" "$TMP/out"' "--reset removes the profile"
expect 0 '' -- "$BIN" tune -d 0 --reset
check 'grep -q "^no profile to remove" "$TMP/out"' "--reset without a profile"
expect 0 '' -- "$BIN" tune -d 0 --model lm --rows 16 --budget 1 --dry-run
check '[ -z "$(ls "$PERCEIVER_CACHE_DIR"/tuned-*.txt 2>/dev/null)" ] && grep -q "not stored (--dry-run)" "$TMP/out"' \
  "--dry-run stores nothing"
check 'grep -q "these operations, one forward pass of each model: .* ms with the defaults, .* ms tuned" "$TMP/out"' \
  "tune prints the estimated time per forward pass before and after"
finish
