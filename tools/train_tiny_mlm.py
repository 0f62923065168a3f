#!/usr/bin/env python3
"""Trains the tiny byte-level Perceiver IO masked language model bundled in examples/tiny-mlm/.

What it is
    A toy transformers.PerceiverForMaskedLM (714 k parameters, 2.9 MB of float32 weights)
    trained from scratch on one CPU thread for `perceiver-cl fill` demos. It is NOT
    deepmind/language-perceiver (201 M parameters, trained on C4 + Wikipedia); it only knows
    the register of software licenses, Debian copyright files and Python docstrings, and fills
    words right only some of the time even there (see the README it writes).

Training data (all of it ships with a Debian system, nothing is downloaded)
    * /usr/share/common-licenses/*        (GPL, LGPL, Apache-2.0, MPL, GFDL, Artistic, ...)
    * /usr/share/doc/*/copyright          (Debian copyright files: license texts and notices)
    * docstrings of the Python standard library, /usr/lib/python3.*/**/*.py (tests excluded),
      extracted with the ast module
    Text is cut into paragraphs (wrapped lines joined with single spaces). Paragraphs that are
    not mostly English prose (code, tables, e-mail addresses, lists of names) are dropped and
    every paragraph is kept once only (the same GPL text appears in hundreds of copyright
    files), so a held-out paragraph never also appears in the training text. One source file
    is one document; 5% of the documents (chosen by a seeded hash of the path) are held out
    for evaluation.

Model and inputs
    PerceiverConfig(vocab_size=262, max_position_embeddings=128, d_model=128, num_latents=128,
    d_latents=128, num_blocks=1, num_self_attends_per_block=4, num_self_attention_heads=4,
    num_cross_attention_heads=4, widening factors 1, hidden_act="gelu"); the MLM decoder that
    transformers builds has 8 heads, qk 256 and v = d_model channels. Inputs use
    PerceiverTokenizer's ids: [PAD]=0 (attention_mask 0), [MASK]=3, [CLS]=4, [SEP]=5,
    byte b -> b + 6. A training example is [CLS] + a window of up to 126 bytes + [SEP], padded
    to 128 positions (half the windows are shorter than 126 bytes and most begin at a word or
    paragraph start, so short single-sentence inputs look familiar to the model).

Initialisation
    From transformers' default N(0, 0.02) initialisation a first version of this model (64
    latents of 160 channels, batch 64) sat at the unigram loss (3.13 nats, 13% masked-byte
    accuracy) for the whole of a 1100-step attempt, and so did short tests of this one: there
    is no residual path from input position i to output position i, every attention starts out
    uniform, and escaping that takes longer than a CPU budget of minutes. So aligned_init()
    wires the starting point to route by position (latent k <- byte k and its neighbours,
    dilated local self-attention, output i <- latents i-1..i+1) using a Fourier location code
    in channels 0:32; after that everything is ordinary end-to-end training of all weights.
    num_latents must equal max_position_embeddings for this.

Objective
    About 15% of the bytes of each window are replaced by [MASK]: roughly two thirds of that as
    whole words of 3-8 letters (the way `fill` demos mask words: "{the} quick brown fox"), the
    rest as random spans of 1-3 bytes. The loss is cross-entropy on the masked positions only
    (labels -100 elsewhere). AdamW (lr 1e-3, betas 0.9/0.98, weight decay 0.01), linear warmup
    over 300 steps then cosine decay (to 5%) over the wall-clock budget, batch 32 (not 64: the
    machine's shared CPU ran at about 1 step of 32 windows per second), gradient clipping 1.0.

Output (in --out)
    config.json, model.safetensors (save_pretrained; any other file is removed), README.md with
    the measured held-out accuracies and example fills, and examples.txt with example lines in
    `perceiver-cl fill` syntax (correctly filled ones first).

Rerun
    /work/venv-ref/bin/python tools/train_tiny_mlm.py --out examples/tiny-mlm --minutes 30
    (needs torch, transformers, safetensors, numpy). Takes --minutes of training plus about
    1-2 minutes of data preparation and evaluation on one CPU thread. Data, initialisation,
    masking and evaluation are seeded (--seed), but the number of steps depends on the
    machine's speed because the budget is wall-clock time, so a rerun gives a similar, not an
    identical, model. --eval-only reuses the model saved in --out (and the step count/time
    kept in --state) and only redoes the evaluation, README.md and examples.txt.
"""

import argparse
import ast
import glob
import hashlib
import json
import math
import os
import random
import re
import tempfile
import time

import numpy as np
import torch

PAD, MASK, CLS, SEP, OFFSET, VOCAB = 0, 3, 4, 5, 6, 262
MAXPOS = 128
WINDOW = MAXPOS - 2  # bytes per example

