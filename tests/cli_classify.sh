# perceiver-cl classify against transformers' image-classification pipeline: photos turned
# upright by their EXIF orientation (tests/fixtures/exif, tools/make_exif_fixtures.py).
. "$(dirname "$0")/clilib.sh"
D=${PCV_SOURCE_DIR:?}/examples/digits
E=$FIX/exif

# json_num KEY: the first number after "KEY": in $TMP/out
json_num() { grep -o "\"$1\": *[-0-9.e+]*" "$TMP/out" | head -1 | sed 's/.*: *//'; }
# manifest value: the logit of class C in the list LIST ("upright_logits" or "stored_logits")
man_logit() { tr -d ' \n' <"$E/manifest.json" | grep -o "\"$1\":\[[^]]*\]" | tr -d '[]' | cut -d: -f2 | cut -d, -f$(($2 + 1)); }
TOLS=$(tr -d ' \n' <"$PCV_SOURCE_DIR/tests/tolerances.json" | grep -o '"image-demo":{"atol":[^,]*,"rtol":[^,]*')
ATOL=$(echo "$TOLS" | sed 's/.*"atol":\([^,]*\),.*/\1/')
RTOL=$(echo "$TOLS" | sed 's/.*"rtol":\(.*\)/\1/')
within() { awk -v a="$1" -v e="$2" -v at="$ATOL" -v rt="$RTOL" 'BEGIN { d = a - e; if (d < 0) d = -d; m = e < 0 ? -e : e; exit !(d <= at + rt * m) }'; }

# a 9 stored sideways (EXIF orientation 6): the pipeline says 9 at 99.9%; so must classify
expect 0 '' -- "$BIN" classify -m "$D" --json --top 1 "$E/digit9_o6.jpg"
check 'grep -q "\"class\": *9," "$TMP/out"' "EXIF orientation 6: class 9 like the transformers pipeline"
check 'within "$(json_num logit)" "$(man_logit upright_logits 9)"' "EXIF orientation 6: logit of 9 differs from transformers ($(json_num logit) vs $(man_logit upright_logits 9))"
# the same pixels as stored (the old behaviour, now behind --no-exif): another class
st=$(tr -d ' \n' <"$E/manifest.json" | grep -o '"stored_top":[0-9]*' | cut -d: -f2)
expect 0 '' -- "$BIN" classify -m "$D" --json --top 1 --no-exif "$E/digit9_o6.jpg"
check 'grep -q "\"class\": *$st," "$TMP/out"' "--no-exif: the stored pixels give class $st"
check 'within "$(json_num logit)" "$(man_logit stored_logits $st)"' "--no-exif: logit differs from transformers on the stored pixels"
finish
