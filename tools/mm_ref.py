"""Hugging Face side helpers for PerceiverForMultimodalAutoencoding (DeepMind's video autoencoder).

Imported by make_multimodal_fixtures.py, check_fullsize_multimodal.py and bench_multimodal.py.

Tensor naming (the fixture / engine contract; names are transformers' forward arguments with the
dict key after a dot):

  inputs    inputs.image  float32 [B][T][3][H][W]   video, channels-first per frame
            inputs.audio  float32 [B][S][1]         S = samples
            inputs.label  float32 [B][num_labels]   replaced by the mask token inside the model
            subsampled_output_points.image int64 [n_i]  flat indices into output_shape[1:4] = (T',H',W')
            subsampled_output_points.audio int64 [n_a]  patch indices into (num_frames*audio_samples_per_frame
                                                        // samples_per_patch,)
  outputs   logits.image  float32 [B][n_i][3]
            logits.audio  float32 [B][n_a*samples_per_patch]
            logits.label  float32 [B][num_labels]
            last_hidden_state float32 [B][num_latents][d_latents]
            full.image / full.audio / full.label: the same for ALL output points, by HF's chunk loop

transformers has no label subsampling: subsampled_output_points["label"] is always None (one query).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

# deepmind/multimodal-perceiver (spec perceiver-io.md 1.3 / 8.7): 19,858,855 parameters
FULLSIZE_MM_CONFIG = dict(
    num_latents=784, d_latents=512, d_model=704, num_blocks=1, num_self_attends_per_block=8,
    num_self_attention_heads=8, num_cross_attention_heads=1, qk_channels=None, v_channels=None,
    cross_attention_shape_for_attention="kv", self_attention_widening_factor=1,
    cross_attention_widening_factor=1, hidden_act="gelu", attention_probs_dropout_prob=0.1,
    use_query_residual=True, num_labels=700, image_size=56, num_frames=16,
    audio_samples_per_frame=1920, samples_per_patch=16, output_shape=[1, 16, 224, 224],
    output_num_channels=512, _label_trainable_num_channels=1024,
)
FULLSIZE_MM_PARAMS = 19_858_855
FULLSIZE_NCHUNKS = 128

INPUT_NAMES = ("inputs.image", "inputs.audio", "inputs.label",
               "subsampled_output_points.image", "subsampled_output_points.audio")
OUTPUT_NAMES = ("logits.image", "logits.audio", "logits.label", "last_hidden_state")


# --------------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------------

def randomize(model, seed: int, *, latent_std=1.0, embed_std=0.5, pad_std=0.5, ln_weight_std=0.1,
              ln_bias_std=0.1, bias_std=0.1, weight_gain=1.0) -> None:
    """pcl_ref.randomize_parameters' rules (LayerNorm 1+0.1N / 0.1N, Linear N/sqrt(fan_in), biases
    0.1N, latents N, trainable position tables 0.5N) plus the multimodal ParameterDict entries
    (input paddings, mask tokens, decoder paddings): pad_std*N. Private generator, named_modules()
    order, so the result depends only on (architecture, seed)."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)

    def randn(shape):
        return torch.randn(shape, generator=gen, dtype=torch.float32)

    seen = set()
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            if isinstance(module, nn.LayerNorm):
                val = (1.0 + ln_weight_std * randn(p.shape)) if p_name == "weight" else ln_bias_std * randn(p.shape)
            elif isinstance(module, nn.Linear):
                val = (randn(p.shape) * (weight_gain / math.sqrt(p.shape[1]))) if p_name == "weight" \
                    else bias_std * randn(p.shape)
            elif isinstance(module, nn.ParameterDict):
                val = pad_std * randn(p.shape)
            elif p_name == "latents":
                val = latent_std * randn(p.shape)
            elif "position_embeddings" in p_name:
                val = embed_std * randn(p.shape)
            else:
                raise RuntimeError(f"randomize: no rule for {mod_name}.{p_name} ({type(module).__name__})")
            with torch.no_grad():
                p.copy_(val)


# --------------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------------

def call_args(t: dict):
    """flat tensors -> (inputs dict, subsampled_output_points dict) for the HF forward."""
    inputs = {"image": t["inputs.image"], "audio": t["inputs.audio"], "label": t["inputs.label"]}
    sub = {"image": t["subsampled_output_points.image"], "audio": t["subsampled_output_points.audio"],
           "label": None}
    return inputs, sub


