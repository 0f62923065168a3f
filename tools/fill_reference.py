#!/usr/bin/env python3
"""What `perceiver-cl fill` must print, computed with Hugging Face transformers.

Reads lines in the fill mask syntax ({text} masks the bytes of text; [MASK] / [MASK:N] mask
bytes; \\[ \\] \\{ \\} \\\\ escapes), builds [CLS] bytes [SEP] with PerceiverTokenizer's ids,
runs PerceiverForMaskedLM (float32, CPU) on each line and fills every masked byte with the
argmax over the byte tokens 6..261 (never a special token), exactly as the engine documents.
The filled lines (invalid UTF-8 replaced as bytes.decode(errors="replace") does, then a
backslash written \\\\, newline \\n, tab \\t, carriage return \\r and other control bytes \\xHH, as
fill documents) go to --out.

With --top K and --top-out FILE, transformers' fill-mask pipeline (PerceiverTokenizer, top_k)
gives, per line, the K most likely byte tokens of every masked byte with their scores (softmax
over the whole vocabulary), as JSON lines; special tokens, which fill never chooses, are left
out of the K. Lines for it must be ASCII (the pipeline takes text with one "[MASK]" per byte).

    .venv-ref/bin/python tools/fill_reference.py --model examples/tiny-mlm \\
        --lines examples/tiny-mlm/examples.txt --out tests/fixtures/fill/tiny-mlm.expected.txt
"""
import argparse
import json
import re
import sys

import torch
from transformers import PerceiverForMaskedLM

MASK_RE = re.compile(rb"\[MASK(?:[:*](\d+))?\]")


def parse(line: str):
    """-> (bytes, masked flags) for the fill syntax."""
    src = line.encode("utf-8")
    out, masked, i, in_brace = bytearray(), [], 0, False
    while i < len(src):
        c = src[i:i + 1]
        if c == b"\\" and i + 1 < len(src) and src[i + 1:i + 2] in (b"[", b"]", b"{", b"}", b"\\"):
            out += src[i + 1:i + 2]
            masked.append(in_brace)
            i += 2
        elif c == b"{" and not in_brace:
            in_brace, i = True, i + 1
        elif c == b"}" and in_brace:
            in_brace, i = False, i + 1
        elif not in_brace and (m := MASK_RE.match(src, i)):
            n = int(m.group(1) or 1)
            out += b"\0" * n
            masked += [True] * n
            i = m.end()
        else:
            out += c
            masked.append(in_brace)
            i += 1
    return bytes(out), masked


def escape(text: str) -> str:
    """fill's text output: one line per input line, whatever bytes the model predicts."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def read_lines(path: str) -> list[str]:
    """Lines as fill reads them: split at \\n only, one trailing \\r dropped."""
    data = open(path, "rb").read().decode("utf-8")
    lines = data.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def top_reference(model_path: str, lines: list[str], k: int, out: str) -> None:
    from transformers import PerceiverTokenizer, pipeline
    pipe = pipeline("fill-mask", model=model_path, tokenizer=PerceiverTokenizer())
    with open(out, "w") as f:
        for n, line in enumerate(lines, 1):
            data, masked = parse(line)
            text = "".join("[MASK]" if m else chr(b) for b, m in zip(data, masked))
            assert all(b < 128 for b in data), "--top lines must be ASCII"
            res = pipe(text, top_k=k + 6)
            if masked.count(True) == 1:
                res = [res]
            cands, r = [], 0
            for j, m in enumerate(masked):
                if not m:
                    continue
                top = [{"byte": c["token"] - 6, "probability": c["score"]} for c in res[r] if c["token"] >= 6][:k]
                cands.append({"position": j, "top": top})
                r += 1
            f.write(json.dumps({"line": n, "candidates": cands}) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--lines", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--top", type=int, default=0, help="K of the pipeline's top_k reference")
    ap.add_argument("--top-out", help="JSON lines of the top-K reference")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = PerceiverForMaskedLM.from_pretrained(args.model).eval()
    results = []
    lines = read_lines(args.lines)
    for line in lines:
        data, masked = parse(line)
        ids = [4] + [3 if m else b + 6 for b, m in zip(data, masked)] + [5]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long)).logits[0]
        filled = bytearray(data)
        for j, m in enumerate(masked):
            if m:
                filled[j] = int(torch.argmax(logits[j + 1, 6:262])) 
        results.append(escape(bytes(filled).decode("utf-8", errors="replace")))
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(results) + "\n")
    print(f"wrote {len(results)} lines to {args.out}", file=sys.stderr)
    if args.top and args.top_out:
        top_reference(args.model, lines, args.top, args.top_out)
        print(f"wrote the top-{args.top} reference to {args.top_out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
