#!/usr/bin/env python3
"""DeepMind's video autoencoder (Perceiver IO multimodal), run with DeepMind's own code.

Runs in the Haiku venv (tools/requirements-haiku.txt: jax, dm-haiku, numpy, einops). It imports
perceiver/{perceiver,io_processors,position_encoding}.py from a checkout of
google-deepmind/deepmind-research (--deepmind-src, default /work/scratch/deepmind-research) and
builds the model by exec'ing the source of the colab cell "#@title Model construction" of
perceiver/colabs/video_autoencoding.ipynb, read from that checkout at run time; full
reconstructions use the colab's own chunk loop, the cell "#@title Model application". Nothing of
DeepMind's is copied into this repository.

What is changed at run time (DeepMind's modules themselves are not patched):
* sizes: for a tiny model the construction cell's literal sizes are replaced textually
  (NUM_FRAMES, AUDIO_SAMPLES_PER_FRAME, SAMPLES_PER_PATCH, NUM_CLASSES, IMG_SZ, the encoder's
  num_self_attends_per_block, z_index_dim (latents), num_z_channels (d_latents),
  num_self_attend_heads, output_num_channels, the label query's num_channels), plus two literals
  the colab hard-codes instead of using its constants: the AudioPreprocessor's
  samples_per_patch=16 and the label input np.zeros((B, 700)). Every replacement must match the
  expected number of times or the script stops. At full size nothing is replaced.
  The chunk loop's nchunks = 128 is replaced the same way when asked.
* float64 references (jax_enable_x64, float64 params and inputs): DeepMind's
  position_encoding.build_linear_positions hard-codes float32, so the all-float64 variant swaps
  in a float64 version; the "float32 Fourier features" variant forces position_encoding's
  linspace and generate_fourier_features to float32 so that only the network runs in float64.
* linspace experiments: position_encoding's jnp.linspace is replaced by a NumPy float32
  formula (tools/mm_ref.py: haiku-vs-hf.md G8 = JAX's source formula as 2021 JAX ran it op by op
  ("speclin"); what XLA:CPU actually computes for the jitted jnp.linspace of current JAX, which
  must change nothing ("xlalin"); torch's CPU kernel ("torchlin")) to measure how much last-bit
  differences of the position grids and frequency bands move the outputs.
* mutations (to show the fixture catches them): jax.nn.gelu with approximate=False ("erfgelu"),
  jax.random.bernoulli returning all False, i.e. the label never replaced by its mask token
  ("nolabelmask").
No patch was needed for current JAX/Haiku (JAX 0.10.2, dm-haiku 0.0.17): the 2021 code runs as is
once einops is installed.

Parameters: hk.transform_with_state(...).init with jax.random.PRNGKey(--init-key), then every
parameter is perturbed with seeded NumPy noise (perturb()): LayerNorm scale +0.1 N, offsets and
biases +0.1 N, Linear w +0.5 N/sqrt(fan_in), latents +1.0 N, padding / mask-token / label-query
tables +0.5 N. The pickle is written like DeepMind's published video_autoencoding_checkpoint.pystate
(consumers do params = pickle.loads(f.read()); state = {}): a plain dict {module scope: {name:
float32 ndarray}} in Haiku's creation order, pickle protocol 3.

Command (used by tools/make_multimodal_fixtures.py and tools/check_fullsize_multimodal.py):

  dm_video.py run --sizes SIZES.json|full --inputs in.npz --out DIR [--seed S] [--init-key K]
                  [--variants f64,f64_ff32,speclin,torchlin] [--full-chunks N] [--params P.pystate]

in.npz: image [B][T][H][W][3] float32 (DeepMind's channels-last video), audio [B][S][1] float32,
sub_image, sub_audio (int). DIR receives video_autoencoding_checkpoint.pystate (unless --params
gives an existing one) and result.npz (outputs of every variant, the encoder output z, the full
reconstruction, parameter names, versions).
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mm_ref  # noqa: E402  (NumPy only at import time)
DEFAULT_DM_SRC = "/work/scratch/deepmind-research"
CKPT_NAME = "video_autoencoding_checkpoint.pystate"

# The colab's sizes (= HF's deepmind/multimodal-perceiver config).
FULL_SIZES = dict(num_frames=16, audio_samples_per_frame=1920, samples_per_patch=16, num_labels=700,
                  image_size=56, num_self_attends_per_block=8, num_latents=784, d_latents=512,
                  num_self_attention_heads=8, output_num_channels=512, label_channels=1024)


def colab_cells(dm_src: Path) -> dict:
    nb = json.loads((dm_src / "perceiver" / "colabs" / "video_autoencoding.ipynb").read_text())
    cells = {}
    for c in nb["cells"]:
        s = "".join(c["source"])
        for title in ("#@title Model construction", "#@title Model application"):
            if s.startswith(title):
                cells[title] = s
    if len(cells) != 2:
        raise RuntimeError(f"{dm_src}: colab cells not found (have {sorted(cells)})")
    return cells


def _replace(src: str, old: str, new: str, count: int = 1) -> str:
    n = src.count(old)
    if n != count:
        raise RuntimeError(f"colab source: expected {count} occurrence(s) of {old!r}, found {n}")
    return src.replace(old, new)


def construction_source(cell: str, sizes: dict) -> str:
    """The colab's model-construction cell with the sizes of `sizes` substituted."""
    f = FULL_SIZES
    reps = [
        ("NUM_FRAMES = 16", f"NUM_FRAMES = {sizes['num_frames']}", 1),
        ("AUDIO_SAMPLES_PER_FRAME = 48000 // 25",
         f"AUDIO_SAMPLES_PER_FRAME = {sizes['audio_samples_per_frame']}", 1),
        ("SAMPLES_PER_PATCH = 16", f"SAMPLES_PER_PATCH = {sizes['samples_per_patch']}", 1),
        ("NUM_CLASSES = 700", f"NUM_CLASSES = {sizes['num_labels']}", 1),
        ("IMG_SZ = 56", f"IMG_SZ = {sizes['image_size']}", 1),
        ("samples_per_patch=16)", "samples_per_patch=SAMPLES_PER_PATCH)", 1),
        ("num_self_attends_per_block=8", f"num_self_attends_per_block={sizes['num_self_attends_per_block']}", 1),
        ("z_index_dim=28*28*1", f"z_index_dim={sizes['num_latents']}", 1),
        ("num_z_channels=512", f"num_z_channels={sizes['d_latents']}", 1),
        ("num_self_attend_heads=8", f"num_self_attend_heads={sizes['num_self_attention_heads']}", 1),
        ("output_num_channels=512", f"output_num_channels={sizes['output_num_channels']}", 3),
        ("num_channels=1024", f"num_channels={sizes['label_channels']}", 1),
        ("np.zeros((images.shape[0], 700))", "np.zeros((images.shape[0], NUM_CLASSES))", 1),
    ]
    for old, new, n in reps:
        if sizes == f:  # full size: only check that the colab still has the published sizes
            _replace(cell, old, old, n)
        else:
            cell = _replace(cell, old, new, n)
    return cell


