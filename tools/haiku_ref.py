"""Haiku-side reference helpers for perceiver-cl (imported by make_haiku_fixtures.py and
check_convert.py; pure Python + NumPy at import time, JAX/Haiku only inside the functions that
need them).

1. ``hf_rename`` / ``haiku_to_hf``: Hugging Face's Haiku -> PyTorch conversion rules, written here
   from the description in shared/spec/perceiver-io.md section 10 (the substring-replacement
   chain of transformers' convert_perceiver_haiku_to_pytorch.py, applied in the same order, then
   np.transpose of every "...weight" that is not an embedding and np.squeeze of BatchNorm
   tensors). perceiver-cl's C renamer (src/formats/haiku.c) is a table written independently; the tests
   compare the two.
2. ``haiku_names``: the Haiku parameter names of each of the six DeepMind architectures, built
   from the module structure of DeepMind's perceiver.py (spec checkpoint-formats.md 2.3-2.5).
3. ``hf_to_haiku_tree``: the inverse: the Haiku parameter tree ({scope: {name: array}}) whose HF
   conversion is a given HF state dict. Used to make tiny Haiku checkpoints from tiny HF models.
4. ``mlm_forward``: OUR re-implementation, with dm-haiku modules, of DeepMind's original
   masked-LM forward pass following shared/spec/haiku-vs-hf.md section 3 (tanh GELU, scores
   multiplied by 1/sqrt(d), select -1e30 masks, zeroed fully-masked rows, decoder query mask).
   It is NOT DeepMind's code (perceiver.py is not on PyPI and cannot be fetched here); module
   names are DeepMind's, so it consumes the DeepMind parameter tree unchanged.
"""

from __future__ import annotations

import numpy as np

ARCHS = ["MLM", "image_classification", "image_classification_fourier",
         "image_classification_conv", "optical_flow", "multimodal_autoencoding"]
HF_CLASS = {
    "MLM": "PerceiverForMaskedLM",
    "image_classification": "PerceiverForImageClassificationLearned",
    "image_classification_fourier": "PerceiverForImageClassificationFourier",
    "image_classification_conv": "PerceiverForImageClassificationConvProcessing",
    "optical_flow": "PerceiverForOpticalFlow",
    "multimodal_autoencoding": "PerceiverForMultimodalAutoencoding",
}
MODALITIES = ("audio", "image", "label")


# --------------------------------------------------------------------------------------------
# 1. HF's rename rules (spec perceiver-io.md 10.2, in application order)
# --------------------------------------------------------------------------------------------

