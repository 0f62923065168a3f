# perceiver-cl autoencode end to end on a tiny clip (tests/fixtures/autoencode, made by
# tools/make_autoencode_fixture.py) with DeepMind's own tiny video autoencoder
# (tests/fixtures/haiku_multimodal): two 44x31 PNG frames + a stereo 16-bit WAV, and the same
# clip as a lossless .mkv with its audio, must give the colab's result: the preprocessed inputs
# bit for bit, the frames as the colab's to_gif truncation of DeepMind's chunk-loop reconstruction,
# the audio after 16-bit rounding and the top-5 classes (check_autoencode, which allows a
# difference of 1 only where the reference is within float32 noise of the boundary: the
# autoencode-boundary profile); under --numerics hf the same against transformers. Then the
# options and the errors.
. "$(dirname "$0")/clilib.sh"
F=$FIX/autoencode
M=$FIX/haiku_multimodal
CHK=${PCV_CHECK_AUTOENCODE:?PCV_CHECK_AUTOENCODE must point to check_autoencode}
FR="$F/frame_0.png $F/frame_1.png"
RATE=1200 # 25 x audio_samples_per_frame (48)

compare() { # compare PREFIX OUTDIR: check_autoencode's verdict, its report kept in $TMP/cmp
  [ ! -f "$2.inputs" ] || mv "$2.inputs" "$2/inputs.safetensors"
  if "$CHK" "$F/expected.safetensors" "$1" "$2" "$RATE" >"$TMP/cmp" 2>&1; then return 0; fi
  [ "${3:-}" = quiet ] || sed 's/^/    /' "$TMP/cmp" >&2
  return 1
}

expect 0 '' -- "$BIN" autoencode --help
check 'grep -q "INTER_LINEAR" "$TMP/out" && grep -q "to_gif" "$TMP/out"' "help names the interpolation and the truncation"

# frames + WAV, DeepMind's pickle (haiku numerics): the colab's result
# shellcheck disable=SC2086
expect 0 '' -- "$BIN" autoencode -m "$M" --frames $FR --audio "$F/audio.wav" -o "$TMP/a" --save-inputs "$TMP/a.inputs" --json
check 'compare haiku "$TMP/a"' "frames + WAV differ from DeepMind's colab"
grep -E '^(frames|audio|inputs|classes):' "$TMP/cmp" | sed 's/^/  haiku, frames + WAV: /'
check 'grep -q "\"top\":\[{\"class\":1,.*{\"class\":4,.*{\"class\":3,.*{\"class\":2,.*{\"class\":0," "$TMP/out"' "JSON top-5 order"
check '[ -f "$TMP/a/frame_00.png" ] && [ -f "$TMP/a/frame_01.png" ] && [ ! -e "$TMP/a/frame_02.png" ]' "one PNG per model frame"

# the decoder chunk size changes nothing beyond float32 noise (BLIS picks other kernels for
# other row counts: measured, one audio sample of 96 moves by 1 at --chunk 7, 100 or 1; its
# reference lies 0.094 steps from the rounding boundary)
# shellcheck disable=SC2086
expect 0 '' -- "$BIN" autoencode -m "$M" --frames $FR --audio "$F/audio.wav" -o "$TMP/a7" --chunk 7
check 'compare haiku "$TMP/a7"' "--chunk 7 differs from DeepMind's colab"
check 'cmp -s "$TMP/a/frame_00.png" "$TMP/a7/frame_00.png" && cmp -s "$TMP/a/frame_01.png" "$TMP/a7/frame_01.png"' "--chunk 7 changes the frames"

# transformers' numerics on the same weights
# shellcheck disable=SC2086
expect 0 '' -- "$BIN" autoencode -m "$M" --numerics hf --frames $FR --audio "$F/audio.wav" -o "$TMP/h" --save-inputs "$TMP/h.inputs"
check 'compare hf "$TMP/h"' "--numerics hf differs from transformers"
grep -E '^(frames|audio):' "$TMP/cmp" | sed 's/^/  hf, frames + WAV: /'
# ... and the checker tells the two apart (DeepMind's numerics are not transformers')
check '! compare hf "$TMP/a" quiet' "check_autoencode accepts the haiku output as transformers'"

