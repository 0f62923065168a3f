#!/usr/bin/env python3
"""Writes tests/fixtures/activations/: one tiny PerceiverForSequenceClassification (random
weights, shared by every case) and what transformers computes with each config.hidden_act that
ACT2FN maps to a fixed formula. tests/test_activations.c runs perceiver-cl with each and compares
with the "seqcls-tiny" tolerance; the ops test checks the same formulas against float64.

    /work/venv-ref/bin/python tools/make_activation_fixtures.py

Every MLP of every Perceiver layer (encoder cross-attention, self-attention, decoder) uses
config.hidden_act (PerceiverMLP: ACT2FN[config.hidden_act]). "prelu" and "xielu" are left out:
they carry learned parameters, no fixed formula. Linear weights are drawn with gain 2 so that the
activations see inputs beyond +-3 and +-6 (hardswish, relu6) and the outputs of different
activations differ by far more than the tolerance (activations.json: min_pairwise_diff).
"""
import json
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import PerceiverConfig, PerceiverForSequenceClassification
from transformers.activations import ACT2CLS

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pcl_ref  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "tests/fixtures/activations"
LEARNED = {"prelu", "xielu"}
GAIN = 1.0
MLP_IN = 5.0
CONFIG = dict(num_latents=8, d_latents=32, d_model=24, num_blocks=2, num_self_attends_per_block=1,
              num_self_attention_heads=2, num_cross_attention_heads=1, max_position_embeddings=16,
              num_labels=5, vocab_size=262, self_attention_widening_factor=2, cross_attention_widening_factor=2)


def main():
    pcl_ref.setup_torch(2)
    acts = sorted(a for a in ACT2CLS if a not in LEARNED)
    torch.manual_seed(5)
    model = PerceiverForSequenceClassification(PerceiverConfig(**CONFIG, hidden_act="gelu")).eval()
    pcl_ref.randomize_parameters(model, 5, weight_gain=GAIN)
    with torch.no_grad():  # MLP pre-activations reach +-20 (every formula's regions), outputs stay O(1)
        for name, p in model.named_parameters():
            if ".mlp.dense1." in name:
                p.mul_(MLP_IN)
            elif ".mlp.dense2.weight" in name:
                p.div_(MLP_IN)
    OUT.mkdir(parents=True, exist_ok=True)
    pcl_ref.save_hf_model(model, OUT)
    state = model.state_dict()
    tok = pcl_ref.get_tokenizer()
    texts = ["The Perceiver reads bytes.", "Masked [lines]"]
    enc = tok(texts, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
    inputs = {"input_ids": enc["input_ids"].to(torch.int64), "attention_mask": enc["attention_mask"].to(torch.int64)}
    save_file(inputs, str(OUT / "inputs.safetensors"))
    expected, meta = {}, {"transformers": transformers.__version__, "torch": torch.__version__,
                          "tolerance": "seqcls-tiny", "activations": {}}
    outs = {}
    for a in acts:
        m = PerceiverForSequenceClassification(PerceiverConfig(**CONFIG, hidden_act=a)).eval()
        m.load_state_dict(state)
        ref = pcl_ref.hf_forward(m, inputs)
        m64 = PerceiverForSequenceClassification(PerceiverConfig(**CONFIG, hidden_act=a)).eval().double()
        m64.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in state.items()})
        ref64 = pcl_ref.hf_forward(m64, inputs)
        for k in ("logits", "last_hidden_state"):
            expected[f"{k}.{a}"] = ref[k]
        outs[a] = ref
        err = max(float((ref[k].double() - ref64[k]).abs().max()) for k in ref)
        atol, rtol = pcl_ref.model_tolerance("seqcls-tiny")
        use = max(float(((ref[k].double() - ref64[k]).abs() / (atol + rtol * ref64[k].abs())).max()) for k in ref)
        meta["activations"][a] = {"class": ACT2CLS[a].__name__ if isinstance(ACT2CLS[a], type)
                                  else ACT2CLS[a][0].__name__, "hf_fp32_vs_fp64_max_abs": err,
                                  "hf_fp32_vs_fp64_tol_usage": use}
    for a in acts:  # how far each case is from the nearest other one: the test can tell them apart
        d = min(float((outs[a]["last_hidden_state"] - outs[b]["last_hidden_state"]).abs().max())
                for b in acts if b != a and not same_formula(a, b))
        meta["activations"][a]["min_pairwise_diff"] = d
    save_file(expected, str(OUT / "expected.safetensors"))
    (OUT / "activations.json").write_text(json.dumps(meta, indent=1) + "\n")
    for a in acts:
        print(f"{a:20s} fp32-vs-fp64 {meta['activations'][a]['hf_fp32_vs_fp64_max_abs']:.2e} "
              f"({100 * meta['activations'][a]['hf_fp32_vs_fp64_tol_usage']:.1f}% of the tolerance)  "
              f"nearest other {meta['activations'][a]['min_pairwise_diff']:.2e}")


# names that are the same function (up to float32 rounding of their constants)
SAME = [{"gelu", "gelu_python"}, {"gelu_new", "gelu_pytorch_tanh", "gelu_python_tanh", "gelu_accurate",
                                  "gelu_fast"}, {"silu", "swish"}]


def same_formula(a, b):
    return any(a in s and b in s for s in SAME)


if __name__ == "__main__":
    main()
