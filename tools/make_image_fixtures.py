#!/usr/bin/env python3
"""Writes tests/fixtures/images/: image files and the outputs perceiver-cl must reproduce.

Run with the reference virtual environment (Pillow, transformers, safetensors, numpy; OpenCV
and scikit-learn for the optional parts):

    /work/venv-ref/bin/python tools/make_image_fixtures.py            # writes the fixtures
    /work/venv-ref/bin/python tools/make_image_fixtures.py --probe-order 2000
                                                                      # re-measures Pillow's
                                                                      # resize pass order

Inputs
  * Two real photographs shipped with scikit-learn (sklearn/datasets/images/china.jpg and
    flower.jpg, CC BY 2.0; see tests/fixtures/images/README.md), reduced with Pillow so that
    the committed files stay small, and re-encoded as baseline/progressive JPEG.
  * Variants generated from them: every PNG colour type and bit depth (written by this script's
    own PNG encoder where Pillow cannot write them: 16-bit colour, 1/2/4-bit, tRNS, Adam7),
    grayscale, CMYK, YCCK, RGB (no YCbCr transform), arithmetic-coded (YCCK and arithmetic
    ones written through the system libjpeg, compiled on the fly) and EXIF-rotated JPEGs, odd
    and 1x1 sizes.
  * Files that must be refused: GIF, BMP, WebP, TIFF, a PNG header declaring 100000x100000
    pixels, a PNG with a broken CRC, a JPEG with corrupt entropy-coded data.

Expected values (expected.safetensors; names below, <img> is an image name of manifest.json)
  decoded.<img>   U8 [H][W][3]  np.array(PIL.Image.open(f).convert("RGB"))  (small images)
  rgbsum.<img>    I64 [4]       sums of R, G, B and FNV-1a-32 of the RGB bytes (photos)
  u8.default.<img>, u8.tall.<img>  U8 [h][w][3]  PerceiverImageProcessorPil with do_rescale and
                                do_normalize off: the cropped and resized uint8 image (the
                                bit-exact target; the float stage is checked here to equal
                                lut.default applied to it, as 602 KB per photo is too much)
  pv.<cfg>.<img>  F32 [3][h][w] PerceiverImageProcessorPil(**kwargs)(image)["pixel_values"][0]
                                for the small configurations (exact pixel_values imply the exact
                                uint8 image: the float stage is injective per channel)
  lut.default     F32 [3][256]  pixel_values of every uint8 value (crop and resize off)
  u8p12.tall.<img> U8           the "tall" config's uint8 image as Pillow <= 12 makes it
                                (horizontal pass always first; Pillow 13 goes vertical first)
  haiku.u8.s<size>.<img>, haiku.lut [3][256]
                                DeepMind colab pipeline: crop int(0.875*min), offsets rounded
                                up, cv2.resize INTER_CUBIC (IPP disabled: see manifest), and
                                float32((x - 255*mean) / (255*std)) in float64 (the table)
The processor is transformers' PIL backend (PerceiverImageProcessorPil in v5; it is v4's slow
PerceiverImageProcessor), NOT the torchvision one (PerceiverImageProcessor in v5, *Fast in v4),
which is not bit-identical to Pillow. manifest.json records versions and every image/config.
"""
import argparse
import io
import json
import os
import shutil
import struct
import sys
import tempfile
import warnings
import zlib

import numpy as np
import PIL
from PIL import Image, features

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "images")
SEED = 20240611

README = """# Image fixtures (generated: do not edit)

Written by `tools/make_image_fixtures.py`; `manifest.json` lists every file, what Pillow makes of
it, the processor configurations and the versions used; `expected.safetensors` holds the values
tests/test_image.c compares with.

The photographs `photo_china.jpg` and `photo_flower.jpg` and every variant derived from them are
reduced copies of the sample images shipped with scikit-learn (`sklearn/datasets/images`):

* china.jpg: "Some rights reserved by danielbuechele",
  https://www.flickr.com/photos/danielbuechele/6061409035/, CC BY 2.0
  (https://creativecommons.org/licenses/by/2.0/)
* flower.jpg: "Some rights reserved by vultilion",
  https://www.flickr.com/photos/vultilion/6056698931/, CC BY 2.0

They were resized, cropped and re-encoded (and, for the variants, converted to other colour
types and bit depths) by the generator script.
"""


# ---- a small PNG encoder (Pillow cannot write 16-bit colour, 1/2/4-bit, tRNS or Adam7) ------

