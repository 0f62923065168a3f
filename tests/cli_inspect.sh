# perceiver-cl inspect: format, tensors, parameter count, architecture and config of any
# checkpoint perceiver-cl reads; hostile files are refused by name.
. "$(dirname "$0")/clilib.sh"
H=$FIX/haiku_mlm

expect 0 '' -- "$BIN" inspect --help
expect 2 'required' -- "$BIN" inspect
expect 2 'unknown option' -- "$BIN" inspect --bogus x

expect 0 '' -- "$BIN" inspect "$H/p4_np2_dict.pickle"
check 'grep -q "format: *haiku-pickle" "$TMP/out"' "pickle format"
check 'grep -q "architecture: *PerceiverForMaskedLM" "$TMP/out"' "architecture detected"
check 'grep -q "numerics: *haiku" "$TMP/out"' "haiku numerics by default"
check 'grep -q "tensors: *73" "$TMP/out"' "tensor count"
check 'grep -q "parameters: *[0-9]" "$TMP/out"' "parameter count"
check 'grep -q "perceiver.encoder.self_attends.1.mlp.dense2.weight *F32 *\[32, 32\]" "$TMP/out"' "HF names listed"
check 'grep -q "num_latents x d_latents *8 x 32" "$TMP/out"' "config shown"

expect 0 '' -- "$BIN" inspect --haiku-names "$H/p2_np1_flatmapping.pickle"
check 'grep -q "perceiver_encoder/~/cross_attention/attention/linear/w *F32 *\[32, 16\]" "$TMP/out"' "Haiku names listed"
check 'grep -q "basic_decoder/cross_attention/attention/linear_1/w *F32 *\[32, 256\]" "$TMP/out"' "Haiku layout [in, out]"
check 'grep -q "perceiver.decoder.decoding_cross_attention.attention.self.key.weight *F32 *\[256, 32\]" "$TMP/out"' "HF layout [out, in]"

# a folder with only a pickle (no config.json): preset config sized from the tensors
mkdir -p "$TMP/dm" && cp "$H/p5_np1_dict.pickle" "$TMP/dm/language_perceiver_io_bytes.pickle"
expect 0 '' -- "$BIN" inspect -s "$TMP/dm"
check 'grep -q "built-in preset" "$TMP/out"' "preset config"

# --architecture is validated on every kind of checkpoint (it used to be printed as given)
expect 1 "unknown architecture 'foo'" -- "$BIN" inspect -a foo "$FIX/mlm_q_shape"
expect 1 'does not match the tensor names.*PerceiverForMaskedLM' -- "$BIN" inspect -a optical_flow "$FIX/mlm_q_shape"
expect 0 '' -- "$BIN" inspect -s -a PerceiverForMaskedLM "$FIX/mlm_q_shape"
check 'grep -q "architecture: *PerceiverForMaskedLM (--architecture)" "$TMP/out"' "inspect -a that agrees"
# the config beside a pickle is the one shown (and the one run and convert use)
expect 0 '' -- "$BIN" inspect -s "$H/p4_np2_dict.pickle"
check 'grep -q "config: *$H/config.json" "$TMP/out"' "inspect shows the config beside the pickle"

expect 0 '' -- "$BIN" inspect -s "$FIX/torch_mlm"
check 'grep -q "format: *pytorch-zip" "$TMP/out" && grep -q "numerics: *hf" "$TMP/out"' "torch zip"
expect 0 '' -- "$BIN" inspect -s "$FIX/torch_mlm_legacy/pytorch_model.bin"
check 'grep -q "format: *pytorch-legacy" "$TMP/out"' "torch legacy"
expect 0 '' -- "$BIN" inspect -s "$FIX/torch_sharded"
check 'grep -q "format: *safetensors, 3 shards" "$TMP/out"' "sharded safetensors"
expect 0 '' -- "$BIN" inspect -s "$FIX/mlm_q_shape/model.safetensors"
check 'grep -q "format: *safetensors" "$TMP/out"' "safetensors"

# sharded PyTorch checkpoint: an index over pytorch_model-00001-of-00001.bin, built from the
# tensor list that inspect prints; it must run exactly like the unsharded file
mkdir -p "$TMP/tsh" && cp "$FIX/torch_mlm/config.json" "$TMP/tsh/"
cp "$FIX/torch_mlm/pytorch_model.bin" "$TMP/tsh/pytorch_model-00001-of-00001.bin"
"$BIN" inspect "$FIX/torch_mlm" | awk '/^[0-9]+ +(perceiver|embedding)/ {printf "%s\"%s\": \"pytorch_model-00001-of-00001.bin\"", (n++ ? ", " : ""), $2}' >"$TMP/names"
printf '{"metadata": {}, "weight_map": {%s}}' "$(cat "$TMP/names")" >"$TMP/tsh/pytorch_model.bin.index.json"
expect 0 '' -- "$BIN" inspect -s "$TMP/tsh"
check 'grep -q "format: *pytorch-zip, 1 shard" "$TMP/out"' "sharded pytorch"
expect 0 '' -- "$BIN" run -m "$TMP/tsh" -i "$FIX/torch_mlm/inputs.safetensors" -o "$TMP/s1.st"
expect 0 '' -- "$BIN" run -m "$FIX/torch_mlm" -i "$FIX/torch_mlm/inputs.safetensors" -o "$TMP/s2.st"
check 'cmp -s "$TMP/s1.st" "$TMP/s2.st"' "sharded and unsharded torch differ"
# an index naming a tensor that is not in its shard, or a shard outside the folder
sed 's/"embedding_decoder.bias"/"embedding_decoder.nothere"/' "$TMP/tsh/pytorch_model.bin.index.json" >"$TMP/i.json"
cp "$TMP/i.json" "$TMP/tsh/pytorch_model.bin.index.json"
expect 1 "embedding_decoder.bias.*not listed in the index" -- "$BIN" inspect -s "$TMP/tsh"
printf '{"weight_map": {"a": "../x.bin"}}' >"$TMP/tsh/pytorch_model.bin.index.json"
expect 1 'not a plain file name' -- "$BIN" inspect -s "$TMP/tsh"

rm -f /tmp/perceiver-cl-pwned-by-pickle
for f in "$FIX"/haiku_hostile/*.pickle "$FIX/haiku_hostile/pytorch_model.bin"; do
  expect 1 "$(basename "$f").*(posix.system|eval).*not allowed" -- "$BIN" inspect "$f"
done
check '[ ! -e /tmp/perceiver-cl-pwned-by-pickle ]' "a pickle ran a command"
expect 1 'nothere' -- "$BIN" inspect "$TMP/nothere"
head -c 1000 "$H/p4_np2_dict.pickle" >"$TMP/trunc.pickle"
expect 1 'trunc.pickle: pickle byte [0-9]+' -- "$BIN" inspect "$TMP/trunc.pickle"
printf 'hello' >"$TMP/junk.dat"
expect 1 'junk.dat: not a recognised checkpoint' -- "$BIN" inspect "$TMP/junk.dat"
finish
