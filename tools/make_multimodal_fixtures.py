#!/usr/bin/env python3
"""Golden fixtures for the multimodal (video autoencoding) Perceiver: transformers'
PerceiverForMultimodalAutoencoding and DeepMind's own Haiku video autoencoder.

HF fixtures, tests/fixtures/<name>/ (tiny random-weight models, batch 2):
  config.json, model.safetensors   save_pretrained(), one float32 file (< 2 MB)
  inputs.safetensors               inputs.image f32 [B][T][3][H][W], inputs.audio f32 [B][S][1],
                                   inputs.label f32 [B][num_labels],
                                   subsampled_output_points.image i64 [n_i],
                                   subsampled_output_points.audio i64 [n_a]
  expected.safetensors             logits.image [B][n_i][3], logits.audio [B][n_a*samples_per_patch],
                                   logits.label [B][num_labels], last_hidden_state
                                   [B][num_latents][d_latents] (float32, HF CPU)
  full.safetensors (mm_small)      full.image [B][n_image_points][3], full.audio
                                   [B][n_audio_patches*samples_per_patch], full.label [B][num_labels]:
                                   HF's own chunk loop over ALL output points (meta.json: nchunks)
  meta.json                        description, tolerance profile, seed, versions, shapes, query grids,
                                   float32-vs-float64 and linspace diagnostics, mutations caught

Haiku fixture, tests/fixtures/haiku_multimodal/ (DeepMind's code, tools/dm_video.py, run in the
Haiku venv): video_autoencoding_checkpoint.pystate (params pickle like DeepMind's), config.json
(HF-style config of the tiny sizes), inputs.safetensors (HF names/layout: DeepMind's channels-last
video [B][T][H][W][3] transposed to [B][T][3][H][W]), expected.safetensors (DeepMind's outputs,
JAX float32 CPU; last_hidden_state = the encoder output, captured with hk.intercept_methods),
full.safetensors (DeepMind's colab chunk loop), expected_hf.safetensors (transformers' forward of
the same weights converted with HF's rules: the hf numerics profile), meta.json.

Every fixture is checked before it is written: reloading reproduces expected bit for bit,
last_hidden_state is what the decoder consumed, the float32 reference is within 10 % of the
tolerance of a float64 forward, and the mutations listed in meta.json are caught.

  python tools/make_multimodal_fixtures.py                       # all, into tests/fixtures
  python tools/make_multimodal_fixtures.py --only mm_small --out /tmp/fx
  python tools/make_multimodal_fixtures.py --only haiku_multimodal --deepmind-src DIR --venv-haiku V
"""

from __future__ import annotations

import argparse
import copy
import json
import pickle
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mm_ref  # noqa: E402
import pcl_ref  # noqa: E402

CLS = "PerceiverForMultimodalAutoencoding"
MAX_MODEL_BYTES = 2_000_000
MAX_FP64_TOL_USAGE = 0.1
# mutations every HF fixture must catch (the others are recorded in meta.json)
REQUIRED_MUTATIONS = ("gelu_tanh_instead_of_erf", "label_mask_token_ignored",
                      "audio_max_resolution_from_patch_count", "decoder_query_paddings_zero")


@dataclass
class MMFixture:
    name: str
    seed: int
    config: dict
    image: tuple  # (B, T, 3, H, W)
    audio_samples: int
    description: str
    sub_image: object  # "arange:N" | "perm:N"
    sub_audio: object
    video: str = "randn"  # "randn" (HF test) or "unit" (values in [0,1) like a real video)
    label: str = "zeros"  # "zeros" (HF test) or "randn"
    full_chunks: int | None = None
    tolerance: str = "mm-tiny"