def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _pack_rows(samples, bit_depth):
    """samples: int array [H][W][C] -> list of packed row bytes."""
    h, w, c = samples.shape
    rows = []
    for y in range(h):
        flat = samples[y].reshape(-1).astype(np.int64)
        if bit_depth == 16:
            rows.append(flat.astype(">u2").tobytes())
        elif bit_depth == 8:
            rows.append(flat.astype(np.uint8).tobytes())
        else:
            per = 8 // bit_depth
            out = bytearray((len(flat) + per - 1) // per)
            for i, v in enumerate(flat):
                out[i // per] |= int(v) << (8 - bit_depth * (i % per + 1))
            rows.append(bytes(out))
    return rows


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _filter_rows(rows, bpp):
    """Filters each row with type y % 5 so that the decoder meets all five filters."""
    out = bytearray()
    prev = bytes(len(rows[0])) if rows else b""
    for y, row in enumerate(rows):
        ft = y % 5
        f = bytearray(len(row))
        for i, x in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            pred = (0, a, b, (a + b) // 2, _paeth(a, b, c))[ft]
            f[i] = (x - pred) & 0xFF
        out += bytes([ft]) + f
        prev = row
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]  # (x0, y0, dx, dy)


def png_encode(samples, bit_depth, color_type, palette=None, trns=None, interlace=False,
               declared_size=None):
    samples = np.asarray(samples)
    if samples.ndim == 2:
        samples = samples[:, :, None]
    h, w, c = samples.shape
    bpp = max(1, c * bit_depth // 8)
    W, H = declared_size or (w, h)
    ihdr = struct.pack(">IIBBBBB", W, H, bit_depth, color_type, 0, 0, 1 if interlace else 0)
    data = b""
    if interlace:
        for x0, y0, dx, dy in ADAM7:
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                data += _filter_rows(_pack_rows(sub, bit_depth), bpp)
    else:
        data = _filter_rows(_pack_rows(samples, bit_depth), bpp)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
    if palette is not None:
        png += _chunk(b"PLTE", bytes(np.asarray(palette, np.uint8).reshape(-1)))
    if trns is not None:
        png += _chunk(b"tRNS", trns)
    png += _chunk(b"IDAT", zlib.compress(data, 9)) + _chunk(b"IEND", b"")
    return png


# ---- sources -----------------------------------------------------------------------------------

def photo_paths(explicit):
    if explicit:
        return [os.path.join(explicit, n) for n in ("china.jpg", "flower.jpg")]
    try:
        import sklearn.datasets
    except ImportError:
        sys.exit("scikit-learn is needed for its sample photographs (pip install scikit-learn), "
                 "or pass --photos DIR holding china.jpg and flower.jpg")
    d = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
    return [os.path.join(d, "china.jpg"), os.path.join(d, "flower.jpg")]


def jpeg_bytes(im, **kw):
    b = io.BytesIO()
    im.save(b, "JPEG", **kw)
    return b.getvalue()


def pil_bytes(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def strip_app14(jpg):
    """Removes the Adobe APP14 segment: a 4-component JPEG then carries no colour hint."""
    i = 2
    out = jpg[:2]
    while i < len(jpg) and jpg[i] == 0xFF:
        marker = jpg[i + 1]
        if marker == 0xDA:
            return out + jpg[i:]
        n = struct.unpack(">H", jpg[i + 2:i + 4])[0]
        if marker != 0xEE:
            out += jpg[i:i + 2 + n]
        i += 2 + n
    return out + jpg[i:]


def corrupt_scan(jpg):
    """Overwrites bytes in the middle of the entropy-coded data with stuffed 0xFF bytes (FF 00):
    a run of one bits that no Huffman table of the file can decode. Pillow decodes the file
    anyway (libjpeg only warns); perceiver-cl refuses it."""
    sos = jpg.index(b"\xff\xda")
    start = sos + 2 + struct.unpack(">H", jpg[sos + 2:sos + 4])[0]
    mid = start + (len(jpg) - start) // 3
    while jpg[mid - 1] == 0xFF:  # do not split an existing FF 00 pair
        mid += 1
    return jpg[:mid] + b"\xff\x00" * 16 + jpg[mid + 32:]


# JPEG kinds Pillow cannot write (YCCK colour transform, arithmetic coding) come from a few
# lines of C against the system libjpeg, compiled on the fly (gcc and libjpeg-dev needed).
JPEG_WRITER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
/* usage: w h mode(ycck|arith|arith_prog) < raw > out.jpg; raw is CMYK for ycck, else RGB */
int main(int argc, char **argv) {
    int w = atoi(argv[1]), h = atoi(argv[2]);
    int ycck = !strcmp(argv[3], "ycck"), nc = ycck ? 4 : 3;
    unsigned char *raw = malloc((size_t)w * h * nc);
    if (fread(raw, 1, (size_t)w * h * nc, stdin) != (size_t)w * h * nc) return 2;
    struct jpeg_compress_struct c; struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e); jpeg_create_compress(&c); jpeg_stdio_dest(&c, stdout);
    c.image_width = w; c.image_height = h; c.input_components = nc;
    c.in_color_space = ycck ? JCS_CMYK : JCS_RGB;
    jpeg_set_defaults(&c); jpeg_set_quality(&c, 90, TRUE);
    if (ycck) jpeg_set_colorspace(&c, JCS_YCCK);
    else { c.arith_code = TRUE; if (!strcmp(argv[3], "arith_prog")) jpeg_simple_progression(&c); }
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW r = raw + (size_t)c.next_scanline * w * nc; jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c); jpeg_destroy_compress(&c); return 0;
}
"""


def libjpeg_writer():
    """Compiles JPEG_WRITER_C; returns a function (array, mode) -> JPEG bytes, or None."""
    import atexit
    import subprocess
    tmp = tempfile.mkdtemp()
    atexit.register(shutil.rmtree, tmp, True)
    src, exe = os.path.join(tmp, "w.c"), os.path.join(tmp, "w")
    with open(src, "w") as f:
        f.write(JPEG_WRITER_C)
    try:
        subprocess.run(["gcc", "-O1", src, "-o", exe, "-ljpeg"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"warning: no YCCK/arithmetic JPEG variants ({e})", file=sys.stderr)
        return None

    def write(arr, mode):
        h, w = arr.shape[:2]
        r = subprocess.run([exe, str(w), str(h), mode], input=np.ascontiguousarray(arr).tobytes(),
                           capture_output=True, check=True)
        return r.stdout
    return write


def fnv1a32(b):
    h = 0x811C9DC5
    arr = np.frombuffer(b, np.uint8)
    for v in arr.tolist():
        h = ((h ^ v) * 0x01000193) & 0xFFFFFFFF
    return h


def build_images(photos, rng):
    """Returns a list of (name, bytes, kind, extra) in a fixed order."""
    china = Image.open(photos[0]).convert("RGB")
    flower = Image.open(photos[1]).convert("RGB")
    imgs = []

    def add(name, data, kind="variant", **extra):
        imgs.append((name, data, kind, extra))

    # Real photographs: the full 640x427 landscape (its 373-pixel center crop is reduced to 224,
    # the usual case) and a 240x320 portrait (its crop is enlarged).
    pc = china
    pf = flower.crop((100, 0, 420, 427)).resize((240, 320), Image.Resampling.LANCZOS)
    add("photo_china.jpg", jpeg_bytes(pc, quality=75, subsampling=2), "photo")
    add("photo_flower.jpg", jpeg_bytes(pf, quality=90, subsampling=1, progressive=True), "photo")

    # Small natural-content bases for the variants (odd sizes on purpose).
    base = np.array(flower.resize((33, 23), Image.Resampling.LANCZOS))  # H=23, W=33
    base_im = Image.fromarray(base)
    gray = np.array(base_im.convert("L"))
    small = china.resize((57, 39), Image.Resampling.LANCZOS)

    # JPEG variants
    add("jpg_prog.jpg", jpeg_bytes(small, quality=85, progressive=True, subsampling=2))
    add("jpg_444.jpg", jpeg_bytes(base_im, quality=95, subsampling=0))
    add("jpg_422_restart.jpg", jpeg_bytes(base_im, quality=80, subsampling=1,
                                          restart_marker_blocks=3))
    add("jpg_gray.jpg", jpeg_bytes(base_im.convert("L"), quality=90))
    add("jpg_rgb_keep.jpg", jpeg_bytes(base_im, quality=90, keep_rgb=True, subsampling=0))
    cmyk = base_im.convert("CMYK")
    cmyk_arr = np.array(cmyk)
    cmyk_arr[..., 3] = np.clip(cmyk_arr[..., :3].min(axis=2) // 2 + 20, 0, 255)  # some real K
    cmyk_jpg = jpeg_bytes(Image.fromarray(cmyk_arr, "CMYK"), quality=92)
    add("jpg_cmyk.jpg", cmyk_jpg)
    add("jpg_cmyk_noadobe.jpg", strip_app14(cmyk_jpg))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    add("jpg_exif_rot6.jpg", jpeg_bytes(base_im.crop((0, 0, 40, 24)), quality=90, exif=exif))
    add("jpg_1x1.jpg", jpeg_bytes(Image.fromarray(base[:1, :1]), quality=90))
    writer = libjpeg_writer()
    if writer:
        # Adobe YCCK: libjpeg turns it back into CMYK, then Pillow's inverted-CMYK rules apply
        add("jpg_ycck.jpg", writer(255 - cmyk_arr, "ycck"))
        add("jpg_arith.jpg", writer(base, "arith"))
        add("jpg_arith_prog.jpg", writer(np.array(small), "arith_prog"))
    add("jpg_odd_7x3.jpg", jpeg_bytes(Image.fromarray(base[:3, :7]), quality=90, subsampling=2))

    # PNG variants written by Pillow
    add("png_rgb8.png", pil_bytes(base_im, "PNG"))
    add("png_gray8.png", pil_bytes(base_im.convert("L"), "PNG"))
    rgba = np.dstack([base, rng.integers(0, 256, base.shape[:2], dtype=np.uint8)])
    add("png_rgba8.png", pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"))
    la = np.dstack([gray, rng.integers(0, 256, gray.shape, dtype=np.uint8)])
    add("png_graya8.png", pil_bytes(Image.fromarray(la, "LA"), "PNG"))
    add("png_pal8.png", pil_bytes(base_im.quantize(200), "PNG"))
    add("png_1x1.png", pil_bytes(Image.fromarray(base[:1, :1]), "PNG"))
    add("png_3x7.png", pil_bytes(Image.fromarray(base[:7, :3]), "PNG"))

    # PNG variants from the encoder above
    lo = rng.integers(0, 256, base.shape, dtype=np.int64)
    rgb16 = base.astype(np.int64) * 256 + lo  # Pillow keeps the high byte: exactly `base`
    add("png_rgb16.png", png_encode(rgb16, 16, 2))
    add("png_rgb16_adam7.png", png_encode(rgb16, 16, 2, interlace=True))
    add("png_rgb8_adam7.png", png_encode(base, 8, 2, interlace=True))
    a16 = rng.integers(0, 65536, base.shape[:2], dtype=np.int64)
    add("png_rgba16.png", png_encode(np.dstack([rgb16, a16]), 16, 6))
    # 16-bit gray: Pillow opens "I;16" and clips to 255 when converting; mix small and big values
    g16 = gray.astype(np.int64) * 257
    g16[::2, ::3] = gray[::2, ::3]  # below 256: kept as is
    add("png_gray16.png", png_encode(g16, 16, 0))
    add("png_gray16_trns.png", png_encode(g16, 16, 0, trns=struct.pack(">H", 300)))
    add("png_graya16.png", png_encode(np.dstack([g16, a16]), 16, 4))
    add("png_gray8_trns.png", png_encode(gray, 8, 0, trns=struct.pack(">H", int(gray[0, 0]))))
    for bd in (1, 2, 4):
        add(f"png_gray{bd}.png", png_encode(gray >> (8 - bd), bd, 0))
    pal = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    idx4 = (gray >> 4).astype(np.int64)
    add("png_pal4_trns.png", png_encode(idx4, 4, 3, palette=pal,
                                        trns=bytes(rng.integers(0, 256, 16, dtype=np.uint8))))
    add("png_pal2_adam7.png", png_encode(idx4 >> 2, 2, 3, palette=pal[:4], interlace=True))
    add("png_pal1.png", png_encode(idx4 >> 3, 1, 3, palette=pal[:2]))

    # Refused: other formats, absurd header, broken data
    tiny = Image.fromarray(base[:8, :8])
    add("unsupported.gif", pil_bytes(tiny, "GIF"), "error", code="UNSUPPORTED", contains="GIF")
    add("unsupported.bmp", pil_bytes(tiny, "BMP"), "error", code="UNSUPPORTED", contains="BMP")
    add("unsupported.webp", pil_bytes(tiny, "WEBP"), "error", code="UNSUPPORTED", contains="WebP")
    add("unsupported.tiff", pil_bytes(tiny, "TIFF"), "error", code="UNSUPPORTED", contains="TIFF")
    # A JPEG named .png: the format comes from the bytes, so this one loads fine.
    add("jpeg_named.png", jpeg_bytes(tiny, quality=90))
    add("png_huge_header.png", png_encode(base[:1, :1], 8, 2, declared_size=(100000, 100000)),
        "error", code="UNSUPPORTED", contains="limit")
    ok = bytearray(pil_bytes(base_im, "PNG"))
    i = ok.index(b"IDAT")
    n = struct.unpack(">I", ok[i - 4:i])[0]
    ok[i + 4 + n] ^= 0x55  # the CRC of the (intact) IDAT data
    add("png_bad_crc.png", bytes(ok), "error", code="FORMAT", contains="CRC")
    add("jpg_corrupt_data.jpg", corrupt_scan(jpeg_bytes(small, quality=90)), "error",
        code="FORMAT", contains="Corrupt JPEG data")
    return imgs


# ---- processors --------------------------------------------------------------------------------

def configs():
    """name -> (kwargs for PerceiverImageProcessorPil, which images: 'photos' | 'all' | list)."""
    few = ["photo_china.jpg", "photo_flower.jpg", "png_3x7.png", "png_1x1.png", "jpg_odd_7x3.jpg",
           "png_gray16.png", "jpg_cmyk.jpg"]
    return {
        "default": ({}, "photos"),
        "small": (dict(size={"height": 12, "width": 12}, crop_size={"height": 14, "width": 14}),
                  "all"),
        "rect": (dict(size={"height": 14, "width": 20}, crop_size={"height": 17, "width": 21},
                      image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3],
                      rescale_factor=1 / 128), few),
        # crop = the whole short side, then a strong vertical reduction: Pillow 13 runs the
        # vertical pass first here (and Pillow 12 does not: u8p12.tall.*)
        "tall": (dict(size={"height": 12, "width": 300}, crop_size={"height": 12, "width": 300}),
                 ["photo_china.jpg", "photo_flower.jpg"]),
        "pad": (dict(size={"height": 14, "width": 14}, crop_size={"height": 11, "width": 11},
                     resample=2), few),
        "nocrop": (dict(do_center_crop=False, size={"height": 16, "width": 16}, resample=1), few),
        # (tiny images would give an empty crop: transformers returns a 0x0 array, which
        # perceiver-cl refuses; test_image.c checks that separately)
        "noresize": (dict(do_resize=False, size={"height": 4, "width": 4},
                          crop_size={"height": 64, "width": 64}), few[:2] + few[5:]),
        "box": (dict(size={"height": 12, "width": 12}, crop_size={"height": 14, "width": 14},
                     resample=4, do_normalize=False), few),
        "hamming": (dict(size={"height": 12, "width": 12}, crop_size={"height": 12, "width": 12},
                         resample=5, do_rescale=False), few),
    }


LEGACY_CONFIG = {  # the older Hub format (feature extractor era): int sizes
    "crop_size": 256,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "PerceiverFeatureExtractor",
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "resample": 3,
    "size": 224,
}


def hf_outputs(proc, pil_img):
    pv = proc(pil_img, return_tensors="np")["pixel_values"][0]
    u8 = proc(pil_img, do_rescale=False, do_normalize=False)["pixel_values"][0]
    assert u8.dtype == np.uint8, u8.dtype
    return pv.astype(np.float32), np.ascontiguousarray(np.transpose(u8, (1, 2, 0)))


# ---- the haiku (DeepMind colab) pipeline ------------------------------------------------------

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def haiku_u8(rgb, size, crop, cv2):
    """The colab's crop is int(0.875 * float32(min(h, w))); 0.875 = 224/256 is exact and so is
    its product with any size below 2^21, so (size / crop) * min in double is the same number and
    generalises to other sizes."""
    h, w = rgb.shape[:2]
    c = int((size / crop) * min(h, w))
    top, left = ((h - c) + 1) // 2, ((w - c) + 1) // 2
    crop = np.ascontiguousarray(rgb[top:top + c, left:left + c])
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_CUBIC)


def haiku_pv(u8):
    x = (u8.astype(np.float64) - 255 * np.array(MEAN)) / (255 * np.array(STD))
    return np.ascontiguousarray(np.transpose(x.astype(np.float32), (2, 0, 1)))


# ---- pass-order probe ----------------------------------------------------------------------------

def probe_order(n, seed):
    """Which pass (horizontal or vertical) Pillow runs first, against the rule in image_proc.c."""
    rng = np.random.default_rng(seed)
    agree = seen = 0
    for _ in range(n):
        sw, sh, dw, dh = (int(v) for v in rng.integers(2, 300, 4))
        f = int(rng.choice([1, 2, 3, 4, 5]))
        im = Image.fromarray(rng.integers(0, 256, (sh, sw, 3), dtype=np.uint8))
        one = np.array(im.resize((dw, dh), f))
        hv = np.array(im.resize((dw, sh), f).resize((dw, dh), f))
        vh = np.array(im.resize((sw, dh), f).resize((dw, dh), f))
        if np.array_equal(hv, vh):
            continue
        seen += 1
        got = "hv" if np.array_equal(one, hv) else "vh" if np.array_equal(one, vh) else "??"
        rule = "vh" if sh - dh > 2 * max(sw - dw, 0) else "hv"
        agree += got == rule
    print(f"Pillow {PIL.__version__}: rule 'vertical first iff sh-dh > 2*max(sw-dw,0)' agrees "
          f"on {agree} of {seen} size pairs where the order matters")
    return agree == seen


# ---- main ---------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--photos", help="folder with china.jpg and flower.jpg (default: scikit-learn)")
    ap.add_argument("--probe-order", type=int, metavar="N",
                    help="only check the pass-order rule on N random resizes")
    args = ap.parse_args()
    if args.probe_order:
        sys.exit(0 if probe_order(args.probe_order, SEED) else 1)

    warnings.simplefilter("ignore")
    import transformers
    from safetensors.numpy import save_file
    from transformers import PerceiverImageProcessorPil

    try:
        import cv2
    except ImportError:
        cv2 = None

    rng = np.random.default_rng(SEED)
    images = build_images(photo_paths(args.photos), rng)
    if os.path.isdir(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write(README)
    tensors = {}
    manifest = {
        "generator": "tools/make_image_fixtures.py",
        "versions": {
            "python": sys.version.split()[0],
            "Pillow": PIL.__version__,
            "Pillow libjpeg-turbo": features.version("libjpeg_turbo"),
            "transformers": transformers.__version__,
            "numpy": np.__version__,
            "opencv": cv2.__version__ if cv2 else None,
        },
        "processor": "transformers.PerceiverImageProcessorPil (PIL backend = v4's slow "
                     "PerceiverImageProcessor; not the torchvision one)",
        "images": [],
        "configs": [],
    }

    decoded = {}
    for name, data, kind, extra in images:
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(data)
        entry = {"name": name, "kind": kind, "bytes": len(data)}
        try:
            im = Image.open(io.BytesIO(data))
            entry["pil_format"], entry["pil_mode"] = im.format, im.mode
            rgb = np.array(im.convert("RGB"))
            entry["pil_opens"] = True
        except Exception as e:  # noqa: BLE001 - any Pillow failure is recorded
            rgb = None
            entry["pil_opens"] = False
            entry["pil_error"] = f"{type(e).__name__}: {e}"
        if kind == "error":
            entry["expect"] = "error"
            entry["error_code"] = extra["code"]
            entry["error_contains"] = extra["contains"]
        else:
            assert rgb is not None, name
            entry["expect"] = "ok"
            entry["width"], entry["height"] = int(rgb.shape[1]), int(rgb.shape[0])
            decoded[name] = rgb
            if kind == "photo":
                b = rgb.tobytes()
                tensors[f"rgbsum.{name}"] = np.array(
                    [int(rgb[..., 0].sum()), int(rgb[..., 1].sum()), int(rgb[..., 2].sum()),
                     fnv1a32(b)], dtype=np.int64)
            else:
                tensors[f"decoded.{name}"] = np.ascontiguousarray(rgb)
        manifest["images"].append(entry)

    photos = [n for n, _, k, _ in images if k == "photo"]
    loadable = [n for n, _, k, _ in images if k != "error"]

    # One value table: every uint8 through rescale + normalize (crop and resize off).
    proc = PerceiverImageProcessorPil()
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)
    ramp_im = Image.fromarray(np.dstack([ramp, ramp, ramp]))
    lut = proc(ramp_im, do_center_crop=False, do_resize=False, return_tensors="np")
    tensors["lut.default"] = np.ascontiguousarray(lut["pixel_values"][0].reshape(3, 256))

    for cname, (kw, which) in configs().items():
        proc = PerceiverImageProcessorPil(**kw)
        cdir = os.path.join("configs", cname)
        proc.save_pretrained(os.path.join(args.out, cdir))
        names = photos if which == "photos" else loadable if which == "all" else which
        centry = {"name": cname, "dir": cdir, "kwargs": kw, "images": {}}
        for n in names:
            pv, u8 = hf_outputs(proc, Image.fromarray(decoded[n]))
            centry["images"][n] = {"out_h": int(pv.shape[1]), "out_w": int(pv.shape[2])}
            if cname in ("default", "tall"):
                tensors[f"u8.{cname}.{n}"] = u8
                # Too big to store for every photo: prove here that the float stage is the
                # value table applied to the stored uint8 image, bit for bit.
                want = tensors["lut.default"][np.arange(3)[:, None, None],
                                              np.transpose(u8, (2, 0, 1)).astype(np.int64)]
                assert np.array_equal(want, pv), f"{n}: pixel_values != lut[u8]"
                centry["images"][n]["pv_equals_lut_of_u8"] = True
            elif cname != "tall":
                tensors[f"pv.{cname}.{n}"] = pv
            if cname == "tall":
                # Pillow <= 12 always resized horizontally first: emulate it with two one-axis
                # resizes of transformers' crop (each of those runs a single pass)
                crop = proc(Image.fromarray(decoded[n]), do_resize=False, do_rescale=False,
                            do_normalize=False)["pixel_values"][0].transpose(1, 2, 0)
                sz = (kw["size"]["width"], kw["size"]["height"])
                old = np.array(Image.fromarray(np.ascontiguousarray(crop))
                               .resize((sz[0], crop.shape[0]), Image.Resampling.BICUBIC)
                               .resize(sz, Image.Resampling.BICUBIC))
                tensors[f"u8p12.{cname}.{n}"] = old
                centry["images"][n]["pillow12_differs"] = int((old != u8).sum())
        manifest["configs"].append(centry)

    legacy_dir = os.path.join(args.out, "configs", "legacy")
    os.makedirs(legacy_dir)
    with open(os.path.join(legacy_dir, "preprocessor_config.json"), "w") as f:
        json.dump(LEGACY_CONFIG, f, indent=2)
        f.write("\n")
    manifest["configs"].append({"name": "legacy", "dir": "configs/legacy", "same_as": "default",
                                "images": {}})

    if cv2 is not None:
        cv2.ipp.setUseIPP(False)
        lut = haiku_pv(np.arange(256, dtype=np.uint8)[:, None, None].repeat(3, 2))
        tensors["haiku.lut"] = np.ascontiguousarray(lut[:, :, 0])
        hk = {"name": "haiku", "resize": "cv2.resize INTER_CUBIC, cv2.ipp.setUseIPP(False)",
              "images": {}}
        for size, crop, names in ((224, 256, ["photo_china.jpg"]), (16, 18, loadable)):
            for n in names:
                try:
                    u8 = haiku_u8(decoded[n], size, crop, cv2)
                except cv2.error:
                    continue  # the colab cannot crop a 1-pixel image either
                tensors[f"haiku.u8.s{size}.{n}"] = u8
                hk["images"].setdefault(n, []).append(size)
        # cv2 with IPP (its default on x86) gives slightly different cubic results; record how
        # much on the 224 crop of the first photo
        cv2.ipp.setUseIPP(True)
        ipp = haiku_u8(decoded["photo_china.jpg"], 224, 256, cv2)
        hk["ipp_differs"] = {"values": int((ipp != tensors["haiku.u8.s224.photo_china.jpg"]).sum()),
                             "of": int(ipp.size),
                             "max_abs": int(np.abs(ipp.astype(int) -
                                                   tensors["haiku.u8.s224.photo_china.jpg"]).max())}
        manifest["haiku"] = hk

    save_file(tensors, os.path.join(args.out, "expected.safetensors"),
              metadata={"generator": "tools/make_image_fixtures.py"})
    os.chmod(os.path.join(args.out, "expected.safetensors"), 0o644)
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=False)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.out) for f in fs)
    print(f"wrote {args.out}: {len(images)} images, {len(tensors)} tensors, {total} bytes")


if __name__ == "__main__":
    main()
