"""Shared helpers for the Hugging Face reference tooling of perceiver-cl.

Imported by make_fixtures.py, check_fullsize.py and bench_hf.py (all live in tools/ and put
this directory on sys.path simply by being run as scripts). Nothing here touches the network:
models are only ever built from a config or loaded from a local folder.

Conventions shared by every tool:

* tolerances come from tests/tolerances.json (the one place they are written down); a value
  passes when |actual - expected| <= atol + rtol * |expected|, elementwise;
* inputs/outputs are safetensors files whose tensor names are the Hugging Face forward
  argument / output names: inputs "input_ids" (int64 [B][S]) and "attention_mask"
  (int64 [B][S]); outputs "logits" and "last_hidden_state" (float32).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

# torch / transformers are imported inside the functions that need them, so that the
# comparison helpers (load_tolerances, compare, ...) work in a NumPy-only environment.

REPO_ROOT = Path(__file__).resolve().parent.parent
TOLERANCES_PATH = REPO_ROOT / "tests" / "tolerances.json"

# PerceiverTokenizer special ids (tokenization_perceiver.py): bytes are offset by 6.
PAD_ID, BOS_ID, EOS_ID, MASK_ID, CLS_ID, SEP_ID = 0, 1, 2, 3, 4, 5
BYTE_OFFSET = 6
VOCAB_SIZE = 262

# The sentence and masked span of the HF integration test / PerceiverForMaskedLM docstring.
HF_TEST_SENTENCE = "This is an incomplete sentence where some words are missing."
HF_TEST_MASK_SPAN = (52, 61)  # input_ids[0, 52:61] = [MASK] (" missing.")

# Config of deepmind/language-perceiver (spec section 1.3 / 8.1): 201,108,230 parameters.
FULLSIZE_MLM_CONFIG = dict(
    num_latents=256,
    d_latents=1280,
    d_model=768,
    num_blocks=1,
    num_self_attends_per_block=26,
    num_self_attention_heads=8,
    num_cross_attention_heads=8,
    qk_channels=256,
    v_channels=1280,
    cross_attention_shape_for_attention="kv",
    self_attention_widening_factor=1,
    cross_attention_widening_factor=1,
    hidden_act="gelu",
    attention_probs_dropout_prob=0.1,
    use_query_residual=True,
    vocab_size=262,
    max_position_embeddings=2048,
)
FULLSIZE_MLM_PARAMS = 201_108_230


# --------------------------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------------------------

def setup_torch(threads: int | None = 2) -> None:
    """CPU float32, fixed thread count, no autograd."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    torch.set_default_dtype(torch.float32)


def versions() -> dict:
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__}


# --------------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------------

def get_tokenizer():
    """transformers' PerceiverTokenizer (it has no vocab file, so this works offline)."""
    from transformers import PerceiverTokenizer

    return PerceiverTokenizer()


def encode_by_hand(text: str) -> list[int]:
    """Fallback byte tokenizer: [CLS] + (utf-8 bytes + 6) + [SEP]. Identical to
    PerceiverTokenizer for text that contains no literal special-token strings."""
    return [CLS_ID] + [b + BYTE_OFFSET for b in text.encode("utf-8")] + [SEP_ID]


def encode(text: str) -> list[int]:
    """ids with special tokens, from PerceiverTokenizer when available."""
    try:
        tok = get_tokenizer()
    except Exception:  # pragma: no cover - only if transformers' tokenizer is unusable
        return encode_by_hand(text)
    ids = tok(text)["input_ids"]
    return list(ids)


def pad_batch(rows: list[list[int]], seq_len: int):
    """Right-pad id lists with [PAD]=0 to seq_len; attention_mask 1 on real tokens, 0 on pads.
    Returns (input_ids, attention_mask) as int64 torch tensors [len(rows)][seq_len]."""
    import torch

    ids = torch.full((len(rows), seq_len), PAD_ID, dtype=torch.int64)
    mask = torch.zeros((len(rows), seq_len), dtype=torch.int64)
    for i, r in enumerate(rows):
        if len(r) > seq_len:
            raise ValueError(f"row {i} has {len(r)} ids > seq_len {seq_len}")
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
        mask[i, : len(r)] = 1
    return ids, mask


