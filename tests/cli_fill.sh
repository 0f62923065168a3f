# perceiver-cl fill on the bundled trained model (examples/tiny-mlm): the filled text must be
# what transformers' PerceiverForMaskedLM gives (tests/fixtures/fill/*.expected.txt, written by
# tools/fill_reference.py), whatever the input route or batch size.
. "$(dirname "$0")/clilib.sh"
M=${PCV_SOURCE_DIR:?}/examples/tiny-mlm
F=$FIX/fill

expect 0 'PerceiverForMaskedLM' -- "$BIN" fill -m "$M" -f "$M/examples.txt"
check 'diff -q "$TMP/out" "$F/tiny-mlm.expected.txt" >/dev/null' "examples.txt: output differs from transformers"
expect 0 '' -- "$BIN" fill -m "$M" -f "$F/lines.txt"
check 'diff -q "$TMP/out" "$F/lines.expected.txt" >/dev/null' "lines.txt: output differs from transformers"
cp "$TMP/out" "$TMP/file-out"

# standard input, one line per forward, and texts as arguments give the same
"$BIN" fill -m "$M" <"$F/lines.txt" >"$TMP/stdin-out" 2>/dev/null
check 'cmp -s "$TMP/stdin-out" "$TMP/file-out"' "stdin output differs from --file output"
"$BIN" fill -m "$M" --batch 1 -f "$F/lines.txt" >"$TMP/b1-out" 2>/dev/null
check 'cmp -s "$TMP/b1-out" "$TMP/file-out"' "--batch 1 output differs from batched output"
mapfile -t lines <"$F/lines.txt"
"$BIN" fill -m "$M" -- "${lines[@]}" >"$TMP/arg-out" 2>/dev/null
check 'cmp -s "$TMP/arg-out" "$TMP/file-out"' "argument output differs from --file output"

# --json: one object per line with the original beside the guess
expect 0 '' -- "$BIN" fill -m "$M" --json 'This function returns {the} value of the attribute.'
check 'grep -q "\"filled\":\"This function returns the value of the attribute.\"" "$TMP/out"' "--json filled text"
check 'grep -q "\"guess\":\"the\",\"original\":\"the\",\"correct\":true" "$TMP/out"' "--json span with original and correct flag"
expect 0 '' -- "$BIN" fill -m "$M" --json 'x [MASK:2] y'
check 'grep -q "\"original\":null" "$TMP/out"' "--json: [MASK:N] has no original"
check '[ "$(wc -l <"$TMP/out")" -eq 1 ]' "--json prints one line per input line"

# the haiku profile (no [CLS]/[SEP]) runs and changes the result
expect 0 '' -- "$BIN" fill -m "$M" --numerics haiku -f "$F/lines.txt"
check '! cmp -s "$TMP/out" "$TMP/file-out"' "--numerics haiku gave the hf output"

# too long for the model's 128 positions: error naming the line, nothing printed
long=$(printf 'a%.0s' $(seq 1 130))
expect 1 'line 2: 131 bytes' -- "$BIN" fill -m "$M" 'ok [MASK]' "$long[MASK]"
check '[ ! -s "$TMP/out" ]' "fill printed output although a line was too long"
finish