def hf_rename(name: str, architecture: str) -> str | None:
    """Haiku name -> HF state-dict key, or None for dropped entries."""
    n = name
    n = n.replace("embed/embeddings", "input_preprocessor.embeddings.weight")
    if n.startswith("trainable_position_encoding/pos_embs"):
        n = n.replace("trainable_position_encoding/pos_embs",
                      "input_preprocessor.position_embeddings.weight")
    n = n.replace("image_preprocessor/~/conv2_d/w", "input_preprocessor.convnet_1x1.weight")
    n = n.replace("image_preprocessor/~/conv2_d/b", "input_preprocessor.convnet_1x1.bias")
    n = n.replace("image_preprocessor/~_build_network_inputs/trainable_position_encoding/pos_embs",
                  "input_preprocessor.position_embeddings.position_embeddings")
    n = n.replace("image_preprocessor/~_build_network_inputs/position_encoding_projector/linear/w",
                  "input_preprocessor.positions_projection.weight")
    n = n.replace("image_preprocessor/~_build_network_inputs/position_encoding_projector/linear/b",
                  "input_preprocessor.positions_projection.bias")
    if "counter" in n or "hidden" in n:
        return None
    n = n.replace("image_preprocessor/~/conv2_d_downsample/~/conv/w",
                  "input_preprocessor.convnet.conv.weight")
    n = n.replace("image_preprocessor/~/conv2_d_downsample/~/batchnorm/offset",
                  "input_preprocessor.convnet.batchnorm.bias")
    n = n.replace("image_preprocessor/~/conv2_d_downsample/~/batchnorm/scale",
                  "input_preprocessor.convnet.batchnorm.weight")
    n = n.replace("image_preprocessor/~/conv2_d_downsample/~/batchnorm/~/mean_ema/average",
                  "input_preprocessor.convnet.batchnorm.running_mean")
    n = n.replace("image_preprocessor/~/conv2_d_downsample/~/batchnorm/~/var_ema/average",
                  "input_preprocessor.convnet.batchnorm.running_var")
    n = n.replace("image_preprocessor/patches_linear/b", "input_preprocessor.conv_after_patches.bias")
    n = n.replace("image_preprocessor/patches_linear/w", "input_preprocessor.conv_after_patches.weight")
    for m in MODALITIES:
        n = n.replace(f"multimodal_preprocessor/{m}_mask_token/pos_embs", f"input_preprocessor.mask.{m}")
        n = n.replace(f"multimodal_preprocessor/{m}_padding/pos_embs", f"input_preprocessor.padding.{m}")
    n = n.replace("multimodal_decoder/~/basic_decoder/cross_attention/",
                  "decoder.decoder.decoding_cross_attention.")
    for m in MODALITIES:
        n = n.replace(f"multimodal_decoder/~decoder_query/{m}_padding/pos_embs", f"decoder.padding.{m}")
    n = n.replace("multimodal_decoder/~/basic_decoder/output/b", "decoder.decoder.final_layer.bias")
    n = n.replace("multimodal_decoder/~/basic_decoder/output/w", "decoder.decoder.final_layer.weight")
    if architecture == "multimodal_autoencoding":
        n = n.replace("classification_decoder/~/basic_decoder/~/trainable_position_encoding/pos_embs",
                      "decoder.modalities.label.decoder.output_position_encodings.position_embeddings")
    n = n.replace("flow_decoder/~/basic_decoder/cross_attention/", "decoder.decoder.decoding_cross_attention.")
    n = n.replace("flow_decoder/~/basic_decoder/output/w", "decoder.decoder.final_layer.weight")
    n = n.replace("flow_decoder/~/basic_decoder/output/b", "decoder.decoder.final_layer.bias")
    n = n.replace("classification_decoder/~/basic_decoder/~/trainable_position_encoding/pos_embs",
                  "decoder.decoder.output_position_encodings.position_embeddings")
    n = n.replace("basic_decoder/~/trainable_position_encoding/pos_embs",
                  "decoder.output_position_encodings.position_embeddings")
    n = n.replace("classification_decoder/~/basic_decoder/cross_attention/",
                  "decoder.decoder.decoding_cross_attention.")
    n = n.replace("classification_decoder/~/basic_decoder/output/b", "decoder.decoder.final_layer.bias")
    n = n.replace("classification_decoder/~/basic_decoder/output/w", "decoder.decoder.final_layer.weight")
    n = n.replace("classification_decoder/~/basic_decoder/~/", "decoder.decoder.")
    n = n.replace("basic_decoder/cross_attention/", "decoder.decoding_cross_attention.")
    n = n.replace("basic_decoder/~/", "decoder.")
    n = n.replace("projection_postprocessor/linear/b", "output_postprocessor.modalities.image.classifier.bias")
    n = n.replace("projection_postprocessor/linear/w", "output_postprocessor.modalities.image.classifier.weight")
    n = n.replace("classification_postprocessor/linear/b", "output_postprocessor.modalities.label.classifier.bias")
    n = n.replace("classification_postprocessor/linear/w", "output_postprocessor.modalities.label.classifier.weight")
    n = n.replace("audio_postprocessor/linear/b", "output_postprocessor.modalities.audio.classifier.bias")
    n = n.replace("audio_postprocessor/linear/w", "output_postprocessor.modalities.audio.classifier.weight")
    n = n.replace("perceiver_encoder/~/trainable_position_encoding/pos_embs", "embeddings.latents")
    n = n.replace("encoder/~/trainable_position_encoding/pos_embs", "embeddings.latents")
    for pre in ("perceiver_encoder/~/", "encoder/~/"):
        if n.startswith(pre):
            n = ("encoder.self_attends." if "self_attention" in n else "encoder.") + n[len(pre):]
    n = n.replace("offset", "bias").replace("scale", "weight")
    if "cross_attention" in n and "layer_norm_2" in n:
        n = n.replace("layer_norm_2", "layernorm")
    if "self_attention" in n and "layer_norm_1" in n:
        n = n.replace("layer_norm_1", "layernorm")
    if "cross_attention" in n and "layer_norm_1" in n:
        n = n.replace("layer_norm_1", "attention.self.layernorm2")
    if "cross_attention" in n and "layer_norm" in n:
        n = n.replace("layer_norm", "attention.self.layernorm1")
    if "self_attention" in n and "layer_norm" in n:
        n = n.replace("layer_norm", "attention.self.layernorm1")
    n = n.replace("-", ".").replace("/", ".")
    if ("cross_attention" in n or "self_attention" in n) and "mlp" not in n:
        for lin, mod in (("linear", "self.query"), ("linear_1", "self.key"),
                         ("linear_2", "self.value"), ("linear_3", "output.dense")):
            n = n.replace(f"{lin}.b", f"{mod}.bias").replace(f"{lin}.w", f"{mod}.weight")
    n = n.replace("self_attention_", "").replace("self_attention", "0")
    if "mlp" in n:
        n = n.replace("linear.b", "dense1.bias").replace("linear.w", "dense1.weight")
        n = n.replace("linear_1.b", "dense2.bias").replace("linear_1.w", "dense2.weight")
    return n if "embedding_decoder" in n else "perceiver." + n


