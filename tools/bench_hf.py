#!/usr/bin/env python3
"""Time Hugging Face's float32 CPU forward of a PerceiverForMaskedLM or an ImageNet Perceiver
(the baseline that perceiver-cl's speed is compared with).

Loads the model from a local folder (--model DIR, config.json + model.safetensors), builds the
same input as tools/check_fullsize.py (the HF test sentence padded to --seq, [MASK] at 52:61,
repeated --batch times; image classifiers get random pixel_values [batch][3][224][224], like
`perceiver-cl bench`), runs one warm-up forward, then times --repeat forwards and reports the
median. Output (stdout), one key=value group per line:

  hf_forward_s=<median seconds> threads=<T>
  torch=<version> transformers=<version> seq=<S> batch=<B> repeat=<R> min_s=<..> max_s=<..>
  hf_gflop_s=<F / 1e9 / median>          (only with --flops F, the analytic FLOPs of one forward)

Example:
  python tools/bench_hf.py --model /tmp/lp-full --threads 2 --repeat 5 --flops 1.2095e11
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pcl_ref  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__[__doc__.index("Output"):],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True,
                    help="model folder with config.json + model.safetensors")
    ap.add_argument("--seq", type=int, default=2048, help="input length (default 2048)")
    ap.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    ap.add_argument("--repeat", type=int, default=5, help="timed forwards (default 5)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--flops", type=float, help="analytic FLOP count of one forward (for GFLOP/s)")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")

    import json

    import torch
    import transformers

    pcl_ref.setup_torch(args.threads)
    arch = json.loads((args.model / "config.json").read_text())["architectures"][0]
    model = getattr(transformers, arch).from_pretrained(str(args.model)).eval()
    if arch.startswith("PerceiverForImageClassification"):
        size = model.config.image_size if arch.endswith("Learned") else 224
        gen = torch.Generator().manual_seed(0)
        pixels = torch.rand((args.batch, 3, size, size), generator=gen) * 4 - 2

        def forward():
            with torch.no_grad():
                return model(pixel_values=pixels).logits
    else:
        max_pos = model.config.max_position_embeddings
        if args.seq > max_pos:
            ap.error(f"--seq {args.seq} > max_position_embeddings {max_pos}")
        inputs = pcl_ref.hf_test_inputs(args.seq, args.batch)

        def forward():
            with torch.no_grad():
                return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits

    forward()  # warm-up
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        forward()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)

    print(f"hf_forward_s={med:.6f} threads={args.threads}")
    print(f"torch={torch.__version__} transformers={pcl_ref.versions()['transformers']} "
          f"seq={args.seq} batch={args.batch} repeat={args.repeat} "
          f"min_s={min(times):.6f} max_s={max(times):.6f}")
    if args.flops:
        print(f"hf_gflop_s={args.flops / 1e9 / med:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
