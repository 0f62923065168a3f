#!/usr/bin/env python3
"""Check perceiver-cl against Hugging Face on the FULL-size language Perceiver.

The model has the configuration of deepmind/language-perceiver (num_latents 256, d_latents 1280,
d_model 768, 26 self-attention layers, 8 heads, qk_channels 256, v_channels 1280, vocab 262,
max_position_embeddings 2048; 201,108,230 parameters) with random weights (no hub access).

Steps:
  1. --make DIR: build a random-weight PerceiverForMaskedLM with that config (every parameter
     randomized as in the fixtures), save_pretrained(DIR) as one float32 model.safetensors;
     or --model DIR: use an existing folder with config.json + model.safetensors (for example
     one written by `perceiver-cl init-random`).
  2. Build the HF integration-test input (the sentence padded to 2048 with [PAD], attention_mask
     0 on the pads, input_ids[0, 52:61] = [MASK]) and write it to a temporary inputs.safetensors.
  3. Run `BIN run --model DIR --inputs IN --outputs OUT` (skipped with --engine-outputs FILE,
     which compares an outputs file produced elsewhere).
  4. Run HF's float32 CPU forward and compare logits and last_hidden_state with the "mlm-full"
     profile of tests/tolerances.json: |engine - hf| <= atol + rtol*|hf|.

Prints the parameter count, max abs err, max rel err, NMSE and PASS/FAIL per output; exits 1 on
any failure (2 on usage / setup errors).

Examples:
  python tools/check_fullsize.py --make /tmp/lp-full               # make model, run engine, compare
  python tools/check_fullsize.py --model /tmp/lp-full --bin build/perceiver-cl
  python tools/check_fullsize.py --model /tmp/lp-full --engine-outputs out.safetensors
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pcl_ref  # noqa: E402


def make_model(out_dir: Path, seed: int):
    from transformers import PerceiverConfig, PerceiverForMaskedLM

    torch.manual_seed(seed)
    config = PerceiverConfig(**pcl_ref.FULLSIZE_MLM_CONFIG)
    model = PerceiverForMaskedLM(config).eval()
    pcl_ref.randomize_parameters(model, seed)
    pcl_ref.save_hf_model(model, out_dir)
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__[__doc__.index("Steps:"):],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", type=Path, help="existing model folder (config.json + model.safetensors)")
    src.add_argument("--make", type=Path, metavar="DIR",
                     help="build a random-weight full-size HF model and save it to DIR first")
    ap.add_argument("--bin", type=Path, default=pcl_ref.REPO_ROOT / "build" / "perceiver-cl",
                    help="perceiver-cl binary (default: build/perceiver-cl)")
    ap.add_argument("--engine-args", default="",
                    help="extra arguments appended to `perceiver-cl run ...` (one string)")
    ap.add_argument("--engine-outputs", type=Path,
                    help="compare this existing outputs.safetensors instead of running --bin")
    ap.add_argument("--seed", type=int, default=2048, help="seed for --make (default 2048)")
    ap.add_argument("--seq", type=int, default=2048,
                    help="input length; the sentence is padded to it (default 2048)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2,
                    help="torch CPU threads for the HF forward (default: all cores)")
    ap.add_argument("--tolerance", default="mlm-full",
                    help="profile in tests/tolerances.json (default mlm-full)")
    ap.add_argument("--keep", type=Path, metavar="DIR",
                    help="keep inputs/engine outputs/HF outputs as safetensors in DIR")
    ap.add_argument("--hf-fp64", action="store_true",
                    help="also report how far HF float32 itself is from a float64 forward")
    args = ap.parse_args(argv)

    from transformers import PerceiverForMaskedLM

    pcl_ref.setup_torch(args.threads)
    atol, rtol = pcl_ref.model_tolerance(args.tolerance)
    print(f"torch={torch.__version__} transformers={pcl_ref.versions()['transformers']} "
          f"threads={args.threads} tolerance={args.tolerance} (atol={atol:g}, rtol={rtol:g})")

    # 1. model -----------------------------------------------------------------------------
    if args.make:
        t0 = time.perf_counter()
        model = make_model(args.make, args.seed)
        model_dir = args.make
        print(f"made random full-size model in {model_dir} ({time.perf_counter() - t0:.1f} s, seed {args.seed})")
        del model  # compare against the model as HF reloads it from disk
    else:
        model_dir = args.model
    for f in ("config.json", "model.safetensors"):
        if not (model_dir / f).is_file():
            print(f"error: {model_dir}/{f} not found", file=sys.stderr)
            return 2
    n_file = pcl_ref.safetensors_numel(model_dir / "model.safetensors")
    model = PerceiverForMaskedLM.from_pretrained(str(model_dir)).eval()
    n_hf = pcl_ref.count_parameters(model)
    print(f"parameters: {n_hf:,} (HF model), {n_file:,} (model.safetensors); "
          f"full-size language-perceiver has {pcl_ref.FULLSIZE_MLM_PARAMS:,}")
    if n_hf != pcl_ref.FULLSIZE_MLM_PARAMS:
        print("warning: this is not the full-size language-perceiver configuration")

    # 2. inputs ----------------------------------------------------------------------------
    inputs = pcl_ref.hf_test_inputs(args.seq)
    tmp = tempfile.TemporaryDirectory(prefix="pcl-fullsize-")
    work = Path(tmp.name)
    in_path = work / "inputs.safetensors"
    save_file(inputs, str(in_path), metadata={"format": "pt"})
    print(f"inputs: input_ids{list(inputs['input_ids'].shape)}, "
          f"{int(inputs['attention_mask'].sum())} real tokens, [MASK] at 52:61")

    # 3. engine ----------------------------------------------------------------------------
    if args.engine_outputs:
        out_path = args.engine_outputs
        print(f"engine outputs: {out_path} (not running the engine)")
    else:
        if not args.bin.is_file() or not os.access(args.bin, os.X_OK):
            print(f"error: engine binary {args.bin} not found or not executable "
                  "(build it, pass --bin, or use --engine-outputs)", file=sys.stderr)
            return 2
        out_path = work / "outputs.safetensors"
        cmd = [str(args.bin), "run", "--model", str(model_dir), "--inputs", str(in_path),
               "--outputs", str(out_path)] + shlex.split(args.engine_args)
        print("engine: " + " ".join(shlex.quote(c) for c in cmd))
        t0 = time.perf_counter()
        proc = subprocess.run(cmd)
        t_engine = time.perf_counter() - t0
        if proc.returncode != 0:
            print(f"FAIL: engine exited with status {proc.returncode}")
            return 1
        print(f"engine_wall_s={t_engine:.3f}")
    if not Path(out_path).is_file():
        print(f"FAIL: engine wrote no {out_path}")
        return 1
    engine = load_file(str(out_path))

    # 4. HF --------------------------------------------------------------------------------
    t0 = time.perf_counter()
    hf = pcl_ref.hf_forward(model, inputs)
    print(f"hf_forward_s={time.perf_counter() - t0:.3f}")

    if args.hf_fp64:
        hf64 = pcl_ref.hf_forward(model.double(), inputs)
        model.float()
        for k in ("logits", "last_hidden_state"):
            print("hf-fp32-vs-fp64 " + pcl_ref.format_stats(k, pcl_ref.compare(hf[k], hf64[k], atol, rtol)))
        del hf64

    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        save_file(inputs, str(args.keep / "inputs.safetensors"), metadata={"format": "pt"})
        save_file(hf, str(args.keep / "hf_outputs.safetensors"), metadata={"format": "pt"})
        save_file({k: v.contiguous() for k, v in engine.items()},
                  str(args.keep / "engine_outputs.safetensors"), metadata={"format": "pt"})
        print(f"kept tensors in {args.keep}")

    ok = True
    report = {}
    for k in ("logits", "last_hidden_state"):
        if k not in engine:
            print(f"{k}: FAIL (missing from engine outputs; has {sorted(engine)})")
            ok = False
            continue
        s = pcl_ref.compare(engine[k].float().numpy(), hf[k].numpy(), atol, rtol)
        report[k] = s
        print(pcl_ref.format_stats(k, s))
        ok &= s["pass"]
    if "logits" in engine and engine["logits"].shape == hf["logits"].shape:
        a, b = pcl_ref.HF_TEST_MASK_SPAN
        e_arg = engine["logits"][0, a:b].argmax(-1).tolist()
        h_arg = hf["logits"][0, a:b].argmax(-1).tolist()
        print(f"argmax logits[0,{a}:{b}]: engine {e_arg} hf {h_arg} "
              f"{'same' if e_arg == h_arg else 'DIFFERENT'}")
    print("RESULT: " + ("PASS" if ok else "FAIL"))
    if args.keep:
        (args.keep / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    tmp.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