CONFIG = dict(
    vocab_size=VOCAB,
    max_position_embeddings=MAXPOS,
    d_model=128,
    num_latents=128,
    d_latents=128,
    num_blocks=1,
    num_self_attends_per_block=4,
    num_self_attention_heads=4,
    num_cross_attention_heads=4,
    self_attention_widening_factor=1,
    cross_attention_widening_factor=1,
    qk_channels=None,
    v_channels=None,
    hidden_act="gelu",
    attention_probs_dropout_prob=0.0,
    architectures=["PerceiverForMaskedLM"],
)

WORD_RE = re.compile(rb"[A-Za-z]+")

# Candidate demo sentences in `perceiver-cl fill` syntax ({text} masks the bytes of text).
# Written for this demo; most are paraphrases of license / documentation phrasing rather
# than copies (the README says which ones occur verbatim in the training text).
CANDIDATES = [
    "This program is free {software}; you can redistribute it",
    "{The} quick brown fox jumps over the lazy dog.",
    "The quick brown fox {jumps} over the lazy dog.",
    "Permission is hereby {granted} to use this file for any purpose.",
    "You should have received a {copy} of the license with this library.",
    "This tool is distributed in the hope that it will be {useful}, but without any warranty.",
    "See the {License} for the specific language governing permissions.",
    "The author makes no {warranty} about this code.",
    "Return the {number} of items in the list.",
    "Return a new {list} containing the keys of the dictionary.",
    "This function returns {the} value of the attribute.",
    "If the file does not {exist}, an exception is raised.",
    "The {source} code of the program is available on request.",
    "Copyright (C) 2024 The {Free} Software Foundation",
    "You may not use this file {except} in compliance with the License.",
    "All rights {reserved}.",
    "The software is provided as is, {without} warranty of any kind.",
    "Redistribution and use in source and {binary} forms are permitted.",
    "The {default} value is None.",
    "Raise a {ValueError} if the argument is negative.",
    "This module provides a {simple} interface to the operating system.",
    "Each line of the {file} is read as a string.",
    "The {name} of the module is stored in this attribute.",
    "We hope that this {program} will be of use to others.",
    "Licensed under the {Apache} License, Version 2.0.",
    "This is free software, and you are {welcome} to share it.",
    "The {user} may change the settings at any time.",
    "Open the file and {read} its contents into memory.",
    "The {first} argument is the path of the directory.",
    "A copy of the GNU General {Public} License is included.",
    "The library is {free} for any use, commercial or not.",
    "It is {not} possible to change this value later.",
    "Write the data to the {output} stream.",
    "Return {True} if the string is empty.",
    "The {time} is given in seconds since the epoch.",
    "This {version} of the license was published in 2007.",
    "The {work} is licensed to you under these terms.",
    "The cat sat on the {mat}.",
    "She went to the {market} to buy some bread.",
    "Paris is the {capital} of France.",
    "This library is free {software}; you may redistribute it under these terms.",
    "See the GNU General Public {License} for more details.",
    "Return the {value} of the named attribute.",
    "The {file} is opened in binary mode.",
    "It is {the} job of the caller to close the file.",
    "The {data} is written to the file.",
    "Return {the} number of bytes written.",
    "Return the {name} of the current thread.",
    "The program is {free} to use and to share.",
    "This {function} is deprecated.",
    "Use the {same} license as the rest of the package.",
    "The {License} text is in the file COPYING.",
    "This is {free} software that comes with no warranty.",
    "The {module} defines a class for each kind of file.",
    "The {class} has a method that reads the data.",
    "The {GNU} General Public License is a free license.",
    "{This} program comes with no warranty.",
    "The {string} is returned unchanged.",
    "The result is {not} the same as the input.",
    "This {file} is part of the package.",
]


# ---------------------------------------------------------------------------------------------
# data


def prose_ok(p):
    """Keeps paragraphs that look like English prose."""
    if len(p) < 40:
        return False
    if "@" in p or "http" in p or ">>>" in p or "::" in p:
        return False
    letters = sum(c.isalpha() for c in p)
    spaces = p.count(" ")
    if letters + spaces < 0.88 * len(p):
        return False
    words = p.split()
    if len(words) < 8:
        return False
    # mostly lowercase words (rejects lists of names, headers, tables)
    lower = sum(w[:1].islower() for w in words)
    if lower < 0.55 * len(words):
        return False
    avg = sum(len(w) for w in words) / len(words)
    return 2.5 <= avg <= 9.0


def paragraphs_of(text):
    """Splits text at blank lines; joins each paragraph's lines with single spaces."""
    out = []
    for block in re.split(r"\n[ \t]*\n", text):
        p = " ".join(block.split())
        if p:
            out.append(p)
    return out


def clean_copyright(text):
    """Debian copyright files (DEP-5 or free form) -> plain text with blank-line paragraphs."""
    lines = []
    for line in text.splitlines():
        s = line.strip()
        if s == ".":  # DEP-5 empty line inside a field
            lines.append("")
            continue
        if re.match(r"^[A-Z][A-Za-z-]*:( |$)", line):  # DEP-5 field header (Files:, License:, ...)
            lines.append("")
            continue
        if re.match(r"^\s*(Copyright|\(C\)|\(c\)|©)", s):
            lines.append("")
            continue
        lines.append(s)
    return "\n".join(lines)


