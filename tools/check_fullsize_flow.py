#!/usr/bin/env python3
"""Check perceiver-cl against Hugging Face (and DeepMind's own code) on the FULL-size optical-flow
Perceiver: one 368x496 tile.

HF mode (--make DIR or --model DIR):
  1. --make DIR: random-weight PerceiverForOpticalFlow with the config of
     deepmind/optical-flow-perceiver (spec perceiver-io.md 1.3: 2048 latents x 512, d_model 322,
     24 self-attention layers x 16 heads, 1 cross head, train_size 368x496; 41,057,134
     parameters), every parameter randomised (pcl_ref.randomize_parameters), saved with
     save_pretrained (one float32 model.safetensors, ~164 MB); --model DIR reuses such a folder.
  2. inputs: two generated 368x496 frames (smooth texture + a disc, shifted; as in
     make_flow_fixtures.py) -> tools/flow_ref.py -> `inputs` float32 [1][2][27][368][496].
  3. `BIN run --model DIR --inputs IN.safetensors --outputs OUT.safetensors` (skipped with
     --engine-outputs FILE); OUT must hold `logits` [1][368][496][2] (decoder / 100) and
     `last_hidden_state` [1][2048][512].
  4. transformers' float32 CPU forward (one forward, output_hidden_states: last_hidden_state =
     hidden_states[-1], the encoder output) and the comparison: logits with the `flow-full`
     profile of tests/tolerances.json, last_hidden_state with `flow-full-latents` (the random
     model's logits are ~1e-2 while its latents reach ~20: one atol cannot serve both).
     --hf-fp64 also reports HF float32 vs a float64 forward (how the profiles were sized).

Haiku mode (--haiku PICKLE_DIR; needs --deepmind-src and the jax venv, --venv-haiku):
  DeepMind's own full-size flow model (the optical_flow colab's model construction, unmodified,
  executed from --deepmind-src by tools/deepmind_flow.py) with random params: jitted hk.transform
  init with jax.random.PRNGKey(--seed), perturbed like the tiny haiku_flow fixture; written as
  PICKLE_DIR/optical_flow_checkpoint.pystate (plain dict of dicts of float32 ndarrays, pickle
  protocol 4; ~164 MB; no config.json: the engine's built-in preset applies). An existing
  pickle there is reused unless --remake. Inputs: DeepMind's normalize + patches_for_flow of
  the same two frames (checked equal to flow_ref's), transposed to [1][2][27][368][496].
  Engine: `BIN run --model PICKLE_DIR --numerics haiku ...`; expected: the colab's transformed
  function (jax.jit, JAX float32 CPU) = decoder / 100 * 20, and the encoder latents (captured
  with hk.intercept_methods in the same call). Compared with the same profiles, the logits
  divided by 20 on both sides (flow-full is sized for decoder / 100). --jax-fp64 also reports
  JAX float32 vs float64.

Prints per output: max abs err, max rel err, NMSE, tolerance usage, PASS/FAIL; exits 1 on any
failure, 2 on setup errors. Expect minutes: one full-size forward is ~2 TFLOP (the decoder
cross-attention alone: 182528 queries x 2048 latents).

Examples:
  python tools/check_fullsize_flow.py --make /tmp/flow-full --bin build/perceiver-cl --hf-fp64
  python tools/check_fullsize_flow.py --model /tmp/flow-full --engine-outputs out.safetensors
  python tools/check_fullsize_flow.py --haiku /tmp/flow-dm --deepmind-src ~/deepmind-research
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

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import flow_ref  # noqa: E402

FULLSIZE_FLOW_CONFIG = dict(
    num_latents=2048, d_latents=512, d_model=322, num_blocks=1, num_self_attends_per_block=24,
    num_self_attention_heads=16, num_cross_attention_heads=1, qk_channels=None, v_channels=None,
    cross_attention_shape_for_attention="kv", self_attention_widening_factor=1,
    cross_attention_widening_factor=1, hidden_act="gelu", attention_probs_dropout_prob=0.1,
    use_query_residual=True, train_size=[368, 496], vocab_size=262, max_position_embeddings=2048,
    image_size=56)
FULLSIZE_FLOW_PARAMS = 41_057_134
TILE = tuple(FULLSIZE_FLOW_CONFIG["train_size"])
PICKLE = "optical_flow_checkpoint.pystate"


def frames(seed: int):
    import make_flow_fixtures

    return make_flow_fixtures.make_frames(TILE[0], TILE[1], 2, seed, (1.5, 2.5), (-3.0, 4.0))


# --------------------------------------------------------------------------------------------
# DeepMind stage (jax venv)
# --------------------------------------------------------------------------------------------

def stage_haiku_full(args) -> int:
    import pickle

    import jax
    import jax.numpy as jnp

    import deepmind_flow
    import make_flow_fixtures

    work = Path(args.work)
    req = json.loads((work / "request.json").read_text())
    ns = deepmind_flow.build_colab_model(args.deepmind_src)  # full size, unmodified
    assert tuple(ns["TRAIN_SIZE"]) == TILE
    pk = Path(req["pickle"])
    t0 = time.perf_counter()
    if pk.is_file() and not req["remake"]:
        params = pickle.loads(pk.read_bytes())
        print(f"[haiku] loaded {pk}")
    else:
        x = jnp.zeros((1, 2) + TILE + (3,), jnp.float32)
        params0 = jax.jit(ns["optical_flow"].init)(jax.random.PRNGKey(req["seed"]), x)
        params = make_flow_fixtures.perturb_params(jax.device_get(params0), req["seed"])
        pk.parent.mkdir(parents=True, exist_ok=True)
        pk.write_bytes(pickle.dumps(params, protocol=4))
        print(f"[haiku] wrote {pk} ({pk.stat().st_size / 1e6:.1f} MB, "
              f"{sum(a.size for v in params.values() for a in v.values()):,} values) "
              f"in {time.perf_counter() - t0:.1f} s")
    fr = np.load(work / "frames.npz")
    rng = jax.random.PRNGKey(42)
    lat = deepmind_flow.encoder_latents_fn(ns, args.deepmind_src)

    def run(p, dtype):
        imgs = jnp.stack([ns["normalize"](fr["frame0"]), ns["normalize"](fr["frame1"])], axis=0)[None]
        assert imgs.dtype == dtype
        inputs = np.asarray(ns["io_processors"].patches_for_flow(imgs)).transpose(0, 1, 4, 2, 3)
        t = time.perf_counter()
        flow, z = jax.jit(lat.apply)(p, rng, imgs)
        flow, z = np.asarray(flow), np.asarray(z)
        print(f"[haiku] DeepMind apply ({np.dtype(dtype).name}): {time.perf_counter() - t:.1f} s")
        return inputs, flow, z

    res = {}
    res["inputs"], res["logits"], res["last_hidden_state"] = run(params, jnp.float32)
    if req["fp64"]:
        jax.config.update("jax_enable_x64", True)
        p64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
        _, res["logits_f64"], res["last_hidden_state_f64"] = run(p64, jnp.float64)
    res["versions"] = np.array(f"jax {jax.__version__}")
    np.savez(work / "dm.npz", **res)
    return 0


# --------------------------------------------------------------------------------------------

def tolerances(args) -> dict:
    import pcl_ref

    t = {"logits": pcl_ref.model_tolerance(args.tolerance),
         "last_hidden_state": pcl_ref.model_tolerance(args.tolerance_latents)}
    print(f"tolerance: logits {args.tolerance} (atol={t['logits'][0]:g}, rtol={t['logits'][1]:g}), "
          f"last_hidden_state {args.tolerance_latents} (atol={t['last_hidden_state'][0]:g}, "
          f"rtol={t['last_hidden_state'][1]:g})")
    return t


def run_engine(args, model_dir: Path, in_path: Path, work: Path, extra: list[str]):
    if args.engine_outputs:
        print(f"engine outputs: {args.engine_outputs} (not running the engine)")
        return args.engine_outputs
    if not args.bin.is_file() or not os.access(args.bin, os.X_OK):
        print(f"error: engine binary {args.bin} not found or not executable "
              "(build it, pass --bin, or use --engine-outputs)", file=sys.stderr)
        return None
    out_path = work / "outputs.safetensors"
    cmd = [str(args.bin), "run", "--model", str(model_dir), "--inputs", str(in_path),
           "--outputs", str(out_path)] + extra + shlex.split(args.engine_args)
    print("engine: " + " ".join(shlex.quote(c) for c in cmd))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd)
    print(f"engine_wall_s={time.perf_counter() - t0:.3f}")
    if proc.returncode != 0:
        print(f"FAIL: engine exited with status {proc.returncode}")
        return None
    return out_path


def compare_outputs(engine: dict, ref: dict, tols: dict, scale: dict | None = None) -> bool:
    """tols: {output name: (atol, rtol)}"""
    import pcl_ref

    ok = True
    for k in ("logits", "last_hidden_state"):
        atol, rtol = tols[k]
        if k not in engine:
            print(f"{k}: FAIL (missing from engine outputs; has {sorted(engine)})")
            ok = False
            continue
        s = (scale or {}).get(k, 1.0)
        st = pcl_ref.compare(np.asarray(engine[k], np.float32) / np.float32(s),
                             np.asarray(ref[k], np.float32) / np.float32(s), atol, rtol)
        print(pcl_ref.format_stats(k + (f" (/{s:g})" if s != 1.0 else ""), st))
        ok &= st["pass"]
    return ok


def hf_mode(args) -> int:
    import torch
    from safetensors.numpy import load_file, save_file
    from transformers import PerceiverConfig, PerceiverForOpticalFlow

    import pcl_ref

    pcl_ref.setup_torch(args.threads)
    tols = tolerances(args)
    print(f"torch={torch.__version__} transformers={pcl_ref.versions()['transformers']} threads={args.threads}")
    if args.make:
        t0 = time.perf_counter()
        torch.manual_seed(args.seed)
        cfg = PerceiverConfig(**FULLSIZE_FLOW_CONFIG)
        cfg.architectures = ["PerceiverForOpticalFlow"]
        model = PerceiverForOpticalFlow(cfg).eval()
        pcl_ref.randomize_parameters(model, args.seed)
        pcl_ref.save_hf_model(model, args.make)
        del model
        print(f"made random full-size flow model in {args.make} ({time.perf_counter() - t0:.1f} s, seed {args.seed})")
    model_dir = args.make or args.model
    for f in ("config.json", "model.safetensors"):
        if not (model_dir / f).is_file():
            print(f"error: {model_dir}/{f} not found", file=sys.stderr)
            return 2
    model = PerceiverForOpticalFlow.from_pretrained(str(model_dir)).eval()
    n = pcl_ref.count_parameters(model)
    print(f"parameters: {n:,} (deepmind/optical-flow-perceiver has {FULLSIZE_FLOW_PARAMS:,})")
    if n != FULLSIZE_FLOW_PARAMS or tuple(model.config.train_size) != TILE:
        print("warning: this is not the full-size optical-flow configuration")

    f1, f2 = frames(args.seed + 1)
    inp = flow_ref.tile_inputs(flow_ref.normalize_frame(f1), flow_ref.normalize_frame(f2), 0, 0, TILE)
    tmp = tempfile.TemporaryDirectory(prefix="pcl-flow-full-")
    work = Path(tmp.name)
    in_path = work / "inputs.safetensors"
    save_file({"inputs": inp}, str(in_path), metadata={"format": "pt"})
    print(f"inputs: {list(inp.shape)} (two generated frames, flow_ref patches)")

    out_path = run_engine(args, model_dir, in_path, work, [])
    if out_path is None:
        return 1 if not args.engine_outputs else 2
    engine = load_file(str(out_path))

    def forward(m, x):
        with torch.no_grad():
            o = m(inputs=x, output_hidden_states=True)
        return {"logits": o.logits.numpy(), "last_hidden_state": o.hidden_states[-1].numpy()}

    t0 = time.perf_counter()
    hf = forward(model, torch.from_numpy(inp))
    print(f"hf_forward_s={time.perf_counter() - t0:.3f}")
    if args.hf_fp64:
        t0 = time.perf_counter()
        hf64 = forward(model.double(), torch.from_numpy(inp).double())
        model.float()
        print(f"hf_fp64_forward_s={time.perf_counter() - t0:.3f}")
        for k in hf:
            print("hf-fp32-vs-fp64 " + pcl_ref.format_stats(k, pcl_ref.compare(hf[k], hf64[k], *tols[k])))
        del hf64
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        save_file({"inputs": inp}, str(args.keep / "inputs.safetensors"))
        save_file({k: np.ascontiguousarray(v) for k, v in hf.items()}, str(args.keep / "hf_outputs.safetensors"))
        print(f"kept inputs and HF outputs in {args.keep}")
    ok = compare_outputs(engine, hf, tols)
    print("RESULT: " + ("PASS" if ok else "FAIL"))
    tmp.cleanup()
    return 0 if ok else 1


def haiku_mode(args) -> int:
    from safetensors.numpy import load_file, save_file

    import pcl_ref

    if not args.deepmind_src:
        print("error: --haiku needs --deepmind-src", file=sys.stderr)
        return 2
    tols = tolerances(args)
    print("logits compared / 20 (DeepMind's output includes x20; the profile is for decoder / 100)")
    tmp = tempfile.TemporaryDirectory(prefix="pcl-flow-dm-")
    work = Path(tmp.name)
    f1, f2 = frames(args.seed + 1)
    np.savez(work / "frames.npz", frame0=f1, frame1=f2)
    (work / "request.json").write_text(json.dumps({
        "pickle": str(args.haiku / PICKLE), "seed": args.seed, "remake": args.remake, "fp64": args.jax_fp64}))
    cmd = [f"{args.venv_haiku}/bin/python", str(Path(__file__).resolve()), "--stage", "haiku-full",
           "--work", str(work), "--deepmind-src", str(args.deepmind_src)]
    print(f"DeepMind's code in {args.venv_haiku} ...")
    t0 = time.perf_counter()
    if subprocess.run(cmd).returncode != 0:
        print("error: the DeepMind stage failed", file=sys.stderr)
        return 2
    print(f"deepmind_stage_s={time.perf_counter() - t0:.1f}")
    dm = dict(np.load(work / "dm.npz"))
    ours = flow_ref.tile_inputs(flow_ref.normalize_frame(f1), flow_ref.normalize_frame(f2), 0, 0, TILE)
    same = np.array_equal(ours, dm["inputs"])
    print(f"inputs: DeepMind patches_for_flow {'==' if same else '!='} flow_ref.tile_inputs")
    in_path = work / "inputs.safetensors"
    save_file({"inputs": dm["inputs"]}, str(in_path), metadata={"format": "pt"})
    if args.jax_fp64:
        for k in ("logits", "last_hidden_state"):
            s = 20.0 if k == "logits" else 1.0
            st = pcl_ref.compare(dm[k] / np.float32(s), dm[k + "_f64"] / s, *tols[k])
            print("jax-fp32-vs-fp64 " + pcl_ref.format_stats(k + (" (/20)" if s != 1 else ""), st))
    out_path = run_engine(args, args.haiku, in_path, work, ["--numerics", "haiku"])
    ok = same
    if out_path is None:
        ok = False
    else:
        ok &= compare_outputs(load_file(str(out_path)), dm, tols, scale={"logits": 20.0})
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        save_file({"inputs": dm["inputs"]}, str(args.keep / "inputs.safetensors"))
        save_file({k: np.ascontiguousarray(dm[k]) for k in ("logits", "last_hidden_state")},
                  str(args.keep / "deepmind_outputs.safetensors"))
        print(f"kept inputs and DeepMind outputs in {args.keep}")
    print("RESULT: " + ("PASS" if ok else "FAIL"))
    tmp.cleanup()
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__[__doc__.index("HF mode"):],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--model", type=Path, help="existing HF model folder (config.json + model.safetensors)")
    src.add_argument("--make", type=Path, metavar="DIR", help="build the random full-size HF model into DIR first")
    src.add_argument("--haiku", type=Path, metavar="PICKLE_DIR",
                     help="DeepMind mode: pickle folder (made if absent) compared under --numerics haiku")
    ap.add_argument("--bin", type=Path, default=HERE.parent / "build" / "perceiver-cl")
    ap.add_argument("--engine-args", default="", help="extra arguments appended to `perceiver-cl run ...`")
    ap.add_argument("--engine-outputs", type=Path, help="compare this outputs.safetensors instead of running --bin")
    ap.add_argument("--seed", type=int, default=368, help="weights (and frames: seed+1) seed (default 368)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="torch CPU threads")
    ap.add_argument("--tolerance", default="flow-full", help="profile for logits (tests/tolerances.json)")
    ap.add_argument("--tolerance-latents", default="flow-full-latents",
                    help="profile for last_hidden_state (tests/tolerances.json)")
    ap.add_argument("--hf-fp64", action="store_true", help="HF mode: also report HF float32 vs float64")
    ap.add_argument("--jax-fp64", action="store_true", help="haiku mode: also report JAX float32 vs float64")
    ap.add_argument("--remake", action="store_true", help="haiku mode: rebuild the pickle even if present")
    ap.add_argument("--deepmind-src", type=Path, help="folder containing perceiver/ of google-deepmind/deepmind-research")
    ap.add_argument("--venv-haiku", default="/work/venv-haiku", help="venv with jax, dm-haiku, einops")
    ap.add_argument("--keep", type=Path, metavar="DIR", help="keep inputs and reference outputs in DIR")
    ap.add_argument("--stage", default="main", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.stage == "haiku-full":
        return stage_haiku_full(args)
    if args.haiku:
        return haiku_mode(args)
    if not (args.make or args.model):
        ap.error("one of --make, --model or --haiku is required")
    return hf_mode(args)


if __name__ == "__main__":
    sys.exit(main())