def forward(model, t: dict, lhs: bool = True) -> dict:
    """HF outputs under the contract's names. last_hidden_state from model.perceiver(...) (the
    head's output has no such field); make_multimodal_fixtures.py checks it is what the decoder
    consumed."""
    import torch

    inputs, sub = call_args(t)
    with torch.no_grad():
        out = model(inputs=inputs, subsampled_output_points=sub)
        res = {f"logits.{k}": out.logits[k].contiguous() for k in ("image", "audio", "label")}
        if lhs:
            res["last_hidden_state"] = model.perceiver(
                inputs=inputs, subsampled_output_points=sub).last_hidden_state.contiguous()
    return res


def n_output_points(config) -> tuple[int, int]:
    """(image query points = prod(output_shape[1:4]), audio patches = num_frames *
    audio_samples_per_frame // samples_per_patch): the index spaces of the subsampled points."""
    img = int(np.prod(config.output_shape[1:4]))
    aud = config.num_frames * config.audio_samples_per_frame // config.samples_per_patch
    return img, aud


def chunk_loop(model, t: dict, nchunks: int, chunks=None, on_chunk=None) -> dict:
    """HF's documented reconstruction loop (PerceiverForMultimodalAutoencoding docstring / the
    DeepMind colab): chunk c decodes image points [c*ci, (c+1)*ci) with ci = prod(output_shape[1:4])
    // nchunks and audio patches [c*ca, (c+1)*ca) with ca = S // samples_per_patch // nchunks, the
    encoder being recomputed for each chunk; image/audio outputs are concatenated, the label
    logits are those of the last chunk. `chunks` limits the loop to the first K chunks."""
    import torch

    cfg = model.config
    img_pts = int(np.prod(cfg.output_shape[1:4]))
    ci = img_pts // nchunks
    ca = t["inputs.audio"].shape[1] // cfg.samples_per_patch // nchunks
    inputs = {"image": t["inputs.image"], "audio": t["inputs.audio"], "label": t["inputs.label"]}
    parts = {"image": [], "audio": []}
    label = None
    labels = []
    for c in range(nchunks if chunks is None else chunks):
        sub = {"image": torch.arange(ci * c, ci * (c + 1)), "audio": torch.arange(ca * c, ca * (c + 1)),
               "label": None}
        with torch.no_grad():
            out = model(inputs=inputs, subsampled_output_points=sub).logits
        parts["image"].append(out["image"])
        parts["audio"].append(out["audio"])
        label = out["label"]
        labels.append(label)
        if on_chunk:
            on_chunk(c)
    res = {"full.image": torch.cat(parts["image"], 1).contiguous(),
           "full.audio": torch.cat(parts["audio"], 1).contiguous(), "full.label": label.contiguous()}
    res["_label_chunk_spread"] = max(float((x - label).abs().max()) for x in labels)
    res["_chunk_sizes"] = (ci, ca)
    return res


# --------------------------------------------------------------------------------------------
# linspace (torch's CPU kernel and alternatives), as NumPy float32
# --------------------------------------------------------------------------------------------