def hf_transform(hf_name: str, value: np.ndarray) -> np.ndarray:
    if hf_name.endswith("weight") and "embeddings" not in hf_name:
        value = np.transpose(value)
    if "batchnorm" in hf_name:
        value = np.squeeze(value)
    return value


def haiku_to_hf(flat: dict, architecture: str) -> dict:
    """Flat {haiku_name: array} -> {hf_name: array}, HF's rules."""
    out = {}
    for k, v in flat.items():
        hf = hf_rename(k, architecture)
        if hf is not None:
            out[hf] = np.ascontiguousarray(hf_transform(hf, np.asarray(v)))
    return out


# --------------------------------------------------------------------------------------------
# 2. Haiku parameter names (DeepMind perceiver.py / io_processors.py module structure)
# --------------------------------------------------------------------------------------------

def _cross(scope):
    out = []
    for ln in ("layer_norm", "layer_norm_1", "layer_norm_2"):
        out += [f"{scope}/{ln}/scale", f"{scope}/{ln}/offset"]
    for lin in ("linear", "linear_1", "linear_2", "linear_3"):
        out += [f"{scope}/attention/{lin}/w", f"{scope}/attention/{lin}/b"]
    for lin in ("linear", "linear_1"):
        out += [f"{scope}/mlp/{lin}/w", f"{scope}/mlp/{lin}/b"]
    return out


def _self(scope):
    out = []
    for ln in ("layer_norm", "layer_norm_1"):
        out += [f"{scope}/{ln}/scale", f"{scope}/{ln}/offset"]
    for lin in ("linear", "linear_1", "linear_2", "linear_3"):
        out += [f"{scope}/attention/{lin}/w", f"{scope}/attention/{lin}/b"]
    for lin in ("linear", "linear_1"):
        out += [f"{scope}/mlp/{lin}/w", f"{scope}/mlp/{lin}/b"]
    return out


def _encoder(enc, n_self):
    out = [f"{enc}/~/trainable_position_encoding/pos_embs"] + _cross(f"{enc}/~/cross_attention")
    for k in range(n_self):
        out += _self(f"{enc}/~/self_attention" + (f"_{k}" if k else ""))
    return out


