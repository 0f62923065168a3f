#!/usr/bin/env python3
"""Writes tests/fixtures/cv_ipp/: what cv2.resize(INTER_CUBIC) gives on OpenCV's default x86-64
path, Intel IPP (float32 arithmetic), for the haiku pipeline's crop of a photo, beside the
IPP-off result that perceiver-cl reproduces bit for bit. tests/test_image.c checks that the
difference stays what docs and --help state: +-1 on a few percent of the 8-bit values.

    /work/venv-ref/bin/python tools/make_cv_ipp_fixture.py
"""
import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/cv_ipp"


def colab_crop(im):
    h, w = im.shape[:2]
    c = int(np.float32(0.875) * np.float32(min(h, w)))
    top, left = ((h - c) + 1) // 2, ((w - c) + 1) // 2
    return np.ascontiguousarray(im[top:top + c, left:left + c])


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    out, meta = {}, {"opencv": cv2.__version__, "images": {}}
    for name in ("photo_china.jpg",):
        crop = colab_crop(np.array(Image.open(ROOT / "tests/fixtures/images" / name).convert("RGB")))
        cv2.setUseOptimized(True)
        cv2.ipp.setUseIPP(True)
        assert cv2.ipp.useIPP(), "this OpenCV build has no IPP: nothing to record"
        ipp = cv2.resize(crop, (224, 224), interpolation=cv2.INTER_CUBIC)
        cv2.ipp.setUseIPP(False)
        plain = cv2.resize(crop, (224, 224), interpolation=cv2.INTER_CUBIC)
        cv2.ipp.setUseIPP(True)
        d = ipp.astype(int) - plain
        key = name.replace(".", "_")
        out[f"ipp.{key}"] = ipp
        meta["images"][name] = {"crop": list(crop.shape[:2]), "values_differing": float((d != 0).mean()),
                                "max_abs_diff": int(np.abs(d).max())}
    save_file(out, str(OUT / "expected.safetensors"))
    (OUT / "ipp.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