def linspace_torch_fma(a, b, n):
    """torch.linspace(a, b, n) float32 on an x86-64 AVX2 CPU, reproduced bit for bit: step =
    (b-a)/(n-1) in float32; element i < n//2 is fma(step, i, a), the others fma(-step, n-1-i, b)
    (one rounding: the kernel is compiled with FMA contraction)."""
    f = np.float32
    a, b = f(a), f(b)
    if n == 1:
        return np.array([a], f)
    step = f((b - a) / f(n - 1))
    i = np.arange(n)
    lo = (np.float64(step) * i + np.float64(a)).astype(f)
    hi = (-np.float64(step) * (n - 1 - i) + np.float64(b)).astype(f)
    return np.where(i < n // 2, lo, hi).astype(f)


def linspace_torch_unfused(a, b, n):
    """The same formula with the product rounded separately (a + fl(step*i)): what a C compiler
    produces without FMA contraction. Differs from torch.linspace by 1 ulp in some elements."""
    f = np.float32
    a, b = f(a), f(b)
    if n == 1:
        return np.array([a], f)
    step = f((b - a) / f(n - 1))
    i = np.arange(n)
    lo = (a + (step * i.astype(f)).astype(f)).astype(f)
    hi = (b - (step * (n - 1 - i).astype(f)).astype(f)).astype(f)
    return np.where(i < n // 2, lo, hi).astype(f)


def linspace_jax_spec(a, b, n):
    """haiku-vs-hf.md G8 (jnp.linspace as written in JAX): t = i/(n-1); a*(1-t) + b*t; last = b."""
    f = np.float32
    a, b = f(a), f(b)
    if n == 1:
        return np.array([a], f)
    t = (np.arange(n - 1).astype(f) / f(n - 1)).astype(f)
    v = ((a * (f(1) - t)).astype(f) + (b * t).astype(f)).astype(f)
    return np.concatenate([v, [b]]).astype(f)


def linspace_jax_xla(a, b, n):
    """jnp.linspace(a, b, n, dtype=float32) of JAX 0.10.2 on XLA:CPU (x86-64 AVX2), reproduced bit
    for bit (measured: every n <= 519, n = 1920, 3000 and the frequency tables; not n = 50176): XLA rewrites i/(n-1) as i*r with
    r = fl(1/(n-1)) and b*(i*r) as i*fl(b*r); the backend fuses products into sums:
        v_i = fma(i, fl(b*r), fl(a*u_i)),   v_{n-1} = b,
    with u_i = fl(1 - fl(i*r)) where LLVM unrolled and constant-folded the loop (every i when
    n <= 224; the last (n-1) % 8 elements otherwise) and u_i = fma(-i, r, 1) in the 8-wide vector
    loop (i < 8*floor((n-1)/8) when n > 224). Compiler- and machine-dependent; 2021 JAX ran
    linspace op by op, i.e. linspace_jax_spec."""
    f = np.float32
    a, b = f(a), f(b)
    if n == 1:
        return np.array([a], f)
    r = f(f(1) / f(n - 1))
    br = f(b * r)
    i = np.arange(n - 1)
    u_rounded = (f(1) - (i.astype(f) * r).astype(f)).astype(f)
    u_fused = (1.0 - i * np.float64(r)).astype(f)
    vec = (i < 8 * ((n - 1) // 8)) & (n > 224)
    u = np.where(vec, u_fused, u_rounded)
    au = (a * u).astype(f)
    v = (np.float64(br) * i + au.astype(np.float64)).astype(f)
    return np.concatenate([v, [b]]).astype(f)


LINSPACES = {"torch_fma": linspace_torch_fma, "unfused": linspace_torch_unfused, "jax_spec": linspace_jax_spec,
             "jax_xla": linspace_jax_xla}


@contextlib.contextmanager
def torch_linspace(fn):
    """Replace torch.linspace (as called by modeling_perceiver) by a NumPy float32 formula."""
    import torch

    real = torch.linspace

    def lin(start, end, steps, *, dtype=None, device=None, **kw):
        v = torch.from_numpy(fn(float(start), float(end), int(steps)))
        return v.to(dtype or torch.get_default_dtype())

    torch.linspace = lin
    try:
        yield
    finally:
        torch.linspace = real


def linspace_check(sizes) -> dict:
    """Is torch.linspace bit-identical to linspace_torch_fma / _unfused for these (a, b, n)?"""
    import torch

    res = {"fma_exact": True, "unfused_exact": True, "unfused_max_abs_diff": 0.0}
    for a, b, n in sizes:
        t = torch.linspace(a, b, n).numpy()
        res["fma_exact"] &= bool(np.array_equal(t, linspace_torch_fma(a, b, n)))
        u = linspace_torch_unfused(a, b, n)
        res["unfused_exact"] &= bool(np.array_equal(t, u))
        res["unfused_max_abs_diff"] = max(res["unfused_max_abs_diff"],
                                         float(np.abs(t.astype(np.float64) - u).max()))
    return res


def linspace_sizes(config, image_shape, audio_len) -> list:
    """Every (start, end, n) torch.linspace call of one forward (grids and frequency bands)."""
    t, h, w = image_shape[1], image_shape[3] // 4, image_shape[4] // 4
    n_aud = config.num_frames * config.audio_samples_per_frame
    res = [(-1.0, 1.0, audio_len // config.samples_per_patch), (1.0, n_aud / 2, 192)]
    res += [(-1.0, 1.0, n) for n in (t, h, w)]
    res += [(1.0, r / 2, 32) for r in (config.num_frames, config.image_size, config.image_size)]
    return res


# --------------------------------------------------------------------------------------------
# documentation of the index spaces
# --------------------------------------------------------------------------------------------

def query_grids(config, image_shape, audio_len) -> dict:
    """How transformers derives every grid and Fourier resolution (modeling_perceiver.py,
    PerceiverForMultimodalAutoencoding.__init__ and the preprocessors/decoders)."""
    b, t, c, h, w = image_shape
    n_aud = config.num_frames * config.audio_samples_per_frame
    spp = config.samples_per_patch
    aud_ch = spp + 1 + 2 * 192
    img_ch = 48 + 3 + 2 * 3 * 32
    enc_ch = max(aud_ch, img_ch, config.num_labels) + 4
    q_ch = max(1 + 2 * 192, 3 + 2 * 3 * 32, config._label_trainable_num_channels) + 2
    return {
        "encoder_audio": {"tokens": audio_len // spp, "grid": [audio_len // spp],
                          "positions": f"linspace(-1, 1, S/samples_per_patch = {audio_len // spp})",
                          "fourier_bands": 192, "max_resolution": [n_aud],
                          "freq": f"linspace(1, {n_aud}/2, 192)", "channels": aud_ch},
        "encoder_image": {"tokens": t * (h // 4) * (w // 4), "grid": [t, h // 4, w // 4],
                          "positions": "linspace(-1, 1, n) per axis of the space_to_depth grid (T, H/4, W/4)",
                          "fourier_bands": 32,
                          "max_resolution": [config.num_frames, config.image_size, config.image_size],
                          "channels": img_ch},
        "encoder_label": {"tokens": 1, "channels": config.num_labels, "masked": "always (mask_probs label = 1)"},
        "encoder_channels": enc_ch,
        "encoder_order": "audio, image, label (sorted keys)",
        "decoder_audio": {"index_dims": [n_aud // spp], "pos": "-1 + 2*idx/index_dim",
                          "max_resolution": [n_aud], "channels": 1 + 2 * 192},
        "decoder_image": {"index_dims": list(config.output_shape[1:4]),
                          "pos": "(t,h,w) = unravel(idx, output_shape[1:4]); -1 + 2*coord/dim",
                          "max_resolution": [config.num_frames, config.image_size, config.image_size],
                          "channels": 3 + 2 * 3 * 32},
        "decoder_label": {"trainable_channels": config._label_trainable_num_channels},
        "decoder_query_channels": q_ch,
        "decoder_order": "audio, image, label (sorted keys)",
    }


# --------------------------------------------------------------------------------------------
# float64 references
# --------------------------------------------------------------------------------------------

def forward_fp64(model, t: dict, all_fp64: bool = False, lhs: bool = True) -> dict:
    """A float64 copy of the model on float64 inputs. all_fp64=False: transformers still builds the
    position grids and Fourier features in float32 (build_linear_positions and torch.linspace use
    float32, then .to(float64)), so this isolates the network's float32 rounding with the SAME
    input features as the float32 run. all_fp64=True: default dtype float64 and float64 grids, so
    the Fourier phases (largest for the audio bands) are exact too."""
    import copy

    import torch
    from transformers.models.perceiver import modeling_perceiver as mp

    m64 = copy.deepcopy(model).double()
    t64 = {k: v.double() if v.is_floating_point() else v for k, v in t.items()}
    if not all_fp64:
        return forward(m64, t64, lhs=lhs)
    real_blp = mp.build_linear_positions

    def blp64(index_dims, output_range=(-1.0, 1.0), device=None):
        r = [torch.linspace(output_range[0], output_range[1], n, dtype=torch.float64) for n in index_dims]
        return torch.stack(torch.meshgrid(*r, indexing="ij"), dim=-1)

    old = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        mp.build_linear_positions = blp64
        return forward(m64, t64, lhs=lhs)
    finally:
        mp.build_linear_positions = real_blp
        torch.set_default_dtype(old)
