#!/usr/bin/env python3
"""Generate perceiver-cl's DeepMind-checkpoint and PyTorch-checkpoint fixtures.

Writes (under --out, default tests/fixtures):

  haiku_mlm/        a tiny masked-LM as DeepMind Haiku pickles, written by REAL NumPy and REAL
                    dm-haiku mapping classes: NumPy 2.x (numpy._core paths) with dm-haiku 0.0.17
                    and NumPy 1.26 (numpy.core paths) with dm-haiku 0.0.12, pickle protocols 2, 4
                    and 5, FlatMapping and plain-dict levels, and JAX array leaves;
                    config.json (the tiny config: heads cannot be read from weights);
                    inputs.safetensors; expected_hf.safetensors (transformers' forward of the
                    same weights converted with HF's rules: hf numerics); expected_haiku.safetensors
                    (OUR JAX/Haiku re-implementation of DeepMind's forward, tools/haiku_ref.py:
                    haiku numerics); fixture.json (versions, profiles, float64 diagnostics).
  haiku_dtypes/     small arrays in every layout the reader must handle (float16/64, bfloat16,
                    big-endian, Fortran order, 0-d, NumPy scalars, ints) + their values (JSON)
  haiku_names/      names.json: HF's renaming of every Haiku name of the six architectures
  haiku_hostile/    pickles that would run a shell command under Python (NEVER unpickled here)
  torch_mlm/        the same tiny model as pytorch_model.bin (torch.save, zip format)
  torch_mlm_legacy/ the same, torch.save(..., _use_new_zipfile_serialization=False)
  torch_sharded/    the same, save_pretrained with a small max_shard_size (safetensors shards)

Runs in the reference venv (torch + transformers: tools/setup_venv.sh) and calls itself in two
more venvs for the Haiku side (tools/requirements-haiku.txt):
  --venv-haiku  (default /work/venv-haiku): jax, jaxlib, dm-haiku, numpy 2.x
  --venv-np1    (default /work/venv-np1):   numpy 1.26, jax 0.4.30, dm-haiku 0.0.12
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import haiku_ref  # noqa: E402

TINY_MLM = dict(vocab_size=262, hidden_act="gelu", attention_probs_dropout_prob=0.1,
                num_latents=8, d_latents=32, d_model=16, num_blocks=2,
                num_self_attends_per_block=2, num_self_attention_heads=4,
                num_cross_attention_heads=2, qk_channels=None, v_channels=None,
                self_attention_widening_factor=1, cross_attention_widening_factor=1,
                max_position_embeddings=24, use_query_residual=True)
SEED = 2024
PWNED = "/tmp/perceiver-cl-pwned-by-pickle"


# --------------------------------------------------------------------------------------------
# stages that run in the Haiku venvs
# --------------------------------------------------------------------------------------------

def stage_pickles(args) -> int:
    """Runs with --python of a Haiku venv: writes the pickles (and the reference forward)."""
    import haiku as hk

    flat = dict(np.load(args.tree))
    tree = haiku_ref.nest(flat)
    out = Path(args.out)
    tag = "np1" if np.__version__.startswith("1.") else "np2"
    immut = hk.data_structures.to_immutable_dict
    variants = {
        f"p2_{tag}_flatmapping.pickle": (immut(tree), 2),  # Haiku mapping at both levels
        f"p5_{tag}_dict.pickle": ({k: dict(v) for k, v in tree.items()}, 5),  # _frombuffer
    }
    if tag == "np2":
        import jax.numpy as jnp

        variants[f"p4_{tag}_dict.pickle"] = (tree, 4)
        # mixed: plain outer dict of Haiku mappings, JAX arrays as leaves (jax _reconstruct_array)
        variants[f"p4_{tag}_jax.pickle"] = (
            {k: immut({n: jnp.asarray(a) for n, a in v.items()}) for k, v in tree.items()}, 4)
    for name, (obj, proto) in variants.items():
        (out / name).write_bytes(pickle.dumps(obj, protocol=proto))
        print(f"  {name}: numpy {np.__version__}, dm-haiku {hk.__version__}, protocol {proto}")

    if args.forward:
        import jax

        cfg = json.loads(Path(args.config).read_text())
        inp = dict(np.load(args.inputs))
        res = {}
        logits, z = haiku_ref.mlm_forward(tree, inp["input_ids"], inp["attention_mask"], cfg)
        res["logits"], res["last_hidden_state"] = logits.astype(np.float32), z.astype(np.float32)
        jax.config.update("jax_enable_x64", True)
        l64, z64 = haiku_ref.mlm_forward(tree, inp["input_ids"], inp["attention_mask"], cfg, "float64")
        res["logits_f64"], res["last_hidden_state_f64"] = l64, z64
        res["versions"] = np.array(f"jax {jax.__version__}, dm-haiku {hk.__version__}, numpy {np.__version__}")
        np.savez(args.forward, **res)

    if args.dtypes:
        write_dtype_cases(Path(args.dtypes), tag)
    return 0


def write_dtype_cases(out: Path, tag: str) -> None:
    """Arrays in unusual layouts; values are recorded as float64 lists in cases.json."""
    rng = np.random.default_rng(7)
    base = rng.standard_normal((3, 4)).astype(np.float32)
    cases = {
        "f32_c": base,
        "f32_fortran": np.asfortranarray(base),
        "f64": base.astype(np.float64) * 1e-3,
        "f16": base.astype(np.float16),
        "f32_bigendian": base.astype(">f4"),
        "f64_bigendian_fortran": np.asfortranarray(base.astype(">f8")),
        "i64": np.arange(6, dtype=np.int64).reshape(2, 3) - 2,
        "i32_0d": np.array(-7, dtype=np.int32),
        "f32_scalar": np.float32(2.5),  # a NumPy scalar, not an array
        "u8": np.arange(5, dtype=np.uint8),
        "f32_3d_fortran": np.asfortranarray(rng.standard_normal((2, 3, 4)).astype(np.float32)),
        "f32_empty": np.zeros((0, 3), np.float32),
    }
    try:
        import ml_dtypes

        cases["bf16"] = base.astype(ml_dtypes.bfloat16)
    except ImportError:
        pass
    doc = {k: {"shape": list(np.shape(v)), "values": np.asarray(v, dtype=np.float64).ravel().tolist()}
           for k, v in cases.items()}
    for proto in (2, 4, 5):
        (out / f"dtypes_p{proto}_{tag}.pickle").write_bytes(pickle.dumps({"arrays": cases}, protocol=proto))
    (out / f"cases_{tag}.json").write_text(json.dumps(doc, indent=1) + "\n")


# --------------------------------------------------------------------------------------------
# main stage (reference venv)
# --------------------------------------------------------------------------------------------

class _Evil:
    """Pickles as a call of os.system(cmd). Only ever pickled, never unpickled."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _EvalEvil:
    def __reduce__(self):
        return (eval, (f"__import__('os').system('touch {PWNED}')",))


