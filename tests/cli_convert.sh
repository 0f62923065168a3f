# perceiver-cl convert: DeepMind pickle -> Hugging Face folder (config.json + model.safetensors),
# atomically; the converted folder must run exactly like the pickle (hf numerics).
. "$(dirname "$0")/clilib.sh"
H=$FIX/haiku_mlm
P=$H/p2_np2_flatmapping.pickle

expect 0 '' -- "$BIN" convert --help
check 'grep -q "pytorch_dump_folder_path" "$TMP/out"' "convert --help lists the original flags"
expect 2 'required' -- "$BIN" convert --pickle_file "$P"
expect 2 'unknown option' -- "$BIN" convert --bogus

# the original script's flags
# (--config: the tiny model's heads cannot be read from its weights; the config.json beside it says them)
expect 0 '' -- "$BIN" convert --pickle_file "$P" --pytorch_dump_folder_path "$TMP/hf" --architecture MLM --config "$H/config.json"
check '[ -f "$TMP/hf/model.safetensors" ] && [ -f "$TMP/hf/config.json" ]' "convert wrote the folder"
check 'grep -q PerceiverForMaskedLM "$TMP/hf/config.json"' "config.json names the architecture"
check '[ -z "$(ls "$TMP" | grep partial)" ]' "no temporary folder left"
# the folder runs like the pickle (same engine, same numerics: identical bytes)
expect 0 '' -- "$BIN" run -m "$TMP/hf" -i "$H/inputs.safetensors" -o "$TMP/a.st"
expect 0 '' -- "$BIN" run -m "$P" --numerics hf -i "$H/inputs.safetensors" -o "$TMP/b.st"
check 'cmp -s "$TMP/a.st" "$TMP/b.st"' "converted folder and pickle give different outputs"
# the HF folder defaults to hf numerics, the pickle to haiku
expect 0 '' -- "$BIN" run -m "$P" -i "$H/inputs.safetensors" -o "$TMP/c.st"
check '! cmp -s "$TMP/a.st" "$TMP/c.st"' "a pickle should default to the haiku numerics"
expect 0 '' -- "$BIN" run -m "$P" --numerics haiku -i "$H/inputs.safetensors" -o "$TMP/d.st"
check 'cmp -s "$TMP/c.st" "$TMP/d.st"' "default numerics of a pickle is haiku"

# short flags, architecture detected, every pickle variant converts to the same weights
for p in "$H"/*.pickle; do
  rm -rf "$TMP/v"
  expect 0 '' -- "$BIN" convert -i "$p" -o "$TMP/v" -c "$H/config.json"
  check 'cmp -s "$TMP/v/model.safetensors" "$TMP/hf/model.safetensors"' "$(basename "$p") converts differently"
done

# converting into an existing folder replaces the two files
echo stale >"$TMP/v/config.json"
expect 0 '' -- "$BIN" convert -i "$P" -o "$TMP/v/"
check 'grep -q PerceiverForMaskedLM "$TMP/v/config.json"' "existing folder updated"
# without --config: the config.json beside the pickle, the one run and inspect use, so that the
# folder computes what the pickle computes (the preset's 8/8 heads and 1 block were 4.0 off)
check 'grep -q "config from $H/config.json" "$TMP/out"' "convert names the config.json beside the pickle"
check 'grep -q "\"num_self_attention_heads\": 4" "$TMP/v/config.json"' "without --config: the config.json beside the pickle"
expect 0 '' -- "$BIN" run -m "$TMP/v" -i "$H/inputs.safetensors" -o "$TMP/v.st"
check 'cmp -s "$TMP/v.st" "$TMP/b.st"' "converted folder (config beside the pickle) differs from the pickle run"
# a pickle alone: the built-in preset sized from the tensors, and convert says so
mkdir -p "$TMP/alone" && cp "$P" "$TMP/alone/"
expect 0 '' -- "$BIN" convert -i "$TMP/alone/$(basename "$P")" -o "$TMP/w"
check 'grep -q "config from the built-in preset" "$TMP/out"' "convert says the preset was used"
check 'grep -q "\"num_self_attention_heads\": 8" "$TMP/w/config.json"' "a pickle alone: the preset's heads"

# --architecture is checked on every kind of checkpoint, never silently ignored
expect 1 'does not match the tensor names.*PerceiverForMaskedLM' -- "$BIN" convert -i "$FIX/torch_mlm" -o "$TMP/y" -a image_classification
expect 1 "unknown architecture 'foo'" -- "$BIN" convert -i "$FIX/seqcls_basic" -o "$TMP/y" -a foo
check '[ ! -e "$TMP/y" ]' "failed convert left a folder"
expect 0 '' -- "$BIN" convert -i "$FIX/torch_mlm" -o "$TMP/y" -a MLM

# pytorch_model.bin -> safetensors
expect 0 '' -- "$BIN" convert -i "$FIX/torch_mlm" -o "$TMP/fromtorch"
expect 0 '' -- "$BIN" run -m "$TMP/fromtorch" -i "$H/inputs.safetensors" -o "$TMP/e.st"
check 'cmp -s "$TMP/a.st" "$TMP/e.st"' "torch_mlm converted differs from the pickle conversion"

# labels: text file, JSON list; wrong count refused (a classifier with 5 labels)
printf 'one\ntwo\nthree\nfour\nfive\n' >"$TMP/labels.txt"
expect 0 '' -- "$BIN" convert -i "$FIX/seqcls_basic" -o "$TMP/cls" --labels "$TMP/labels.txt"
check 'grep -q "\"4\": \"five\"" "$TMP/cls/config.json"' "id2label written"
printf '["a","b","c","d","e"]' >"$TMP/labels.json"
expect 0 '' -- "$BIN" convert -i "$FIX/seqcls_basic" -o "$TMP/cls2" -l "$TMP/labels.json"
check 'grep -q "\"label2id\"" "$TMP/cls2/config.json"' "label2id written"
printf 'a\nb\n' >"$TMP/two.txt"
expect 1 'two.txt: 2 labels, but the classifier has 5' -- "$BIN" convert -i "$FIX/seqcls_basic" -o "$TMP/cls3" -l "$TMP/two.txt"
check '[ ! -e "$TMP/cls3" ]' "failed convert left a folder"

# failures leave nothing behind
rm -f /tmp/perceiver-cl-pwned-by-pickle
expect 1 'posix.system.*not allowed' -- "$BIN" convert -i "$FIX/haiku_hostile/os_system_p2.pickle" -o "$TMP/evil"
check '[ ! -e "$TMP/evil" ] && [ -z "$(ls "$TMP" | grep partial)" ]' "hostile convert left files"
check '[ ! -e /tmp/perceiver-cl-pwned-by-pickle ]' "a pickle ran a command"
expect 1 "unknown architecture 'vision'" -- "$BIN" convert -i "$P" -o "$TMP/x" -a vision
expect 1 'does not match the parameter names.*PerceiverForMaskedLM' -- "$BIN" convert -i "$P" -o "$TMP/x" -a optical_flow
check '[ ! -e "$TMP/x" ]' "failed convert left a folder"
expect 1 'nonexistent' -- "$BIN" convert -i "$TMP/nonexistent.pickle" -o "$TMP/x"
expect 1 'nodir' -- "$BIN" convert -i "$P" -o "$TMP/nodir/sub/out"
finish
