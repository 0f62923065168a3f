# Several devices and MPI ranks (src/cli/dispatch.h): classify, fill and flow with --device 0,1,
# --device all and under mpirun -n 2 write the same bytes as one device; a device listed twice,
# an unknown device in a list and standard input under mpirun are refused with clear messages;
# bench -d 0,1 reports each device's throughput and the total.
#
# Devices 0 and 1 are two PoCL devices (POCL_DEVICES="pthread pthread", rusticl off), so that
# every device computes the same bits. The mpirun checks are skipped (a SKIP line) only for a
# binary built without MPI, and fail instead when PCV_REQUIRE_MPI=1 (CI, .ci/run).
. "$(dirname "$0")/clilib.sh"
export POCL_DEVICES="pthread pthread"
unset RUSTICL_ENABLE
SRC=${PCV_SOURCE_DIR:?}
DG=$SRC/examples/digits
TM=$SRC/examples/tiny-mlm
FT=$FIX/flow_tiles
SEQ=$FT/d_sequence

# two PoCL devices, numbered 0 and 1?
require_devices 2 "$("$BIN" devices 2>/dev/null | grep -c 'platform *Portable Computing Language')" \
  "the checks of several PoCL devices (POCL_DEVICES='pthread pthread')"

# run_in NAME ARGS...: runs the command in $TMP/NAME (relative output paths, so that --json's
# file names are equal too), standard output in $TMP/NAME.out, its exit status in $rc
run_in() {
  local name=$1
  shift
  rm -rf "${TMP:?}/$name" && mkdir -p "$TMP/$name"
  (cd "$TMP/$name" && "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null)
  rc=$?
}
# same A B: every output file and standard output of run A equal those of run B; flow's JSON
# times ("seconds") are dropped first
same() {
  local a=$TMP/$1 b=$TMP/$2
  sed -i 's/"seconds":[0-9.e+-]*,//' "$a.out" "$b.out"
  cmp -s "$a.out" "$b.out" && [ -s "$a.out" ] && diff -r -q "$a" "$b" >/dev/null
}

# ---- one process: --device 0 / 0,1 / all --------------------------------------------------
CLS=(classify -m "$DG" -b 2 --json "$DG/images")
FILL=(fill -m "$TM" -b 2 -f "$TM/examples.txt")
FLOW=(flow -m "$FT/model" "$SEQ/frame1.png" "$SEQ/frame2.png" "$SEQ/frame3.png" -o flo --png png --safetensors flow.st --json)
for t in CLS FILL FLOW; do
  declare -n cmd=$t
  run_in "$t-0" "$BIN" "${cmd[@]}" -d 0
  check '[ $rc -eq 0 ]' "$t --device 0 failed: $(head -3 "$TMP/$t-0.err")"
  run_in "$t-01" "$BIN" "${cmd[@]}" -d 0,1
  check '[ $rc -eq 0 ] && grep -q "OpenCL device 0: .* and OpenCL device 1: " "$TMP/$t-01.err"' "$t --device 0,1 failed or did not use both devices: $(head -3 "$TMP/$t-01.err")"
  check 'same "$t-0" "$t-01"' "$t: --device 0,1 differs from --device 0"
  run_in "$t-all" "$BIN" "${cmd[@]}" -d all
  check '[ $rc -eq 0 ] && same "$t-0" "$t-all"' "$t: --device all differs from --device 0"
  unset -n cmd
done
check '[ "$(ls "$TMP/FLOW-01/flo")" = "$(printf "flow_0001.flo\nflow_0002.flo")" ] && [ -s "$TMP/FLOW-01/flow.st" ]' "flow -d 0,1: not every output written"

# a video (decoded in order by the input thread): the flow of its frames, as from the files
VIDEO=0
if command -v ffmpeg >/dev/null && "$BIN" flow --help | grep -q VIDEO; then
  VIDEO=1
  ffmpeg -loglevel error -y -framerate 5 -i "$SEQ/frame%d.png" -c:v png "$TMP/seq.mkv"
  run_in VID-01 "$BIN" flow -m "$FT/model" -d 0,1 "$TMP/seq.mkv" -o flo -q
  check '[ $rc -eq 0 ] && diff -r -q "$TMP/VID-01/flo" "$TMP/FLOW-0/flo" >/dev/null' "flow -d 0,1 of a video differs from its frames on --device 0"
fi
# several devices on a terminal: a progress line of the pairs done
if command -v script >/dev/null; then
  script -qec "'$BIN' flow -m '$FT/model' -d 0,1 '$SEQ/frame1.png' '$SEQ/frame2.png' '$SEQ/frame3.png' -o '$TMP/ttyflo' >/dev/null" /dev/null >"$TMP/tty" 2>&1
  check 'grep -q "$(printf "\r\033\\[K")flow: [12]/2 pairs done" "$TMP/tty"' "flow -d 0,1: no progress line of the pairs done on a terminal"
fi

# a frame that cannot be read: reported in pair order, after the pairs before it are written
printf 'garbage' >"$TMP/broken.png"
BADSEQ=("$SEQ/frame1.png" "$SEQ/frame2.png" "$TMP/broken.png" "$SEQ/frame3.png")
expect 1 'broken.png' -- "$BIN" flow -m "$FT/model" -d 0,1 "${BADSEQ[@]}" -o "$TMP/eflo" -q
check 'cmp -s "$TMP/eflo/flow_0001.flo" "$TMP/FLOW-0/flo/flow_0001.flo" && [ ! -e "$TMP/eflo/flow_0002.flo" ]' "flow -d 0,1: not the pairs before a bad frame, or more"

# ---- bad device lists --------------------------------------------------------------------------
expect 1 "'0' and '0' are the same device" -- "$BIN" classify -m "$DG" -d 0,0 "$DG/images/digit_0_1167.png"
expect 1 "device '7' does not exist" -- "$BIN" fill -m "$TM" -d 0,7 'a [MASK] b'
expect 1 "'all' cannot be part of a list" -- "$BIN" flow -m "$FT/model" -d 0,all "$SEQ/frame1.png" "$SEQ/frame2.png" -o "$TMP/x.flo"
check '[ ! -e "$TMP/x.flo" ]' "flow wrote an output after a bad --device"
# --device '' is an error, never silently the default device
expect 1 'empty device name' -- "$BIN" classify -m "$DG" -d '' "$DG/images/digit_0_1167.png"
expect 1 'empty device name' -- "$BIN" flow -m "$FT/model" -d '' "$SEQ/frame1.png" "$SEQ/frame2.png" -o "$TMP/x.flo"
expect 1 'empty device name' -- "$BIN" bench -m "$FIX/mlm_heads_default" -d '' -r 1

# ---- bench: each device's throughput and the total -----------------------------------------------
expect 0 '' -- "$BIN" bench -m "$FIX/mlm_heads_default" -d 0,1 -r 2 --json
check 'grep -Eq "\"total_items_per_s\": [0-9.e+-]+" "$TMP/out" && [ "$(grep -c "\"device_index\":" "$TMP/out")" -eq 2 ]' "bench -d 0,1 --json: no per-device and total throughput"
expect 0 '' -- "$BIN" bench -m "$FIX/mlm_heads_default" -d 0,1 -r 2
check 'grep -Eq "^total: [0-9.]+ items/s on 2 devices" "$TMP/out" && [ "$(grep -Ec "^device [01]: [0-9.]+ items/s" "$TMP/out")" -eq 2 ]' "bench -d 0,1: no per-device and total lines"

# ---- MPI: mpirun -n 2 gives the outputs of one process -----------------------------------------
mpi_built=0
"$BIN" --version | grep -q '^mpi: .* shares classify' && mpi_built=1
if [ "$mpi_built" = 0 ] || ! command -v mpirun >/dev/null; then
  if [ "${PCV_REQUIRE_MPI:-0}" = 1 ]; then
    bad "PCV_REQUIRE_MPI=1 but $( [ "$mpi_built" = 0 ] && echo "perceiver-cl was built without MPI" || echo "mpirun is missing")"
  else
    echo "SKIP: $( [ "$mpi_built" = 0 ] && echo "perceiver-cl built without MPI" || echo "no mpirun"): the mpirun checks did not run"
  fi
  if command -v mpirun >/dev/null; then # a build without MPI refuses to do all the work on every rank
    expect 1 'built without MPI' -- mpirun -n 2 --oversubscribe --allow-run-as-root "$BIN" fill -m "$TM" 'a [MASK] b'
  fi
  finish
fi
MPIRUN=(mpirun -n 2 --oversubscribe --allow-run-as-root)
# containers often forbid the cross-memory attach of Open MPI's shared-memory transport
export OMPI_MCA_btl_vader_single_copy_mechanism=none
for t in CLS FILL FLOW; do
  declare -n cmd=$t
  # auto (the default under mpirun): rank 0 on device 0, rank 1 on device 1
  run_in "$t-mpi" "${MPIRUN[@]}" "$BIN" "${cmd[@]}"
  check '[ $rc -eq 0 ] && same "$t-0" "$t-mpi"' "$t: mpirun -n 2 differs from one process: $(head -3 "$TMP/$t-mpi.err")"
  unset -n cmd
done
if [ "$VIDEO" = 1 ]; then # every rank decodes the video
  run_in VID-mpi "${MPIRUN[@]}" "$BIN" flow -m "$FT/model" "$TMP/seq.mkv" -o flo -q
  check '[ $rc -eq 0 ] && diff -r -q "$TMP/VID-mpi/flo" "$TMP/FLOW-0/flo" >/dev/null' "flow of a video under mpirun differs from its frames in one process"
fi
# two devices in each of two ranks
run_in FILL-mpi01 "${MPIRUN[@]}" "$BIN" "${FILL[@]}" -d 0,1
check '[ $rc -eq 0 ] && same FILL-0 FILL-mpi01' "fill: mpirun -n 2 with --device 0,1 differs from one process"
expect 1 'broken.png' -- "${MPIRUN[@]}" "$BIN" flow -m "$FT/model" "${BADSEQ[@]}" -o "$TMP/eflo-mpi" -q
check 'cmp -s "$TMP/eflo-mpi/flow_0001.flo" "$TMP/FLOW-0/flo/flow_0001.flo" && [ ! -e "$TMP/eflo-mpi/flow_0002.flo" ]' "flow under mpirun: not the pairs before a bad frame, or more"
expect 1 'under mpirun only rank 0 has standard input' -- "${MPIRUN[@]}" "$BIN" fill -m "$TM" -f - </dev/null
expect 1 "'0' and '0' are the same device" -- "${MPIRUN[@]}" "$BIN" classify -m "$DG" -d 0,0 "$DG/images"
finish
