# Command-line conventions (getopt_long): -mX, -m X, --model=X, --model X, options after the
# operands, "--", help for every command, usage errors with exit status 2, and the flags that
# used to be ignored, misdescribed or accepted silently.
. "$(dirname "$0")/clilib.sh"
M=$FIX/mlm_heads_default
IN=$M/inputs.safetensors

# ---- the four spellings of an option give the same result ----
expect 0 '' -- "$BIN" run -m "$M" -i "$IN" -o "$TMP/a.st"
expect 0 '' -- "$BIN" run -m"$M" -i"$IN" -o"$TMP/b.st"
expect 0 '' -- "$BIN" run --model="$M" --inputs="$IN" --outputs="$TMP/c.st"
expect 0 '' -- "$BIN" run --outputs "$TMP/d.st" --inputs "$IN" --model "$M" --numerics=hf -q
check 'cmp -s "$TMP/a.st" "$TMP/b.st" && cmp -s "$TMP/a.st" "$TMP/c.st" && cmp -s "$TMP/a.st" "$TMP/d.st"' "spellings of the options differ"
check '[ ! -s "$TMP/err" ]' "--quiet printed on stderr"
# unique prefixes of long options, options after operands, -- before operands that start with -
expect 0 '' -- "$BIN" run --mod "$M" --inp "$IN" --out "$TMP/e.st"
T=$PCV_SOURCE_DIR/examples/tiny-mlm
expect 0 '' -- "$BIN" fill 'free {software}' -m "$T" -q
cp "$TMP/out" "$TMP/fill1"
expect 0 '' -- "$BIN" fill -qm "$T" -- 'free {software}'
check 'cmp -s "$TMP/out" "$TMP/fill1"' "operands before and after the options differ"
expect 0 '' -- "$BIN" fill -m "$T" -- '-[MASK]'

# ---- usage errors: exit 2, the option named, a pointer to --help ----
expect 2 "unknown option '--bogus'" -- "$BIN" run --bogus
expect 2 "unknown option '-Z'" -- "$BIN" fill -Z
expect 2 "Try 'perceiver-cl classify --help'" -- "$BIN" classify --nope
expect 2 "'--model' needs a value" -- "$BIN" run --model
expect 2 "'--batch' needs a value" -- "$BIN" fill -m "$M" -b
expect 2 "--batch needs a whole number from 1 to 4096, not 'x'" -- "$BIN" fill -m "$M" --batch=x t
expect 2 "--numerics must be 'hf' or 'haiku'" -- "$BIN" run -m "$M" -i "$IN" -o "$TMP/o.st" --numerics jax
expect 2 "unexpected argument 'extra'" -- "$BIN" run -m "$M" -i "$IN" -o "$TMP/o.st" extra
expect 2 "only one FILE or DIR" -- "$BIN" inspect "$M" "$M"

# ---- help: every command, both ways; every option listed in --help parses ----
for c in fill classify run bench init-random convert inspect devices verify bench-ops; do
  expect 0 '' -- "$BIN" $c --help
  check "grep -q '^Usage: perceiver-cl $c ' \"\$TMP/out\"" "$c --help"
  cp "$TMP/out" "$TMP/h1"
  expect 0 '' -- "$BIN" help $c
  check 'cmp -s "$TMP/out" "$TMP/h1"' "'perceiver-cl help $c' differs from '$c --help'"
  expect 0 '' -- "$BIN" $c -h
  for o in $(grep -oE '^  (-[a-zA-Z], )?--[a-z_-]+' "$TMP/h1" | sed 's/.*--//'); do
    # the parser knows it: the usage error is about the option after it, never about --$o
    "$BIN" $c --$o --zz-not-an-option </dev/null >/dev/null 2>"$TMP/oerr"
    check '! grep -q "unknown option .--$o" "$TMP/oerr"' "$c --help lists --$o, which the parser refuses"
  done
done
expect 2 "no command 'frobnicate'" -- "$BIN" help frobnicate
expect 0 '' -- "$BIN" help
check 'grep -q "^  verify " "$TMP/out"' "help lists the commands"

# ---- --version: version, git commit, backends ----
expect 0 '' -- "$BIN" --version
check 'head -1 "$TMP/out" | grep -Eq "^perceiver-cl [0-9]+\.[0-9]+\.[0-9]+ \(git ([0-9a-f]{7,}(-dirty)?|unknown)\)$"' "--version: version and commit"
check 'grep -Eq "^backends: cpu .*(opencl|not built)" "$TMP/out"' "--version: backends"
expect 0 '' -- "$BIN" -V

# ---- flags that were wrong ----
# run -o DIR/: a clear message instead of "Not a directory"
expect 1 'is a folder; --outputs needs a file name' -- "$BIN" run -m "$M" -i "$IN" -o "$TMP/"
expect 1 'is a folder' -- "$BIN" run -m "$M" -i "$IN" -o "$TMP"
# more threads than CPUs: accepted with a warning (even with --quiet)
expect 0 'warning: --threads 4000 is more than the [0-9]+ CPU' -- "$BIN" run -q -t 4000 -m "$M" -i "$IN" -o "$TMP/t.st"
# bench-ops --only that matches nothing
expect 2 "--only 'nothing' matches no operation" -- "$BIN" bench-ops --only nothing --no-cpu -d cpu
# verify: the default device is $PERCEIVER_DEVICE, else OpenCL device 0, else cpu (as --help says)
expect 0 'verify PerceiverForMaskedLM on (OpenCL device 0|CPU)' -- env -u PERCEIVER_DEVICE "$BIN" verify -m "$M"
check 'grep -q "default.*PERCEIVER_DEVICE.*OpenCL device 0" <("$BIN" verify --help | tr "\n" " ")' "verify --help states the default device"
# verify --text takes the mask syntax, like fill
expect 0 '' -- "$BIN" verify -d cpu -m "$FIX/mlm_q_shape" --text 'Paris [MASK:3] nice' --json
check 'grep -q "\"input\": \".*14 bytes (3 masked)" "$TMP/out"' "verify --text: [MASK:3] is three masked bytes"
expect 0 '' -- "$BIN" verify -d cpu -m "$FIX/mlm_q_shape" --text '[MASK]' --json
check 'grep -q "1 bytes (1 masked)" "$TMP/out"' "verify --text: [MASK] is one masked byte, not 6 literal bytes"
expect 1 'column' -- "$BIN" verify -d cpu -m "$FIX/mlm_q_shape" --text 'bad {unterminated'
# the learned-position model's size is fixed: --image-size is refused, not ignored
L=$FIX/image_learned
sz=$(grep -o '"image_size": *[0-9]*' "$L/config.json" | grep -o '[0-9]*$')
expect 1 "learned position table of this model fixes its input to ${sz}x${sz}" -- "$BIN" verify -d cpu -m "$L" --image-size $((sz + 1))
expect 0 '' -- "$BIN" verify -d cpu -m "$L" --image-size "$sz"
# optical flow has a default input too
expect 0 '' -- "$BIN" verify -d cpu -m "$FIX/flow_small"
finish
