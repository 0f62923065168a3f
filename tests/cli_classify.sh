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

# ---- batches that survive a bad item: named, the rest classified in input order, exit 1 ----
I=$D/images
cp "$I/digit_3_1220.png" "$TMP/good.png"
head -c 100 "$I/digit_0_1167.png" >"$TMP/cut.png"
expect 1 'cut.png: .*truncated' -- "$BIN" classify -m "$D" --top 1 -b 2 "$I/digit_0_1167.png" "$TMP/cut.png" "$TMP/nothere.png" "$TMP/good.png"
check '[ "$(grep -vc "^ " "$TMP/out")" -eq 2 ] && [ "$(sed -n 1p "$TMP/out")" = "$I/digit_0_1167.png" ] && [ "$(sed -n 3p "$TMP/out")" = "$TMP/good.png" ]' "the good images around bad ones, in order"
check 'grep -q "nothere.png" "$TMP/err"' "a missing file is named"
expect 1 '' -- "$BIN" classify -m "$D" --json --top 1 "$TMP/cut.png" "$TMP/good.png"
check 'sed -n 1p "$TMP/out" | grep -q "^{\"image\":\"[^\"]*cut.png\",\"error\":\"" && sed -n 2p "$TMP/out" | grep -q "\"class\":3"' "--json: the error object in input order"

# ---- folders (sorted, -r for subfolders), '-' for standard input ----
mkdir -p "$TMP/dir/sub" && cp "$I/digit_2_499.png" "$TMP/dir/b.png" && cp "$I/digit_1_99.png" "$TMP/dir/a.PNG"
cp "$I/digit_7_888.png" "$TMP/dir/sub/c.png" && echo notes >"$TMP/dir/README.txt"
expect 0 '' -- "$BIN" classify -m "$D" --top 1 "$TMP/dir"
check '[ "$(grep -v "^ " "$TMP/out" | tr "\n" " ")" = "$TMP/dir/a.PNG $TMP/dir/b.png " ]' "a folder: its images in name order, not its subfolders"
expect 0 '' -- "$BIN" classify -m "$D" --top 1 -r "$TMP/dir"
check '[ "$(grep -vc "^ " "$TMP/out")" -eq 3 ] && grep -q "^$TMP/dir/sub/c.png$" "$TMP/out"' "-r: subfolders too"
mkdir -p "$TMP/empty"
expect 1 'no images' -- "$BIN" classify -m "$D" "$TMP/empty"
expect 0 '' -- "$BIN" classify -m "$D" --json --top 1 - <"$I/digit_9_159.png"
check 'grep -q "^{\"image\":\"-\",\"top\":\[{\"class\":9," "$TMP/out"' "'-': an image from standard input"

# ---- --threshold: the classes at or above P (all of them without --top) ----
expect 0 '' -- "$BIN" classify -m "$D" --json --threshold 0.000001 "$I/digit_8_148.png"
n1=$(grep -o '"probability":[-0-9.e]*' "$TMP/out" | wc -l)
check '[ "$n1" -ge 2 ] && [ "$n1" -lt 10 ] && ! grep -o "\"probability\":[-0-9.e]*" "$TMP/out" | cut -d: -f2 | awk "\$1 < 0.000001 {bad=1} END{exit !bad}"' "--threshold: every class at or above 1e-6, none below ($n1 listed)"
expect 0 '' -- "$BIN" classify -m "$D" --threshold 0.999999 "$I/digit_8_148.png"
check 'grep -q "(no class at or above 100.00%)" "$TMP/out"' "--threshold above every class: none listed"
expect 0 '' -- "$BIN" classify -m "$D" --threshold 0.0001 --top 1 --json "$I/digit_8_148.png"
check '[ "$(grep -o "\"class\"" "$TMP/out" | wc -l)" -eq 1 ]' "--top with --threshold: at most K"
expect 2 '--threshold needs a number from 0 to 1' -- "$BIN" classify -m "$D" --threshold 2 x.png

# ---- a file name that is not UTF-8: kept in --json (text with U+FFFD, and its bytes in hex) ----
bad_name=$(printf 'caf\351.png')
cp "$I/digit_5_1098.png" "$TMP/$bad_name"
expect 0 '' -- "$BIN" classify -m "$D" --json --top 1 "$TMP/$bad_name"
check 'grep -q "\"image\":\"[^\"]*caf$(printf "\357\277\275").png\",\"image_bytes\":\"[0-9a-f]*636166e92e706e67\",\"top\"" "$TMP/out"' "--json: a non-UTF-8 name with its bytes"

# ---- streaming: results come before the last input is even available (standard input, written
# only once 120 results are out); a FIFO among the files is refused at once, never waited on ----
mkdir -p "$TMP/many"
for i in $(seq -w 1 120); do ln -s "$I/digit_$((10#$i % 10))_"*.png "$TMP/many/$i.png" 2>/dev/null || cp "$I"/digit_$((10#$i % 10))_*.png "$TMP/many/$i.png"; done
mkfifo "$TMP/many/zz.png"
(for _ in $(seq 1 600); do [ -e "$TMP/go" ] && break; sleep 0.1; done; cat "$I/digit_4_380.png") |
  "$BIN" classify -q -m "$D" --top 1 -b 8 "$TMP/many" - >"$TMP/stream.out" 2>"$TMP/stream.err" &
pid=$!
for _ in $(seq 1 600); do [ "$(grep -vc "^ " "$TMP/stream.out" 2>/dev/null)" -ge 120 ] && break; sleep 0.1; done
early=$(grep -vc "^ " "$TMP/stream.out")
touch "$TMP/go"
rc=0; wait $pid || rc=$?
check '[ "$early" -eq 120 ]' "only $early of 120 images classified before standard input was written"
check '[ "$rc" -eq 1 ] && [ "$(grep -vc "^ " "$TMP/stream.out")" -eq 121 ] && [ "$(tail -2 "$TMP/stream.out" | head -1)" = "(standard input)" ]' "121 images classified (the last from standard input), exit 1 (rc $rc)"
check 'grep -q "zz.png.*not a regular file" "$TMP/stream.err"' "the FIFO is reported as not a regular file: $(cat "$TMP/stream.err")"
finish