def hf_test_inputs(seq_len: int = 2048, batch: int = 1) -> dict:
    """The HF integration-test input: the sentence tokenized with padding="max_length" to
    seq_len, then input_ids[:, 52:61] = [MASK]. For seq_len < 62 the tokenizer truncates
    (truncation=True keeps [CLS]/[SEP]) and the mask span is clipped. Rows are identical when
    batch > 1."""
    import torch

    try:
        tok = get_tokenizer()
        enc = tok(HF_TEST_SENTENCE, padding="max_length", max_length=seq_len, truncation=True,
                  return_tensors="pt")
        ids = enc["input_ids"].to(torch.int64)
        mask = enc["attention_mask"].to(torch.int64)
    except ImportError:  # pragma: no cover - by-hand fallback
        row = encode_by_hand(HF_TEST_SENTENCE)[:seq_len]
        ids, mask = pad_batch([row], seq_len)
    a, b = HF_TEST_MASK_SPAN
    ids[0, a:min(b, seq_len)] = MASK_ID
    if batch > 1:
        ids = ids.repeat(batch, 1)
        mask = mask.repeat(batch, 1)
    return {"input_ids": ids.contiguous(), "attention_mask": mask.contiguous()}


# --------------------------------------------------------------------------------------------
# random weights
# --------------------------------------------------------------------------------------------

