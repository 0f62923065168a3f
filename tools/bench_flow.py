#!/usr/bin/env python3
"""Time transformers' optical flow on a Sintel-size frame pair (436x1024 -> 6 tiles of 368x496),
the CPU speed baseline for `perceiver-cl flow`, optionally next to an engine command.

The HF side is the loop an HF user writes around PerceiverForOpticalFlow (the colab's tiling,
tools/flow_ref.py): for each tile of the repaired grid (ys [0,68] x xs [0,476,528]): crop,
normalise, 3x3 patches, one float32 CPU forward (batch 1), then x20 and the weighted blend.
Weights: random (pcl_ref.randomize_parameters, full-size config of
deepmind/optical-flow-perceiver) unless --model DIR; frames: two generated 436x1024 images
(smooth texture + a disc, shifted), written as PNGs to --frames-dir so an engine can read them.

--engine 'CMD' runs CMD (a shell command line; {frame1}, {frame2}, {model} are replaced by the
generated PNG paths and the --model folder) --repeat times in the same run and prints the
ratio of the wall times. Peak RSS: resource.getrusage (this process for HF, including torch and the
model; for the engine, the children of a small launcher process).

  python tools/bench_flow.py --threads 2 --repeat 1
  python tools/bench_flow.py --model /tmp/flow-full \
      --engine 'build/perceiver-cl flow -m {model} {frame1} {frame2} -o /tmp/x.flo'
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import flow_ref  # noqa: E402

SINTEL = (436, 1024)
# runs argv[1] with the shell, writes the children's peak RSS (KiB) to argv[2], exits with its status
LAUNCHER = ("import resource, subprocess, sys\n"
            "rc = subprocess.run(sys.argv[1], shell=True).returncode\n"
            "open(sys.argv[2], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
            "sys.exit(rc)\n")


def maxrss_mb(who) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux: KiB


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--model", type=Path, help="HF flow model folder (default: random full-size weights in memory)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="torch CPU threads")
    ap.add_argument("--repeat", type=int, default=1, help="timed repetitions of the whole frame pair")
    ap.add_argument("--warmup", type=int, default=0, help="untimed HF tiles before timing (default 0)")
    ap.add_argument("--size", type=int, nargs=2, default=list(SINTEL), metavar=("H", "W"))
    ap.add_argument("--seed", type=int, default=436)
    ap.add_argument("--frames-dir", type=Path, default=Path("/tmp/pcl-bench-flow"))
    ap.add_argument("--engine", help="engine command line to time as well ({frame1} {frame2} {model})")
    ap.add_argument("--skip-hf", action="store_true", help="time only --engine")
    args = ap.parse_args(argv)

    import make_flow_fixtures

    H, W = args.size
    f1, f2 = make_flow_fixtures.make_frames(H, W, 2, args.seed, (1.5, 2.5), (-3.0, 4.0))
    args.frames_dir.mkdir(parents=True, exist_ok=True)
    p1, p2 = args.frames_dir / "frame1.png", args.frames_dir / "frame2.png"
    make_flow_fixtures.save_png(p1, f1)
    make_flow_fixtures.save_png(p2, f2)
    print(f"frames: {p1} {p2} ({H}x{W})")

    hf_total = None
    if not args.skip_hf:
        import torch
        from transformers import PerceiverConfig, PerceiverForOpticalFlow

        import check_fullsize_flow
        import pcl_ref

        pcl_ref.setup_torch(args.threads)
        t0 = time.perf_counter()
        if args.model:
            model = PerceiverForOpticalFlow.from_pretrained(str(args.model)).eval()
        else:
            torch.manual_seed(args.seed)
            model = PerceiverForOpticalFlow(PerceiverConfig(**check_fullsize_flow.FULLSIZE_FLOW_CONFIG)).eval()
            pcl_ref.randomize_parameters(model, args.seed)
        tile = tuple(model.config.train_size)
        print(f"transformers {pcl_ref.versions()['transformers']}, torch {torch.__version__}, "
              f"threads {torch.get_num_threads()}; model {pcl_ref.count_parameters(model):,} params, "
              f"tile {tile} (ready in {time.perf_counter() - t0:.1f} s)")
        origins = flow_ref.grid_origins(H, W, tile)
        print(f"tiles: {len(origins)} {origins}")
        n1, n2 = flow_ref.normalize_frame(f1), flow_ref.normalize_frame(f2)
        with torch.no_grad():
            for _ in range(args.warmup):
                model(inputs=torch.from_numpy(flow_ref.tile_inputs(n1, n2, 0, 0, tile)))
            totals, per_tile = [], []
            for r in range(args.repeat):
                t_start = time.perf_counter()
                n1, n2 = flow_ref.normalize_frame(f1), flow_ref.normalize_frame(f2)
                logits = []
                for y, x in origins:
                    inp = torch.from_numpy(flow_ref.tile_inputs(n1, n2, y, x, tile))
                    t = time.perf_counter()
                    logits.append(model(inputs=inp).logits[0].numpy())
                    per_tile.append(time.perf_counter() - t)
                flow = flow_ref.flow_from_tile_logits(np.stack(logits), origins, H, W)
                totals.append(time.perf_counter() - t_start)
                print(f"hf repeat {r + 1}: total {totals[-1]:.2f} s, tiles "
                      + " ".join(f"{v:.2f}" for v in per_tile[-len(origins):]) + f"; |flow| max {np.abs(flow).max():.3g}")
        hf_total = float(np.median(totals))
        print(f"HF: seconds/tile median {np.median(per_tile):.3f} (min {min(per_tile):.3f}); "
              f"total/pair median {hf_total:.2f} s over {args.repeat} repeat(s); "
              f"peak RSS {maxrss_mb(resource.RUSAGE_SELF):.0f} MB")

    if args.engine:
        cmd = args.engine.format(frame1=shlex.quote(str(p1)), frame2=shlex.quote(str(p2)),
                                 model=shlex.quote(str(args.model)) if args.model else "{model}")
        print(f"engine: {cmd}")
        times, rss = [], []
        rss_file = args.frames_dir / "engine_maxrss_kb.txt"
        for r in range(args.repeat):
            t = time.perf_counter()
            # a small launcher process runs the command: a child forked from this (large) process
            # would report this process's RSS as its own high-water mark
            proc = subprocess.run([sys.executable, "-c", LAUNCHER, cmd, str(rss_file)])
            times.append(time.perf_counter() - t)
            if proc.returncode != 0:
                print(f"engine failed with status {proc.returncode}")
                return 1
            rss.append(int(rss_file.read_text()) / 1024.0)
            print(f"engine repeat {r + 1}: {times[-1]:.2f} s, peak RSS {rss[-1]:.0f} MB")
        eng = float(np.median(times))
        print(f"engine: total/pair median {eng:.2f} s over {args.repeat} repeat(s) (wall, includes model "
              f"loading); peak RSS {max(rss):.0f} MB")
        if hf_total is not None:
            print(f"ratio HF / engine = {hf_total / eng:.2f}x (HF excludes model loading)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
