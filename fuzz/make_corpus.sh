#!/usr/bin/env bash
# Regenerates the committed seed corpus fuzz/corpus/<target>/ (small files: hostile reproducers
# of issue 12 and minimal valid inputs). The test fixtures are added at run time by fuzz/run.sh.
#   fuzz/make_corpus.sh BUILD_DIR    (a build with tests: BUILD_DIR/tests/gen_hostile)
set -euo pipefail
gen=${1:?usage: fuzz/make_corpus.sh BUILD_DIR}/tests/gen_hostile
root=$(cd "$(dirname "$0")/.." && pwd)
c=$root/fuzz/corpus
rm -rf "$c"
mkdir -p "$c"/{pickle,haiku,zip,safetensors,config,image,masked}
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
for k in dag-pickle unbuilt-pickle small-shared-pickle torch-pickle; do "$gen" "$k" "$c/pickle/$k"; done
printf '\x80\x02}q\x00X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffM,\x01NG?\xf8\x00\x00\x00\x00\x00\x00es.' >"$c/pickle/basics"
printf '\x80\x02}q\x00X\x01\x00\x00\x00ah\x00s.' >"$c/pickle/self-reference"
# haiku: the first byte selects --architecture (0: detect, 1: MLM, ...) and bit 7 keeps Haiku names
for k in dag-pickle small-shared-pickle unbuilt-pickle; do "$gen" "$k" "$t/$k"; done
{ printf '\x00'; cat "$t/dag-pickle"; } >"$c/haiku/dag"
{ printf '\x01'; cat "$t/small-shared-pickle"; } >"$c/haiku/shared-mlm"
{ printf '\x81'; cat "$t/small-shared-pickle"; } >"$c/haiku/shared-names"
{ printf '\x00'; cat "$t/unbuilt-pickle"; } >"$c/haiku/unbuilt"
"$gen" torch-zip "$c/zip/torch"
"$gen" torch-zip-dd "$c/zip/torch-descriptor"
"$gen" ids-1 "$c/safetensors/ids"
printf '\x10\x00\x00\x00\x00\x00\x00\x00{"__metadata__":{}}' >"$c/safetensors/empty-header"
printf '{"architectures": ["PerceiverForMaskedLM"], "d_model": 48, "num_latents": 8, "d_latents": 32}' >"$c/config/mlm"
printf '{"num_blocks": 1000000, "num_self_attends_per_block": 26}' >"$c/config/blocks"
printf '{"id2label": {"0": "a", "1": "b"}, "num_labels": 2}' >"$c/config/labels"
"$gen" png-bomb "$t/bomb.png"
head -c 200 "$t/bomb.png" >"$c/image/png-bomb-head"
"$gen" jpeg-bomb:"$root/tests/fixtures/images/jpg_1x1.jpg" "$c/image/jpeg-bomb"
printf 'The capital of France is {Paris}.' >"$c/masked/brace"
printf 'a[MASK]b[MASK:3]c[MASK*2]\\[not\\]' >"$c/masked/forms"
printf '[MASK:65536][MASK:65536]' >"$c/masked/amplify"
printf '\xff\xfe{\xc3\xa9}[MASK' >"$c/masked/broken"
ls -R "$c" | head -40