# the same clip as a video (PNG codec + pcm_s16le in Matroska): the same inputs, the same files
if "$BIN" autoencode --help | grep -q 'videos need FFmpeg' && "$BIN" flow --help | grep -q VIDEO; then
  expect 0 '' -- "$BIN" autoencode -m "$M" "$F/clip.mkv" -o "$TMP/v" --save-inputs "$TMP/v.inputs" --video "$TMP/side.mkv"
  check 'compare haiku "$TMP/v"' "clip.mkv differs from DeepMind's colab"
  check 'cmp -s "$TMP/a/frame_00.png" "$TMP/v/frame_00.png" && cmp -s "$TMP/a/frame_01.png" "$TMP/v/frame_01.png" && cmp -s "$TMP/a/audio.wav" "$TMP/v/audio.wav"' "clip.mkv gives other files than its frames + WAV"
  if command -v ffprobe >/dev/null; then
    check '[ "$(ffprobe -loglevel error -count_frames -show_entries stream=nb_read_frames,width,height -of csv=p=0 "$TMP/side.mkv")" = "32,16,2" ]' "side-by-side video: 2 frames of 32x16"
  fi
  # an ordinary lossy video (H.264, YUV 4:2:0): the frames cv2.VideoCapture decodes, prepared
  # like the colab, bit for bit (OpenCV's YUV -> RGB conversion, not a more accurate one)
  expect 0 '' -- "$BIN" autoencode -m "$M" "$F/clip_yuv.mkv" -o "$TMP/y" --save-inputs "$TMP/y.inputs"
  check 'compare inputs:yuv "$TMP/y"' "clip_yuv.mkv: other inputs than cv2.VideoCapture + the colab's preparation"
  # a track that is there is used even with --no-audio
  expect 0 '' -- "$BIN" autoencode -m "$M" "$F/clip.mkv" -o "$TMP/vn" --no-audio
  check 'cmp -s "$TMP/v/audio.wav" "$TMP/vn/audio.wav"' "--no-audio dropped the clip's audio track"
  if command -v ffmpeg >/dev/null; then
    ffmpeg -loglevel error -y -i "$F/clip.mkv" -map 0:v -c copy "$TMP/mute.mkv"
    ffmpeg -loglevel error -y -i "$F/clip.mkv" -frames:v 1 -c copy "$TMP/one.mkv"
    expect 1 'mute.mkv.*no audio stream' -- "$BIN" autoencode -m "$M" "$TMP/mute.mkv" -o "$TMP/e1"
    expect 0 '' -- "$BIN" autoencode -m "$M" "$TMP/mute.mkv" -o "$TMP/mute" --no-audio
    check '[ "$(stat -c %s "$TMP/mute/audio.wav")" -eq $((44 + 2 * 96)) ] && [ -f "$TMP/mute/frame_01.png" ]' "mute clip with --no-audio: outputs"
    expect 1 'one.mkv: 1 frames; the model takes 2' -- "$BIN" autoencode -m "$M" "$TMP/one.mkv" -o "$TMP/e2"
  else
    bad "no ffmpeg command: the mute / one-frame video cases did not run"
  fi
else
  bad "this build has no video support: the .mkv cases did not run"
fi

# --no-audio without --audio: silence in, frames still decoded
# shellcheck disable=SC2086
expect 0 '' -- "$BIN" autoencode -m "$M" --frames $FR --no-audio -o "$TMP/s"
check '[ -f "$TMP/s/frame_01.png" ] && [ "$(stat -c %s "$TMP/s/audio.wav")" -eq $((44 + 2 * 96)) ]' "--no-audio outputs"

# errors: exit 1 with a message naming the problem, or 2 for usage
# shellcheck disable=SC2086
expect 1 '--frames: 3 files, but the model takes 2 frames' -- "$BIN" autoencode -m "$M" --frames $FR "$F/frame_2.png" --audio "$F/audio.wav" -o "$TMP/e3"
expect 1 '--frames: 1 files, but the model takes 2' -- "$BIN" autoencode -m "$M" --frames "$F/frame_0.png" --audio "$F/audio.wav" -o "$TMP/e4"
# shellcheck disable=SC2086
expect 1 'short.wav: 50 audio samples at 1200 Hz; the model takes 96 \(pass --no-audio' -- "$BIN" autoencode -m "$M" --frames $FR --audio "$F/short.wav" -o "$TMP/e5"
# shellcheck disable=SC2086
expect 1 'short.wav: 50 audio samples' -- "$BIN" autoencode -m "$M" --frames $FR --audio "$F/short.wav" --no-audio -o "$TMP/e6"
# shellcheck disable=SC2086
expect 1 'needs a PerceiverForMultimodalAutoencoding model, this is PerceiverForImageClassificationFourier' -- "$BIN" autoencode -m "$FIX/image_fourier" --frames $FR --audio "$F/audio.wav" -o "$TMP/e7"
# shellcheck disable=SC2086
expect 2 'give --model, -o OUTDIR' -- "$BIN" autoencode -m "$M" --frames $FR --audio "$F/audio.wav"
# shellcheck disable=SC2086
expect 2 'give --model, -o OUTDIR' -- "$BIN" autoencode -m "$M" --frames $FR -o "$TMP/e8"
expect 2 'give --model, -o OUTDIR' -- "$BIN" autoencode -m "$M" "$F/clip.mkv" --audio "$F/audio.wav" -o "$TMP/e9"
expect 2 "unknown option '--bogus'" -- "$BIN" autoencode -m "$M" "$F/clip.mkv" --bogus -o "$TMP/e10"
expect 1 'nothere.png' -- "$BIN" autoencode -m "$M" --frames "$F/frame_0.png" "$TMP/nothere.png" --audio "$F/audio.wav" -o "$TMP/e11"
# shellcheck disable=SC2086
expect 1 'nothere.wav' -- "$BIN" autoencode -m "$M" --frames $FR --audio "$TMP/nothere.wav" -o "$TMP/e12"
# shellcheck disable=SC2086
expect 1 'fixture.json: [0-9]+ labels, but the model has 5 classes' -- "$BIN" autoencode -m "$M" --frames $FR --audio "$F/audio.wav" --labels "$F/fixture.json" -o "$TMP/e13"
check '[ -z "$(find "$TMP" -maxdepth 1 -name "e[0-9]*")" ]' "an output folder was left after an error: $(find "$TMP" -maxdepth 1 -name "e[0-9]*")"
finish
