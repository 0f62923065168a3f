#!/usr/bin/env python3
"""Check perceiver-cl against Hugging Face on the FULL-size ImageNet Perceivers.

Builds a random-weight model with the published configuration of deepmind/vision-perceiver-
{learned,fourier,conv} (no hub access: every parameter and BatchNorm statistic randomized as in
the fixtures, pcl_ref.randomize_parameters), saves it with save_pretrained, preprocesses a real
photograph (tests/fixtures/images/photo_china.jpg) with transformers' PerceiverImageProcessorPil
to pixel_values [1][3][224][224], runs `perceiver-cl run` and transformers' float32 CPU forward,
and compares logits and last_hidden_state with the "image-full" profile of tests/tolerances.json.
Also checks that `perceiver-cl classify` on the JPEG picks HF's top class (the whole pipeline:
decoding, crop, Pillow resize, normalization, model).

    .venv-ref/bin/python tools/check_fullsize_image.py --arch fourier --make /tmp/vp-fourier
    .venv-ref/bin/python tools/check_fullsize_image.py --arch conv --model /tmp/vp-conv

Exit status 1 on any failure. Expect minutes: HF takes ~10-60 s per forward on 2 cores
(369-478 GFLOP), plus the model build.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pcl_ref  # noqa: E402

COMMON = dict(num_latents=512, d_latents=1024, num_blocks=8, num_self_attends_per_block=6,
              num_self_attention_heads=8, num_cross_attention_heads=1, qk_channels=None,
              v_channels=None, num_labels=1000)
ARCHS = {
    "learned": ("PerceiverForImageClassificationLearned", dict(COMMON, d_model=512, image_size=224), 62_255_848),
    "fourier": ("PerceiverForImageClassificationFourier", dict(COMMON, d_model=261), 48_440_627),
    "conv": ("PerceiverForImageClassificationConvProcessing", dict(COMMON, d_model=322), 48_646_522),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=sorted(ARCHS), required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", type=Path, help="existing folder made by --make")
    src.add_argument("--make", type=Path, metavar="DIR", help="build the random full-size model into DIR")
    ap.add_argument("--bin", type=Path, default=pcl_ref.REPO_ROOT / "build" / "perceiver-cl")
    ap.add_argument("--image", type=Path, default=pcl_ref.REPO_ROOT / "tests/fixtures/images/photo_china.jpg")
    ap.add_argument("--seed", type=int, default=224)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--tolerance", default="image-full")
    ap.add_argument("--engine-args", default="", help="extra arguments for perceiver-cl (e.g. '--device 0')")
    args = ap.parse_args()

    import transformers
    from PIL import Image
    from transformers import PerceiverConfig
    from transformers.models.perceiver.image_processing_pil_perceiver import PerceiverImageProcessorPil

    pcl_ref.setup_torch(args.threads)
    cls_name, cfg, n_params = ARCHS[args.arch]
    cls = getattr(transformers, cls_name)
    atol, rtol = pcl_ref.model_tolerance(args.tolerance)
    model_dir = args.make or args.model
    if args.make:
        torch.manual_seed(args.seed)
        model = cls(PerceiverConfig(**cfg)).eval()
        pcl_ref.randomize_parameters(model, args.seed)
        pcl_ref.save_hf_model(model, model_dir)
        del model
    model = cls.from_pretrained(str(model_dir)).eval()
    n = pcl_ref.count_parameters(model)
    print(f"{cls_name}: {n:,} parameters (published config: {n_params:,}); tolerance {args.tolerance} "
          f"(atol={atol:g}, rtol={rtol:g})")

    image = Image.open(args.image).convert("RGB")
    pixel_values = PerceiverImageProcessorPil()(image, return_tensors="pt")["pixel_values"].contiguous()
    work = Path(tempfile.mkdtemp(prefix="pcl-img-"))
    save_file({"pixel_values": pixel_values}, str(work / "in.safetensors"))
    extra = args.engine_args.split()
    t0 = time.perf_counter()
    subprocess.run([str(args.bin), "run", "-m", str(model_dir), "-i", str(work / "in.safetensors"),
                    "-o", str(work / "out.safetensors"), *extra], check=True)
    t_engine = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = pcl_ref.hf_forward(model, {"pixel_values": pixel_values})
    t_hf = time.perf_counter() - t0
    got = load_file(str(work / "out.safetensors"))
    print(f"engine run (load + forward) {t_engine:.1f} s; transformers forward {t_hf:.1f} s")
    ok = True
    for k in ("logits", "last_hidden_state"):
        s = pcl_ref.compare(got[k], ref[k], atol, rtol)
        print(pcl_ref.format_stats(k, s))
        ok &= s["pass"]
    hf_top = int(ref["logits"][0].argmax())
    # whole pipeline from the JPEG: decoding + preprocessing + model
    out = subprocess.run([str(args.bin), "classify", "-m", str(model_dir), "--top", "1", "--json", str(args.image),
                          *extra], check=True, capture_output=True, text=True).stdout
    import json
    top = json.loads(out.splitlines()[0])["top"][0]["class"]
    print(f"classify {args.image.name}: perceiver-cl class {top}, transformers class {hf_top}")
    ok &= top == hf_top
    print("RESULT:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