def docstrings_of(path):
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read())
    except (SyntaxError, ValueError, OSError, RecursionError):
        return ""
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            d = ast.get_docstring(node, clean=True)
            if d:
                docs.append(d)
    return "\n\n".join(docs)


def collect_documents():
    """Returns a list of (name, [paragraph, ...]); paragraphs deduplicated globally."""
    raw = []
    for p in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.islink(p) or not os.path.isfile(p):
            continue
        with open(p, encoding="utf-8", errors="replace") as f:
            raw.append((p, f.read()))
    for p in sorted(glob.glob("/usr/share/doc/*/copyright")):
        if os.path.islink(p):
            continue
        try:
            with open(p, encoding="utf-8", errors="replace") as f:
                raw.append((p, clean_copyright(f.read())))
        except OSError:
            pass
    pydirs = sorted(d for d in glob.glob("/usr/lib/python3.*") if re.search(r"python3\.\d+$", d))
    if pydirs:
        root = pydirs[-1]
        for p in sorted(glob.glob(root + "/**/*.py", recursive=True)):
            rel = p[len(root) + 1 :]
            if re.search(r"(^|/)(tests?|idle_test|site-packages|dist-packages)(/|$)", rel) or "test_" in rel:
                continue
            raw.append((p, docstrings_of(p)))
    seen = set()
    docs = []
    for name, text in raw:
        paras = []
        for para in paragraphs_of(text):
            if not prose_ok(para):
                continue
            key = hashlib.sha1(re.sub(r"[^a-z0-9]", "", para.lower()).encode()).digest()
            if key in seen:
                continue
            seen.add(key)
            paras.append(para)
        if paras:
            docs.append((name, paras))
    return docs


def split_documents(docs, seed, frac=0.05):
    train, held = [], []
    for name, paras in docs:
        h = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")
        (held if h % 10000 < frac * 10000 else train).append((name, paras))
    return train, held


