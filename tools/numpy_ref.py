#!/usr/bin/env python3
"""Independent float64 NumPy re-implementation of the Perceiver IO text models, written from the
spec (shared/spec/perceiver-io.md §3, §8.1, §8.2) and reading ONLY config.json +
model.safetensors, exactly as the C engine does. No torch, no transformers.

Used to cross-check the committed fixtures (does the spec describe what HF computed?) and as a
compact, readable statement of the semantics:

  python tools/numpy_ref.py                      # check every tests/fixtures/*/ model fixture
  python tools/numpy_ref.py tests/fixtures/mlm_q_shape

For each fixture it prints the error of the float64 NumPy forward against expected.safetensors
as a fraction of the fixture's tolerance (tol_usage, must be <= 1) and exits 1 if any fails.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pcl_ref  # noqa: E402  (tolerances and comparison only; imports no torch)

LN_EPS = 1e-5  # nn.LayerNorm default; config.layer_norm_eps (1e-12) is NOT used by HF


def layernorm(x, p):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + LN_EPS) * p["weight"] + p["bias"]


def linear(x, p):
    return x @ p["weight"].T + p["bias"]


def gelu(x):
    from math import erf

    return 0.5 * x * (1.0 + np.vectorize(erf)(x / math.sqrt(2.0)))


def sub(w, prefix):
    """parameters under prefix, as a nested dict"""
    out = {}
    for k, v in w.items():
        if k.startswith(prefix + "."):
            node = out
            parts = k[len(prefix) + 1:].split(".")
            for q in parts[:-1]:
                node = node.setdefault(q, {})
            node[parts[-1]] = v
    return out


def layer(x, src, maskadd, P, heads, query_residual):
    """PerceiverLayer: pre-LN attention (+query residual) then MLP residual (spec §3.3-3.5).
    x [Nq][q]; src [Nk][kv] or None (self-attention); maskadd [Nk] or None."""
    a = P["attention"]["self"]
    xq = layernorm(x, a["layernorm1"])
    kv = layernorm(src, a["layernorm2"]) if src is not None else xq
    Q, K, V = linear(xq, a["query"]), linear(kv, a["key"]), linear(kv, a["value"])
    dq, dv = Q.shape[1] // heads, V.shape[1] // heads
    outs = []
    for h in range(heads):
        s = Q[:, h * dq:(h + 1) * dq] @ K[:, h * dq:(h + 1) * dq].T / math.sqrt(dq)
        if maskadd is not None:
            s = s + maskadd[None, :]
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        outs.append(s @ V[:, h * dv:(h + 1) * dv])
    att = linear(np.concatenate(outs, -1), P["attention"]["output"]["dense"])
    if query_residual:
        att = att + x
    m = P["mlp"]
    return att + linear(gelu(linear(layernorm(att, P["layernorm"]), m["dense1"])), m["dense2"])


def forward(model_dir: Path, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict:
    cfg = json.loads((model_dir / "config.json").read_text())
    w = {k: v.astype(np.float64) for k, v in load_file(str(model_dir / "model.safetensors")).items()}
    arch = cfg["architectures"][0]
    P = sub(w, "perceiver")
    E = P["input_preprocessor"]["embeddings"]["weight"]
    pos = P["input_preprocessor"]["position_embeddings"]["weight"]
    latents = P["embeddings"]["latents"]
    enc = P["encoder"]
    B, S = input_ids.shape
    logits, hidden = [], []
    for b in range(B):
        x = E[input_ids[b]] + pos[:S]
        m = attention_mask[b]
        # HF: additive finfo(float32).min on padded keys (no mask at all when nothing is padded)
        maskadd = None if m.all() else np.where(m == 0, float(np.finfo(np.float32).min), 0.0)
        z = layer(latents, x, maskadd, enc["cross_attention"], cfg["num_cross_attention_heads"],
                  cfg.get("use_query_residual", True))
        for _ in range(cfg["num_blocks"]):
            for i in range(cfg["num_self_attends_per_block"]):
                z = layer(z, None, None, enc["self_attends"][str(i)],
                          cfg["num_self_attention_heads"], True)
        hidden.append(z)
        dec = P["decoder"]
        if arch == "PerceiverForMaskedLM":
            q = dec["output_position_encodings"]["position_embeddings"]  # [max_pos][d_model]
            h = layer(q, z, None, dec["decoding_cross_attention"], 8, False)  # 8 heads hard-coded
            logits.append(h @ E.T + w["embedding_decoder.bias"])
        elif arch == "PerceiverForSequenceClassification":
            q = dec["decoder"]["output_position_encodings"]["position_embeddings"]  # [1][d_latents]
            h = layer(q, z, None, dec["decoder"]["decoding_cross_attention"], 1, True)
            logits.append(linear(h, dec["decoder"]["final_layer"])[0])
        else:
            raise ValueError(f"unsupported architecture {arch}")
    return {"logits": np.stack(logits), "last_hidden_state": np.stack(hidden)}


def check(fixture: Path) -> bool:
    meta = json.loads((fixture / "meta.json").read_text())
    inp = load_file(str(fixture / "inputs.safetensors"))
    exp = load_file(str(fixture / "expected.safetensors"))
    out = forward(fixture, inp["input_ids"], inp["attention_mask"])
    atol, rtol = pcl_ref.model_tolerance(meta["tolerance"])
    ok = True
    for k in ("logits", "last_hidden_state"):
        s = pcl_ref.compare(exp[k], out[k], atol, rtol)
        print(f"{fixture.name}: " + pcl_ref.format_stats(k, s))
        ok &= s["pass"]
    return ok


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    dirs = [Path(a) for a in argv] or sorted(
        p.parent for p in (pcl_ref.REPO_ROOT / "tests" / "fixtures").glob("*/meta.json"))
    ok = all([check(d) for d in dirs])
    print("RESULT: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