FIXTURES = [
    MMFixture(
        name="mm_hf_test",
        seed=3001,
        config=dict(num_latents=10, d_latents=20, d_model=64, qk_channels=20, v_channels=20, num_blocks=1,
                    num_self_attends_per_block=2, num_self_attention_heads=1, num_cross_attention_heads=1,
                    self_attention_widening_factor=4, cross_attention_widening_factor=4, vocab_size=99,
                    hidden_act="gelu", attention_probs_dropout_prob=0.1, max_position_embeddings=7,
                    image_size=32, train_size=[20, 20], num_frames=5, audio_samples_per_frame=200,
                    samples_per_patch=20, num_labels=3, output_num_channels=32,
                    _label_trainable_num_channels=16),
        image=(2, 5, 3, 32, 32),
        audio_samples=1000,
        sub_image="arange:256",
        sub_audio="arange:2",
        description=(
            "The tiny model of transformers' test_modeling_perceiver.py (PerceiverModelTester.get_config) "
            "with batch 2: image randn [2][5][3][32][32] -> space_to_depth 4 -> grid (5,8,8) = 320 tokens "
            "x (48 + 195) channels, Fourier max_resolution (num_frames, image_size, image_size) = (5,32,32) "
            "(NOT the 8x8 patch grid); audio randn [2][1000][1] -> 50 patches of 20 samples + 385 Fourier "
            "channels (192 bands, max_resolution 1000); label zeros [2][3], replaced by the mask token; "
            "encoder channels max(405,243,3)+4 = 409. qk_channels = v_channels = 20 (encoder cross and self "
            "attention), widening 4, 1 head. output_shape is the default [1,16,224,224]: the image decoder "
            "index space is (16,224,224) whatever the input video size. Subsampling = the test's first chunk "
            "of nchunks=20: image arange(256) (5*32*32//20), audio arange(2) (1000//20//20). Decoder queries "
            "max(385,195,16)+2 = 387 channels (audio dominates). d_model=64 is unused by this class."),
    ),
    MMFixture(
        name="mm_small",
        seed=3002,
        config=dict(num_latents=12, d_latents=32, d_model=402, qk_channels=16, v_channels=32, num_blocks=2,
                    num_self_attends_per_block=1, num_self_attention_heads=4, num_cross_attention_heads=2,
                    self_attention_widening_factor=2, cross_attention_widening_factor=1, hidden_act="gelu",
                    attention_probs_dropout_prob=0.1, image_size=4, num_frames=3, audio_samples_per_frame=24,
                    samples_per_patch=8, num_labels=398, output_shape=[1, 3, 8, 12], output_num_channels=20,
                    _label_trainable_num_channels=388),
        image=(2, 3, 3, 8, 12),
        audio_samples=72,
        sub_image="perm:40",
        sub_audio="perm:5",
        video="unit",
        label="randn",
        full_chunks=3,
        description=(
            "Varied sizes: non-square video [2][3][3][8][12] with values in [0,1) -> grid (3,2,3) = 18 tokens, "
            "Fourier max_resolution (3,4,4) with image_size 4 = H/4 like the full model (56 = 224/4), "
            "output_shape [1,3,8,12] (decoder image grid = input video grid, as in DeepMind's colab); audio "
            "in [-1,1) [2][72][1] -> 9 patches of 8 samples, max_resolution 72; 398 labels (randn input, "
            "masked) so that, like the full model, the LABEL decides the encoder width (398+4 = 402; paddings "
            "audio 9, image 159, label 4) and the label query (388 channels) decides the decoder query width "
            "(390; decoder paddings audio 5, image 195, label 2). qk_channels 16 / v_channels 32: encoder cross "
            "attention 2 heads (8/16), self attention 4 heads (4/8), self widening 2; num_blocks 2 x 1 shared "
            "self layer. Subsampled points are "
            "non-contiguous and unsorted (seeded random permutation subsets). full.safetensors: HF's chunk "
            "loop with nchunks 3 (96 image points and 3 audio patches per chunk) over all 288 image points "
            "and 9 audio patches."),
    ),
]

# DeepMind colab, tiny (tools/dm_video.py FULL_SIZES keys)
HAIKU_SIZES = dict(num_frames=2, audio_samples_per_frame=48, samples_per_patch=8, num_labels=5, image_size=4,
                   num_self_attends_per_block=2, num_latents=8, d_latents=16, num_self_attention_heads=4,
                   output_num_channels=24, label_channels=20)
HAIKU_SEED = 3101
HAIKU_VIDEO = (2, 2, 16, 16)  # B, T, H, W (channels-last in DeepMind's layout)
HAIKU_NCHUNKS = 4


def hf_config_for_haiku(s: dict, video_thw) -> dict:
    n_aud_ch = s["samples_per_patch"] + 385
    kv = max(n_aud_ch, 243, s["num_labels"]) + 4
    return dict(num_latents=s["num_latents"], d_latents=s["d_latents"], d_model=kv, num_blocks=1,
                num_self_attends_per_block=s["num_self_attends_per_block"],
                num_self_attention_heads=s["num_self_attention_heads"], num_cross_attention_heads=1,
                qk_channels=None, v_channels=None, cross_attention_shape_for_attention="kv",
                self_attention_widening_factor=1, cross_attention_widening_factor=1, hidden_act="gelu",
                attention_probs_dropout_prob=0.1, use_query_residual=True, num_labels=s["num_labels"],
                image_size=s["image_size"], num_frames=s["num_frames"],
                audio_samples_per_frame=s["audio_samples_per_frame"], samples_per_patch=s["samples_per_patch"],
                output_shape=[1, *video_thw], output_num_channels=s["output_num_channels"],
                _label_trainable_num_channels=s["label_channels"])


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------

