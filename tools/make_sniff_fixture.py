#!/usr/bin/env python3
"""Writes tests/fixtures/safetensors_0x80/: the weights of tests/fixtures/mlm_heads_default saved
again by the safetensors library (save_file, as save_pretrained does) with metadata sized so that
the 8-byte header length has 0x80 as its low byte: the file begins with the byte of a pickle's
PROTO opcode. Header lengths are multiples of 8, so about one file in 32 written by
save_pretrained does. tests/test_sniff.c checks that the file is read as safetensors and computes
what the original does (and builds the 0x80 0x03 variant, a protocol-3 pickle's opening, itself).

    /work/venv-ref/bin/python tools/make_sniff_fixture.py
"""
import json
import shutil
import struct
from pathlib import Path

from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent / "tests/fixtures"
SRC, OUT = ROOT / "mlm_heads_default", ROOT / "safetensors_0x80"


def main():
    tensors = load_file(str(SRC / "model.safetensors"))
    OUT.mkdir(exist_ok=True)
    path = OUT / "model.safetensors"
    def header_len(pad):
        save_file(tensors, str(path), metadata={"format": "pt", "padding": "x" * pad})
        return struct.unpack("<Q", path.read_bytes()[:8])[0]

    n0 = header_len(0)  # the header grows by one byte per padding byte, then is space-padded to 8
    target = (n0 & ~0xFF) + 0x80 + (0x100 if n0 & 0xFF > 0x80 else 0)
    for pad in range(target - n0 - 8, target - n0 + 8):
        n = header_len(pad)
        if n & 0xFF == 0x80:
            break
    else:
        raise SystemExit("no padding gives the wanted header length")
    assert path.read_bytes()[0] == 0x80
    assert load_file(str(path)).keys() == tensors.keys()
    path.chmod(0o644)
    shutil.copy(SRC / "config.json", OUT / "config.json")
    (OUT / "README.md").write_text(
        "Written by tools/make_sniff_fixture.py: the weights of mlm_heads_default re-saved by\n"
        f"safetensors.torch.save_file with a header of {n} bytes (0x{n:x}), so the file begins\n"
        "with 0x80 like a pickle. tests/test_sniff.c reads it.\n")
    print(f"{path}: header length {n} (0x{n:x})")


if __name__ == "__main__":
    main()
