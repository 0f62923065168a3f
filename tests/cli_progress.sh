# Progress on long work: one line redrawn on standard error when it is a terminal (kernel
# compilation, weight loading, forward passes, batches), nothing when it is not, nothing with
# --quiet; PoCL's compiler warnings never reach standard error.
. "$(dirname "$0")/clilib.sh"
D=${PCV_SOURCE_DIR:?}/examples/digits
M=$FIX/mlm_heads_default

# not a terminal: plain lines only (no carriage return, no escape sequence)
expect 0 '' -- "$BIN" classify -m "$D" "$D/images"
check '! grep -q "$(printf "\r")" "$TMP/err" && ! grep -q "$(printf "\033")" "$TMP/err"' "progress written to a file"
expect 0 '' -- "$BIN" fill -m "$PCV_SOURCE_DIR/examples/tiny-mlm" -f "$PCV_SOURCE_DIR/examples/tiny-mlm/examples.txt"
check '! grep -q "$(printf "\r")" "$TMP/err"' "fill: progress written to a file"

# a terminal (script(1) runs the command on a pseudo-terminal)
if command -v script >/dev/null; then
  script -qec "'$BIN' classify -m '$D' -b 2 '$D/images' >/dev/null" /dev/null >"$TMP/tty" 2>&1
  check 'grep -q "$(printf "\r\033\\[K")classify [0-9]*/10 images" "$TMP/tty"' "no classify progress line on a terminal"
  check 'grep -q "loading weights 100%" "$TMP/tty"' "no weight-loading progress on a terminal"
  check 'grep -Eq "forward [0-9]+/[0-9]+" "$TMP/tty"' "no forward progress on a terminal"
  check '[ "$(tail -c 4 "$TMP/tty" | od -An -tx1 | tr -d " \n")" = "0d1b5b4b" ]' "the progress line is not erased at the end"
  script -qec "'$BIN' classify -q -m '$D' '$D/images' >/dev/null" /dev/null >"$TMP/tty" 2>&1
  check '! grep -q "$(printf "\r")" "$TMP/tty" && [ ! -s "$TMP/tty" ]' "--quiet still shows progress"
  script -qec "'$BIN' fill -m '$PCV_SOURCE_DIR/examples/tiny-mlm' -f '$PCV_SOURCE_DIR/examples/tiny-mlm/examples.txt' >/dev/null" /dev/null >"$TMP/tty" 2>&1
  check 'grep -q "fill: [0-9]* lines* done" "$TMP/tty"' "no fill progress on a terminal"
else
  echo "cli_progress: script(1) not found: terminal checks skipped"
fi

# first use of OpenCL kernels on PoCL: compiled (a progress line on a terminal), and PoCL's
# clang warnings ("N warnings generated.") do not leak to standard error
if "$BIN" devices | grep -q "Portable Computing Language"; then
  mkdir -p "$TMP/pocl"
  if command -v script >/dev/null; then
    script -qec "POCL_CACHE_DIR='$TMP/pocl' PERCEIVER_KERNEL_CACHE=0 '$BIN' run -d 0 -m '$M' -i '$M/inputs.safetensors' -o '$TMP/o.st'" /dev/null >"$TMP/tty" 2>&1
    check 'grep -q "compiling OpenCL kernels (cl/[a-z]*.cl)" "$TMP/tty"' "no progress while compiling kernels"
    check '! grep -q "warnings* generated" "$TMP/tty"' "PoCL's compiler warnings reached the terminal"
  else
    expect 0 '' -- env POCL_CACHE_DIR="$TMP/pocl" PERCEIVER_KERNEL_CACHE=0 "$BIN" run -d 0 -m "$M" -i "$M/inputs.safetensors" -o "$TMP/o.st"
    check '! grep -q "warnings* generated" "$TMP/err"' "PoCL's compiler warnings reached stderr: $(grep -m1 generated "$TMP/err")"
  fi
fi
finish