def points(spec: str, n_total: int, gen: torch.Generator) -> torch.Tensor:
    kind, n = spec.split(":")
    n = int(n)
    if n > n_total:
        raise ValueError(f"{spec}: only {n_total} points")
    if kind == "arange":
        return torch.arange(n, dtype=torch.int64)
    if kind == "perm":
        p = torch.randperm(n_total, generator=gen)[:n].to(torch.int64)
        assert not bool((p[1:] > p[:-1]).all()), "want an unsorted set"
        return p
    raise ValueError(spec)


def build_inputs(fx: MMFixture, config) -> dict:
    gen = torch.Generator().manual_seed(fx.seed + 7)
    b = fx.image[0]
    if fx.video == "randn":
        image = torch.randn(fx.image, generator=gen)
        audio = torch.randn((b, fx.audio_samples, 1), generator=gen)
    else:
        image = torch.rand(fx.image, generator=gen)
        audio = torch.rand((b, fx.audio_samples, 1), generator=gen) * 2 - 1
    label = torch.zeros((b, config.num_labels)) if fx.label == "zeros" else \
        torch.randn((b, config.num_labels), generator=gen)
    n_img, n_aud = mm_ref.n_output_points(config)
    return {"inputs.image": image.contiguous(), "inputs.audio": audio.contiguous(), "inputs.label": label,
            "subsampled_output_points.image": points(fx.sub_image, n_img, gen),
            "subsampled_output_points.audio": points(fx.sub_audio, n_aud, gen)}


# --------------------------------------------------------------------------------------------
# checks and diagnostics
# --------------------------------------------------------------------------------------------

def check_consistency(model, t: dict, expected: dict, name: str) -> None:
    """last_hidden_state is the encoder output the decoder consumed: the head forward's
    hidden_states[-1] equals it bit for bit, and decoding it again reproduces the logits."""
    inputs, sub = mm_ref.call_args(t)
    with torch.no_grad():
        full = model(inputs=inputs, subsampled_output_points=sub, output_hidden_states=True)
        if not torch.equal(full.hidden_states[-1], expected["last_hidden_state"]):
            raise RuntimeError(f"{name}: hidden_states[-1] != model.perceiver(...).last_hidden_state")
        p = model.perceiver
        x, sizes, wo = p.input_preprocessor(inputs)
        q = p.decoder.decoder_query(x, sizes, wo, subsampled_points=sub)
        dec = p.decoder(q, z=expected["last_hidden_state"])
        out = p.output_postprocessor(dec.logits, modality_sizes={"audio": len(sub["audio"]),
                                                                  "image": len(sub["image"]), "label": 1})
    for k in ("image", "audio", "label"):
        if not torch.equal(out[k], expected[f"logits.{k}"]):
            raise RuntimeError(f"{name}: logits.{k} is not the decoding of last_hidden_state")


def stats(a, e, atol, rtol) -> dict:
    s = pcl_ref.compare(a, e, atol, rtol)
    return {x: s[x] for x in ("max_abs_err", "max_rel_err", "nmse", "tol_usage")}


def fp64_diagnostics(model, t: dict, expected: dict, atol, rtol) -> dict:
    """hf_fp32_vs_fp64: float64 network, transformers' float32 Fourier features (the network's own
    float32 rounding; this is what sizes the tolerance). hf_fp32_vs_fp64_all: float64 everywhere,
    adding the float32 rounding of the Fourier phases (mm_ref.forward_fp64)."""
    res = {}
    for key, all64 in (("hf_fp32_vs_fp64", False), ("hf_fp32_vs_fp64_all", True)):
        out = mm_ref.forward_fp64(model, t, all_fp64=all64)
        res[key] = {k: stats(expected[k], out[k], atol, rtol) for k in expected}
    return res


def linspace_diagnostics(model, t: dict, expected: dict, atol, rtol) -> dict:
    """How far the outputs move when every torch.linspace (position grids, frequency bands) is
    computed by another float32 formula (mm_ref.LINSPACES): 'unfused' = torch's formula without FMA
    (a C port compiled without contraction), 'jax_spec' = jnp.linspace's formula (haiku-vs-hf G8)."""
    cfg = model.config
    res = {"torch_linspace": mm_ref.linspace_check(
        mm_ref.linspace_sizes(cfg, tuple(t["inputs.image"].shape), t["inputs.audio"].shape[1]))}
    for name in ("torch_fma", "unfused", "jax_spec"):
        with mm_ref.torch_linspace(mm_ref.LINSPACES[name]):
            out = mm_ref.forward(model, t)
        res[name] = {k: stats(out[k], expected[k], atol, rtol) for k in expected}
    if res["torch_linspace"]["fma_exact"]:
        assert all(v["max_abs_err"] == 0 for v in res["torch_fma"].values()), res["torch_fma"]
    return res