def _classifier():
    d = "classification_decoder/~/basic_decoder"
    return ([f"{d}/~/trainable_position_encoding/pos_embs"] + _cross(f"{d}/cross_attention") +
            [f"{d}/output/w", f"{d}/output/b"])


BN = "image_preprocessor/~/conv2_d_downsample/~/batchnorm"


def haiku_names(architecture: str, n_self: int) -> tuple[list, list]:
    """(params names, state names) of a DeepMind checkpoint."""
    state = []
    if architecture == "MLM":
        p = (["embed/embeddings", "trainable_position_encoding/pos_embs"] +
             _encoder("perceiver_encoder", n_self) +
             ["basic_decoder/~/trainable_position_encoding/pos_embs"] +
             _cross("basic_decoder/cross_attention") + ["embedding_decoder/bias"])
    elif architecture == "image_classification":
        b = "image_preprocessor/~_build_network_inputs"
        p = (["image_preprocessor/~/conv2_d/w", "image_preprocessor/~/conv2_d/b",
              f"{b}/trainable_position_encoding/pos_embs",
              f"{b}/position_encoding_projector/linear/w", f"{b}/position_encoding_projector/linear/b"] +
             _encoder("perceiver_encoder", n_self) + _classifier())
    elif architecture == "image_classification_fourier":
        p = _encoder("perceiver_encoder", n_self) + _classifier()
    elif architecture == "image_classification_conv":
        p = (["image_preprocessor/~/conv2_d_downsample/~/conv/w", f"{BN}/scale", f"{BN}/offset"] +
             _encoder("perceiver_encoder", n_self) + _classifier())
        state = [f"{BN}/~/{s}_ema/{f}" for s in ("mean", "var") for f in ("counter", "hidden", "average")]
    elif architecture == "optical_flow":
        d = "flow_decoder/~/basic_decoder"
        p = (["image_preprocessor/patches_linear/w", "image_preprocessor/patches_linear/b"] +
             _encoder("perceiver_encoder", n_self) + _cross(f"{d}/cross_attention") +
             [f"{d}/output/w", f"{d}/output/b"])
    elif architecture == "multimodal_autoencoding":
        d = "multimodal_decoder/~/basic_decoder"
        p = ([f"multimodal_preprocessor/{m}_{k}/pos_embs" for m in MODALITIES for k in ("padding", "mask_token")] +
             _encoder("encoder", n_self) +
             ["classification_decoder/~/basic_decoder/~/trainable_position_encoding/pos_embs"] +
             [f"multimodal_decoder/~decoder_query/{m}_padding/pos_embs" for m in MODALITIES] +
             _cross(f"{d}/cross_attention") + [f"{d}/output/w", f"{d}/output/b"] +
             [f"{x}_postprocessor/linear/{w}" for x in ("audio", "projection", "classification") for w in ("w", "b")])
    else:
        raise ValueError(architecture)
    return p, state


# --------------------------------------------------------------------------------------------
# 3. HF state dict -> Haiku tree
# --------------------------------------------------------------------------------------------

def nest(flat: dict) -> dict:
    """{"a/~/b/w": x} -> {"a/~/b": {"w": x}} (Haiku's two-level layout)."""
    tree: dict = {}
    for k, v in flat.items():
        scope, name = k.rsplit("/", 1)
        tree.setdefault(scope, {})[name] = v
    return tree


