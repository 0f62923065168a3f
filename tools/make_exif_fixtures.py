#!/usr/bin/env python3
"""Writes tests/fixtures/exif/: images whose EXIF (or XMP) orientation says how to turn them
upright, and what Pillow and transformers make of them. tests/test_image.c and
tests/cli_classify.sh check perceiver-cl against these.

    /work/venv-ref/bin/python tools/make_exif_fixtures.py

Files
  o<N>_ii.jpg, o<N>_mm.jpg    a 13x7 picture of distinct colours, orientation N = 1..8 in a
                              little- / big-endian EXIF block (APP1)
  long6.jpg                   orientation 6 stored as a LONG; count2.jpg: a SHORT with count 2
                              (Pillow reads a tuple: no transpose); zero.jpg: orientation 0
  xmp6.jpg                    no EXIF, XMP tiff:Orientation="6"; exif1_xmp6.jpg: EXIF 1 wins
  exif_noorient_xmp8.jpg      EXIF without the tag, XMP <tiff:Orientation>8<...>: XMP applies
  split3.jpg                  EXIF split over two APP1 segments (Pillow concatenates them)
  o6.png, o3.png              PNG eXIf chunk; raw8.png: "Raw profile type exif" tEXt chunk;
                              xmp5.png: XMP in an iTXt chunk
  digit9_o6.jpg               a held-out digit of the demo classifier (examples/digits),
                              stored turned 90 degrees counter-clockwise, orientation 6
Expected (expected.safetensors)
  upright.<file>  U8 [h][w][3]  np.array(ImageOps.exif_transpose(Image.open(f)).convert("RGB"))
  stored.<file>   U8 [h][w][3]  np.array(Image.open(f).convert("RGB")) (orientation ignored)
manifest.json: per file, Pillow's orientation; for digit9_o6.jpg, what transformers'
image-classification pipeline says (top class, score, logits) with and without the upright turn.
"""
import io
import json
import struct
from pathlib import Path

import numpy as np
import PIL
import torch
import transformers
from PIL import Image, ImageOps
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/exif"


def tiff(orient, big=False, typ=3, count=1, tag=0x0112):
    e = ">" if big else "<"
    head = (b"MM" if big else b"II") + struct.pack(e + "HI", 42, 8)
    if typ == 3:
        val = struct.pack(e + "HH", orient, orient if count == 2 else 0)
    else:
        val = struct.pack(e + "I", orient)
    entries = [struct.pack(e + "HHI", tag, typ, count) + val]
    entries.append(struct.pack(e + "HHI", 0x010F, 2, 4) + b"cam\0")  # Make, after the tag
    return head + struct.pack(e + "H", len(entries)) + b"".join(entries) + struct.pack(e + "I", 0)


def app1(payload):
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def xmp_packet(text):
    return b"http://ns.adobe.com/xap/1.0/\0" + text.encode()


def jpeg_with(img, segments):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, subsampling=0)
    data = buf.getvalue()
    assert data[:2] == b"\xff\xd8"
    return data[:2] + b"".join(segments) + data[2:]


def png_chunk(kind, data):
    import zlib
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with(img, chunks):
    buf = io.BytesIO()
    img.save(buf, "PNG")
    data = buf.getvalue()
    # after IHDR (8 signature + 25 IHDR bytes)
    return data[:33] + b"".join(chunks) + data[33:]


