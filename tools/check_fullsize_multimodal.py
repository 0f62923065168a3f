#!/usr/bin/env python3
"""Check perceiver-cl against the references on the FULL-size multimodal Perceiver (video autoencoder).

HF mode (default): a random-weight PerceiverForMultimodalAutoencoding with the published
configuration of deepmind/multimodal-perceiver (19,858,855 parameters, asserted; every parameter
randomized as in the fixtures, mm_ref.randomize), saved with save_pretrained. Input: a seeded
random video [1][16][3][224][224] in [0,1), audio [1][30720][1] in [-1,1], label zeros [1][700];
ONE chunk of HF's 128-chunk loop is compared: chunk --chunk (default 0): image points
[6272c, 6272(c+1)), audio patches [15c, 15(c+1)). The engine runs

    perceiver-cl run --model DIR --inputs IN.safetensors --outputs OUT.safetensors [--engine-args]

with the tensor names of tools/mm_ref.py (inputs.image, inputs.audio, inputs.label,
subsampled_output_points.image / .audio -> logits.image, logits.audio, logits.label,
last_hidden_state), and is compared with transformers' float32 CPU forward using the "mm-full"
profile of tests/tolerances.json.

Haiku mode (--haiku): DeepMind's own full-size video autoencoder (tools/dm_video.py, the colab's
construction with DeepMind's code from --deepmind-src, run in --venv-haiku) with random params
(hk init + the seeded perturbation), written to DIR/video_autoencoding_checkpoint.pystate with no
config.json (the engine's built-in preset applies); the engine runs with --numerics haiku and is
compared with DeepMind's JAX float32 CPU output using "mm-haiku-full".

    .venv-ref/bin/python tools/check_fullsize_multimodal.py --make /tmp/mm-full --bin build/perceiver-cl
    .venv-ref/bin/python tools/check_fullsize_multimodal.py --model /tmp/mm-full --engine-outputs out.safetensors
    .venv-ref/bin/python tools/check_fullsize_multimodal.py --haiku --make /tmp/mm-dm
    .venv-ref/bin/python tools/check_fullsize_multimodal.py --make /tmp/mm-full --fp64 --no-engine

The reference outputs are cached in DIR (reference_chunk<c>.safetensors, recomputed when missing
or with --recompute); the engine inputs are DIR/inputs_chunk<c>.safetensors. --fp64 also measures
the reference's float32-vs-float64 error (what the tolerance profiles are sized from) and, in HF
mode, how far the outputs move when torch.linspace's FMA rounding is not reproduced.
Exit status 1 on any failure, 2 when the engine binary is missing. Expect minutes: one chunk is ~307 GFLOP (the encoder cross-attention
over 52,097 tokens dominates); transformers takes ~20-60 s on 2 cores, float64 2-4x that.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mm_ref  # noqa: E402
import pcl_ref  # noqa: E402

CLS = "PerceiverForMultimodalAutoencoding"
CKPT = "video_autoencoding_checkpoint.pystate"


def kinetics_id2label() -> dict | None:
    p = pcl_ref.REPO_ROOT / "data" / "kinetics-700.txt"
    if not p.is_file():
        return None
    names = p.read_text().splitlines()
    return {i: n for i, n in enumerate(names)} if len(names) == 700 else None


def make_inputs(seed: int, chunk: int) -> dict:
    """Seeded video in [0,1) [1][16][3][224][224] (a frame sequence with smooth structure plus
    noise), audio in [-1,1] [1][30720][1], label zeros [1][700], chunk `chunk` of 128."""
    cfg = mm_ref.FULLSIZE_MM_CONFIG
    rng = np.random.default_rng(seed)
    t, h, w = cfg["output_shape"][1:]
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    frames = []
    for k in range(t):
        base = 0.5 + 0.25 * np.sin(2 * np.pi * (xx * 3 + yy * 2 + 0.05 * k))[None] * np.array([1.0, 0.7, 0.4])[:, None, None]
        frames.append(np.clip(base + 0.15 * rng.standard_normal((3, h, w)), 0, 1 - 1e-6))
    image = np.stack(frames)[None].astype(np.float32)
    n = cfg["num_frames"] * cfg["audio_samples_per_frame"]
    ts = np.arange(n) / 48000.0
    audio = (0.5 * np.sin(2 * np.pi * 440 * ts) + 0.2 * np.sin(2 * np.pi * 3000 * ts)
             + 0.1 * rng.uniform(-1, 1, n)).astype(np.float32)[None, :, None]
    ci = int(np.prod(cfg["output_shape"][1:])) // mm_ref.FULLSIZE_NCHUNKS
    ca = n // cfg["samples_per_patch"] // mm_ref.FULLSIZE_NCHUNKS
    return {"inputs.image": torch.from_numpy(image), "inputs.audio": torch.from_numpy(audio),
            "inputs.label": torch.zeros((1, cfg["num_labels"])),
            "subsampled_output_points.image": torch.arange(ci * chunk, ci * (chunk + 1), dtype=torch.int64),
            "subsampled_output_points.audio": torch.arange(ca * chunk, ca * (chunk + 1), dtype=torch.int64)}


def report(got: dict, ref: dict, atol: float, rtol: float) -> bool:
    ok = True
    for k in mm_ref.OUTPUT_NAMES:
        if k not in got:
            print(f"{k}: FAIL (missing from the engine outputs)")
            ok = False
            continue
        s = pcl_ref.compare(got[k], ref[k], atol, rtol)
        print(pcl_ref.format_stats(k, s))
        ok &= s["pass"]
    return ok


def usage_line(name: str, a: dict, e: dict, atol: float, rtol: float) -> None:
    parts = []
    for k in mm_ref.OUTPUT_NAMES:
        s = pcl_ref.compare(a[k], e[k], atol, rtol)
        parts.append(f"{k} max_abs={s['max_abs_err']:.2e} max_rel={s['max_rel_err']:.1e} "
                     f"nmse={s['nmse']:.1e} tol_usage={s['tol_usage']:.3f}")
    print(f"  {name}: " + "; ".join(parts))


def hf_mode(args, model_dir: Path) -> tuple[dict, dict, float, float]:
    import transformers
    from transformers import PerceiverConfig

    if args.make:
        torch.manual_seed(args.seed)
        cfg = PerceiverConfig(**mm_ref.FULLSIZE_MM_CONFIG)
        id2label = kinetics_id2label()
        if id2label:
            cfg.id2label, cfg.label2id = id2label, {v: k for k, v in id2label.items()}
        model = getattr(transformers, CLS)(cfg).eval()
        model.config.architectures = [CLS]
        mm_ref.randomize(model, args.seed)
        pcl_ref.save_hf_model(model, model_dir)
        del model
    model = getattr(transformers, CLS).from_pretrained(str(model_dir)).eval()
    n = pcl_ref.count_parameters(model)
    print(f"{CLS}: {n:,} parameters (published config: {mm_ref.FULLSIZE_MM_PARAMS:,})")
    if n != mm_ref.FULLSIZE_MM_PARAMS:
        raise SystemExit(f"parameter count {n} != {mm_ref.FULLSIZE_MM_PARAMS}: not the published configuration")
    t = make_inputs(args.seed, args.chunk)
    ref_path = model_dir / f"reference_chunk{args.chunk}.safetensors"
    if args.recompute or args.make or not ref_path.is_file():
        t0 = time.perf_counter()
        ref = mm_ref.forward(model, t)
        print(f"transformers forward (chunk {args.chunk}): {time.perf_counter() - t0:.1f} s")
        save_file(ref, str(ref_path))
    ref = load_file(str(ref_path))
    atol, rtol = pcl_ref.model_tolerance(args.tolerance or "mm-full")
    if args.fp64:
        print("float32 reference vs float64 (and linspace rounding), as fractions of the tolerance:")
        for name, all64 in (("hf_fp32_vs_fp64 (float32 Fourier features, float64 network)", False),
                            ("hf_fp32_vs_fp64_all (everything float64)", True)):
            t0 = time.perf_counter()
            usage_line(name, ref, mm_ref.forward_fp64(model, t, all_fp64=all64), atol, rtol)
            print(f"    ({time.perf_counter() - t0:.0f} s)")
        print("  torch.linspace reproduced by mm_ref.linspace_torch_fma: "
              f"{mm_ref.linspace_check(mm_ref.linspace_sizes(model.config, tuple(t['inputs.image'].shape), t['inputs.audio'].shape[1]))}")
        for name in ("unfused", "jax_spec"):
            with mm_ref.torch_linspace(mm_ref.LINSPACES[name]):
                o = mm_ref.forward(model, t)
            usage_line(f"linspace {name} vs torch.linspace", o, ref, atol, rtol)
    if args.mutations:
        import copy

        from transformers.models.perceiver.modeling_perceiver import PerceiverMLP

        print("mutations (an engine with this mistake must FAIL the profile):")
        m = copy.deepcopy(model)
        for mod in m.modules():
            if isinstance(mod, PerceiverMLP):
                mod.intermediate_act_fn = torch.nn.GELU(approximate="tanh")
        usage_line("tanh GELU instead of erf", mm_ref.forward(m, t), ref, atol, rtol)
        del m
        model.perceiver.input_preprocessor.mask_probs = {"image": 0.0, "audio": 0.0, "label": 0.0}
        usage_line("label mask token ignored", mm_ref.forward(model, t), ref, atol, rtol)
        model.perceiver.input_preprocessor.mask_probs = {"image": 0.0, "audio": 0.0, "label": 1.0}
    return t, ref, atol, rtol


def haiku_mode(args, model_dir: Path) -> tuple[dict, dict, float, float]:
    t = make_inputs(args.seed, args.chunk)
    ref_path = model_dir / f"reference_chunk{args.chunk}.safetensors"
    ckpt = model_dir / CKPT
    if args.make or args.recompute or args.fp64 or args.mutations or not ref_path.is_file():
        model_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as td:
            td = Path(td)
            np.savez(td / "in.npz", image=t["inputs.image"].numpy().transpose(0, 1, 3, 4, 2),
                     audio=t["inputs.audio"].numpy(), sub_image=t["subsampled_output_points.image"].numpy(),
                     sub_audio=t["subsampled_output_points.audio"].numpy())
            cmd = [f"{args.venv_haiku}/bin/python", str(HERE / "dm_video.py"), "run",
                   "--deepmind-src", args.deepmind_src, "--sizes", "full", "--inputs", str(td / "in.npz"),
                   "--out", str(model_dir if args.make else td), "--seed", str(args.seed), "--init-key", "0"]
            if not args.make:
                cmd += ["--params", str(ckpt)]
            variants = (["f64_ff32", "speclin", "xlalin"] if args.fp64 else []) + \
                (["erfgelu", "nolabelmask"] if args.mutations else [])
            if variants:
                cmd += ["--variants", ",".join(variants)]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            print(f"DeepMind forward(s): {time.perf_counter() - t0:.1f} s")
            res_dir = model_dir if args.make else td
            r = dict(np.load(res_dir / "result.npz"))
            if args.make:
                (model_dir / "result.npz").unlink()
        print(f"DeepMind video autoencoder: {int(r['n_params']):,} parameters ({r['versions']})")
        if int(r["n_params"]) != mm_ref.FULLSIZE_MM_PARAMS:
            raise SystemExit(f"parameter count {int(r['n_params'])} != {mm_ref.FULLSIZE_MM_PARAMS}")

        def dm(p):
            return {"logits.image": r[f"{p}_image"], "logits.audio": r[f"{p}_audio"],
                    "logits.label": r[f"{p}_label"], "last_hidden_state": r[f"{p}_z"]}

        save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in dm("f32").items()}, str(ref_path))
        atol, rtol = pcl_ref.model_tolerance(args.tolerance or "mm-haiku-full")
        if args.fp64:
            print("DeepMind float32 vs float64 (and linspace rounding), as fractions of the tolerance:")
            usage_line("jax_fp32_vs_fp64 (float32 Fourier features, float64 network)", dm("f32"), dm("f64_ff32"),
                       atol, rtol)
            usage_line("jnp.linspace replaced by the haiku-vs-hf G8 formula", dm("speclin"), dm("f32"), atol, rtol)
            usage_line("jnp.linspace replaced by mm_ref.linspace_jax_xla (expect 0)", dm("xlalin"), dm("f32"), atol, rtol)
        if args.mutations:
            print("mutations (an engine with this mistake must FAIL the profile):")
            usage_line("erf GELU instead of tanh", dm("erfgelu"), dm("f32"), atol, rtol)
            usage_line("label mask token ignored", dm("nolabelmask"), dm("f32"), atol, rtol)
    ref = load_file(str(ref_path))
    atol, rtol = pcl_ref.model_tolerance(args.tolerance or "mm-haiku-full")
    return t, ref, atol, rtol


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", type=Path, help="existing folder made by --make")
    src.add_argument("--make", type=Path, metavar="DIR", help="build the random full-size model into DIR")
    ap.add_argument("--haiku", action="store_true", help="DeepMind's code and pickle, --numerics haiku")
    ap.add_argument("--bin", type=Path, default=pcl_ref.REPO_ROOT / "build" / "perceiver-cl")
    ap.add_argument("--engine-args", default="", help="extra arguments for perceiver-cl run (e.g. '--device 0')")
    ap.add_argument("--engine-outputs", type=Path, help="compare this file instead of running the engine")
    ap.add_argument("--no-engine", action="store_true", help="only build / measure the reference")
    ap.add_argument("--chunk", type=int, default=0, help="chunk of the 128-chunk loop (default 0)")
    ap.add_argument("--seed", type=int, default=8700)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--tolerance", default=None, help="profile (default mm-full, or mm-haiku-full with --haiku)")
    ap.add_argument("--fp64", action="store_true", help="also measure the reference's float32-vs-float64 error")
    ap.add_argument("--recompute", action="store_true", help="recompute the cached reference outputs")
    ap.add_argument("--mutations", action="store_true",
                    help="show that the wrong GELU form and an ignored label mask token fail the profile")
    ap.add_argument("--deepmind-src", default="/work/scratch/deepmind-research")
    ap.add_argument("--venv-haiku", default="/work/venv-haiku")
    args = ap.parse_args()
    if not 0 <= args.chunk < mm_ref.FULLSIZE_NCHUNKS:
        ap.error("--chunk must be in [0, 128)")

    pcl_ref.setup_torch(args.threads)
    model_dir = args.make or args.model
    t, ref, atol, rtol = (haiku_mode if args.haiku else hf_mode)(args, model_dir)
    in_path = model_dir / f"inputs_chunk{args.chunk}.safetensors"
    save_file(t, str(in_path))
    profile = args.tolerance or ("mm-haiku-full" if args.haiku else "mm-full")
    print(f"reference: {'DeepMind JAX float32' if args.haiku else 'transformers float32'}; tolerance {profile} "
          f"(atol={atol:g}, rtol={rtol:g}); inputs {in_path}")
    if args.no_engine:
        return 0
    if args.engine_outputs:
        out_path = args.engine_outputs
    else:
        if not args.bin.is_file():
            print(f"{args.bin}: no such engine binary (build it, or pass --bin / --engine-outputs / --no-engine)")
            return 2
        out_path = Path(tempfile.mkdtemp(prefix="pcl-mm-")) / "out.safetensors"
        cmd = [str(args.bin), "run", "--model", str(model_dir), "--inputs", str(in_path),
               "--outputs", str(out_path), *args.engine_args.split()]
        if args.haiku:
            cmd += ["--numerics", "haiku"]
        print("running", " ".join(cmd))
        t0 = time.perf_counter()
        rc = subprocess.run(cmd).returncode
        print(f"engine run (load + forward): {time.perf_counter() - t0:.1f} s, exit status {rc}")
        if rc != 0:
            print("RESULT: FAIL (engine failed)")
            return 1
    got = load_file(str(out_path))
    ok = report(got, ref, atol, rtol)
    print("RESULT:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
