# perceiver-cl bench, like llama-bench: every architecture, sweeps, mean and standard deviation,
# GFLOP/s and the share of the measured SGEMM peak, memory and allocations, markdown/CSV/JSON.
. "$(dirname "$0")/clilib.sh"

# every architecture runs (optical flow at its train_size), and planned memory means no
# allocation in a forward
for f in mlm_heads_default seqcls_basic image_learned image_fourier image_conv flow_small; do
  expect 0 '' -- "$BIN" bench -m "$FIX/$f" -r 2 -o json
  check 'grep -q "\"allocs_per_forward\": 0" "$TMP/out" && grep -Eq "\"percent_of_peak\": [0-9.e+-]+" "$TMP/out"' "bench $f: no JSON result"
done
check 'grep -q "\"input\": \"2x[0-9]*x[0-9]* frames\"" "$TMP/out" && grep -q "\"input_shape\": \[\s*1,\s*2,\s*27," <(tr -d "\n" <"$TMP/out")' "optical flow: frames at train_size"
# the multimodal autoencoder: video and audio at its config's sizes; peak RSS and each stage's share of the peak
expect 0 '' -- "$BIN" bench -m "$FIX/mm_small" -r 1 -o json
check 'grep -Eq "\"input\": \"[0-9]+x[0-9]+x[0-9]+ video \+ [0-9]+ audio samples\"" "$TMP/out" && grep -Eq "\"peak_rss_bytes\": [1-9][0-9]*" "$TMP/out" && grep -Eq "\"percent_of_peak\": [0-9.e+-]+" "$TMP/out"' "bench: multimodal autoencoder"
expect 0 '' -- "$BIN" bench -m "$FIX/mm_small" -r 1 --stages
check 'grep -q "| peak RSS MiB |" "$TMP/out" && grep -q "| stage | ms | GFLOP | GFLOP/s | % peak | time % |" "$TMP/out"' "bench --stages: share of the peak"

# JSON: the build, the device and its driver, the measured peak, mean and stddev of every test
expect 0 '' -- "$BIN" bench -m "$FIX/mlm_q_shape" -r 3 --json
for k in version git_commit device driver peak_gflops peak_gemm_n results forward_s items_per_s gflops stddev samples memory stages; do
  check 'grep -q "\"$k\":" "$TMP/out"' "bench --json has no \"$k\""
done
check 'grep -q "\"version\": \"$("$BIN" --version | awk "NR == 1 {print \$2}")\"" "$TMP/out"' "bench --json: version"

# a sweep: every combination, in order
expect 0 '' -- "$BIN" bench -m "$FIX/mlm_heads_default" -b 1,2 --seq 12,24 -r 2 -o csv
check '[ "$(wc -l <"$TMP/out")" -eq 5 ] && head -1 "$TMP/out" | grep -q "^model,architecture,.*,batch,input,repeat,forward_ms_mean,forward_ms_stddev,.*,gflops_mean,gflops_stddev,peak_gflops,percent_of_peak,"' "bench -o csv: a header and 4 rows"
check '[ "$(tail -n +2 "$TMP/out" | grep -o ",[12],[0-9]* tokens," | tr "\n" " ")" = ",1,12 tokens, ,1,24 tokens, ,2,12 tokens, ,2,24 tokens, " ]' "bench sweep: batch x seq in order"
expect 0 '' -- "$BIN" bench -m "$FIX/mlm_heads_default" -b 1,2 -r 2
check 'grep -q "^| model | architecture | params | batch | input | forward ms | items/s | GFLOP | GFLOP/s | % peak" "$TMP/out" && [ "$(grep -c "±" "$TMP/out")" -eq 2 ]' "bench markdown: a table with mean ± stddev"
check 'grep -q "^peak: [0-9.]* GFLOP/s (SGEMM n=[0-9]*, measured)" "$TMP/out"' "bench markdown: the measured peak"
expect 0 '' -- "$BIN" bench -m "$FIX/mlm_heads_default" -r 2 --stages
check 'grep -q "^| encoder.cross |" "$TMP/out"' "bench --stages"

# sizes: --image-size is used for Fourier models, refused (not ignored) for the learned one
expect 0 '' -- "$BIN" bench -m "$FIX/image_fourier" -r 1 --image-size 12,16 -o csv
check 'grep -q ",12x12 pixels," "$TMP/out" && grep -q ",16x16 pixels," "$TMP/out"' "bench --image-size on a Fourier model"
sz=$(grep -o '"image_size": *[0-9]*' "$FIX/image_learned/config.json" | grep -o '[0-9]*$')
expect 1 "fixes its input to ${sz}x${sz}" -- "$BIN" bench -m "$FIX/image_learned" -r 1 --image-size $((sz + 2))
expect 0 '' -- "$BIN" bench -m "$FIX/image_learned" -r 1 -o csv
check 'grep -q ",${sz}x${sz} pixels," "$TMP/out"' "bench: the learned model at its image_size by default"
expect 1 'seq is for text models' -- "$BIN" bench -m "$FIX/image_fourier" -r 1 --seq 8
expect 2 'numbers from 1 to 4096 separated by commas' -- "$BIN" bench -m "$FIX/image_fourier" -b 1,x
expect 2 '--output must be md, csv or json' -- "$BIN" bench -m "$FIX/image_fourier" -o xml
finish

# how OpenMP threads wait, chosen from the CPU pressure (src/cli/main.c) and named in the device
# line: a fake /proc/pressure/cpu (PCV_TEST_PSI) idle, busy, missing; the user's own choice wins
psi="$TMP/psi"
printf 'some avg10=1.50 avg60=2.00 avg300=1.00 total=100\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n' >"$psi"
noomp=(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u PERCEIVER_OMP_WAIT)
expect 0 '' -- "${noomp[@]}" PCV_TEST_PSI="$psi" "$BIN" bench -m "$FIX/mlm_heads_default" -r 1
check 'grep -q "threads wait: spin, then sleep (CPU pressure 1.5% of the last 10 s, under 10%)" "$TMP/out"' "bench: an idle machine's threads spin before sleeping"
printf 'some avg10=30.47 avg60=32.74 avg300=13.83 total=100\n' >"$psi"
expect 0 '' -- "${noomp[@]}" PCV_TEST_PSI="$psi" "$BIN" bench -m "$FIX/mlm_heads_default" -r 1
check 'grep -q "threads wait: sleep at once (CPU pressure 30.5% of the last 10 s, not under 10%)" "$TMP/out"' "bench: a busy machine's threads sleep at once"
expect 0 '' -- "${noomp[@]}" PCV_TEST_PSI="$TMP/no-such-psi" "$BIN" bench -m "$FIX/mlm_heads_default" -r 1
check 'grep -q "threads wait: sleep at once (no /proc/pressure/cpu)" "$TMP/out"' "bench: without pressure information threads sleep at once"
expect 0 '' -- "${noomp[@]}" OMP_WAIT_POLICY=active PCV_TEST_PSI="$psi" "$BIN" bench -m "$FIX/mlm_heads_default" -r 1
check 'grep -q "threads wait: OMP_WAIT_POLICY=active (environment)" "$TMP/out"' "bench: the user's OMP_WAIT_POLICY wins"
expect 0 '' -- "${noomp[@]}" GOMP_SPINCOUNT=5 "$BIN" bench -m "$FIX/mlm_heads_default" -r 1 --json
check 'grep -q "\"driver\": \".*threads wait: GOMP_SPINCOUNT=5 (environment)\"" "$TMP/out"' "bench --json: the user's GOMP_SPINCOUNT named in the driver"