def mutation_diagnostics(model, t: dict, expected: dict, atol, rtol) -> dict:
    """Which plausible engine mistakes this fixture catches at its tolerance (True = caught)."""
    from transformers.models.perceiver.modeling_perceiver import PerceiverMLP

    def caught(m):
        out = mm_ref.forward(m, t)
        return not all(pcl_ref.compare(out[k], expected[k], atol, rtol)["pass"] for k in expected)

    cfg = model.config
    res = {}
    m = copy.deepcopy(model)
    for mod in m.modules():
        if isinstance(mod, PerceiverMLP):
            mod.intermediate_act_fn = torch.nn.GELU(approximate="tanh")
    res["gelu_tanh_instead_of_erf"] = caught(m)
    m = copy.deepcopy(model)
    for mod in m.modules():
        if isinstance(mod, torch.nn.LayerNorm):
            mod.eps = 1e-12
    res["layernorm_eps_1e-12"] = caught(m)
    m = copy.deepcopy(model)
    m.perceiver.input_preprocessor.mask_probs = {"image": 0.0, "audio": 0.0, "label": 0.0}
    res["label_mask_token_ignored"] = caught(m)
    m = copy.deepcopy(model)
    pe = m.perceiver.input_preprocessor.modalities["audio"].position_embeddings
    pe.max_resolution = (t["inputs.audio"].shape[1] // cfg.samples_per_patch,)
    res["audio_max_resolution_from_patch_count"] = caught(m)
    m = copy.deepcopy(model)
    with torch.no_grad():
        for p in m.perceiver.decoder.padding.values():
            p.zero_()
    res["decoder_query_paddings_zero"] = caught(m)
    m = copy.deepcopy(model)
    with torch.no_grad():
        for k in ("audio", "image"):
            m.perceiver.input_preprocessor.padding[k].zero_()
    res["input_paddings_zero"] = caught(m)
    _, _, _, h, w = t["inputs.image"].shape
    grid = (t["inputs.image"].shape[1], h // 4, w // 4)
    if tuple(cfg.output_shape[1:4]) != (t["inputs.image"].shape[1], h, w):
        m = copy.deepcopy(model)
        m.perceiver.decoder.modalities["image"].decoder.output_index_dims = (t["inputs.image"].shape[1], h, w)
        res["image_queries_on_input_video_grid_not_output_shape"] = caught(m)
    if (cfg.num_frames, cfg.image_size, cfg.image_size) != grid:
        m = copy.deepcopy(model)
        m.perceiver.input_preprocessor.modalities["image"].position_embeddings.max_resolution = grid
        res["image_max_resolution_from_patch_grid"] = caught(m)
    return res


# --------------------------------------------------------------------------------------------
# HF fixtures
# --------------------------------------------------------------------------------------------

def save_st(path: Path, tensors: dict) -> None:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"format": "pt"})
    path.chmod(0o644)


def shapes(d: dict) -> dict:
    return {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)} for k, v in d.items()}


