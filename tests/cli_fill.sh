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

# a line too long for the model's 128 positions: reported by number, the others still filled
# in input order, exit status 1 at the end
long=$(printf 'a%.0s' $(seq 1 130))
expect 1 'line 2: 131 bytes' -- "$BIN" fill -m "$M" 'free {software}' "$long[MASK]" 'free {software}'
check '[ "$(wc -l <"$TMP/out")" -eq 2 ] && [ "$(sort -u "$TMP/out" | wc -l)" -eq 1 ]' "the good lines around a bad one were not both filled"
expect 1 'line 2: .*column' -- "$BIN" fill -m "$M" --json 'free {software}' 'bad {unterminated' 'x [MASK]'
check '[ "$(wc -l <"$TMP/out")" -eq 3 ] && sed -n 2p "$TMP/out" | grep -q "^{\"line\":2,\"error\":"' "--json: the bad line's error object, in input order"
check 'sed -n 3p "$TMP/out" | grep -q "^{\"line\":3,"' "--json: the line after a bad one"

# predicted control bytes, tabs and backslashes are escaped: one output line per input line,
# as tools/fill_reference.py writes transformers' fills (a random-weight model predicts \x05)
expect 0 '' -- "$BIN" fill -m "$FIX/mlm_heads_default" -f "$F/controls.txt"
check 'cmp -s "$TMP/out" "$F/controls.expected.txt"' "control bytes: output differs from transformers' (escaped)"
check 'grep -q "x05" "$TMP/out" && grep -q "tab\\\\tand" "$TMP/out"' "control bytes and tabs are escaped"
expect 0 '' -- "$BIN" fill -m "$FIX/mlm_heads_default" --json -f "$F/controls.txt"
check '[ "$(wc -l <"$TMP/out")" -eq "$(wc -l <"$F/controls.txt")" ] && grep -q "u0005" "$TMP/out"' "--json: one escaped object per line"

# --top K: the fill-mask pipeline's top_k (tools/fill_reference.py --top 5: transformers'
# pipeline, special tokens left out), bytes in the same order, probabilities within mlm-tiny
expect 0 '' -- "$BIN" fill -m "$M" --json --top 5 -f "$F/top.txt"
grep -o '"byte":[0-9]*' "$TMP/out" | tr -d '"byte:' >"$TMP/b1"
grep -o '"byte": [0-9]*' "$F/top5.jsonl" | tr -d '"byte: ' >"$TMP/b2"
check '[ -s "$TMP/b1" ] && cmp -s "$TMP/b1" "$TMP/b2"' "--top 5: bytes differ from the fill-mask pipeline's"
grep -o '"probability":[-0-9.e]*' "$TMP/out" | cut -d: -f2 >"$TMP/p1"
grep -o '"probability": [-0-9.e]*' "$F/top5.jsonl" | cut -d' ' -f2 >"$TMP/p2"
TOLS=$(tr -d ' \n' <"$PCV_SOURCE_DIR/tests/tolerances.json" | grep -o '"mlm-tiny":{"atol":[^,]*,"rtol":[^,]*')
at=$(echo "$TOLS" | sed 's/.*"atol":\([^,]*\),.*/\1/'); rt=$(echo "$TOLS" | sed 's/.*"rtol":\(.*\)/\1/')
check 'paste "$TMP/p1" "$TMP/p2" | awk -v at="$at" -v rt="$rt" "{d=\$1-\$2; if(d<0)d=-d; m=\$2<0?-\$2:\$2; if(d>at+rt*m) bad++} END{exit (NR<20 || bad>0)}"' "--top 5: probabilities differ from the pipeline's scores"
expect 0 '' -- "$BIN" fill -m "$M" --top 3 'free {software}'
check '[ "$(wc -l <"$TMP/out")" -eq 9 ] && grep -Eq "^  @5  . [0-9.]+%  . [0-9.]+%  . [0-9.]+%$" "$TMP/out"' "--top 3 text: one line per masked byte with 3 candidates"
expect 2 '--top needs a whole number from 1 to 256' -- "$BIN" fill -m "$M" --top 0 x

# bounded reading: a line longer than --max-line-bytes is reported and skipped, the next one is
# filled; more than --max-input-bytes stops with an error that says how to raise it
{ head -c 70000 /dev/zero | tr '\0' a; printf '\nfree {software}\n'; } >"$TMP/longline.txt"
"$BIN" fill -q -m "$M" 'free {software}' >"$TMP/one-out"
expect 1 'line 1: longer than 65536 bytes \(--max-line-bytes raises the limit\)' -- "$BIN" fill -m "$M" -f "$TMP/longline.txt"
check 'cmp -s "$TMP/out" "$TMP/one-out"' "the line after a too-long one was not filled"
expect 1 'more than 4194304 bytes read; stopped \(--max-input-bytes raises the limit\)' -- "$BIN" fill -m "$M" -f /dev/zero --max-input-bytes 4M
{ head -c 100 /dev/zero; printf '\nfree {software}\n'; } >"$TMP/nul.txt"
expect 1 'nul.txt: line 1: contains a NUL byte' -- "$BIN" fill -m "$M" -f "$TMP/nul.txt"
check 'cmp -s "$TMP/out" "$TMP/one-out"' "the line after a NUL line was not filled"

# streaming: the first line is filled while the input is still open (nothing waits for its end)
mkfifo "$TMP/lines.fifo"
"$BIN" fill -q -m "$M" -b 1 <"$TMP/lines.fifo" >"$TMP/stream.out" 2>"$TMP/stream.err" &
pid=$!
exec 3>"$TMP/lines.fifo"
printf 'free {software}\n' >&3
for _ in $(seq 1 600); do [ -s "$TMP/stream.out" ] && break; sleep 0.1; done
streamed=$([ -s "$TMP/stream.out" ] && echo yes)
printf 'x [MASK]\n' >&3
exec 3>&-
wait $pid
check '[ "$streamed" = yes ]' "the first line was not filled before the input ended"
check '[ "$(wc -l <"$TMP/stream.out")" -eq 2 ]' "streamed: both lines filled"
finish
