#!/usr/bin/env python3
"""Time transformers' full video reconstruction (the 128-chunk loop) on the full-size multimodal
Perceiver, optionally next to the engine's own full reconstruction.

The model is the random-weight full-size PerceiverForMultimodalAutoencoding of
check_fullsize_multimodal.py (--make DIR builds it, --model DIR reuses it); the input is that
script's seeded video [1][16][3][224][224], audio [1][30720][1] and label [1][700]. transformers runs
the loop of its documentation (mm_ref.chunk_loop): 128 chunks of 6272 image points and 15 audio
patches, the encoder recomputed in every chunk. Reported: seconds per chunk (mean, min, max),
total, and peak RSS (resource.getrusage ru_maxrss of this process). With --chunks K only the first
K chunks run and the total is EXTRAPOLATED as K-chunk mean x 128 (printed as such).

--engine 'CMD' runs CMD (through the shell) after the HF timing, e.g.

  --engine 'build/perceiver-cl run -m /tmp/mm-full -i /tmp/mm-full/inputs_full.safetensors -o /tmp/full.safetensors'

and prints its wall time, its peak RSS (getrusage of the command's processes, measured by a small
launcher process) and the ratio HF total / engine.
DIR/inputs_full.safetensors (inputs.image, inputs.audio, inputs.label; no subsampled points) is
written for that purpose. --save-full FILE writes HF's full.image / full.audio / full.label (only
when all 128 chunks ran) so the engine's reconstruction can be compared with
check_fullsize_multimodal.py-style statistics (--compare FILE).

    .venv-ref/bin/python tools/bench_multimodal.py --model /tmp/mm-full --chunks 2
    .venv-ref/bin/python tools/bench_multimodal.py --model /tmp/mm-full --engine '...' --save-full /tmp/hf_full.safetensors
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mm_ref  # noqa: E402
import pcl_ref  # noqa: E402

CLS = "PerceiverForMultimodalAutoencoding"


def rss_mb(who) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux: KiB


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", type=Path, help="folder made by check_fullsize_multimodal.py --make")
    src.add_argument("--make", type=Path, metavar="DIR", help="build the random full-size model into DIR")
    ap.add_argument("--chunks", type=int, default=None, help="time only the first K chunks and extrapolate")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--seed", type=int, default=8700)
    ap.add_argument("--engine", default=None, help="shell command of the engine's full reconstruction")
    ap.add_argument("--save-full", type=Path, default=None, help="write HF's full reconstruction here")
    ap.add_argument("--compare", type=Path, default=None,
                    help="engine output file (full.image/full.audio/full.label) to compare with HF's (mm-full)")
    args = ap.parse_args()

    import transformers
    from transformers import PerceiverConfig

    import check_fullsize_multimodal as cfm

    pcl_ref.setup_torch(args.threads)
    model_dir = args.make or args.model
    if args.make:
        torch.manual_seed(args.seed)
        model = getattr(transformers, CLS)(PerceiverConfig(**mm_ref.FULLSIZE_MM_CONFIG)).eval()
        model.config.architectures = [CLS]
        mm_ref.randomize(model, args.seed)
        pcl_ref.save_hf_model(model, model_dir)
        del model
    model = getattr(transformers, CLS).from_pretrained(str(model_dir)).eval()
    n = pcl_ref.count_parameters(model)
    if n != mm_ref.FULLSIZE_MM_PARAMS:
        raise SystemExit(f"{model_dir}: {n} parameters, not the full-size model ({mm_ref.FULLSIZE_MM_PARAMS})")
    t = cfm.make_inputs(args.seed, 0)
    full_in = model_dir / "inputs_full.safetensors"
    save_file({k: t[k] for k in ("inputs.image", "inputs.audio", "inputs.label")}, str(full_in))
    nch = mm_ref.FULLSIZE_NCHUNKS
    k = nch if args.chunks is None else max(1, min(args.chunks, nch))
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, {args.threads} threads; "
          f"{CLS} {n:,} params; {k} of {nch} chunks (6272 image points + 15 audio patches each)")

    times = []
    last = [time.perf_counter()]

    def on_chunk(c):
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now
        print(f"  chunk {c}: {times[-1]:.2f} s", flush=True)

    t0 = time.perf_counter()
    last[0] = t0
    full = mm_ref.chunk_loop(model, t, nch, chunks=k, on_chunk=on_chunk)
    total = time.perf_counter() - t0
    hf_rss = rss_mb(resource.RUSAGE_SELF)
    mean = sum(times) / len(times)
    print(f"HF per chunk: mean {mean:.2f} s, min {min(times):.2f} s, max {max(times):.2f} s")
    if k == nch:
        hf_total = total
        print(f"HF full reconstruction ({nch} chunks): {hf_total:.1f} s (measured)")
    else:
        hf_total = mean * nch
        print(f"HF full reconstruction ({nch} chunks): {hf_total:.1f} s EXTRAPOLATED from {k} chunk(s) "
              f"(measured {total:.1f} s for {k})")
    print(f"HF peak RSS: {hf_rss:.0f} MiB")
    if args.save_full:
        if k != nch:
            print("--save-full ignored: only a partial loop ran")
        else:
            full.pop("_label_chunk_spread", None)
            full.pop("_chunk_sizes", None)
            save_file(full, str(args.save_full))
            print(f"wrote {args.save_full}")

    if args.engine:
        print(f"engine: {args.engine}  (inputs without subsampled points: {full_in})")
        # a small launcher process runs the command, so that the engine's peak RSS is not mixed up
        # with this (large) process's pages counted in a forked child before its exec
        with tempfile.TemporaryDirectory() as td:
            rss_file = Path(td) / "rss"
            launcher = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1], shell=True).returncode; "
                        "open(sys.argv[2], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
                        "sys.exit(rc)")
            t0 = time.perf_counter()
            rc = subprocess.run([sys.executable, "-c", launcher, args.engine, str(rss_file)]).returncode
            eng = time.perf_counter() - t0
            eng_rss = int(rss_file.read_text()) / 1024.0 if rss_file.is_file() else float("nan")
        print(f"engine full reconstruction: {eng:.1f} s wall (exit status {rc}); engine peak RSS {eng_rss:.0f} MiB")
        if rc == 0 and eng > 0:
            print(f"ratio HF / engine: {hf_total / eng:.2f}x" + ("" if k == nch else " (HF side extrapolated)"))
    if args.compare:
        if k != nch:
            print("--compare needs all 128 chunks")
            return 1
        got = load_file(str(args.compare))
        atol, rtol = pcl_ref.model_tolerance("mm-full")
        ok = True
        for name in ("full.image", "full.audio", "full.label"):
            s = pcl_ref.compare(got[name], full[name], atol, rtol) if name in got else {"pass": False, "error": "missing"}
            print(pcl_ref.format_stats(name, s))
            ok &= s["pass"]
        print("RESULT:", "PASS" if ok else "FAIL")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