def hf_to_haiku_tree(sd: dict, architecture: str, n_self: int, rng=None):
    """Returns (params tree, state tree) whose HF conversion gives sd back (num_batches_tracked
    aside). sd values are NumPy arrays."""
    rng = rng or np.random.default_rng(0)
    pnames, snames = haiku_names(architecture, n_self)
    flat_p, flat_s = {}, {}
    used = set()
    for names, flat in ((pnames, flat_p), (snames, flat_s)):
        for hk_name in names:
            hf = hf_rename(hk_name, architecture)
            if hf is None:  # BatchNorm EMA bookkeeping: not in the HF model
                c = sd["perceiver.input_preprocessor.convnet.batchnorm.running_mean"].shape[0]
                flat[hk_name] = (np.array(7, dtype=np.int32) if hk_name.endswith("counter")
                                 else rng.standard_normal((1, 1, 1, c)).astype(np.float32))
                continue
            if hf not in sd:
                raise KeyError(f"{hk_name} -> {hf}: not in the HF model")
            used.add(hf)
            v = np.asarray(sd[hf])
            if "batchnorm" in hf:
                v = v.reshape(1, 1, 1, -1)
            elif hf.endswith("weight") and "embeddings" not in hf:
                v = np.transpose(v)
            flat[hk_name] = np.ascontiguousarray(v)
    left = set(sd) - used - {"perceiver.input_preprocessor.convnet.batchnorm.num_batches_tracked"}
    if left:
        raise KeyError(f"HF parameters with no Haiku name: {sorted(left)[:5]}")
    return nest(flat_p), nest(flat_s)


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        name = f"{prefix}/{k}" if prefix else k
        if isinstance(v, dict) or hasattr(v, "items"):
            out.update(flatten(dict(v.items()), name))
        else:
            out[name] = v
    return out


# --------------------------------------------------------------------------------------------
# 4. our JAX/Haiku re-implementation of DeepMind's masked-LM forward pass
# --------------------------------------------------------------------------------------------

