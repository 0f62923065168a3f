# Bad input to perceiver-cl: each case must give a clear message naming the file, tensor or
# line, a nonzero exit, no crash, and no output file.
. "$(dirname "$0")/clilib.sh"
M=$FIX/mlm_heads_default
IN=$M/inputs.safetensors

# ---- usage ----
expect 0 '' -- "$BIN" --help
check 'grep -q "Usage: perceiver-cl" "$TMP/out"' "--help prints usage"
expect 0 '' -- "$BIN" --version
check 'grep -Eq "^perceiver-cl [0-9]+\.[0-9]+" "$TMP/out"' "--version prints a version"
expect 2 'unknown command' -- "$BIN" frobnicate
expect 2 'required' -- "$BIN" run --model "$M"
expect 2 'unknown option' -- "$BIN" run --bogus
expect 2 'needs a value' -- "$BIN" run --model
for c in run fill bench init-random; do expect 0 '' -- "$BIN" $c --help; done

# ---- model folder problems ----
expect 1 'nonexistent.*No such file' -- "$BIN" run -m "$TMP/nonexistent" -i "$IN" -o "$TMP/o.st"
mkdir -p "$TMP/noconfig" && cp "$M/model.safetensors" "$TMP/noconfig/"
expect 1 'noconfig/config.json' -- "$BIN" run -m "$TMP/noconfig" -i "$IN" -o "$TMP/o.st"
mkdir -p "$TMP/badjson" && cp "$M/model.safetensors" "$TMP/badjson/" && printf '{"d_model": 32,\n "num_latents": }' >"$TMP/badjson/config.json"
expect 1 'badjson/config.json.*line 2' -- "$BIN" run -m "$TMP/badjson" -i "$IN" -o "$TMP/o.st"
mkdir -p "$TMP/badtype" && cp "$M/model.safetensors" "$TMP/badtype/" && sed 's/"d_model": *[0-9]*/"d_model": "wide"/' "$M/config.json" >"$TMP/badtype/config.json"
expect 1 'd_model' -- "$BIN" run -m "$TMP/badtype" -i "$IN" -o "$TMP/o.st"
mkdir -p "$TMP/noarch" && cp "$M/model.safetensors" "$TMP/noarch/" && sed 's/PerceiverForMaskedLM/PerceiverForTimeTravel/' "$M/config.json" >"$TMP/noarch/config.json"
expect 1 "PerceiverForTimeTravel" -- "$BIN" run -m "$TMP/noarch" -i "$IN" -o "$TMP/o.st"
mkdir -p "$TMP/noweights" && cp "$M/config.json" "$TMP/noweights/"
expect 1 'noweights: no weights found.*model.safetensors' -- "$BIN" run -m "$TMP/noweights" -i "$IN" -o "$TMP/o.st"

# truncated and corrupted safetensors
mkdir -p "$TMP/trunc" && cp "$M/config.json" "$TMP/trunc/"
size=$(stat -c %s "$M/model.safetensors")
head -c $((size - 100)) "$M/model.safetensors" >"$TMP/trunc/model.safetensors"
expect 1 'trunc/model.safetensors' -- "$BIN" run -m "$TMP/trunc" -i "$IN" -o "$TMP/o.st"
head -c 5 "$M/model.safetensors" >"$TMP/trunc/model.safetensors"
expect 1 'trunc/model.safetensors' -- "$BIN" run -m "$TMP/trunc" -i "$IN" -o "$TMP/o.st"
mkdir -p "$TMP/garbage" && cp "$M/config.json" "$TMP/garbage/" && head -c 4096 /dev/urandom >"$TMP/garbage/model.safetensors"
expect 1 'garbage/model.safetensors' -- "$BIN" run -m "$TMP/garbage" -i "$IN" -o "$TMP/o.st"

# config and weights that disagree: the error names the tensor with both shapes
mkdir -p "$TMP/shape" && cp "$M/model.safetensors" "$TMP/shape/"
sed 's/"num_latents": *[0-9]*/"num_latents": 9/' "$M/config.json" >"$TMP/shape/config.json"
expect 1 "perceiver.embeddings.latents.*shape \[8,32\].*expected \[9,32\]" -- "$BIN" run -m "$TMP/shape" -i "$IN" -o "$TMP/o.st"
mkdir -p "$TMP/missing" && cp "$M/model.safetensors" "$TMP/missing/"
sed 's/"num_self_attends_per_block": *[0-9]*/"num_self_attends_per_block": 3/' "$M/config.json" >"$TMP/missing/config.json"
expect 1 "missing tensor 'perceiver.encoder.self_attends.2" -- "$BIN" run -m "$TMP/missing" -i "$IN" -o "$TMP/o.st"