def corpus_bytes(docs):
    """All paragraphs, one per line, as bytes; plus the start offsets of the paragraphs."""
    parts, starts, pos = [], [], 0
    for _, paras in docs:
        for p in paras:
            b = p.encode("utf-8") + b"\n"
            starts.append(pos)
            parts.append(b)
            pos += len(b)
    return b"".join(parts), np.array(starts, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# initialisation


# Frequencies (radians per byte) of the location code used by aligned_init: 16 picked by a
# random search so that code(i) . code(j) is small for all 0 < |i - j| < 128 (at most 0.32 of
# the peak).
CODE_FREQS = [0.1517, 0.1906, 0.3718, 1.0995, 1.1288, 1.1741, 1.2123, 1.4135, 1.5048, 1.591,
              1.6901, 1.7426, 2.1143, 2.2344, 2.3715, 2.8394]


def location_code(x):
    """Fourier location code of positions x: (len(x), 32), unit variance per channel."""
    w = torch.tensor(CODE_FREQS, dtype=torch.float64)
    a = torch.as_tensor(x, dtype=torch.float64)[:, None] * w[None]
    return (torch.stack([a.cos(), a.sin()], dim=-1).reshape(len(a), -1) * math.sqrt(2)).float()


def shift_matrix(offsets):
    """M with code(x) @ M.T == sum over o of code(x + o) (a rotation per frequency)."""
    w = torch.tensor(CODE_FREQS, dtype=torch.float64)
    M = torch.zeros(2 * len(w), 2 * len(w), dtype=torch.float64)
    for o in offsets:
        c, s = torch.cos(w * o), torch.sin(w * o)
        for m in range(len(w)):
            M[2 * m : 2 * m + 2, 2 * m : 2 * m + 2] += torch.tensor([[c[m], -s[m]], [s[m], c[m]]], dtype=torch.float64)
    return M.float()


@torch.no_grad()
def aligned_init(model, seed):
    """Position-aligned ("dilated convolution") initialisation; everything is then trained end
    to end.

    A Perceiver has no residual path from input position i to output position i: a byte's
    information must go input -> latents (cross-attention) -> output query i (decoder
    cross-attention). From the standard N(0, 0.02) initialisation every attention is nearly
    uniform, every output position sees the same average, and training sits for thousands of
    steps at the unigram loss (about 3.15 nats here), longer than this CPU budget. So the
    starting point routes by position: channels 0:32 of the input position embeddings, of the
    latents and of the decoder's output queries hold a Fourier location code (latent k sits at
    byte k, so num_latents must equal max_position_embeddings), and some heads have query/key
    weights that match code(x + offset) against code(y), i.e. attend to a fixed relative
    position: encoder cross-attention heads read bytes k, k-1, k+1 and k-3..k+3 into latent k,
    self-attention layer l has heads looking d = 1, 2, 4, 8 latents left and right (so after
    four layers a latent has seen about +-16 bytes), and decoder heads read latents i, i-1,
    i+1 for output i. Byte embeddings start in channels 64: (no overlap with the code). Every
    other weight is N(0, 1/fan_in); residual-branch output projections are scaled by 0.3 so
    the latents keep their codes.
    """
    gen = torch.Generator().manual_seed(seed)
    cfg = model.config
    D, Dl, Nl = cfg.d_model, cfg.d_latents, cfg.num_latents
    assert Nl == MAXPOS, "aligned_init needs one latent per position"
    C = 2 * len(CODE_FREQS)  # 32 = qk channels per head everywhere in this config
    for name, p in model.named_parameters():
        if p.dim() == 2 and name.endswith(".weight") and "embeddings" not in name:
            p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]), generator=gen)
            if ".self_attends." in name or ".decoder." in name:
                if name.endswith("output.dense.weight") or name.endswith("mlp.dense2.weight"):
                    p.mul_(0.3)
        elif name.endswith(".bias"):
            p.zero_()
    code = location_code(torch.arange(MAXPOS))
    pre = model.perceiver.input_preprocessor
    emb = pre.embeddings.weight
    emb.zero_()
    emb[:, 2 * C :] = torch.randn(emb.shape[0], D - 2 * C, generator=gen)
    pin = pre.position_embeddings.weight
    pin.zero_()
    pin[:, :C] = code
    latents = model.perceiver.embeddings.latents
    latents.copy_(torch.randn(Nl, Dl, generator=gen) * 0.5)
    latents[:, :C] = code
    pout = model.perceiver.decoder.output_position_encodings.position_embeddings
    pout.copy_(torch.randn(MAXPOS, D, generator=gen) * 0.5)
    pout[:, :C] = code

    # the residual branches do not write into the code channels at first
    enc_layer = model.perceiver.encoder.cross_attention
    for layer in [enc_layer, *model.perceiver.encoder.self_attends]:
        layer.attention.output.dense.weight[:C] = 0
        layer.mlp.dense2.weight[:C] = 0

    enc = model.perceiver.encoder.cross_attention.attention.self
    dec = model.perceiver.decoder.decoding_cross_attention.attention.self
    plan = [(enc, h, o) for h, o in enumerate(([0], [-1], [1], [-3, -2, -1, 0, 1, 2, 3]))]
    for layer, d in zip(model.perceiver.encoder.self_attends, (1, 2, 4, 8, 16, 32)):
        plan += [(layer.attention.self, 0, [-d]), (layer.attention.self, 1, [d])]
    plan += [(dec, h, o) for h, o in enumerate(([0], [-1], [1]))]

    # LayerNorm divides by the standard deviation of the whole vector; measure it on a sample
    # batch (twice, since the wiring changes what later layers see) to set the logit scale
    stds = {}

    def hook(key):
        def f(mod, args):
            stds[key] = float(args[0].std(dim=-1).mean())
        return f

    handles = []
    for att in {id(a): a for a, _, _ in plan}.values():
        handles.append(att.layernorm1.register_forward_pre_hook(hook((id(att), "q"))))
        if isinstance(att.layernorm2, torch.nn.LayerNorm):
            handles.append(att.layernorm2.register_forward_pre_hook(hook((id(att), "k"))))
    rng = np.random.default_rng(seed)
    sample = torch.from_numpy(rng.integers(OFFSET + 97, OFFSET + 123, size=(4, MAXPOS)))
    for _ in range(3):
        model(input_ids=sample, attention_mask=torch.ones_like(sample))
        for att, head, offsets in plan:
            gq = 1.0 / stds[(id(att), "q")]
            gk = 1.0 / stds.get((id(att), "k"), stds[(id(att), "q")])
            peak = 10.0 if len(offsets) == 1 else 6.0  # attention logit at the target position
            rows = slice(head * C, (head + 1) * C)
            att.query.weight[rows] = 0
            att.key.weight[rows] = 0
            att.query.weight[rows, :C] = shift_matrix(offsets) * (peak / (C**0.5 * gq * gk))
            att.key.weight[rows, :C] = torch.eye(C)
    for h in handles:
        h.remove()


# ---------------------------------------------------------------------------------------------
# examples and masking