def load_model(dm_src: Path, sizes: dict, nchunks: int | None = None):
    """(namespace of the exec'd colab cells: video_autoencoder, autoencode_video, ...)."""
    sys.path.insert(0, str(dm_src))
    import haiku as hk
    import jax
    import jax.numpy as jnp
    from perceiver import io_processors, perceiver  # noqa: F401  (DeepMind's modules)

    cells = colab_cells(dm_src)
    ns = {"hk": hk, "jax": jax, "jnp": jnp, "np": np, "perceiver": perceiver,
          "io_processors": io_processors}
    exec(compile(construction_source(cells["#@title Model construction"], sizes),
                 "video_autoencoding.ipynb:model_construction", "exec"), ns)
    app = cells["#@title Model application"]
    if nchunks is not None:
        app = _replace(app, "nchunks = 128", f"nchunks = {nchunks}")
    exec(compile(app, "video_autoencoding.ipynb:model_application", "exec"), ns)
    return ns


def perturb(params, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for scope, d in params.items():  # Haiku's creation order
        out[scope] = {}
        for name, a in d.items():
            a = np.asarray(a, dtype=np.float32)
            n = rng.standard_normal(a.shape)
            if name == "scale":
                v = a + 0.1 * n
            elif name in ("offset", "b"):
                v = a + 0.1 * n
            elif name == "w":
                v = a + 0.5 * n / math.sqrt(a.shape[0])
            elif name == "pos_embs":
                v = a + (1.0 if scope == "encoder/~/trainable_position_encoding" else 0.5) * n
            else:
                raise RuntimeError(f"perturb: no rule for {scope}/{name}")
            out[scope][name] = np.ascontiguousarray(v.astype(np.float32))
    return out


# --------------------------------------------------------------------------------------------
# linspace variants (NumPy float32)
# --------------------------------------------------------------------------------------------

class _JnpProxy:
    """Stands in for position_encoding.jnp: linspace replaced, everything else delegated."""

    def __init__(self, real, linspace):
        self._real, self._lin = real, linspace

    def __getattr__(self, name):
        return getattr(self._real, name)

    def linspace(self, start, stop, num=50, endpoint=True, dtype=None):
        assert endpoint
        return self._real.asarray(self._lin(float(start), float(stop), int(num)), dtype=dtype)


class patched:
    """Context manager: set attributes of a module, restore them on exit."""

    def __init__(self, mod, **attrs):
        self.mod, self.attrs, self.old = mod, attrs, {}

    def __enter__(self):
        for k, v in self.attrs.items():
            self.old[k] = getattr(self.mod, k)
            setattr(self.mod, k, v)

    def __exit__(self, *exc):
        for k, v in self.old.items():
            setattr(self.mod, k, v)


# --------------------------------------------------------------------------------------------

def apply(ns, params, images, audio, sub):
    """One colab forward: outputs {image, audio, label} and the encoder output z."""
    import haiku as hk
    import jax

    from perceiver import perceiver

    captured = []

    def icpt(next_f, args, kwargs, ctx):
        out = next_f(*args, **kwargs)
        if isinstance(ctx.module, perceiver.PerceiverEncoder) and ctx.method_name == "__call__":
            captured.append(out)
        return out

    with hk.intercept_methods(icpt):
        out, _ = ns["video_autoencoder"].apply(params, {}, jax.random.PRNGKey(42), images, audio, sub)
    assert len(captured) == 1
    return {k: np.asarray(v) for k, v in out.items()}, np.asarray(captured[0])


def cmd_run(args) -> int:
    import haiku as hk
    import jax
    import jax.numpy as jnp
    import jaxlib

    dm_src = Path(args.deepmind_src)
    sizes = FULL_SIZES if args.sizes == "full" else json.loads(Path(args.sizes).read_text())
    ns = load_model(dm_src, sizes, args.full_chunks)
    from perceiver import position_encoding

    inp = dict(np.load(args.inputs))
    images, audio = inp["image"].astype(np.float32), inp["audio"].astype(np.float32)
    sub = {"image": jnp.asarray(inp["sub_image"].astype(np.int32)),
           "audio": jnp.asarray(inp["sub_audio"].astype(np.int32)), "label": None}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    if args.params:
        with open(args.params, "rb") as f:
            params = pickle.loads(f.read())  # as the colab does
    else:
        params0, _ = ns["video_autoencoder"].init(jax.random.PRNGKey(args.init_key), images, audio, sub)
        params = perturb(params0, args.seed)
        ckpt = out_dir / CKPT_NAME
        ckpt.write_bytes(pickle.dumps(params, protocol=3))
        print(f"  wrote {ckpt} ({ckpt.stat().st_size} bytes)")
    n_params = sum(int(a.size) for d in params.values() for a in d.values())
    names = [f"{s}/{n}" for s, d in params.items() for n in d]
    print(f"  DeepMind video autoencoder: {len(names)} arrays, {n_params:,} parameters; "
          f"jax {jax.__version__}, dm-haiku {hk.__version__}")

    res = {"names": np.array(names), "n_params": np.array(n_params),
           "versions": np.array(f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, "
                                f"dm-haiku {hk.__version__}, numpy {np.__version__}")}
    out, z = apply(ns, params, images, audio, sub)
    for k, v in out.items():
        res[f"f32_{k}"] = v
    res["f32_z"] = z
    variants = [v for v in args.variants.split(",") if v]
    jlin = position_encoding.jnp
    for var, lin in (("speclin", mm_ref.linspace_jax_spec), ("xlalin", mm_ref.linspace_jax_xla),
                     ("torchlin", mm_ref.linspace_torch_fma)):
        if var in variants:
            with patched(position_encoding, jnp=_JnpProxy(jlin, lin)):
                o, zz = apply(ns, params, images, audio, sub)
            res.update({f"{var}_{k}": v for k, v in o.items()}, **{f"{var}_z": zz})
    if "erfgelu" in variants:  # mutation: exact GELU in place of DeepMind's tanh form
        real_gelu = jax.nn.gelu
        with patched(jax.nn, gelu=lambda x, approximate=True: real_gelu(x, approximate=False)):
            o, zz = apply(ns, params, images, audio, sub)
        res.update({f"erfgelu_{k}": v for k, v in o.items()}, erfgelu_z=zz)
    if "nolabelmask" in variants:  # mutation: no token replaced by its mask token
        with patched(jax.random, bernoulli=lambda key, p=0.5, shape=None: jnp.zeros(shape, bool)):
            o, zz = apply(ns, params, images, audio, sub)
        res.update({f"nolabelmask_{k}": v for k, v in o.items()}, nolabelmask_z=zz)
    if args.full_chunks:
        rec = ns["autoencode_video"](params, {}, jax.random.PRNGKey(42), images, audio)
        for k, v in rec.items():
            res[f"full_{k}"] = np.asarray(v)
    if "f64" in variants or "f64_ff32" in variants:
        jax.config.update("jax_enable_x64", True)
        p64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
        im64, au64 = images.astype(np.float64), audio.astype(np.float64)
        if "f64" in variants:
            def blp64(index_dims, output_range=(-1.0, 1.0)):
                r = [jnp.linspace(output_range[0], output_range[1], num=n, endpoint=True, dtype=jnp.float64)
                     for n in index_dims]
                return jnp.stack(jnp.meshgrid(*r, indexing="ij"), axis=-1)

            with patched(position_encoding, build_linear_positions=blp64):
                o, zz = apply(ns, p64, im64, au64, sub)
            res.update({f"f64_{k}": v for k, v in o.items()}, f64_z=zz)
        if "f64_ff32" in variants:
            orig_gff = position_encoding.generate_fourier_features

            def gff32(pos, *a, **kw):
                return orig_gff(pos.astype(jnp.float32), *a, **kw)

            def lin32(a, b, n):
                return np.asarray(jlin.linspace(a, b, num=n, endpoint=True, dtype=jnp.float32))

            with patched(position_encoding, generate_fourier_features=gff32,
                         jnp=_JnpProxy(jlin, lin32)):
                o, zz = apply(ns, p64, im64, au64, sub)
            res.update({f"f64_ff32_{k}": v for k, v in o.items()}, f64_ff32_z=zz)
    np.savez(out_dir / "result.npz", **res)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sp = ap.add_subparsers(dest="cmd", required=True)
    r = sp.add_parser("run")
    r.add_argument("--deepmind-src", default=DEFAULT_DM_SRC)
    r.add_argument("--sizes", required=True, help="JSON file of sizes (keys of FULL_SIZES) or 'full'")
    r.add_argument("--inputs", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--seed", type=int, default=0, help="seed of the parameter perturbation")
    r.add_argument("--init-key", type=int, default=0, help="jax.random.PRNGKey of hk init")
    r.add_argument("--params", help="use this pickle instead of initializing")
    r.add_argument("--variants", default="",
                   help="comma list of f64,f64_ff32,speclin,xlalin,torchlin,erfgelu,nolabelmask")
    r.add_argument("--full-chunks", type=int, default=None,
                   help="also run the colab's chunk loop with this many chunks")
    args = ap.parse_args(argv)
    return cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