def picture():
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, (7, 13, 3), dtype=np.uint8)
    a[0, 0] = (255, 0, 0)  # a corner to recognise
    return Image.fromarray(a)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    pic = picture()
    files = {}
    for o in range(1, 9):
        files[f"o{o}_ii.jpg"] = jpeg_with(pic, [app1(b"Exif\0\0" + tiff(o))])
        files[f"o{o}_mm.jpg"] = jpeg_with(pic, [app1(b"Exif\0\0" + tiff(o, big=True))])
    files["long6.jpg"] = jpeg_with(pic, [app1(b"Exif\0\0" + tiff(6, typ=4))])
    files["count2.jpg"] = jpeg_with(pic, [app1(b"Exif\0\0" + tiff(6, count=2))])
    files["zero.jpg"] = jpeg_with(pic, [app1(b"Exif\0\0" + tiff(0))])
    files["xmp6.jpg"] = jpeg_with(pic, [app1(xmp_packet('<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'))])
    files["exif1_xmp6.jpg"] = jpeg_with(pic, [app1(b"Exif\0\0" + tiff(1)),
                                               app1(xmp_packet('<rdf:Description tiff:Orientation="6"/>'))])
    files["exif_noorient_xmp8.jpg"] = jpeg_with(pic, [app1(b"Exif\0\0" + tiff(3, tag=0x0100)),
                                                       app1(xmp_packet("<tiff:Orientation>8</tiff:Orientation>"))])
    t = tiff(3)
    files["split3.jpg"] = jpeg_with(pic, [app1(b"Exif\0\0" + t[:12]), app1(b"Exif\0\0" + t[12:])])
    files["o6.png"] = png_with(pic, [png_chunk(b"eXIf", tiff(6))])
    files["o3.png"] = png_with(pic, [png_chunk(b"eXIf", tiff(3, big=True))])
    raw = tiff(8)
    files["raw8.png"] = png_with(pic, [png_chunk(b"tEXt", b"Raw profile type exif\0\nexif\n" +
                                                 f"{len(raw) + 6:8}\n".encode() + (b"Exif\0\0" + raw).hex().encode() + b"\n")])
    files["xmp5.png"] = png_with(pic, [png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" +
                                                 b'<rdf:Description tiff:Orientation="5"/>')])

    # the demo classifier on a photo stored sideways: a held-out 9, turned 90 degrees
    # counter-clockwise in the file, orientation 6 (turn clockwise to view)
    digit = Image.open(ROOT / "tests/fixtures/digits/heldout/1006_9.png").convert("RGB")
    digit = digit.resize((96, 96), Image.Resampling.BICUBIC)
    stored = digit.transpose(Image.Transpose.ROTATE_90)
    files["digit9_o6.jpg"] = jpeg_with(stored, [app1(b"Exif\0\0" + tiff(6))])

    expected, manifest = {}, {"pillow": PIL.__version__, "transformers": transformers.__version__,
                              "torch": torch.__version__, "files": {}}
    for name, data in sorted(files.items()):
        (OUT / name).write_bytes(data)
        with Image.open(OUT / name) as im:
            orient = im.getexif().get(274, 1)
            stored_px = np.array(im.convert("RGB"))
        with Image.open(OUT / name) as im:
            up = np.array(ImageOps.exif_transpose(im).convert("RGB"))
        key = name.replace(".", "_")
        expected[f"upright.{key}"] = up
        expected[f"stored.{key}"] = stored_px
        manifest["files"][name] = {"orientation": orient if isinstance(orient, int) else repr(orient),
                                   "stored": list(stored_px.shape[:2]), "upright": list(up.shape[:2])}
    save_file(expected, str(OUT / "expected.safetensors"))

    # transformers' pipeline (PIL processor: the one perceiver-cl reproduces bit for bit)
    from transformers import pipeline
    from transformers.models.perceiver.image_processing_pil_perceiver import PerceiverImageProcessorPil
    model_dir = str(ROOT / "examples/digits")
    proc = PerceiverImageProcessorPil.from_pretrained(model_dir)
    clf = pipeline("image-classification", model=model_dir, image_processor=proc)
    path = str(OUT / "digit9_o6.jpg")
    top = clf(path, top_k=3)
    model = transformers.AutoModelForImageClassification.from_pretrained(model_dir).eval()

    def logits(img):
        with torch.no_grad():
            return model(**proc(img, return_tensors="pt")).logits[0].tolist()

    with Image.open(path) as im:
        up_logits = logits(ImageOps.exif_transpose(im).convert("RGB"))
    with Image.open(path) as im:
        stored_logits = logits(im.convert("RGB"))
    manifest["digit9_o6.jpg"] = {
        "pipeline_top": [{"label": t["label"], "score": t["score"]} for t in top],
        "upright_logits": up_logits, "stored_logits": stored_logits,
        "stored_top": int(np.argmax(stored_logits)),
        "stored_score": float(torch.softmax(torch.tensor(stored_logits), 0).max()),
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps(manifest["digit9_o6.jpg"]["pipeline_top"]),
          "stored:", manifest["digit9_o6.jpg"]["stored_top"], manifest["digit9_o6.jpg"]["stored_score"])


if __name__ == "__main__":
    main()