class Sampler:
    def __init__(self, data, starts, seed):
        self.data = data
        self.arr = np.frombuffer(data, dtype=np.uint8)
        self.starts = starts
        self.rng = np.random.default_rng(seed)
        self.space = np.flatnonzero((self.arr == 32) | (self.arr == 10)) + 1  # word starts

    def window(self):
        r = self.rng
        n = len(self.data)
        u = r.random()
        if u < 0.3:
            s = int(self.starts[r.integers(len(self.starts))])
        elif u < 0.8:
            s = int(self.space[r.integers(len(self.space))])
        else:
            s = int(r.integers(n))
        length = WINDOW if r.random() < 0.5 else int(r.integers(16, WINDOW + 1))
        b = self.data[s : s + length]
        if len(b) < length and s > 0:  # ran off the end: take the last bytes instead
            b = self.data[max(0, n - length) :]
        if len(b) < WINDOW and length < WINDOW:
            # cut a short window at a word end so it reads like a sentence fragment
            cut = b.rfind(b" ")
            if cut > len(b) // 2:
                b = b[:cut]
        return b

    def mask(self, b, rate=0.15, word_share=0.65):
        """Returns (masked flag array) for window bytes b."""
        r = self.rng
        n = len(b)
        m = np.zeros(n, dtype=bool)
        k = max(1, int(round(rate * n)))
        words = [w.span() for w in WORD_RE.finditer(b) if 3 <= w.end() - w.start() <= 8]
        r.shuffle(words)
        want_words = word_share * k
        for s, e in words:
            if m.sum() + (e - s) > k + 2 or m.sum() >= want_words:
                break
            m[s:e] = True
        tries = 0
        while m.sum() < k and tries < 100:
            tries += 1
            span = int(r.integers(1, 4))
            s = int(r.integers(0, max(1, n - span + 1)))
            m[s : s + span] = True
        return m


def encode(b, m):
    """bytes + mask flags -> (input_ids, attention_mask, labels), each MAXPOS long."""
    ids = np.zeros(MAXPOS, dtype=np.int64)
    att = np.zeros(MAXPOS, dtype=np.int64)
    lab = np.full(MAXPOS, -100, dtype=np.int64)
    x = np.frombuffer(b, dtype=np.uint8).astype(np.int64) + OFFSET
    n = len(x)
    ids[0] = CLS
    ids[1 : n + 1] = np.where(m, MASK, x)
    ids[n + 1] = SEP
    att[: n + 2] = 1
    lab[1 : n + 1] = np.where(m, x, -100)
    return ids, att, lab


def batch(sampler, size):
    rows = [encode(b, sampler.mask(b)) for b in (sampler.window() for _ in range(size))]
    return tuple(torch.from_numpy(np.stack([r[i] for r in rows])) for i in range(3))


def parse_braces(line):
    """perceiver-cl fill's {text} syntax only (enough for the examples): -> (bytes, flags)."""
    out, flags = bytearray(), []
    i = 0
    while i < len(line):
        if line[i] == "{":
            j = line.index("}", i)
            t = line[i + 1 : j].encode()
            out += t
            flags += [True] * len(t)
            i = j + 1
        else:
            t = line[i].encode()
            out += t
            flags += [False] * len(t)
            i += 1
    return bytes(out), np.array(flags, dtype=bool)


@torch.no_grad()
def predict(model, ids, att):
    """argmax over byte tokens (6..261) at every position."""
    logits = model(input_ids=ids, attention_mask=att).logits
    return logits[..., OFFSET:VOCAB].argmax(-1) + OFFSET


def fill(model, line):
    b, m = parse_braces(line)
    ids, att, _ = encode(b, m)
    pred = predict(model, torch.from_numpy(ids)[None], torch.from_numpy(att)[None])[0].numpy()
    out = bytearray(b)
    for j in np.flatnonzero(m):
        out[j] = int(pred[j + 1]) - OFFSET
    guesses, j = [], 0
    while j < len(m):  # one guess per masked span
        if m[j]:
            e = j
            while e < len(m) and m[e]:
                e += 1
            guesses.append(bytes(out[j:e]).decode("utf-8", "replace"))
            j = e
        else:
            j += 1
    return bytes(out) == b, bytes(out).decode("utf-8", "replace"), guesses