# unknown dtype in the weights: a hand-made safetensors with one tensor of dtype "Q7"
mkdir -p "$TMP/dtype" && cp "$M/config.json" "$TMP/dtype/"
hdr='{"perceiver.embeddings.latents":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}'
printf "$(printf '\\x%02x' ${#hdr})\\x00\\x00\\x00\\x00\\x00\\x00\\x00%s\\x00\\x00\\x00\\x00" "$hdr" >"$TMP/dtype/model.safetensors"
expect 1 'Q7' -- "$BIN" run -m "$TMP/dtype" -i "$IN" -o "$TMP/o.st"

check '[ ! -e "$TMP/o.st" ]' "a failed run left an output file"

# ---- input problems ----
expect 1 'inputs.safetensors' -- "$BIN" run -m "$M" -i "$TMP/nothere/inputs.safetensors" -o "$TMP/o.st"
# not safetensors at all: said so, with what it is (no header length read out of a JPEG)
expect 1 'photo_china.jpg: not a safetensors file \(a JPEG image\).*classify' -- "$BIN" run -m "$M" -i "$FIX/images/photo_china.jpg" -o "$TMP/o.st"
expect 1 'not a safetensors file \(a pickle\)' -- "$BIN" run -m "$M" -i "$FIX/haiku_mlm/p4_np2_dict.pickle" -o "$TMP/o.st"
hdr='{"attention_mask":{"dtype":"I64","shape":[1,1],"data_offsets":[0,8]}}'
printf "$(printf '\\x%02x' ${#hdr})\\x00\\x00\\x00\\x00\\x00\\x00\\x00%s\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00" "$hdr" >"$TMP/nomask.st"
expect 1 "input_ids.*missing" -- "$BIN" run -m "$M" -i "$TMP/nomask.st" -o "$TMP/o.st"
hdr='{"input_ids":{"dtype":"I64","shape":[1,1],"data_offsets":[0,8]}}'
printf "$(printf '\\x%02x' ${#hdr})\\x00\\x00\\x00\\x00\\x00\\x00\\x00%s\\x06\\x01\\x00\\x00\\x00\\x00\\x00\\x00" "$hdr" >"$TMP/vocab.st"
expect 1 "outside the vocabulary" -- "$BIN" run -m "$M" -i "$TMP/vocab.st" -o "$TMP/o.st"
check '[ ! -e "$TMP/o.st" ]' "a failed run left an output file"
expect 1 'nodir' -- "$BIN" run -m "$M" -i "$IN" -o "$TMP/nodir/out.safetensors"
check '[ -z "$(ls "$TMP" | grep tmp)" ]' "a temporary file was left behind"

# ---- fill problems: a bad line is named, the good ones are still filled, exit status 1 ----
expect 1 'line 2: .*column' -- "$BIN" fill -m "$M" 'fine [MASK]' 'bad {unterminated'
check '[ "$(wc -l <"$TMP/out")" -eq 1 ]' "fill did not fill the good line beside a bad one"
expect 1 'line 1: .*does not fit|positions' -- "$BIN" fill -m "$M" "$(printf 'x%.0s' $(seq 1 40))[MASK]"
expect 1 'PerceiverForSequenceClassification' -- "$BIN" fill -m "$FIX/seqcls_basic" '[MASK]'
expect 1 'nofile.txt' -- "$BIN" fill -m "$M" -f "$TMP/nofile.txt"
expect 2 'no text given|not both' -- "$BIN" fill -m "$M" -f "$TMP/x" 'text'

# ---- classify problems: a clear error naming the file; the good images are still classified ----
D=${PCV_SOURCE_DIR:?}/examples/digits
expect 1 'classify needs an image classifier' -- "$BIN" classify -m "$M" "$D/images/digit_0_1167.png"
head -c 60 "$D/images/digit_0_1167.png" >"$TMP/cut.png"
expect 1 'cut.png' -- "$BIN" classify -m "$D" "$D/images/digit_0_1167.png" "$TMP/cut.png"
check '[ "$(grep -vc "^ " "$TMP/out")" -eq 1 ]' "classify did not classify the good image beside a bad one"
printf 'GIF89a' >"$TMP/x.gif"
expect 1 'x.gif.*GIF' -- "$BIN" classify -m "$D" "$TMP/x.gif"
expect 1 'nothere.png' -- "$BIN" classify -m "$D" "$TMP/nothere.png"
printf 'a\nb\n' >"$TMP/labels.txt"
expect 1 'labels.txt: 2 labels, but the model has 10 classes' -- "$BIN" classify -m "$D" --labels "$TMP/labels.txt" "$D/images/digit_0_1167.png"
expect 2 'at least one image' -- "$BIN" classify -m "$D"

# ---- devices ----
expect 1 "device 'gpu0'" -- "$BIN" run -m "$M" -i "$IN" -o "$TMP/o.st" --device gpu0

finish
