#!/usr/bin/env python3
"""What `perceiver-cl fill` must print, computed with Hugging Face transformers.

Reads lines in the fill mask syntax ({text} masks the bytes of text; [MASK] / [MASK:N] mask
bytes; \\[ \\] \\{ \\} \\\\ escapes), builds [CLS] bytes [SEP] with PerceiverTokenizer's ids,
runs PerceiverForMaskedLM (float32, CPU) on each line and fills every masked byte with the
argmax over the byte tokens 6..261 (never a special token), exactly as the engine documents.
The filled lines (invalid UTF-8 replaced as bytes.decode(errors="replace") does) go to --out.

    .venv-ref/bin/python tools/fill_reference.py --model examples/tiny-mlm \\
        --lines examples/tiny-mlm/examples.txt --out tests/fixtures/fill/tiny-mlm.expected.txt
"""
import argparse
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--lines", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = PerceiverForMaskedLM.from_pretrained(args.model).eval()
    results = []
    for line in open(args.lines, encoding="utf-8").read().splitlines():
        data, masked = parse(line)
        ids = [4] + [3 if m else b + 6 for b, m in zip(data, masked)] + [5]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long)).logits[0]
        filled = bytearray(data)
        for j, m in enumerate(masked):
            if m:
                filled[j] = int(torch.argmax(logits[j + 1, 6:262])) 
        results.append(bytes(filled).decode("utf-8", errors="replace"))
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(results) + "\n")
    print(f"wrote {len(results)} lines to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