# ---------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate(model, held_data, held_starts, seed, n_windows=2000, bs=100):
    model.eval()
    # 1) masked-byte accuracy with the training masking scheme, on random held-out windows
    s = Sampler(held_data, held_starts, seed + 1)
    correct = total = 0
    wcorrect = wtotal = 0  # bytes inside whole-word masks
    label_counts = np.zeros(VOCAB, dtype=np.int64)  # for the best constant guess
    for _ in range(n_windows // bs):
        ids, att, lab = batch(s, bs)
        pred = predict(model, ids, att)
        sel = lab != -100
        correct += int((pred[sel] == lab[sel]).sum())
        total += int(sel.sum())
        label_counts += np.bincount(lab[sel].numpy(), minlength=VOCAB)
    # 2) whole-word fill: consecutive 126-byte windows of held-out text, one word of 3-8
    #    letters masked in each, exact match of the argmax bytes
    rng = random.Random(seed + 2)
    rows, words = [], []
    for off in range(0, len(held_data) - WINDOW, WINDOW):
        b = held_data[off : off + WINDOW]
        cand = [w.span() for w in WORD_RE.finditer(b) if 3 <= w.end() - w.start() <= 8
                and (w.start() == 0 or not b[w.start() - 1 : w.start()].isalpha())
                and (w.end() == len(b) or not b[w.end() : w.end() + 1].isalpha())]
        if not cand:
            continue
        ws, we = rng.choice(cand)
        m = np.zeros(len(b), dtype=bool)
        m[ws:we] = True
        rows.append(encode(b, m))
        words.append(b[ws:we])
        if len(rows) >= n_windows:
            break
    hits = 0
    bytes_hit = bytes_total = 0
    for i in range(0, len(rows), bs):
        chunk = rows[i : i + bs]
        ids, att, lab = (torch.from_numpy(np.stack([r[k] for r in chunk])) for k in range(3))
        pred = predict(model, ids, att)
        sel = lab != -100
        for r in range(len(chunk)):
            ok = bool((pred[r][sel[r]] == lab[r][sel[r]]).all())
            hits += ok
        bytes_hit += int((pred[sel] == lab[sel]).sum())
        bytes_total += int(sel.sum())
    # baseline: always guessing the most frequent masked byte
    top = int(label_counts.argmax())
    return dict(
        masked_byte_acc=correct / max(1, total),
        masked_bytes=total,
        eval_windows=n_windows,
        word_fill_acc=hits / max(1, len(rows)),
        word_fill_byte_acc=bytes_hit / max(1, bytes_total),
        word_fill_windows=len(rows),
        most_frequent_byte=chr(top - OFFSET),
        most_frequent_byte_share=float(label_counts[top] / max(1, total)),
    )


# ---------------------------------------------------------------------------------------------
# main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="examples/tiny-mlm", help="output folder (default %(default)s)")
    ap.add_argument("--minutes", type=float, default=30.0, help="training time budget (default %(default)s)")
    ap.add_argument("--seed", type=int, default=1234, help="random seed (default %(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default %(default)s)")
    ap.add_argument("--batch", type=int, default=32, help="windows per step (default %(default)s)")
    ap.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default %(default)s)")
    ap.add_argument("--state", help="where to keep training facts for --eval-only (default: temp dir)")
    ap.add_argument("--eval-only", action="store_true", help="evaluate the saved model in --out")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    from transformers import PerceiverConfig, PerceiverForMaskedLM
    import transformers

    t0 = time.time()
    docs = collect_documents()
    train_docs, held_docs = split_documents(docs, args.seed)
    train_data, train_starts = corpus_bytes(train_docs)
    held_data, held_starts = corpus_bytes(held_docs)
    src_count = {}
    for name, _ in train_docs + held_docs:
        k = ("common-licenses" if "common-licenses" in name else
             "doc/*/copyright" if name.startswith("/usr/share/doc/") else "python docstrings")
        src_count[k] = src_count.get(k, 0) + 1
    print(f"data: {len(docs)} documents ({src_count}), train {len(train_docs)} docs "
          f"{len(train_data)/1e6:.2f} MB, held-out {len(held_docs)} docs {len(held_data)/1e6:.3f} MB "
          f"({time.time()-t0:.0f}s)", flush=True)

    os.makedirs(args.out, exist_ok=True)
    # training facts (steps, time) for --eval-only reruns; kept outside the model folder
    state_path = args.state or os.path.join(tempfile.gettempdir(), "tiny_mlm_train_state.json")
    if args.eval_only:
        model = PerceiverForMaskedLM.from_pretrained(args.out)
        with open(state_path) as f:
            st = json.load(f)
    else:
        cfg = PerceiverConfig(**CONFIG)
        model = PerceiverForMaskedLM(cfg)
        aligned_init(model, args.seed)
        nparam = sum(p.numel() for p in model.parameters())
        print(f"model: {nparam} parameters ({nparam*4/1e6:.2f} MB float32)", flush=True)
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
        nodecay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                 {"params": nodecay, "weight_decay": 0.0}],
                                lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
        sampler = Sampler(train_data, train_starts, args.seed)
        budget = args.minutes * 60.0
        warmup = 300
        model.train()
        step, t_start = 0, time.time()
        run_loss = run_acc = run_n = 0.0
        while True:
            elapsed = time.time() - t_start
            if elapsed >= budget:
                break
            frac = elapsed / budget
            # warmup by steps, then cosine over the wall-clock budget (down to 5% of peak)
            lr = args.lr * min(1.0, (step + 1) / warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
            for g in opt.param_groups:
                g["lr"] = lr
            ids, att, lab = batch(sampler, args.batch)
            out = model(input_ids=ids, attention_mask=att, labels=lab)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            with torch.no_grad():
                sel = lab != -100
                acc = (out.logits.argmax(-1)[sel] == lab[sel]).float().mean().item()
            run_loss += out.loss.item()
            run_acc += acc
            run_n += 1
            if step % 100 == 0:
                print(f"step {step:6d}  {elapsed/60:5.1f} min  lr {lr:.2e}  loss {run_loss/run_n:.4f}  "
                      f"masked-byte acc {run_acc/run_n:.4f}", flush=True)
                run_loss = run_acc = run_n = 0.0
        train_s = time.time() - t_start
        model.eval()
        model.save_pretrained(args.out, safe_serialization=True)
        st = dict(steps=step, train_seconds=train_s, batch=args.batch, lr=args.lr, seed=args.seed,
                  threads=args.threads, torch=torch.__version__, transformers=transformers.__version__,
                  parameters=nparam, final_train_loss=out.loss.item())
        with open(state_path, "w") as f:
            json.dump(st, f)
        print(f"trained {step} steps in {train_s/60:.1f} min", flush=True)
    for f in os.listdir(args.out):
        if f not in ("config.json", "model.safetensors", "README.md", "examples.txt"):
            os.remove(os.path.join(args.out, f))

    model.eval()
    res = evaluate(model, held_data, held_starts, args.seed)
    print("held-out:", json.dumps(res), flush=True)

    # example fills
    results = []
    for line in CANDIDATES:
        ok, filled, guesses = fill(model, line)
        plain = parse_braces(line)[0]
        results.append(dict(line=line, ok=ok, filled=filled, guesses=guesses,
                            in_train=plain in train_data))
        print(f"  {'OK ' if ok else 'BAD'} {'(in training text) ' if plain in train_data else ''}"
              f"{line!r} -> {guesses}", flush=True)
    write_outputs(args, st, res, results, src_count, train_docs, held_docs, train_data, held_data)


def write_outputs(args, st, res, results, src_count, train_docs, held_docs, train_data, held_data):
    good = [r for r in results if r["ok"]]
    bad = [r for r in results if not r["ok"]]
    ex_lines = good[:6] + bad[:2]
    with open(os.path.join(args.out, "examples.txt"), "w") as f:
        for r in ex_lines:
            f.write(r["line"] + "\n")
    size = os.path.getsize(os.path.join(args.out, "model.safetensors"))
    with open(os.path.join(args.out, "config.json")) as f:
        cfg = json.load(f)
    keys = ["vocab_size", "max_position_embeddings", "d_model", "num_latents", "d_latents", "num_blocks",
            "num_self_attends_per_block", "num_self_attention_heads", "num_cross_attention_heads",
            "self_attention_widening_factor", "cross_attention_widening_factor", "qk_channels",
            "v_channels", "hidden_act"]

    def row(r):
        note = " (this exact sentence occurs in the training text)" if r["in_train"] else ""
        g = ", ".join(f"`{x}`" for x in r["guesses"])
        return f"| `{r['line']}` | {g} | {'yes' if r['ok'] else 'no'}{note} |"

    L = []
    L.append("# tiny-mlm: a toy byte-level Perceiver IO masked language model")
    L.append("")
    L.append("A small `PerceiverForMaskedLM` trained from scratch with Hugging Face transformers / PyTorch by")
    L.append("[`tools/train_tiny_mlm.py`](../../tools/train_tiny_mlm.py), bundled so that `perceiver-cl fill` has")
    L.append("a real masked language model to run without downloading anything:")
    L.append("")
    L.append("```sh")
    L.append("perceiver-cl fill -m examples/tiny-mlm --file examples/tiny-mlm/examples.txt")
    L.append("perceiver-cl fill -m examples/tiny-mlm 'This program is free {software}; you can redistribute it'")
    L.append("```")
    L.append("")
    L.append("**It is a toy.** It is not `deepmind/language-perceiver` (201 M parameters, 2048 bytes, trained on")
    L.append(f"C4 and Wikipedia): it has {st['parameters']:,} parameters, sees at most 126 bytes, and was trained")
    L.append(f"for {st['train_seconds']/60:.0f} minutes on one CPU thread on {len(train_data)/1e6:.2f} MB of software-license text and")
    L.append("Python docstrings. It fills common words in that register; elsewhere it mostly guesses")
    L.append("plausible-looking letters. Use it to try the engine, not to judge Perceiver IO.")
    L.append("")
    L.append("## Files")
    L.append("")
    L.append(f"- `config.json`, `model.safetensors` ({size:,} bytes, float32): written by `save_pretrained`.")
    L.append("- `examples.txt`: example lines in `fill` syntax, `{text}` masking the bytes of `text`; the first")
    L.append(f"  {len(good[:6])} are filled exactly right by the model, the last {len(bad[:2])} are not.")
    L.append("")
    L.append("## Training data")
    L.append("")
    L.append("Only text that ships with the Debian system it was trained on (nothing downloaded):")
    L.append("")
    L.append("- `/usr/share/common-licenses/*` (GPL, LGPL, Apache-2.0, MPL, GFDL, Artistic, BSD, CC0),")
    L.append("- `/usr/share/doc/*/copyright` (Debian copyright files, DEP-5 headers and copyright lines removed),")
    L.append("- docstrings of the Python standard library (`/usr/lib/python3.*`, tests excluded).")
    L.append("")
    L.append("Text is split into paragraphs; paragraphs that are not mostly English prose are dropped and each")
    L.append("paragraph is kept once (the GPL is in hundreds of copyright files). One file is one document;")
    L.append(f"5% of the documents, chosen by a seeded hash, are held out. Documents: {sum(src_count.values())}")
    L.append(f"({', '.join(f'{v} {k}' for k, v in src_count.items())}); training text {len(train_data)/1e6:.2f} MB")
    L.append(f"in {len(train_docs)} documents, held-out text {len(held_data)/1e6:.2f} MB in {len(held_docs)} documents.")
    L.append("")
    L.append("## Model and training")
    L.append("")
    L.append("```")
    for k in keys:
        L.append(f"{k} = {json.dumps(cfg.get(k))}")
    L.append("```")
    L.append("")
    L.append("Inputs use `PerceiverTokenizer` ids: `[PAD]`=0 (attention mask 0), `[MASK]`=3, `[CLS]`=4, `[SEP]`=5,")
    L.append("byte b = b+6. Each example is `[CLS]` + a window of up to 126 bytes + `[SEP]`, padded to 128.")
    L.append("")
    L.append("From transformers' default initialisation (all weights N(0, 0.02)) a first version of this model")
    L.append("(64 latents of 160 channels, batch 64) sat at the unigram loss for all of a 1100-step attempt: a")
    L.append("Perceiver has no residual path from input byte i")
    L.append("to output i, and all its attentions start out uniform. So the script starts from a")
    L.append("position-aligned initialisation (`aligned_init`: a Fourier location code in channels 0:32, some")
    L.append("heads wired to read bytes k-1..k+1 into latent k, dilated local self-attention, output i reading")
    L.append("latents i-1..i+1) and then trains every weight end to end. One latent per position")
    L.append("(`num_latents` = `max_position_embeddings` = 128) makes that wiring simple. About")
    L.append("15% of the bytes are masked, about two thirds of them as whole words of 3-8 letters and the rest")
    L.append("as random 1-3 byte spans; the loss is cross-entropy on masked positions only. AdamW, peak lr")
    L.append(f"{st['lr']:g} with 300 warmup steps and cosine decay over the time budget, batch {st['batch']},")
    seen = st["steps"] * st["batch"]
    L.append(f"seed {st['seed']}: **{st['steps']:,} steps in {st['train_seconds']/60:.1f} minutes** with {st['threads']} CPU")
    L.append(f"thread{'s' if st['threads'] > 1 else ''} on a shared machine (torch {st['torch']}, transformers {st['transformers']}), i.e.")
    L.append(f"{seen:,} windows, roughly {seen * 0.75 * WINDOW / len(train_data):.0f} passes over the training text. The")
    L.append("loss was still falling when the time budget ran out.")
    L.append("")
    L.append("## Held-out accuracy (measured)")
    L.append("")
    L.append("Argmax over byte tokens (ids 6..261) at each masked position, on held-out documents:")
    L.append("")
    L.append(f"- masked-byte accuracy, training masking scheme: **{res['masked_byte_acc']*100:.1f}%**")
    L.append(f"  ({res['masked_bytes']:,} masked bytes in {res['eval_windows']:,} windows; always guessing the most")
    L.append(f"  frequent masked byte, {res['most_frequent_byte']!r}, scores {res['most_frequent_byte_share']*100:.1f}%).")
    L.append(f"- whole-word fill, one word of 3-8 letters masked per 126-byte window, exact match:")
    L.append(f"  **{res['word_fill_acc']*100:.1f}%** of {res['word_fill_windows']:,} words")
    L.append(f"  ({res['word_fill_byte_acc']*100:.1f}% of their bytes).")
    L.append("")
    L.append("## Example fills")
    L.append("")
    L.append("Sentences written for this demo (paraphrases of license and documentation phrasing, plus a few")
    L.append("general ones), filled by the model with `[CLS]`/`[SEP]` added, argmax over byte tokens. Five that")
    L.append("it fills correctly and two that it gets wrong:")
    L.append("")
    L.append("| input | model's fill | correct |")
    L.append("|---|---|---|")
    for r in good[:5] + bad[:2]:
        L.append(row(r))
    L.append("")
    L.append(f"Of all {len(results)} candidate sentences in `tools/train_tiny_mlm.py`, it filled "
             f"{len(good)} exactly right.")
    L.append("Sentences in common license phrasing can be close to the training text even when not copied")
    L.append("from it; the table notes where a sentence occurs verbatim in the training text.")
    L.append("")
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write("\n".join(L))
    print(f"wrote {args.out}/README.md and examples.txt", flush=True)


if __name__ == "__main__":
    main()