def randomize_parameters(model, seed: int, *, latent_std: float = 1.0,
                         embed_std: float = 0.5, ln_weight_std: float = 0.1,
                         ln_bias_std: float = 0.1, bias_std: float = 0.1,
                         weight_gain: float = 1.0) -> None:
    """Overwrite EVERY parameter with seeded random values so that no parameter keeps its
    trivial init (LayerNorm 1/0, biases 0) and activations are not degenerate.

    * nn.LayerNorm: weight = 1 + ln_weight_std*N(0,1), bias = ln_bias_std*N(0,1)
    * nn.Linear:    weight = weight_gain/sqrt(fan_in) * N(0,1) (keeps activations O(1), so
                    attention softmaxes are neither uniform nor saturated), bias = bias_std*N
    * nn.Embedding and trainable position tables: embed_std*N(0,1)
    * latents: latent_std*N(0,1)
    * any other bias (embedding_decoder.bias): bias_std*N(0,1)

    Uses a private torch.Generator, visiting parameters in named_modules() order, so the
    result depends only on (architecture, seed).
    """
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)

    def randn(shape):
        return torch.randn(shape, generator=gen, dtype=torch.float32)

    seen = set()
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            if id(p) in seen:  # shared (tied) parameters are drawn once
                continue
            seen.add(id(p))
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if isinstance(module, nn.LayerNorm):
                val = (1.0 + ln_weight_std * randn(p.shape)) if p_name == "weight" \
                    else ln_bias_std * randn(p.shape)
            elif isinstance(module, nn.Linear):
                if p_name == "weight":
                    val = randn(p.shape) * (weight_gain / math.sqrt(p.shape[1]))
                else:
                    val = bias_std * randn(p.shape)
            elif isinstance(module, nn.Conv2d):
                if p_name == "weight":
                    fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                    val = randn(p.shape) * (weight_gain / math.sqrt(fan_in))
                else:
                    val = bias_std * randn(p.shape)
            elif isinstance(module, nn.BatchNorm2d):
                val = (1.0 + ln_weight_std * randn(p.shape)) if p_name == "weight" \
                    else ln_bias_std * randn(p.shape)
            elif isinstance(module, nn.Embedding):
                val = embed_std * randn(p.shape)
            elif p_name == "latents":
                val = latent_std * randn(p.shape)
            elif "position_embeddings" in p_name:
                val = embed_std * randn(p.shape)
            elif p_name == "bias":
                val = bias_std * randn(p.shape)
            else:
                raise RuntimeError(f"randomize_parameters: no rule for parameter {full} "
                                   f"({type(module).__name__})")
            with torch.no_grad():
                p.copy_(val)
        if isinstance(module, nn.BatchNorm2d):  # running statistics are buffers, not parameters
            with torch.no_grad():
                module.running_mean.copy_(0.3 * randn(module.running_mean.shape))
                module.running_var.copy_(1.0 + 0.5 * randn(module.running_var.shape).abs())


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def safetensors_numel(path: str | os.PathLike) -> int:
    """Total element count in a safetensors file, read from its header only."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    total = 0
    for k, v in header.items():
        if k == "__metadata__":
            continue
        total += int(np.prod(v["shape"])) if v["shape"] else 1
    return total


def save_hf_model(model, out_dir: str | os.PathLike) -> None:
    """save_pretrained as ONE float32 model.safetensors + config.json; nothing else kept."""
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for p in model.parameters():
        if p.dtype != torch.float32:
            raise RuntimeError("model must be float32")
    # max_shard_size large enough that the full-size model (~805 MB) is never sharded
    model.save_pretrained(out_dir, safe_serialization=True, max_shard_size="100GB")
    keep = {"config.json", "model.safetensors"}
    for f in out_dir.iterdir():
        if f.name not in keep:
            if f.is_dir():
                import shutil

                shutil.rmtree(f)
            else:
                f.unlink()
    if not (out_dir / "model.safetensors").is_file():
        raise RuntimeError(f"save_pretrained did not write {out_dir}/model.safetensors")


# --------------------------------------------------------------------------------------------
# forward + comparison
# --------------------------------------------------------------------------------------------

def hf_forward(model, inputs: dict) -> dict:
    """logits and last_hidden_state (encoder latents) of a PerceiverFor{MaskedLM,
    SequenceClassification}. The head classes do not return last_hidden_state, so it is
    taken from model.perceiver(...); the head's own logits come from the normal forward."""
    import torch

    with torch.no_grad():
        if "inputs" in inputs:  # optical flow
            out = model(inputs=inputs["inputs"])
            base = model.perceiver(inputs=inputs["inputs"])
        elif "pixel_values" in inputs:  # image classifiers
            out = model(pixel_values=inputs["pixel_values"])
            base = model.perceiver(inputs=inputs["pixel_values"])
        else:
            out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            base = model.perceiver(inputs=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    return {"logits": out.logits.contiguous(), "last_hidden_state": base.last_hidden_state.contiguous()}


def load_tolerances(path: str | os.PathLike = TOLERANCES_PATH) -> dict:
    with open(path) as f:
        return json.load(f)


def model_tolerance(profile: str, path: str | os.PathLike = TOLERANCES_PATH) -> tuple[float, float]:
    t = load_tolerances(path)["models"][profile]
    return float(t["atol"]), float(t["rtol"])


def compare(actual, expected, atol: float, rtol: float) -> dict:
    """Error statistics in float64; 'pass' uses |a-e| <= atol + rtol*|e| elementwise."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return {"pass": False, "error": f"shape {list(a.shape)} != expected {list(e.shape)}"}
    if not np.all(np.isfinite(a)):
        return {"pass": False, "error": "non-finite values in actual"}
    d = np.abs(a - e)
    bound = atol + rtol * np.abs(e)
    denom = float(np.sum(e * e))
    worst = int(np.argmax(d / bound)) if d.size else 0
    return {
        "pass": bool(np.all(d <= bound)),
        "max_abs_err": float(d.max()) if d.size else 0.0,
        "max_rel_err": float((d / np.maximum(np.abs(e), 1e-30)).max()) if d.size else 0.0,
        "nmse": float(np.sum(d * d) / denom) if denom > 0 else float(np.sum(d * d)),
        "tol_usage": float((d / bound).max()) if d.size else 0.0,  # <= 1 passes
        "n_fail": int(np.sum(d > bound)),
        "worst_index": [int(i) for i in np.unravel_index(worst, e.shape)] if d.size else [],
        "max_abs_expected": float(np.abs(e).max()) if e.size else 0.0,
    }


def format_stats(name: str, s: dict) -> str:
    if "error" in s:
        return f"{name}: FAIL ({s['error']})"
    return (f"{name}: max_abs_err={s['max_abs_err']:.3e} max_rel_err={s['max_rel_err']:.3e} "
            f"nmse={s['nmse']:.3e} tol_usage={s['tol_usage']:.3f} n_fail={s['n_fail']} "
            f"(max|expected|={s['max_abs_expected']:.3g}) {'PASS' if s['pass'] else 'FAIL'}")