def write_hostile(out: Path, torch_zip: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cmd = f"touch {PWNED}"
    for proto in (0, 2, 4):
        (out / f"os_system_p{proto}.pickle").write_bytes(pickle.dumps(_Evil(cmd), protocol=proto))
    # the malicious call hidden inside an otherwise normal parameter dict
    nested = {"embed": {"embeddings": np.zeros((2, 2), np.float32), "evil": _Evil(cmd)}}
    (out / "nested_os_system.pickle").write_bytes(pickle.dumps(nested, protocol=4))
    (out / "builtins_eval.pickle").write_bytes(pickle.dumps(_EvalEvil(), protocol=2))
    # a torch.save zip whose data.pkl is replaced by the malicious pickle
    import zipfile

    with zipfile.ZipFile(torch_zip) as src, zipfile.ZipFile(out / "pytorch_model.bin", "w",
                                                             zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                data = pickle.dumps(_Evil(cmd), protocol=2)
            dst.writestr(info.filename, data)
    (out / "README.md").write_text(
        "Hostile inputs for perceiver-cl's safe pickle reader. Each would run\n"
        f"`{cmd}` if loaded with Python's pickle (do not!). perceiver-cl must refuse\n"
        "them naming the global (posix.system / builtins.eval) and must not create the file.\n"
        "Made by tools/make_haiku_fixtures.py with pickle.dumps only.\n")


def write_names(out: Path) -> None:
    """HF's renaming (tools/haiku_ref.py, written from the spec) of every Haiku name of the six
    architectures, for test_haiku.c to compare with the C renamer table."""
    out.mkdir(parents=True, exist_ok=True)
    doc = {}
    for arch in haiku_ref.ARCHS:
        p, st = haiku_ref.haiku_names(arch, 11)
        doc[arch] = {"hf_class": haiku_ref.HF_CLASS[arch],
                     "names": {n: haiku_ref.hf_rename(n, arch) for n in p + st}}
    (out / "names.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")


def save_st(path: Path, tensors: dict) -> None:
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path), metadata={"format": "pt"})
    path.chmod(0o644)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE.parent / "tests" / "fixtures")
    ap.add_argument("--venv-haiku", default="/work/venv-haiku")
    ap.add_argument("--venv-np1", default="/work/venv-np1")
    ap.add_argument("--stage", default="main")
    ap.add_argument("--tree")
    ap.add_argument("--config")
    ap.add_argument("--inputs")
    ap.add_argument("--forward")
    ap.add_argument("--dtypes")
    args = ap.parse_args(argv)
    if args.stage == "pickles":
        return stage_pickles(args)
    write_names(args.out / "haiku_names")
    if args.stage == "names":
        return 0

    import torch
    import transformers
    from transformers import PerceiverConfig, PerceiverForMaskedLM

    import pcl_ref

    pcl_ref.setup_torch(2)
    torch.manual_seed(SEED)
    model = PerceiverForMaskedLM(PerceiverConfig(**TINY_MLM)).eval()
    model.config.architectures = ["PerceiverForMaskedLM"]
    pcl_ref.randomize_parameters(model, SEED)
    sd = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}

    # inputs: S == max_position_embeddings (DeepMind's model requires it); row 1 padded
    rows = [pcl_ref.encode("Perceiver reads bytes.")[1:-1][:24],
            pcl_ref.encode("Haiku [x]")[1:-1]]
    rows[0][3] = rows[1][2] = pcl_ref.MASK_ID
    ids, mask = pcl_ref.pad_batch(rows, 24)
    inputs = {"input_ids": ids, "attention_mask": mask}
    exp_hf = pcl_ref.hf_forward(model, inputs)

    out = args.out
    hk_dir = out / "haiku_mlm"
    if hk_dir.exists():
        shutil.rmtree(hk_dir)
    hk_dir.mkdir(parents=True)
    params, _ = haiku_ref.hf_to_haiku_tree(sd, "MLM", TINY_MLM["num_self_attends_per_block"])
    flat = haiku_ref.flatten(params)
    # HF's own conversion rules must give back exactly the HF model's weights
    back = haiku_ref.haiku_to_hf(flat, "MLM")
    assert set(back) == set(sd) and all(np.array_equal(back[k], sd[k]) for k in sd)

    cfg_doc = json.loads(model.config.to_json_string())
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        np.savez(td / "tree.npz", **flat)
        np.savez(td / "inputs.npz", input_ids=ids.numpy(), attention_mask=mask.numpy())
        (td / "config.json").write_text(json.dumps(cfg_doc))
        dt_dir = out / "haiku_dtypes"
        if dt_dir.exists():
            shutil.rmtree(dt_dir)
        dt_dir.mkdir(parents=True)
        for venv, fwd in ((args.venv_haiku, True), (args.venv_np1, False)):
            cmd = [f"{venv}/bin/python", __file__, "--stage", "pickles", "--tree", str(td / "tree.npz"),
                   "--out", str(hk_dir), "--dtypes", str(dt_dir)]
            if fwd:
                cmd += ["--forward", str(td / "fwd.npz"), "--config", str(td / "config.json"),
                        "--inputs", str(td / "inputs.npz")]
            print("running", " ".join(cmd[:3]), "...")
            subprocess.run(cmd, check=True)
        fwd = dict(np.load(td / "fwd.npz"))

    model.config.save_pretrained(hk_dir)  # config.json only
    save_st(hk_dir / "inputs.safetensors", {k: v.numpy() for k, v in inputs.items()})
    save_st(hk_dir / "expected_hf.safetensors", {k: v.numpy() for k, v in exp_hf.items()})
    save_st(hk_dir / "expected_haiku.safetensors",
            {"logits": fwd["logits"], "last_hidden_state": fwd["last_hidden_state"]})
    tol = pcl_ref.load_tolerances()["models"]
    diag = {}
    for k in ("logits", "last_hidden_state"):
        s = pcl_ref.compare(fwd[k], fwd[k + "_f64"], tol["mlm-haiku-tiny"]["atol"], tol["mlm-haiku-tiny"]["rtol"]) \
            if "mlm-haiku-tiny" in tol else {}
        diag[k] = {x: s.get(x) for x in ("max_abs_err", "tol_usage")}
    # how far the two profiles are apart on this model (must be far more than the tolerances)
    gap = float(np.abs(fwd["logits"] - exp_hf["logits"].numpy()).max())
    meta = {
        "description": "Tiny PerceiverForMaskedLM as DeepMind Haiku pickles (see tools/make_haiku_fixtures.py).",
        "tolerance_hf": "mlm-tiny",
        "tolerance_haiku": "mlm-haiku-tiny",
        "seed": SEED,
        **pcl_ref.versions(),
        "haiku_reference": str(fwd["versions"]) + " -- tools/haiku_ref.py mlm_forward, OUR "
                           "re-implementation of DeepMind's formulas (haiku-vs-hf.md section 3), "
                           "not DeepMind's code",
        "pickles": sorted(p.name for p in hk_dir.glob("*.pickle")),
        "diagnostics": {"haiku_fp32_vs_fp64": diag, "max_abs_logits_haiku_minus_hf": gap},
        "generated_by": "tools/make_haiku_fixtures.py",
    }
    (hk_dir / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")
    for p in hk_dir.iterdir():
        p.chmod(0o644)

    # PyTorch formats of the same model
    for name, kw in (("torch_mlm", {}), ("torch_mlm_legacy", {"_use_new_zipfile_serialization": False})):
        d = out / name
        if d.exists():
            shutil.rmtree(d)
        d.mkdir()
        torch.save(model.state_dict(), d / "pytorch_model.bin", **kw)
        model.config.save_pretrained(d)
        save_st(d / "inputs.safetensors", {k: v.numpy() for k, v in inputs.items()})
        save_st(d / "expected.safetensors", {k: v.numpy() for k, v in exp_hf.items()})
    d = out / "torch_sharded"
    if d.exists():
        shutil.rmtree(d)
    model.save_pretrained(d, safe_serialization=True, max_shard_size="60KB")
    for f in d.iterdir():
        if f.name.startswith("generation_config"):
            f.unlink()
    save_st(d / "inputs.safetensors", {k: v.numpy() for k, v in inputs.items()})
    save_st(d / "expected.safetensors", {k: v.numpy() for k, v in exp_hf.items()})
    for dd in ("torch_mlm", "torch_mlm_legacy", "torch_sharded"):
        for f in (out / dd).iterdir():
            f.chmod(0o644)
        # reload check: transformers reads what was written
        if dd != "torch_mlm_legacy":
            m2 = PerceiverForMaskedLM.from_pretrained(out / dd).eval()
            again = pcl_ref.hf_forward(m2, inputs)
            assert torch.equal(again["logits"], exp_hf["logits"]), dd
    write_hostile(out / "haiku_hostile", out / "torch_mlm" / "pytorch_model.bin")
    total = sum(p.stat().st_size for dd in ("haiku_mlm", "haiku_dtypes", "haiku_hostile", "torch_mlm",
                                            "torch_mlm_legacy", "torch_sharded")
                for p in (out / dd).iterdir())
    print(f"gap haiku vs hf logits: {gap:.3g}; diag {diag}")
    print(f"transformers {transformers.__version__}; total fixture size {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