def mlm_forward(params: dict, input_ids, input_mask, cfg: dict, dtype="float32"):
    """logits [B][S][vocab] and encoder latents [B][N][D] with DeepMind's numerics
    (haiku-vs-hf.md section 3). cfg: HF-style config dict of the model."""
    import math

    import haiku as hk
    import jax
    import jax.numpy as jnp

    d_model, d_lat = cfg["d_model"], cfg["d_latents"]

    def layer_norm(x):
        return hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)(x)  # eps 1e-5

    def attend(q, k, v, mask):
        # q [B,T,H,d], k [B,T',H,d]; G2: scores * (1/sqrt(d)); G3: select -1e30; G6 softmax
        _, _, _, dq = q.shape
        scores = jnp.einsum("bthd,bThd->bhtT", q, k)
        scores = scores * (1.0 / math.sqrt(dq))
        if mask is not None:
            scores = jnp.where(mask[:, None, :, :], scores, jnp.asarray(-1e30, scores.dtype))
        p = jax.nn.softmax(scores)
        out = jnp.einsum("bhtT,bThd->bthd", p, v)
        b, t, h, dv = out.shape
        out = out.reshape(b, t, h * dv)
        if mask is not None:  # G4: rows with no valid key produce 0
            wipe = jnp.all(mask == 0, axis=2, keepdims=True)
            out = jnp.where(wipe, jnp.zeros_like(out), out)
        return out

    class Attention(hk.Module):
        def __init__(self, heads, qk, v, out, name=None):
            super().__init__(name=name)
            self.h, self.qk, self.v, self.out = heads, qk, v, out

        def __call__(self, xq, xkv, mask):
            q = hk.Linear(self.qk)(xq)
            k = hk.Linear(self.qk)(xkv)
            v = hk.Linear(self.v)(xkv)
            b, t, _ = q.shape
            tk = k.shape[1]
            q = q.reshape(b, t, self.h, self.qk // self.h)
            k = k.reshape(b, tk, self.h, self.qk // self.h)
            v = v.reshape(b, tk, self.h, self.v // self.h)
            return hk.Linear(self.out)(attend(q, k, v, mask))

    class MLP(hk.Module):
        def __init__(self, wf, name=None):
            super().__init__(name=name)
            self.wf = wf

        def __call__(self, x):
            c = x.shape[-1]
            x = hk.Linear(self.wf * c)(x)
            x = jax.nn.gelu(x)  # G1: approximate=True (tanh) by default, as in DeepMind's code
            return hk.Linear(c)(x)

    class CrossAttention(hk.Module):
        def __init__(self, heads, qk, v, wf, residual, name=None):
            super().__init__(name=name)
            self.heads, self.qk, self.v, self.wf, self.residual = heads, qk, v, wf, residual

        def __call__(self, xq, xkv, mask):
            qk = self.qk or xkv.shape[-1]  # shape_for_attn 'kv'
            v = self.v or qk
            attn = Attention(self.heads, qk, v, xq.shape[-1])(layer_norm(xq), layer_norm(xkv), mask)
            x = xq + attn if self.residual else attn
            return x + MLP(self.wf)(layer_norm(x))

    class SelfAttention(hk.Module):
        def __init__(self, heads, qk, v, wf, name=None):
            super().__init__(name=name)
            self.heads, self.qk, self.v, self.wf = heads, qk, v, wf

        def __call__(self, x):
            qk = self.qk or x.shape[-1]
            v = self.v or qk
            xn = layer_norm(x)
            x = x + Attention(self.heads, qk, v, v)(xn, xn, None)
            return x + MLP(self.wf)(layer_norm(x))

    class TrainablePositionEncoding(hk.Module):
        def __init__(self, n, c, name=None):
            super().__init__(name=name)
            self.n, self.c = n, c

        def __call__(self, batch):
            pe = hk.get_parameter("pos_embs", [self.n, self.c], init=hk.initializers.TruncatedNormal(0.02))
            return jnp.broadcast_to(pe[None], (batch, self.n, self.c))

    class PerceiverEncoder(hk.Module):
        def __init__(self, name="perceiver_encoder"):
            super().__init__(name=name)
            self.latents = TrainablePositionEncoding(cfg["num_latents"], d_lat)
            self.cross = CrossAttention(cfg["num_cross_attention_heads"], cfg.get("qk_channels"),
                                        cfg.get("v_channels"), cfg["cross_attention_widening_factor"],
                                        cfg["use_query_residual"])
            self.selfs = [SelfAttention(cfg["num_self_attention_heads"], cfg.get("qk_channels"),
                                        cfg.get("v_channels"), cfg["self_attention_widening_factor"])
                          for _ in range(cfg["num_self_attends_per_block"])]

        def __call__(self, x, mask):
            b = x.shape[0]
            z = self.latents(b)
            m = jnp.ones((b, cfg["num_latents"]), bool)[:, :, None] & mask[:, None, :]
            z = self.cross(z, x, m)
            for _ in range(cfg["num_blocks"]):
                for sa in self.selfs:
                    z = sa(z)
            return z

    class BasicDecoder(hk.Module):
        def __init__(self, name="basic_decoder"):
            super().__init__(name=name)
            self.query = TrainablePositionEncoding(cfg["max_position_embeddings"], d_model)

        def __call__(self, z, query_mask):
            b = z.shape[0]
            q = self.query(b)
            m = query_mask[:, :, None] & jnp.ones((b, z.shape[1]), bool)[:, None, :]  # G5
            return CrossAttention(8, 8 * 32, d_model, 1, False)(q, z, m)

    class EmbeddingDecoder(hk.Module):
        def __init__(self, name="embedding_decoder"):
            super().__init__(name=name)

        def __call__(self, x, table):
            bias = hk.get_parameter("bias", [cfg["vocab_size"]], init=jnp.zeros)
            return x @ table.T + bias

    def model(ids, mask):
        b, s = ids.shape
        embed = hk.Embed(cfg["vocab_size"], d_model)
        x = embed(ids) + TrainablePositionEncoding(cfg["max_position_embeddings"], d_model)(b)[:, :s]
        m = mask.astype(bool)
        z = PerceiverEncoder()(x, m)
        out = BasicDecoder()(z, m)
        return EmbeddingDecoder()(out, embed.embeddings), z

    f = hk.without_apply_rng(hk.transform(model))
    p = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)
    logits, z = f.apply(p, jnp.asarray(input_ids), jnp.asarray(input_mask))
    return np.asarray(logits), np.asarray(z)
