#!/usr/bin/env python3
"""Generate the committed golden fixtures of perceiver-cl from Hugging Face transformers.

For every model fixture NAME this writes tests/fixtures/NAME/ (or --out DIR/NAME/):

  config.json, model.safetensors   tiny random-weight HF model, save_pretrained(), one float32 file
  inputs.safetensors               forward arguments under their HF names:
                                   input_ids (int64 [B][S]), attention_mask (int64 [B][S])
  expected.safetensors             float32 HF CPU outputs: logits, last_hidden_state
                                   (last_hidden_state = encoder latents [B][num_latents][d_latents],
                                   taken from model.perceiver(...) because the head outputs lack it)
  stages.safetensors               the intermediate states of the same forward under the engine's
                                   capture names (stage.preprocess, stage.encoder.cross,
                                   stage.encoder.self.<k>, stage.decoder): a failure names its stage
  meta.json                        class, tolerance profile (tests/tolerances.json), seed, versions,
                                   description, shapes and float64/mutation diagnostics

and tests/fixtures/tokenizer/cases.json from transformers' PerceiverTokenizer.

Every parameter is overwritten with seeded random values (see pcl_ref.randomize_parameters),
so LayerNorm affine parameters and biases are non-trivial. Each fixture is verified before it is
kept: the saved folder is reloaded with from_pretrained() and must reproduce expected.safetensors
bit for bit, the last_hidden_state must be the encoder output the head consumed, and the HF
float32 outputs must sit well inside the fixture's tolerance of a float64 forward.

Run:  python tools/make_fixtures.py            # all fixtures into tests/fixtures/
      python tools/make_fixtures.py --only mlm_q_shape,tokenizer --out /tmp/fx
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pcl_ref  # noqa: E402
from pcl_ref import MASK_ID  # noqa: E402

MAX_MODEL_BYTES = 2_000_000
# A fixture's HF float32 output may use at most this fraction of its tolerance when compared
# with a float64 forward of the same weights (so an engine as accurate as PyTorch passes easily).
MAX_FP64_TOL_USAGE = 0.1


@dataclass
class Fixture:
    name: str
    cls: str
    tolerance: str
    seed: int
    config: dict
    description: str
    seq_len: int | None = None
    rows: list = field(default_factory=list)  # (text, [positions set to [MASK]])
    hf_test_input: bool = False  # use pcl_ref.hf_test_inputs(seq_len)
    init: dict = field(default_factory=dict)  # kwargs for randomize_parameters
    image: tuple | None = None  # (batch, height, width): an image classifier's pixel_values
    flow: int | None = None  # batch of optical-flow inputs [B][2][27][train_size]


COMMON = dict(vocab_size=262, hidden_act="gelu", attention_probs_dropout_prob=0.1)

FIXTURES = [
    Fixture(
        name="mlm_heads_default",
        cls="PerceiverForMaskedLM",
        tolerance="mlm-tiny",
        seed=1001,
        config=dict(COMMON, num_latents=8, d_latents=32, d_model=32, num_blocks=1,
                    num_self_attends_per_block=2, num_self_attention_heads=4,
                    num_cross_attention_heads=2, qk_channels=None, v_channels=None,
                    self_attention_widening_factor=1, cross_attention_widening_factor=1,
                    max_position_embeddings=24),
        seq_len=20,
        rows=[("The cat sat.", [5, 6, 7]),
              ("Perceiver IO: ok", [11, 12, 13])],
        description=("Default channel rules: qk/v None, so the encoder cross-attention uses "
                     "qk=v=d_model=32 (2 heads of 16) and the self-attention qk=v=d_latents=32 "
                     "(4 heads of 8); MLM decoder hard-coded qk=256, v=d_model, 8 heads. "
                     "S=20 < max_position_embeddings=24, so logits have 24 rows; both rows padded "
                     "with [PAD]=0/attention_mask 0, [MASK]=3 inside the text."),
    ),
    Fixture(
        name="mlm_explicit_qkv",
        cls="PerceiverForMaskedLM",
        tolerance="mlm-tiny",
        seed=1002,
        config=dict(COMMON, num_latents=10, d_latents=48, d_model=40, num_blocks=2,
                    num_self_attends_per_block=2, num_self_attention_heads=4,
                    num_cross_attention_heads=4, qk_channels=16, v_channels=48,
                    self_attention_widening_factor=2, cross_attention_widening_factor=3,
                    max_position_embeddings=32),
        seq_len=28,
        rows=[("Latents read bytes: cat!!!", [20, 21, 22]),  # 26 bytes -> 28 ids, no padding
              ("multi-byte: h\u00e9llo", [3, 4]),
              ("a", [])],
        init=dict(embed_std=0.05),
        description=("Explicit qk_channels=16 (dq=4) and v_channels=48 (dv=12) in encoder cross "
                     "and self attention; num_blocks=2 re-applies the same 2 self-attention layers "
                     "(4 applications); widening 2 (self) / 3 (cross). Input embeddings and "
                     "position tables have std 0.05 (near HF init 0.02), which makes the LayerNorm "
                     "eps=1e-5 matter. Batch 3: row 0 unpadded, rows 1 and 2 padded differently."),
    ),
    Fixture(
        name="mlm_q_shape",
        cls="PerceiverForMaskedLM",
        tolerance="mlm-tiny",
        seed=1003,
        config=dict(COMMON, num_latents=6, d_latents=24, d_model=16, num_blocks=3,
                    num_self_attends_per_block=1, num_self_attention_heads=2,
                    num_cross_attention_heads=3, qk_channels=None, v_channels=None,
                    cross_attention_shape_for_attention="q", use_query_residual=False,
                    self_attention_widening_factor=1, cross_attention_widening_factor=1,
                    max_position_embeddings=20),
        seq_len=20,
        rows=[("Cross attends on q", [8, 9, 10])],  # 18 bytes -> exactly 20 ids
        description=("cross_attention_shape_for_attention='q': encoder cross-attention qk=v="
                     "d_latents=24 (3 heads of 8) with kv_dim=d_model=16; use_query_residual=False "
                     "(encoder cross-attention only); num_blocks=3 x 1 shared self layer. "
                     "S == max_position_embeddings == 20, attention_mask all ones (HF passes no "
                     "mask at all in that case)."),
    ),
    Fixture(
        name="mlm_language_like",
        cls="PerceiverForMaskedLM",
        tolerance="mlm-tiny",
        seed=1004,
        config=dict(COMMON, num_latents=16, d_latents=64, d_model=48, num_blocks=1,
                    num_self_attends_per_block=3, num_self_attention_heads=8,
                    num_cross_attention_heads=8, qk_channels=32, v_channels=64,
                    self_attention_widening_factor=1, cross_attention_widening_factor=1,
                    max_position_embeddings=64),
        seq_len=64,
        hf_test_input=True,
        description=("Scaled-down deepmind/language-perceiver (qk_channels=32 -> 8 heads x 4, "
                     "v_channels=64 -> 8 x 8; decoder 8 heads, dv=6). Input built exactly like the "
                     "HF integration test: PerceiverTokenizer(sentence, padding='max_length') to "
                     "64, input_ids[0, 52:61] = [MASK]."),
    ),
    Fixture(
        name="seqcls_basic",
        cls="PerceiverForSequenceClassification",
        tolerance="seqcls-tiny",
        seed=1005,
        config=dict(COMMON, num_labels=5, num_latents=8, d_latents=32, d_model=24, num_blocks=2,
                    num_self_attends_per_block=1, num_self_attention_heads=2,
                    num_cross_attention_heads=1, qk_channels=None, v_channels=None,
                    self_attention_widening_factor=1, cross_attention_widening_factor=1,
                    max_position_embeddings=16),
        seq_len=16,
        rows=[("good movie", []), ("bad!", [2])],
        description=("PerceiverForSequenceClassification: text preprocessor, encoder (cross qk=v="
                     "d_model=24, 1 head), PerceiverClassificationDecoder (trainable query "
                     "[1][32], 1 head, qk=v=d_latents, query residual) and Linear(32->5). Batch 2 "
                     "padded to 16."),
    ),
    Fixture(
        name="image_learned",
        cls="PerceiverForImageClassificationLearned",
        tolerance="image-tiny",
        seed=1101,
        config=dict(COMMON, num_labels=7, image_size=6, num_latents=8, d_latents=32, d_model=512,
                    num_blocks=2, num_self_attends_per_block=2, num_self_attention_heads=4,
                    num_cross_attention_heads=2, qk_channels=None, v_channels=None,
                    cross_attention_shape_for_attention="q"),
        image=(2, 6, 6),
        description=("PerceiverForImageClassificationLearned: 1x1 conv 3->256, trainable positions "
                     "[36][256] projected 256->256 and concatenated (512 channels); "
                     "cross_attention_shape_for_attention='q' keeps the fixture small (encoder "
                     "cross qk=v=d_latents=32, 2 heads, kv 512); 2 blocks x 2 self layers, "
                     "classification decoder with query residual, 7 labels. pixel_values "
                     "[2][3][6][6] ~ N(0,1)."),
    ),
    Fixture(
        name="image_fourier",
        cls="PerceiverForImageClassificationFourier",
        tolerance="image-tiny",
        seed=1102,
        config=dict(COMMON, num_labels=4, num_latents=8, d_latents=32, d_model=261,
                    num_blocks=1, num_self_attends_per_block=2, num_self_attention_heads=2,
                    num_cross_attention_heads=1, qk_channels=None, v_channels=None),
        image=(2, 9, 7),
        description=("PerceiverForImageClassificationFourier: pixels channels-last + 2-D Fourier "
                     "features (64 bands, max_resolution 224x224) over a 9x7 linspace grid: 3+258="
                     "261 channels; cross qk=v=261; 4 labels. Non-square odd image size."),
    ),
    Fixture(
        name="image_conv",
        cls="PerceiverForImageClassificationConvProcessing",
        tolerance="image-tiny",
        seed=1103,
        config=dict(COMMON, num_labels=5, num_latents=8, d_latents=32, d_model=322,
                    num_blocks=1, num_self_attends_per_block=2, num_self_attention_heads=4,
                    num_cross_attention_heads=1, qk_channels=None, v_channels=None),
        image=(2, 30, 26),
        description=("PerceiverForImageClassificationConvProcessing: pad 3, Conv2d 7x7/2 3->64 "
                     "(30x26 -> 15x13), BatchNorm (random running stats) + ReLU, MaxPool 3/2 "
                     "(-> 7x6), Fourier features over 7x6 (max_resolution 56): 64+258=322 "
                     "channels; 5 labels."),
    ),
    Fixture(
        name="flow_small",
        cls="PerceiverForOpticalFlow",
        tolerance="flow-tiny",
        seed=1201,
        config=dict(COMMON, train_size=[6, 8], num_latents=8, d_latents=32, d_model=322, num_blocks=1,
                    num_self_attends_per_block=2, num_self_attention_heads=2,
                    num_cross_attention_heads=1, qk_channels=None, v_channels=None),
        flow=2,
        description=("PerceiverForOpticalFlow at train_size 6x8: two frames of 3x3 patches "
                     "[2][2][27][6][8] ~ N(0,1) -> space_to_depth (frame*27 + channel) -> Linear "
                     "54->64 -> Fourier features over 6x8 (max_resolution = train_size) -> 322 "
                     "channels; the decoder queries are the preprocessed inputs (1 head, qk=v="
                     "d_latents, no query residual), Linear 322->2, / 100 -> logits [2][6][8][2]."),
    ),
]


# --------------------------------------------------------------------------------------------

def build_inputs(fx: Fixture) -> dict[str, torch.Tensor]:
    if fx.flow:
        h, w = fx.config["train_size"]
        gen = torch.Generator().manual_seed(fx.seed + 7)
        return {"inputs": torch.randn((fx.flow, 2, 27, h, w), generator=gen, dtype=torch.float32)}
    if fx.image:
        b, h, w = fx.image
        gen = torch.Generator().manual_seed(fx.seed + 7)
        return {"pixel_values": torch.randn((b, 3, h, w), generator=gen, dtype=torch.float32)}
    if fx.hf_test_input:
        return pcl_ref.hf_test_inputs(fx.seq_len)
    rows = []
    for text, masked in fx.rows:
        ids = pcl_ref.encode(text)
        for p in masked:
            if not 0 < p < len(ids) - 1:
                raise ValueError(f"{fx.name}: mask position {p} outside text of {text!r}")
            ids[p] = MASK_ID
        rows.append(ids)
    return dict(zip(("input_ids", "attention_mask"), pcl_ref.pad_batch(rows, fx.seq_len)))


def model_class(name: str):
    import transformers

    return getattr(transformers, name)


def check_consistency(model, fx: Fixture, inputs, expected) -> None:
    """last_hidden_state is the encoder output the head consumed; logits recompute exactly."""
    with torch.no_grad():
        if fx.flow:
            full = model(inputs=inputs["inputs"], output_hidden_states=True)
            base = model.perceiver(inputs=inputs["inputs"])
        elif fx.image:
            full = model(pixel_values=inputs["pixel_values"], output_hidden_states=True)
            base = model.perceiver(inputs=inputs["pixel_values"])
        else:
            full = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                         output_hidden_states=True)
            base = model.perceiver(inputs=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    if not torch.equal(full.hidden_states[-1], expected["last_hidden_state"]):
        raise RuntimeError(f"{fx.name}: hidden_states[-1] of the head forward != "
                           "model.perceiver(...).last_hidden_state")
    if fx.cls == "PerceiverForMaskedLM":
        relogits = model.embedding_decoder(
            base.logits, embedding_layer=model.perceiver.input_preprocessor.embeddings)
    else:
        relogits = base.logits
    if not torch.equal(relogits, expected["logits"]):
        raise RuntimeError(f"{fx.name}: logits are not a function of model.perceiver's output")


def stage_states(model, inputs) -> dict[str, torch.Tensor]:
    """The intermediate states of one forward, under the names the engine's capture mode uses
    (perceiver-cl verify, pcv_model_options.capture), so a failing fixture names the first stage
    that diverges: stage.preprocess (the encoder's input array), stage.encoder.cross (latents after
    the cross-attention), stage.encoder.self.<k> (after the k-th self-attention application, in
    order: the num_self_attends_per_block layers applied num_blocks times) and stage.decoder (the
    decoder cross-attention's output, before the final layer / embedding decoder). Taken with
    forward hooks: transformers' hidden_states repeat the state at every block boundary."""
    grabbed = {"self": []}
    enc = model.perceiver.encoder
    dec = model.perceiver.decoder
    dec_layer = dec.decoding_cross_attention if hasattr(dec, "decoding_cross_attention") \
        else dec.decoder.decoding_cross_attention
    hooks = [
        model.perceiver.input_preprocessor.register_forward_hook(
            lambda mod, args, out: grabbed.__setitem__("stage.preprocess", out[0])),
        enc.cross_attention.register_forward_hook(
            lambda mod, args, out: grabbed.__setitem__("stage.encoder.cross", out[0])),
        dec_layer.register_forward_hook(lambda mod, args, out: grabbed.__setitem__("stage.decoder", out[0])),
    ]
    for layer in enc.self_attends:
        hooks.append(layer.register_forward_hook(lambda mod, args, out: grabbed["self"].append(out[0])))
    try:
        with torch.no_grad():
            if "inputs" in inputs:
                out = model.perceiver(inputs=inputs["inputs"])
            elif "pixel_values" in inputs:
                out = model.perceiver(inputs=inputs["pixel_values"])
            else:
                out = model.perceiver(inputs=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    finally:
        for h in hooks:
            h.remove()
    states = {"stage.preprocess": grabbed["stage.preprocess"], "stage.encoder.cross": grabbed["stage.encoder.cross"]}
    for k, h in enumerate(grabbed["self"]):
        states[f"stage.encoder.self.{k}"] = h
    states["stage.decoder"] = grabbed["stage.decoder"]
    if not torch.equal(grabbed["self"][-1], out.last_hidden_state):
        raise RuntimeError("the last self-attention output != last_hidden_state")
    return {k: v.detach().to(torch.float32).clone() for k, v in states.items()}


def fp64_diagnostics(model, inputs, expected, atol, rtol) -> dict:
    m64 = copy.deepcopy(model).double()
    inputs64 = {k: v.double() if v.is_floating_point() else v for k, v in inputs.items()}
    out64 = pcl_ref.hf_forward(m64, inputs64)
    res = {}
    for k, v in expected.items():
        s = pcl_ref.compare(v, out64[k], atol, rtol)
        res[k] = {x: s[x] for x in ("max_abs_err", "max_rel_err", "nmse", "tol_usage")}
    return res




def mutation_diagnostics(model, inputs, expected, atol, rtol) -> dict:
    """Which plausible engine mistakes this fixture catches at its tolerance (True = caught)."""
    from transformers.models.perceiver.modeling_perceiver import PerceiverMLP

    def detected(m, inp):
        out = pcl_ref.hf_forward(m, inp)
        return not all(pcl_ref.compare(out[k], expected[k], atol, rtol)["pass"] for k in expected)

    res = {}
    m = copy.deepcopy(model)
    for mod in m.modules():
        if isinstance(mod, PerceiverMLP):
            mod.intermediate_act_fn = torch.nn.GELU(approximate="tanh")
    res["gelu_tanh_instead_of_erf"] = detected(m, inputs)

    m = copy.deepcopy(model)
    for mod in m.modules():
        if isinstance(mod, torch.nn.LayerNorm):
            mod.eps = 1e-12
    res["layernorm_eps_1e-12"] = detected(m, inputs)

    if "attention_mask" in inputs and bool((inputs["attention_mask"] == 0).any()):
        res["attention_mask_ignored"] = detected(
            model, {"input_ids": inputs["input_ids"],
                    "attention_mask": torch.ones_like(inputs["attention_mask"])})
    return res


def make_model_fixture(fx: Fixture, out_root: Path, tol_path: Path) -> dict:
    out = out_root / fx.name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    from transformers import PerceiverConfig

    torch.manual_seed(fx.seed)
    config = PerceiverConfig(**fx.config)
    model = model_class(fx.cls)(config).eval()
    pcl_ref.randomize_parameters(model, fx.seed, **fx.init)
    pcl_ref.save_hf_model(model, out)
    size = (out / "model.safetensors").stat().st_size
    if size > MAX_MODEL_BYTES:
        raise RuntimeError(f"{fx.name}: model.safetensors is {size} bytes > {MAX_MODEL_BYTES}")

    inputs = build_inputs(fx)
    save_file(inputs, str(out / "inputs.safetensors"), metadata={"format": "pt"})

    expected = pcl_ref.hf_forward(model, inputs)
    for v in expected.values():
        assert v.dtype == torch.float32 and torch.isfinite(v).all()
    check_consistency(model, fx, inputs, expected)
    save_file(expected, str(out / "expected.safetensors"), metadata={"format": "pt"})
    stages = stage_states(model, inputs)
    save_file(stages, str(out / "stages.safetensors"), metadata={"format": "pt"})

    # reload from the folder alone: weights and outputs must round-trip bit for bit
    reloaded = model_class(fx.cls).from_pretrained(str(out)).eval()
    sd0, sd1 = model.state_dict(), reloaded.state_dict()
    if sd0.keys() != sd1.keys() or any(not torch.equal(sd0[k], sd1[k]) for k in sd0):
        raise RuntimeError(f"{fx.name}: reloaded state_dict differs")
    again = pcl_ref.hf_forward(reloaded, load_file(str(out / "inputs.safetensors")))
    on_disk = load_file(str(out / "expected.safetensors"))
    for k in on_disk:
        if not torch.equal(again[k], on_disk[k]):
            raise RuntimeError(f"{fx.name}: reloaded model does not reproduce {k} exactly")

    atol, rtol = pcl_ref.model_tolerance(fx.tolerance, tol_path)
    fp64 = fp64_diagnostics(model, inputs, expected, atol, rtol)
    worst = max(v["tol_usage"] for v in fp64.values())
    if worst > MAX_FP64_TOL_USAGE:
        raise RuntimeError(f"{fx.name}: HF float32 vs float64 uses {worst:.3f} of the "
                           f"'{fx.tolerance}' tolerance (> {MAX_FP64_TOL_USAGE})")
    mutations = mutation_diagnostics(model, inputs, expected, atol, rtol)

    meta = {
        "class": fx.cls,
        "tolerance": fx.tolerance,
        "seed": fx.seed,
        **pcl_ref.versions(),
        "description": fx.description,
        "num_parameters": pcl_ref.count_parameters(model),
        "inputs": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
                   for k, v in inputs.items()},
        "outputs": {k: {"dtype": "float32", "shape": list(v.shape)} for k, v in expected.items()},
        "stages": {k: list(v.shape) for k, v in stages.items()},
        "init": dict({"embed_std": 0.5, "latent_std": 1.0, "ln_weight_std": 0.1,
                      "ln_bias_std": 0.1, "bias_std": 0.1, "weight_gain": 1.0}, **fx.init),
        "diagnostics": {
            "hf_fp32_vs_fp64": fp64,
            "mutation_caught": mutations,
        },
        "generated_by": "tools/make_fixtures.py",
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    fix_permissions(out)
    return meta


# --------------------------------------------------------------------------------------------
# tokenizer cases

ENCODE_TEXTS = [
    ("", None),
    ("Hello, world!", None),
    (pcl_ref.HF_TEST_SENTENCE, None),
    ("h\u00e9llo w\u00f6rld", None),
    ("emoji: \U0001F600\U0001F44D\U0001F3FD!", "4-byte UTF-8, skin-tone modifier"),
    ("\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", "CJK, 3-byte UTF-8"),
    ("line one\nline\ttwo\r\nend", "newline, tab, CR"),
    ("The quick brown fox jumps over the lazy dog; then it naps in the sun!!", "70 bytes"),
    ("  leading and trailing spaces  ", "whitespace is kept"),
    ("Stra\u00dfe \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u0440\u0443\u0441\u0441\u043a\u0438\u0439",
     "Latin-1, Greek, Cyrillic"),
    ("\u03a9\u2248\u00e7\u221a\u222b \u00b5 \u20ac", "mixed 2- and 3-byte"),
    ("\x01 soh and \x7f del", "control bytes (no NUL: JSON \\u0000 is awkward for C JSON parsers)"),
    ("a [MASK] token", "HF splits literal special-token strings: '[MASK]' -> id 3"),
]


def b(*bytes_):
    """byte values -> token ids"""
    return [x + pcl_ref.BYTE_OFFSET for x in bytes_]


DECODE_IDS = [
    (b(0x80), "lone continuation byte"),
    (b(0xE6, 0x97), "truncated 3-byte sequence -> one U+FFFD"),
    (b(0xC0, 0xAF), "overlong encoding -> two U+FFFD"),
    (b(0xED, 0xA0, 0x80), "UTF-16 surrogate -> three U+FFFD"),
    (b(0xFF, 0x41), "invalid byte then 'A'"),
    (b(0xF4, 0x90, 0x80, 0x80), "above U+10FFFF"),
    (b(0xF0, 0x9F, 0x98) + b(0x41), "truncated 4-byte sequence then 'A'"),
    (b(0x41, 0xE2, 0x82) + b(0xE2, 0x82, 0xAC), "truncated then valid euro sign"),
    ([4] + b(0xC3) + [3] + b(0xA9) + [5],
     "multi-byte char split by a special token: joined when specials are skipped"),
    ([0, 1, 2, 3, 4, 5], "all special tokens"),
    ([4] + b(0x68, 0x69) + [5, 0, 0], "text followed by padding"),
]


def make_tokenizer_cases(out_root: Path) -> dict:
    tok = pcl_ref.get_tokenizer()
    enc = []
    for text, note in ENCODE_TEXTS:
        ids = list(tok(text)["input_ids"])
        case = {
            "text": text,
            "input_ids": ids,
            "input_ids_no_special": list(tok(text, add_special_tokens=False)["input_ids"]),
            "decoded": tok.decode(ids, skip_special_tokens=True),
            "decoded_with_special": tok.decode(ids),
        }
        if "[" in text:
            case["special_token_literal"] = True
        elif ids != pcl_ref.encode_by_hand(text):
            raise RuntimeError(f"tokenizer disagrees with the byte rule on {text!r}")
        if note:
            case["note"] = note
        enc.append(case)
    dec = []
    for ids, note in DECODE_IDS:
        dec.append({
            "ids": ids,
            "decoded": tok.decode(ids, skip_special_tokens=True),
            "decoded_with_special": tok.decode(ids),
            "note": note,
        })
    doc = {
        "comment": ("Produced by transformers' PerceiverTokenizer (tools/make_fixtures.py). "
                    "encode: tok(text) with special tokens ([CLS] ... [SEP]); decoded = "
                    "tok.decode(ids, skip_special_tokens=True); decoded_with_special = "
                    "tok.decode(ids). Decoding concatenates the bytes (special tokens as their "
                    "literal strings) and then decodes UTF-8 with errors='replace' (Python's "
                    "maximal-subpart U+FFFD rule). Cases with special_token_literal: HF splits "
                    "literal '[MASK]' etc. in the text into the special id."),
        **pcl_ref.versions(),
        "encode": enc,
        "decode": dec,
    }
    d = out_root / "tokenizer"
    d.mkdir(parents=True, exist_ok=True)
    (d / "cases.json").write_text(dump_cases_json(doc), encoding="utf-8")
    fix_permissions(d)
    return doc


def dump_cases_json(doc: dict) -> str:
    """JSON with one case per line (UTF-8, not ASCII-escaped) so diffs stay readable."""
    def one(x):
        return json.dumps(x, ensure_ascii=False)

    lines = ["{"]
    scalars = [k for k, v in doc.items() if not isinstance(v, list)]
    lists = [k for k, v in doc.items() if isinstance(v, list)]
    for k in scalars:
        lines.append(f" {one(k)}: {one(doc[k])},")
    for i, k in enumerate(lists):
        lines.append(f" {one(k)}: [")
        items = doc[k]
        for j, item in enumerate(items):
            lines.append("  " + one(item) + ("," if j + 1 < len(items) else ""))
        lines.append(" ]" + ("," if i + 1 < len(lists) else ""))
    lines.append("}")
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == doc
    return text


def fix_permissions(d: Path) -> None:
    """safetensors writes 0600 files; make everything world-readable like a normal checkout."""
    for f in d.iterdir():
        if f.is_file():
            f.chmod(0o644)


# --------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    names = [f.name for f in FIXTURES] + ["tokenizer"]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="fixtures: " + ", ".join(names))
    ap.add_argument("--out", type=Path, default=pcl_ref.REPO_ROOT / "tests" / "fixtures",
                    help="output root (default: tests/fixtures of this repository)")
    ap.add_argument("--only", default="", help="comma-separated subset of fixture names")
    ap.add_argument("--tolerances", type=Path, default=pcl_ref.TOLERANCES_PATH,
                    help="tolerances.json used for the diagnostics (default tests/tolerances.json)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--list", action="store_true", help="list fixture names and exit")
    args = ap.parse_args(argv)

    if args.list:
        print("\n".join(names))
        return 0
    only = [s for s in args.only.split(",") if s]
    bad = [s for s in only if s not in names]
    if bad:
        ap.error(f"unknown fixture(s): {', '.join(bad)}")

    pcl_ref.setup_torch(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for fx in FIXTURES:
        if only and fx.name not in only:
            continue
        meta = make_model_fixture(fx, args.out, args.tolerances)
        shapes = ", ".join(f"{k}{v['shape']}" for k, v in {**meta["inputs"], **meta["outputs"]}.items())
        fp64 = meta["diagnostics"]["hf_fp32_vs_fp64"]
        print(f"{fx.name}: {meta['num_parameters']} params; {shapes}")
        print("    fp32-vs-fp64 " + "; ".join(
            f"{k} max_abs={v['max_abs_err']:.2e} tol_usage={v['tol_usage']:.4f}" for k, v in fp64.items()))
        print("    mutations caught: " + ", ".join(
            f"{k}={v}" for k, v in meta["diagnostics"]["mutation_caught"].items()))
    if not only or "tokenizer" in only:
        doc = make_tokenizer_cases(args.out)
        print(f"tokenizer: {len(doc['encode'])} encode cases, {len(doc['decode'])} decode cases")
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"total size of {args.out}: {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
