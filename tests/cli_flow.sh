# perceiver-cl flow: frame pairs, sequences, folders and videos in; .flo, colour PNG,
# safetensors, a flow video and JSON out; clear errors for bad frames. The numbers themselves
# are checked against transformers / DeepMind in test_flow.c; here the same results must come
# out of every input path and land in the right files.
. "$(dirname "$0")/clilib.sh"
F=$FIX/flow_tiles
M=$F/model
A=$F/a_larger
D=$F/d_sequence

expect 0 '' -- "$BIN" flow --help
check 'grep -q "FLOW_SCALE_FACTOR" "$TMP/out"' "help explains the units"
expect 2 'give --model' -- "$BIN" flow "$A/frame1.png" "$A/frame2.png"
expect 2 'nothing to write' -- "$BIN" flow -m "$M" "$A/frame1.png" "$A/frame2.png"

# one pair: .flo equal (within the fixture tolerance) to the reference, PNG, JSON summary
expect 0 '' -- "$BIN" flow -m "$M" "$A/frame1.png" "$A/frame2.png" -o "$TMP/a.flo" --png "$TMP/a.png" --json
check '[ "$(head -c 4 "$TMP/a.flo" | od -An -tf4 | tr -d " ")" = "202021" ] || [ "$(head -c 4 "$TMP/a.flo" | od -An -tf4 | tr -d " ")" = "202021.25" ]' ".flo magic"
check '[ "$(stat -c %s "$TMP/a.flo")" = "$(stat -c %s "$A/expected.flo")" ]' ".flo size"
check 'head -c 8 "$TMP/a.png" | od -An -c | grep -q "P   N   G"' "PNG written"
check 'grep -q "\"tiles\":9" "$TMP/out" && grep -q "\"max_magnitude\"" "$TMP/out"' "JSON summary"
cp "$TMP/a.flo" "$TMP/pair.flo"

# a sequence of 3 frames: numbered outputs in folders, and every pair's flow in one file
expect 0 '' -- "$BIN" flow -m "$M" "$D/frame1.png" "$D/frame2.png" "$D/frame3.png" -o "$TMP/seq" --png "$TMP/seqpng" --safetensors "$TMP/seq.st" -q
check '[ -f "$TMP/seq/flow_0001.flo" ] && [ -f "$TMP/seq/flow_0002.flo" ] && [ ! -e "$TMP/seq/flow_0003.flo" ]' "numbered .flo files"
check '[ -f "$TMP/seqpng/flow_0001.png" ] && [ -f "$TMP/seqpng/flow_0002.png" ]' "numbered PNG files"
# the same frames as a folder
mkdir -p "$TMP/frames" && cp "$D"/frame*.png "$TMP/frames/"
expect 0 '' -- "$BIN" flow -m "$M" "$TMP/frames" -o "$TMP/seq2" -q
check 'cmp -s "$TMP/seq/flow_0002.flo" "$TMP/seq2/flow_0002.flo"' "folder input differs from a frame list"

# a video (lossless, so its frames are the PNGs bit for bit): the same flow as the frames
if command -v ffmpeg >/dev/null && "$BIN" --version >/dev/null && "$BIN" flow --help | grep -q VIDEO; then
  ffmpeg -loglevel error -y -framerate 5 -i "$D/frame%d.png" -c:v png "$TMP/seq.mkv"
  expect 0 '' -- "$BIN" flow -m "$M" "$TMP/seq.mkv" -o "$TMP/vid" --video-out "$TMP/flow.mp4" -q
  check 'cmp -s "$TMP/seq/flow_0001.flo" "$TMP/vid/flow_0001.flo" && cmp -s "$TMP/seq/flow_0002.flo" "$TMP/vid/flow_0002.flo"' "video input differs from its frames"
  check '[ -s "$TMP/flow.mp4" ] && ffprobe -loglevel error -count_frames -show_entries stream=nb_read_frames -of csv=p=0 "$TMP/flow.mp4" | grep -qx 2' "flow video with 2 frames"
  expect 0 '' -- "$BIN" flow -m "$M" "$TMP/seq.mkv" --max-frames 2 -o "$TMP/vid2" -q
  check '[ -f "$TMP/vid2/flow_0001.flo" ] && [ ! -e "$TMP/vid2/flow_0002.flo" ]' "--max-frames"
  printf 'not a video' >"$TMP/bad.mp4"
  expect 1 'bad.mp4' -- "$BIN" flow -m "$M" "$TMP/bad.mp4" -o "$TMP/x.flo"
else
  bad "no ffmpeg or no video support in this build: the video tests did not run"
fi

# bad input: clear errors naming the frames, exit 1, no output
expect 1 'frame2.png is 111x77 but .*frame1.png is 80x50' -- "$BIN" flow -m "$M" "$D/frame1.png" "$A/frame2.png" -o "$TMP/e1.flo"
check '[ ! -e "$TMP/e1.flo" ]' "no output after an error"
S=$FIX/digits/heldout/1002_0.png # an 8x8 image, smaller than the 64x48 tile
expect 1 'smaller than the model.s 64x48 tile.*--pad' -- "$BIN" flow -m "$M" "$S" "$S" -o "$TMP/e2.flo"
expect 0 '' -- "$BIN" flow -m "$M" --pad "$S" "$S" -o "$TMP/pad.flo"
check '[ "$(stat -c %s "$TMP/pad.flo")" -eq $((12 + 8 * 8 * 8)) ]' "--pad keeps the frame size (8x8)"
printf 'garbage' >"$TMP/broken.png"
expect 1 'broken.png' -- "$BIN" flow -m "$M" "$A/frame1.png" "$TMP/broken.png" -o "$TMP/e3.flo"
expect 1 'needs a PerceiverForOpticalFlow model' -- "$BIN" flow -m "$FIX/image_fourier" "$A/frame1.png" "$A/frame2.png" -o "$TMP/e4.flo"
expect 1 'nothere.png' -- "$BIN" flow -m "$M" "$TMP/frames/frame1.png" "$TMP/nothere.png" -o "$TMP/e5.flo"
expect 1 'one image' -- "$BIN" flow -m "$M" "$TMP/frames/frame1.png" -o "$TMP/e6.flo"
finish