def make_hf_fixture(fx: MMFixture, out_root: Path, tol_path: Path) -> dict:
    import transformers
    from transformers import PerceiverConfig

    out = out_root / fx.name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    torch.manual_seed(fx.seed)
    config = PerceiverConfig(**fx.config)
    model = getattr(transformers, CLS)(config).eval()
    model.config.architectures = [CLS]
    mm_ref.randomize(model, fx.seed)
    pcl_ref.save_hf_model(model, out)
    size = (out / "model.safetensors").stat().st_size
    if size > MAX_MODEL_BYTES:
        raise RuntimeError(f"{fx.name}: model.safetensors is {size} bytes > {MAX_MODEL_BYTES}")

    t = build_inputs(fx, config)
    save_st(out / "inputs.safetensors", t)
    expected = mm_ref.forward(model, t)
    for v in expected.values():
        assert v.dtype == torch.float32 and bool(torch.isfinite(v).all())
    check_consistency(model, t, expected, fx.name)
    save_st(out / "expected.safetensors", expected)

    reloaded = getattr(transformers, CLS).from_pretrained(str(out)).eval()
    sd0, sd1 = model.state_dict(), reloaded.state_dict()
    if sd0.keys() != sd1.keys() or any(not torch.equal(sd0[k], sd1[k]) for k in sd0):
        raise RuntimeError(f"{fx.name}: reloaded state_dict differs")
    again = mm_ref.forward(reloaded, load_file(str(out / "inputs.safetensors")))
    for k, v in load_file(str(out / "expected.safetensors")).items():
        if not torch.equal(again[k], v):
            raise RuntimeError(f"{fx.name}: reloaded model does not reproduce {k} exactly")

    atol, rtol = pcl_ref.model_tolerance(fx.tolerance, tol_path)
    diag = fp64_diagnostics(model, t, expected, atol, rtol)
    worst = max(v["tol_usage"] for v in diag["hf_fp32_vs_fp64"].values())
    if worst > MAX_FP64_TOL_USAGE:
        raise RuntimeError(f"{fx.name}: HF float32 vs float64 uses {worst:.3f} of '{fx.tolerance}'")
    diag["linspace"] = linspace_diagnostics(model, t, expected, atol, rtol)
    diag["mutation_caught"] = mutation_diagnostics(model, t, expected, atol, rtol)
    missed = [k for k in REQUIRED_MUTATIONS if not diag["mutation_caught"][k]]
    if missed:
        raise RuntimeError(f"{fx.name}: mutations not caught: {missed}")

    full_meta = None
    if fx.full_chunks:
        full = mm_ref.chunk_loop(model, t, fx.full_chunks)
        spread = full.pop("_label_chunk_spread")
        ci, ca = full.pop("_chunk_sizes")
        n_img, n_aud = mm_ref.n_output_points(config)
        assert ci * fx.full_chunks == n_img and ca * fx.full_chunks == n_aud, (ci, ca, n_img, n_aud)
        save_st(out / "full.safetensors", full)
        # one forward over all points (what the engine does with one encoder pass)
        one = mm_ref.forward(model, dict(t, **{"subsampled_output_points.image": torch.arange(n_img),
                                               "subsampled_output_points.audio": torch.arange(n_aud)}),
                             lhs=False)
        m64 = copy.deepcopy(model).double()
        t64 = {k: v.double() if v.is_floating_point() else v for k, v in t.items()}
        full64 = mm_ref.chunk_loop(m64, t64, fx.full_chunks)
        full_meta = {
            "file": "full.safetensors", "nchunks": fx.full_chunks, "image_chunk_size": ci,
            "audio_chunk_size": ca, "n_image_points": n_img, "n_audio_patches": n_aud,
            "loop": ("for c in range(nchunks): subsampled_output_points = {image: arange(c*ci, (c+1)*ci), "
                     "audio: arange(c*ca, (c+1)*ca), label: None}; model(inputs, subsampled_output_points) "
                     "(encoder recomputed per chunk); image/audio concatenated on axis 1, label from the last "
                     "chunk. ci = prod(output_shape[1:4]) // nchunks, ca = S // samples_per_patch // nchunks."),
            "label_max_diff_between_chunks": spread,
            "one_pass_vs_chunk_loop": {k: stats(one[k.replace('full', 'logits')], full[k], atol, rtol)
                                       for k in full},
            "hf_fp32_vs_fp64": {k: stats(full[k], full64[k], atol, rtol) for k in full},
        }
        worst = max(v["tol_usage"] for v in full_meta["hf_fp32_vs_fp64"].values())
        if worst > MAX_FP64_TOL_USAGE:
            raise RuntimeError(f"{fx.name}: full reconstruction fp32 vs fp64 uses {worst:.3f} of the tolerance")

    meta = {
        "class": CLS,
        "tolerance": fx.tolerance,
        "seed": fx.seed,
        **pcl_ref.versions(),
        "description": fx.description,
        "num_parameters": pcl_ref.count_parameters(model),
        "inputs": shapes(t),
        "outputs": shapes(expected),
        "subsampled_output_points": {
            "image": t["subsampled_output_points.image"].tolist(),
            "audio": t["subsampled_output_points.audio"].tolist(),
            "label": None,
            "note": "the same points for every batch row; transformers has no label subsampling (None)",
        },
        "query_grids": mm_ref.query_grids(config, tuple(t["inputs.image"].shape), t["inputs.audio"].shape[1]),
        "init": {"latent_std": 1.0, "embed_std": 0.5, "pad_std": 0.5, "ln_weight_std": 0.1,
                 "ln_bias_std": 0.1, "bias_std": 0.1, "weight_gain": 1.0,
                 "rule": "tools/mm_ref.py randomize (pcl_ref rules + ParameterDict paddings/mask tokens)"},
        "full_reconstruction": full_meta,
        "diagnostics": diag,
        "generated_by": "tools/make_multimodal_fixtures.py",
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    for f in out.iterdir():
        f.chmod(0o644)
    return meta


# --------------------------------------------------------------------------------------------
# Haiku fixture
# --------------------------------------------------------------------------------------------

def make_haiku_fixture(out_root: Path, tol_path: Path, dm_src: str, venv_haiku: str) -> dict:
    import transformers
    from transformers import PerceiverConfig

    import haiku_ref

    name = "haiku_multimodal"
    out = out_root / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    s = HAIKU_SIZES
    b, tt, h, w = HAIKU_VIDEO
    n_samples = s["num_frames"] * s["audio_samples_per_frame"]
    rng = np.random.default_rng(HAIKU_SEED)
    # DeepMind's colab: video frames / 255 in [0,1], channels-last; audio 48 kHz float in [-1,1]
    image = rng.random((b, tt, h, w, 3), dtype=np.float32)
    tgrid = np.arange(n_samples, dtype=np.float64)[None, :, None]
    audio = (0.6 * np.sin(2 * np.pi * tgrid * rng.uniform(0.01, 0.2, (b, 1, 1)))
             + 0.3 * rng.uniform(-1, 1, (b, n_samples, 1))).astype(np.float32)
    n_img, n_aud = tt * h * w, n_samples // s["samples_per_patch"]
    sub_image = rng.permutation(n_img)[:24].astype(np.int64)
    sub_audio = rng.permutation(n_aud)[:5].astype(np.int64)

    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        (td / "sizes.json").write_text(json.dumps(s))
        np.savez(td / "in.npz", image=image, audio=audio, sub_image=sub_image, sub_audio=sub_audio)
        cmd = [f"{venv_haiku}/bin/python", str(HERE / "dm_video.py"), "run", "--deepmind-src", dm_src,
               "--sizes", str(td / "sizes.json"), "--inputs", str(td / "in.npz"), "--out", str(td),
               "--seed", str(HAIKU_SEED), "--init-key", "0", "--variants", "f64,f64_ff32,speclin,xlalin,torchlin,erfgelu,nolabelmask",
               "--full-chunks", str(HAIKU_NCHUNKS)]
        print("running", " ".join(cmd[:3]), "...")
        subprocess.run(cmd, check=True)
        r = dict(np.load(td / "result.npz"))
        shutil.copy(td / "video_autoencoding_checkpoint.pystate", out / "video_autoencoding_checkpoint.pystate")

    with open(out / "video_autoencoding_checkpoint.pystate", "rb") as f:
        params = pickle.loads(f.read())
    flat = haiku_ref.flatten(params)
    names = [str(x) for x in r["names"]]
    expect_names, _ = haiku_ref.haiku_names("multimodal_autoencoding", s["num_self_attends_per_block"])
    if sorted(names) != sorted(expect_names) or sorted(flat) != sorted(names):
        raise RuntimeError("DeepMind parameter names differ from haiku_ref.haiku_names: "
                           f"{sorted(set(names) ^ set(expect_names))[:8]}")

    cfg = hf_config_for_haiku(s, (tt, h, w))
    config = PerceiverConfig(**cfg)
    config.architectures = [CLS]
    config.save_pretrained(out)  # config.json only
    hf = getattr(transformers, CLS)(config).eval()
    sd = {k: torch.from_numpy(v) for k, v in haiku_ref.haiku_to_hf(flat, "multimodal_autoencoding").items()}
    hf.load_state_dict(sd, strict=True)

    t = {"inputs.image": torch.from_numpy(np.ascontiguousarray(image.transpose(0, 1, 4, 2, 3))),
         "inputs.audio": torch.from_numpy(audio), "inputs.label": torch.zeros((b, s["num_labels"])),
         "subsampled_output_points.image": torch.from_numpy(sub_image),
         "subsampled_output_points.audio": torch.from_numpy(sub_audio)}
    save_st(out / "inputs.safetensors", t)

    def dm(prefix):
        return {"logits.image": r[f"{prefix}_image"], "logits.audio": r[f"{prefix}_audio"],
                "logits.label": r[f"{prefix}_label"], "last_hidden_state": r[f"{prefix}_z"]}

    expected = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in dm("f32").items()}
    for v in expected.values():
        assert v.dtype == torch.float32
    save_st(out / "expected.safetensors", expected)
    full = {"full.image": torch.from_numpy(np.ascontiguousarray(r["full_image"].reshape(b, n_img, 3))),
            "full.audio": torch.from_numpy(np.ascontiguousarray(r["full_audio"].reshape(b, n_samples))),
            "full.label": torch.from_numpy(np.ascontiguousarray(r["full_label"]))}
    save_st(out / "full.safetensors", full)
    exp_hf = mm_ref.forward(hf, t)
    check_consistency(hf, t, exp_hf, name)
    save_st(out / "expected_hf.safetensors", exp_hf)

    atol, rtol = pcl_ref.model_tolerance("mm-haiku-tiny", tol_path)
    atol_hf, rtol_hf = pcl_ref.model_tolerance("mm-tiny", tol_path)
    diag = {}
    for var, what in (("f64_ff32", "jax_fp32_vs_fp64"), ("f64", "jax_fp32_vs_fp64_all"),
                      ("speclin", "jax_linspace_replaced_by_spec_G8_formula"),
                      ("xlalin", "jax_linspace_replaced_by_xla_formula"),
                      ("torchlin", "jax_linspace_replaced_by_torch_formula")):
        diag[what] = {k: stats(expected[k].numpy(), v, atol, rtol) for k, v in dm(var).items()}
    worst = max(v["tol_usage"] for v in diag["jax_fp32_vs_fp64"].values())
    if worst > MAX_FP64_TOL_USAGE:
        raise RuntimeError(f"{name}: JAX float32 vs float64 uses {worst:.3f} of mm-haiku-tiny")
    if any(v["max_abs_err"] != 0 for v in diag["jax_linspace_replaced_by_xla_formula"].values()):
        raise RuntimeError(f"{name}: mm_ref.linspace_jax_xla does not reproduce jnp.linspace here")
    diag["mutation_caught"] = {}
    for var, what in (("erfgelu", "gelu_erf_instead_of_tanh"), ("nolabelmask", "label_mask_token_ignored")):
        diag["mutation_caught"][what] = not all(
            pcl_ref.compare(v, expected[k].numpy(), atol, rtol)["pass"] for k, v in dm(var).items())
    if not all(diag["mutation_caught"].values()):
        raise RuntimeError(f"{name}: mutations not caught: {diag['mutation_caught']}")
    # DeepMind vs transformers on the same weights
    diag["hf_minus_deepmind"] = {k: stats(exp_hf[k], expected[k], atol, rtol) for k in expected}
    from transformers.models.perceiver.modeling_perceiver import PerceiverMLP

    hf_tanh = copy.deepcopy(hf)
    for mod in hf_tanh.modules():
        if isinstance(mod, PerceiverMLP):
            mod.intermediate_act_fn = torch.nn.GELU(approximate="tanh")
    with mm_ref.torch_linspace(mm_ref.linspace_jax_xla):  # jnp.linspace's exact values
        o = mm_ref.forward(hf_tanh, t)
    diag["hf_with_tanh_gelu_and_jax_linspace_minus_deepmind"] = {
        k: stats(o[k], expected[k], atol, rtol) for k in expected}
    o = mm_ref.forward(hf_tanh, t)
    diag["hf_with_tanh_gelu_minus_deepmind"] = {k: stats(o[k], expected[k], atol, rtol) for k in expected}
    hf_fp = fp64_diagnostics(hf, t, exp_hf, atol_hf, rtol_hf)
    diag["expected_hf_fp32_vs_fp64"] = hf_fp["hf_fp32_vs_fp64"]
    worst = max(v["tol_usage"] for v in hf_fp["hf_fp32_vs_fp64"].values())
    if worst > MAX_FP64_TOL_USAGE:
        raise RuntimeError(f"{name}: HF float32 vs float64 uses {worst:.3f} of mm-tiny")
    # DeepMind's chunk loop vs DeepMind's single subsampled call on the same points
    fi = r["full_image"].reshape(b, n_img, 3)[:, sub_image]
    fa = r["full_audio"].reshape(b, n_aud, s["samples_per_patch"])[:, sub_audio].reshape(b, -1)
    diag["deepmind_chunk_loop_vs_subsampled_call"] = {
        "logits.image": stats(fi, expected["logits.image"].numpy(), atol, rtol),
        "logits.audio": stats(fa, expected["logits.audio"].numpy(), atol, rtol),
        "logits.label": stats(r["full_label"], expected["logits.label"].numpy(), atol, rtol)}
    with open(out / "video_autoencoding_checkpoint.pystate", "rb") as f:
        import pickletools

        ops = {op.name for op, _, _ in pickletools.genops(f.read())}
    meta = {
        "class": CLS,
        "description": (
            "DeepMind's own video autoencoder (perceiver/colabs/video_autoencoding.ipynb 'Model construction', "
            "run by tools/dm_video.py with DeepMind's perceiver.py / io_processors.py / position_encoding.py) "
            "at tiny sizes; params from hk.transform_with_state init (PRNGKey(0)) perturbed with seeded noise. "
            "Pickle written like video_autoencoding_checkpoint.pystate: plain dict {scope: {name: float32 "
            "ndarray}} (pickle protocol 3, NumPy 2 globals numpy._core.multiarray). config.json is the HF-style "
            "config of the same sizes (qk/v channels null: encoder cross-attention qk = v = input width). "
            "Inputs: DeepMind's video layout is [B][T][H][W][3] in [0,1]; inputs.image holds it transposed to "
            "HF's [B][T][3][H][W]. inputs.label = zeros [B][num_labels]: the colab feeds np.zeros((B, 700)) "
            "(here NUM_CLASSES) and masks it anyway. The colab's image queries index the INPUT video grid "
            "(output_shape = images.shape[:4]), so config.output_shape = [1, T, H, W]."),
        "tolerance": "mm-haiku-tiny",
        "tolerance_hf": "mm-tiny",
        "files": {
            "video_autoencoding_checkpoint.pystate": "DeepMind-style params pickle",
            "expected.safetensors": "DeepMind (JAX float32 CPU, op-by-op as in the colab) outputs: the haiku numerics profile",
            "full.safetensors": f"DeepMind colab chunk loop (autoencode_video, nchunks {HAIKU_NCHUNKS}) over all points",
            "expected_hf.safetensors": "transformers' forward of the same weights (HF's conversion rules): the hf numerics profile",
        },
        "seed": HAIKU_SEED,
        "init_key": 0,
        **pcl_ref.versions(),
        "deepmind_reference": str(r["versions"]) + " -- DeepMind's code, unpatched (tools/dm_video.py)",
        "deepmind_src": "google-deepmind/deepmind-research perceiver/ (see tools/dm_video.py)",
        "sizes": s,
        "num_parameters": int(r["n_params"]),
        "pickle_opcodes": sorted(ops),
        "inputs": shapes(t),
        "outputs": shapes(expected),
        "subsampled_output_points": {"image": sub_image.tolist(), "audio": sub_audio.tolist(), "label": None},
        "full_reconstruction": {"file": "full.safetensors", "nchunks": HAIKU_NCHUNKS,
                                "image_chunk_size": n_img // HAIKU_NCHUNKS,
                                "audio_chunk_size": n_aud // HAIKU_NCHUNKS,
                                "n_image_points": n_img, "n_audio_patches": n_aud,
                                "layout": "full.image = colab image [B][T][H][W][3] reshaped to [B][T*H*W][3]; "
                                          "full.audio = colab audio [B][S][1] reshaped to [B][S]"},
        "query_grids": mm_ref.query_grids(config, tuple(t["inputs.image"].shape), n_samples),
        "diagnostics": diag,
        "generated_by": "tools/make_multimodal_fixtures.py",
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    for f in out.iterdir():
        f.chmod(0o644)
    return meta


# --------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    names = [f.name for f in FIXTURES] + ["haiku_multimodal"]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="fixtures: " + ", ".join(names))
    ap.add_argument("--out", type=Path, default=pcl_ref.REPO_ROOT / "tests" / "fixtures")
    ap.add_argument("--only", default="")
    ap.add_argument("--tolerances", type=Path, default=pcl_ref.TOLERANCES_PATH)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--deepmind-src", default="/work/scratch/deepmind-research",
                    help="checkout of google-deepmind/deepmind-research (perceiver/ is used)")
    ap.add_argument("--venv-haiku", default="/work/venv-haiku")
    args = ap.parse_args(argv)
    only = [s for s in args.only.split(",") if s]
    bad = [s for s in only if s not in names]
    if bad:
        ap.error(f"unknown fixture(s): {', '.join(bad)}")
    pcl_ref.setup_torch(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    def summary(name, meta, key):
        d = meta["diagnostics"][key]
        print(f"    {key}: " + "; ".join(f"{k} max_abs={v['max_abs_err']:.2e} tol_usage={v['tol_usage']:.4f}"
                                         for k, v in d.items()))

    for fx in FIXTURES:
        if only and fx.name not in only:
            continue
        meta = make_hf_fixture(fx, args.out, args.tolerances)
        print(f"{fx.name}: {meta['num_parameters']} params; " + ", ".join(
            f"{k}{v['shape']}" for k, v in {**meta["inputs"], **meta["outputs"]}.items()))
        for key in ("hf_fp32_vs_fp64", "hf_fp32_vs_fp64_all"):
            summary(fx.name, meta, key)
        lin = meta["diagnostics"]["linspace"]
        print(f"    torch.linspace = fma formula: {lin['torch_linspace']['fma_exact']}, "
              f"= unfused: {lin['torch_linspace']['unfused_exact']}")
        for k in ("unfused", "jax_spec"):
            print(f"    linspace {k}: " + "; ".join(f"{n} {v['max_abs_err']:.2e} ({v['tol_usage']:.3f})"
                                                   for n, v in lin[k].items()))
        print("    mutations caught: " + ", ".join(f"{k}={v}" for k, v in meta["diagnostics"]["mutation_caught"].items()))
        if meta["full_reconstruction"]:
            fr = meta["full_reconstruction"]
            print(f"    full: nchunks {fr['nchunks']}, label spread {fr['label_max_diff_between_chunks']:.2e}, "
                  "one pass vs loop " + "; ".join(f"{k} {v['max_abs_err']:.2e}"
                                                 for k, v in fr["one_pass_vs_chunk_loop"].items()))
    if not only or "haiku_multimodal" in only:
        meta = make_haiku_fixture(args.out, args.tolerances, args.deepmind_src, args.venv_haiku)
        print(f"haiku_multimodal: {meta['num_parameters']} params ({meta['deepmind_reference']})")
        for key in meta["diagnostics"]:
            if key != "mutation_caught":
                summary("haiku_multimodal", meta, key)
        print("    mutations caught: " + ", ".join(f"{k}={v}" for k, v in meta["diagnostics"]["mutation_caught"].items()))
    total = sum(p.stat().st_size for d in names if (args.out / d).is_dir() for p in (args.out / d).iterdir())
    print(f"total size of the multimodal fixtures: {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
