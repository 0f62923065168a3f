#!/usr/bin/env python3
"""Independent NumPy reference of the optical-flow pipeline AROUND the Perceiver model
(what `perceiver-cl flow` does before and after the network), written from
shared/spec/haiku-vs-hf.md section 6 / perceiver-io.md 11.3, and checked (--self-test) against
DeepMind's own colab code.

Pipeline for a frame pair (uint8 RGB [H][W][3], H >= tile_h, W >= tile_w):

1. normalise: x = img / 255 * 2 - 1, evaluated in float64 and rounded ONCE to float32 (the
   colab's `normalize` runs in float64 NumPy and jnp.stack casts to float32; the HF integration
   test does the same with torch). Note: the same formula evaluated in float32 arithmetic
   differs in the last bit for 128 of the 256 byte values; NORM_LUT holds the 256 values.
2. tiles: origins from grid_origins() (below); each tile is CROPPED from the normalised frames
   first, and only then padded and cut into patches: pixels at a tile border see zero padding
   even where the frame continues (DeepMind crops `imgs[..., y:y+h, x:x+w, :]` and the model
   calls patches_for_flow on the crop).
3. patches: per frame, zero-pad 1 pixel on each side AFTER normalisation (0.0 = mid-grey) and
   take the 3x3 neighbourhood of every pixel: channel (kh*3 + kw)*3 + c, c fastest. HF layout
   of one tile: inputs [B][2][27][h][w] (frame, channel, row, column), float32.
4. network: HF PerceiverForOpticalFlow logits [B][h][w][2] (= decoder / 100).
5. output scale: flow in pixels = logits * 20 (FLOW_SCALE_FACTOR of the colab; float32
   multiply, applied per tile BEFORE blending, as the colab's transformed function does).
   Channel 0 = u (horizontal, +x right), channel 1 = v (vertical, +y down).
6. blending: per-tile integer weight w(y, x) = min(x+1, tile_w-x, y+1, tile_h-y)
   (1 on the tile border, up to min(tile)/2 in the middle); accumulate sum(w * f) in float32
   (w converted to float32, one rounded product, one rounded sum per tile) and sum(w) in int32,
   in tile order starting from 0; then flow = acc * float32(1 / float32(count)): XLA rewrites
   the colab's `flows /= flow_count` (a division by a broadcast divisor) into a multiplication
   by the rounded reciprocal, which differs from a true float32 division by 1 ulp on ~20 % of
   the pixels. This is bit-identical to the colab's compute_optical_flow run with jax.numpy
   on CPU (checked by --self-test when jax is available).

Tile grid (grid_origins): DeepMind's compute_grid_indices takes ys = range(0, H, tile_h -
min_overlap) (min_overlap 20) and xs likewise, replaces the LAST entry of each list by H-tile_h
/ W-tile_w, and returns the product (y outer, x inner). That can produce an origin whose tile
leaves the frame (e.g. H = 700: ys = [0, 348, 332], tile at 348 ends at 716 > 700) and
duplicate origins (H == tile_h: ys = [0, 0]; deepmind-research#265: a frame of exactly tile
size is predicted 4 times). Two repairs: every origin is clamped to H-tile_h / W-tile_w, then
duplicates are removed keeping the first occurrence (order kept). Where DeepMind's grid is
valid (all origins inside, no duplicates) the repaired grid is exactly DeepMind's.

Run:
  python tools/flow_ref.py --self-test --deepmind-src /path/to/deepmind-research
  python tools/flow_ref.py --grid 436 1024 [--tile 368 496] [--deepmind-src DIR]

NumPy only (no torch, no jax) for the library part; --self-test uses jax and DeepMind's
perceiver package when they are importable (tools/requirements-haiku.txt venv) and says which
checks it skipped otherwise.
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

import numpy as np

TRAIN_SIZE = (368, 496)      # tile of deepmind/optical-flow-perceiver (config train_size)
MIN_OVERLAP = 20             # compute_grid_indices default
FLOW_SCALE_FACTOR = 20.0     # colab: model output (decoder / 100) * 20 = pixels
FLO_MAGIC = 202021.25        # Middlebury .flo tag ("PIEH" as little-endian float32)

# float32(u / 255 * 2 - 1) for u = 0..255, evaluated in float64 and rounded once.
NORM_LUT = (np.arange(256, dtype=np.float64) / 255.0 * 2 - 1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# input side
# --------------------------------------------------------------------------------------------

def normalize_frame(img) -> np.ndarray:
    """uint8 RGB [H][W][3] -> float32 [H][W][3] = float32(img / 255.0 * 2 - 1) (float64 math)."""
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected uint8 [H][W][3], got {img.dtype} {img.shape}")
    return NORM_LUT[img]


def frame_patches(norm) -> np.ndarray:
    """float32 [h][w][3] -> float32 [27][h][w]: zero-pad 1, 3x3 neighbourhoods,
    channel (kh*3 + kw)*3 + c."""
    norm = np.asarray(norm, dtype=np.float32)
    h, w, c = norm.shape
    assert c == 3
    p = np.zeros((h + 2, w + 2, 3), np.float32)
    p[1:-1, 1:-1] = norm
    out = np.empty((27, h, w), np.float32)
    for kh in range(3):
        for kw in range(3):
            for ch in range(3):
                out[(kh * 3 + kw) * 3 + ch] = p[kh:kh + h, kw:kw + w, ch]
    return out


def tile_inputs(norm1, norm2, y: int, x: int, tile) -> np.ndarray:
    """HF model input of one tile: [1][2][27][tile_h][tile_w] from two normalised frames
    (crop first, then pad + patches)."""
    th, tw = tile
    H, W = norm1.shape[:2]
    if not (0 <= y <= H - th and 0 <= x <= W - tw):
        raise ValueError(f"tile origin ({y},{x}) of a {th}x{tw} tile leaves the {H}x{W} frame")
    a = frame_patches(norm1[y:y + th, x:x + tw])
    b = frame_patches(norm2[y:y + th, x:x + tw])
    return np.stack([a, b])[None]


# --------------------------------------------------------------------------------------------
# tiling
# --------------------------------------------------------------------------------------------

def deepmind_axis_origins(size: int, tile: int, step_tile: int | None = None,
                          min_overlap: int = MIN_OVERLAP) -> list[int]:
    """OUR transcription of one axis of DeepMind's compute_grid_indices (unrepaired), for
    printing/diagnostics only: range(0, size, step_tile - min_overlap), last -> size - tile.
    (The notebook steps by TRAIN_SIZE - min_overlap and flushes with patch_size; both are the
    tile here unless step_tile is given.)"""
    step_tile = tile if step_tile is None else step_tile
    o = list(range(0, size, step_tile - min_overlap))
    o[-1] = size - tile
    return o


def axis_origins(size: int, tile: int, min_overlap: int = MIN_OVERLAP) -> list[int]:
    """Repaired origins along one axis: DeepMind's list, clamped to size - tile, de-duplicated
    (first occurrence kept)."""
    if min_overlap >= tile:
        raise ValueError(f"min_overlap {min_overlap} must be less than the tile size {tile}")
    if size < tile:
        raise ValueError(f"frame size {size} is smaller than the tile {tile} (DeepMind's colab "
                         "refuses this too: pad or resize the frames)")
    out: list[int] = []
    for o in deepmind_axis_origins(size, tile, tile, min_overlap):
        o = min(o, size - tile)
        if o not in out:
            out.append(o)
    return out


def grid_origins(H: int, W: int, tile=TRAIN_SIZE, min_overlap: int = MIN_OVERLAP) -> list[tuple[int, int]]:
    """Repaired tile origins (y, x) in processing order: y outer, x inner."""
    ys = axis_origins(H, tile[0], min_overlap)
    xs = axis_origins(W, tile[1], min_overlap)
    return [(y, x) for y in ys for x in xs]


def grid_is_valid(origins, H: int, W: int, tile) -> bool:
    """True when every tile lies inside the frame and no origin repeats."""
    origins = [tuple(o) for o in origins]
    inside = all(0 <= y <= H - tile[0] and 0 <= x <= W - tile[1] for y, x in origins)
    return inside and len(set(origins)) == len(origins)


# --------------------------------------------------------------------------------------------
# output side
# --------------------------------------------------------------------------------------------

def tile_weights(tile) -> np.ndarray:
    """int32 [tile_h][tile_w]: min(x+1, tile_w-x, y+1, tile_h-y)."""
    th, tw = tile
    y = np.arange(th, dtype=np.int32)[:, None]
    x = np.arange(tw, dtype=np.int32)[None, :]
    return np.minimum(np.minimum(x + 1, tw - x), np.minimum(y + 1, th - y)).astype(np.int32)


def blend(tile_flows, origins, H: int, W: int) -> np.ndarray:
    """Weighted average of per-tile flows (float32 [n][th][tw][C], same order as origins)
    -> float32 [H][W][C]. float32 accumulation, int32 weight sums, float32 division."""
    tile_flows = np.asarray(tile_flows)
    if tile_flows.dtype != np.float32:
        raise ValueError("tile flows must be float32")
    n, th, tw, C = tile_flows.shape
    if n != len(origins):
        raise ValueError(f"{n} tiles but {len(origins)} origins")
    wgt = tile_weights((th, tw))
    acc = np.zeros((H, W, C), np.float32)
    cnt = np.zeros((H, W, 1), np.int32)
    for f, (y, x) in zip(tile_flows, origins):
        acc[y:y + th, x:x + tw] += f * wgt[:, :, None].astype(np.float32)
        cnt[y:y + th, x:x + tw] += wgt[:, :, None]
    if (cnt == 0).any():
        raise ValueError("the tiles do not cover the frame")
    # acc * float32(1/count), not acc / count: what the colab computes on XLA (its algebraic
    # simplifier turns a division by a broadcast [.,H,W,1] divisor into a multiplication by the
    # reciprocal); the two differ by 1 ulp on ~20 % of the pixels.
    return acc * (np.float32(1) / cnt.astype(np.float32))


def flow_from_tile_logits(tile_logits, origins, H: int, W: int) -> np.ndarray:
    """HF per-tile logits (/100 included) -> flow in pixels [H][W][2]: x20 per tile, blend."""
    tl = np.asarray(tile_logits, dtype=np.float32)
    return blend(tl * np.float32(FLOW_SCALE_FACTOR), origins, H, W)


# --------------------------------------------------------------------------------------------
# Middlebury .flo
# --------------------------------------------------------------------------------------------

def write_flo(path, flow) -> None:
    """float32 202021.25, int32 width, int32 height, then u,v interleaved row-major float32;
    all little-endian."""
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be [H][W][2], got {flow.shape}")
    h, w, _ = flow.shape
    with open(path, "wb") as f:
        f.write(struct.pack("<fii", FLO_MAGIC, w, h))
        f.write(flow.astype("<f4").tobytes(order="C"))


def read_flo(path) -> np.ndarray:
    data = Path(path).read_bytes()
    magic, w, h = struct.unpack("<fii", data[:12])
    if magic != FLO_MAGIC:
        raise ValueError(f"{path}: bad .flo magic {magic}")
    if len(data) != 12 + 8 * w * h:
        raise ValueError(f"{path}: {len(data)} bytes for {w}x{h}")
    return np.frombuffer(data, "<f4", offset=12).reshape(h, w, 2).astype(np.float32)


# --------------------------------------------------------------------------------------------
# self-test against DeepMind's notebook
# --------------------------------------------------------------------------------------------

def _self_test(deepmind_src: str | None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import deepmind_flow

    failures: list[str] = []
    skipped: list[str] = []

    def check(cond, msg):
        print(("  ok   " if cond else "  FAIL ") + msg)
        if not cond:
            failures.append(msg)

    print("library checks")
    check(tile_weights((3, 4)).tolist() == [[1, 1, 1, 1], [1, 2, 2, 1], [1, 1, 1, 1]],
          "tile_weights((3,4)) = [[1,1,1,1],[1,2,2,1],[1,1,1,1]]")
    wfull = tile_weights(TRAIN_SIZE)
    check(int(wfull.max()) == 184 and int(wfull.min()) == 1, "368x496 weights range 1..184")
    rng = np.random.default_rng(0)
    fl = rng.standard_normal((5, 7, 2)).astype(np.float32)
    tmp = Path("/tmp") / f"flow_ref_selftest_{np.random.default_rng().integers(1 << 30)}.flo"
    write_flo(tmp, fl)
    raw = tmp.read_bytes()
    check(raw[:4] == b"PIEH" and struct.unpack("<ii", raw[4:12]) == (7, 5)
          and np.array_equal(read_flo(tmp), fl), ".flo: 'PIEH', width 7, height 5, data round trip")
    try:
        import cv2
        check(np.array_equal(cv2.readOpticalFlow(str(tmp)), fl), ".flo readable by cv2.readOpticalFlow")
    except ImportError:
        skipped.append("cv2.readOpticalFlow (.flo)")
    tmp.unlink()
    u = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    f32ops = (u.astype(np.float32) / np.float32(255) * np.float32(2) - np.float32(1))
    ndiff = int(np.sum(normalize_frame(u)[..., 0] != f32ops[..., 0]))
    print(f"  info normalisation: float32 arithmetic differs from float64-then-round on {ndiff}/256 byte values")

    if not deepmind_src:
        print("FAIL: --deepmind-src is required for the comparison with DeepMind's notebook")
        return 1
    consts = deepmind_flow.colab_constants(deepmind_src)
    print(f"DeepMind notebook constants: {consts}")
    check(consts["FLOW_SCALE_FACTOR"] == FLOW_SCALE_FACTOR and tuple(consts["TRAIN_SIZE"]) == TRAIN_SIZE,
          "FLOW_SCALE_FACTOR = 20 and TRAIN_SIZE = (368, 496) in the notebook")

    print("grid: repaired vs DeepMind's compute_grid_indices (notebook code)")
    tiles = [TRAIN_SIZE, (48, 64), (24, 32), (50, 41), (64, 48)]
    n_valid = n_invalid = 0
    for tile in tiles:
        ns = deepmind_flow.colab_helpers(deepmind_src, train_size=tile)
        sizes = set()
        for H in range(tile[0], tile[0] + 3 * (tile[0] - 20) + 7):
            for W in list(range(tile[1], tile[1] + 2 * (tile[1] - 20) + 5, 3)) + [tile[1] + 1]:
                sizes.add((H, W))
        if tile == TRAIN_SIZE:
            sizes |= {(436, 1024), (700, 1024), (368, 496), (1080, 1920), (720, 1280), (480, 640)}
        bad_same = 0
        for H, W in sorted(sizes):
            dm = [tuple(o) for o in ns["compute_grid_indices"]((H, W), patch_size=tile)]
            ours = grid_origins(H, W, tile)
            if grid_is_valid(dm, H, W, tile):
                n_valid += 1
                if dm != ours:
                    bad_same += 1
            else:
                n_invalid += 1
                # repaired grid must be valid, cover the frame, and keep DeepMind's order
                if not grid_is_valid(ours, H, W, tile):
                    bad_same += 1
        check(bad_same == 0, f"tile {tile}: {len(sizes)} frame sizes, repaired == DeepMind where valid, "
                             "valid otherwise")
    print(f"  info {n_valid} sizes with a valid DeepMind grid, {n_invalid} with an invalid one")

    ns = deepmind_flow.colab_helpers(deepmind_src)
    dm = list(ns["compute_grid_indices"]((436, 1024)))
    check(dm == [(0, 0), (0, 476), (0, 528), (68, 0), (68, 476), (68, 528)]
          and grid_origins(436, 1024) == dm, "436x1024 (Sintel): ys [0,68], xs [0,476,528], 6 tiles")
    dm = list(ns["compute_grid_indices"]((700, 1024)))
    ours = grid_origins(700, 1024)
    print(f"  info 700x1024: DeepMind {dm}\n       -> repaired {ours}")
    check([y for y, x in dm[::3]] == [0, 348, 332] and [y for y, x in ours[::3]] == [0, 332]
          and len(ours) == 6,
          "700-high frame: DeepMind origin y=348 (tile rows 348..715 > 699) is clamped to 332 and "
          "the duplicate dropped")
    dm = list(ns["compute_grid_indices"]((368, 496)))
    check(dm == [(0, 0)] * 4 and grid_origins(368, 496) == [(0, 0)],
          "frame of exactly tile size: DeepMind 4 x (0,0) (deepmind-research#265), repaired 1 tile")

    try:
        import jax  # noqa: F401
        import jax.numpy as jnp
        have_jax = True
    except ImportError:
        have_jax = False
        skipped.append("blending and patches vs jax (jax not installed)")

    print("blending: flow_ref.blend vs the notebook's compute_optical_flow (fake model)")
    for tile, (H, W) in ((TRAIN_SIZE, (436, 1024)), ((48, 64), (77, 111)), ((48, 64), (50, 80))):
        origins = grid_origins(H, W, tile)
        rs = np.random.default_rng(H * 7 + W)
        per = {o: rs.standard_normal((1, tile[0], tile[1], 2)).astype(np.float32) * 3 for o in origins}
        img1 = rs.uniform(-1, 1, (H, W, 3))
        img2 = rs.uniform(-1, 1, (H, W, 3))
        for use_jax in ([True] if have_jax else []) + [False]:
            hns = deepmind_flow.colab_helpers(deepmind_src, train_size=tile, use_jax=use_jax)
            seen = []

            def fake(params, rng_, piece, _seen=seen, _per=per, _hns=hns):
                # identify the tile by its content (the notebook passes the crop only)
                for o in origins:
                    if o in _seen:
                        continue
                    y, x = o
                    if np.array_equal(np.asarray(piece[0, 0]),
                                      np.asarray(img1[y:y + tile[0], x:x + tile[1]], np.asarray(piece).dtype)):
                        _seen.append(o)
                        return (jnp.asarray(_per[o]) if use_jax else _per[o])
                raise RuntimeError("unknown tile")

            deepmind_flow.set_model(hns, fake)
            dm_flow = np.asarray(hns["compute_optical_flow"](None, None, img1, img2, origins,
                                                             patch_size=tile))[0]
            ours = blend(np.stack([per[o][0] for o in origins]), origins, H, W)
            if use_jax:
                check(seen == origins and np.array_equal(dm_flow, ours),
                      f"{H}x{W} tile {tile}: {len(origins)} tiles, bit-identical to compute_optical_flow "
                      "with jax.numpy")
            else:
                err = float(np.abs(dm_flow - ours).max())
                check(seen == origins and err <= 1e-6 * float(np.abs(ours).max()),
                      f"{H}x{W} tile {tile}: matches compute_optical_flow with NumPy as jnp "
                      f"(float64 accumulation there; max diff {err:.2e})")

    if have_jax:
        try:
            _, io_processors, _ = deepmind_flow.import_perceiver(deepmind_src)
        except ImportError as e:
            io_processors = None
            skipped.append(f"patches_for_flow ({e})")
        if io_processors is not None:
            print("patches: flow_ref vs DeepMind's io_processors.patches_for_flow + notebook normalize")
            rs = np.random.default_rng(5)
            for h, w in ((5, 7), (48, 64), (13, 4)):
                a = rs.integers(0, 256, (h, w, 3), dtype=np.uint8)
                b = rs.integers(0, 256, (h, w, 3), dtype=np.uint8)
                dmn = deepmind_flow.colab_helpers(deepmind_src)["normalize"]
                imgs = jnp.stack([dmn(a), dmn(b)], axis=0)[None]  # as compute_optical_flow does
                check(imgs.dtype == jnp.float32 and
                      np.array_equal(np.asarray(imgs[0, 0]), normalize_frame(a)),
                      f"{h}x{w}: normalize (float64) + jnp.stack -> float32 equals NORM_LUT")
                dp = np.asarray(io_processors.patches_for_flow(imgs))  # [1][2][h][w][27]
                ours = tile_inputs(normalize_frame(a), normalize_frame(b), 0, 0, (h, w))
                check(np.array_equal(dp.transpose(0, 1, 4, 2, 3), ours),
                      f"{h}x{w}: patches_for_flow transposed to [1][2][27][h][w] equals tile_inputs")

    print()
    if skipped:
        print("skipped: " + "; ".join(skipped))
    print("RESULT: " + ("PASS" if not failures else f"FAIL ({len(failures)} checks)"))
    return 0 if not failures else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--self-test", action="store_true", help="run the checks (see header)")
    ap.add_argument("--deepmind-src", help="folder containing perceiver/ of google-deepmind/deepmind-research")
    ap.add_argument("--grid", nargs=2, type=int, metavar=("H", "W"), help="print the tile grid of an HxW frame")
    ap.add_argument("--tile", nargs=2, type=int, default=list(TRAIN_SIZE), metavar=("TH", "TW"))
    ap.add_argument("--min-overlap", type=int, default=MIN_OVERLAP)
    args = ap.parse_args(argv)
    if args.self_test:
        return _self_test(args.deepmind_src)
    if args.grid:
        H, W = args.grid
        tile = tuple(args.tile)
        ys = deepmind_axis_origins(H, tile[0], min_overlap=args.min_overlap)
        xs = deepmind_axis_origins(W, tile[1], min_overlap=args.min_overlap)
        print(f"DeepMind (transcribed): ys {ys} xs {xs} -> {len(ys) * len(xs)} tiles, "
              f"{'valid' if grid_is_valid([(y, x) for y in ys for x in xs], H, W, tile) else 'INVALID'}")
        if args.deepmind_src:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            import deepmind_flow
            ns = deepmind_flow.colab_helpers(args.deepmind_src, train_size=tile)
            print(f"DeepMind (notebook):    {list(ns['compute_grid_indices']((H, W), tile, args.min_overlap))}")
        o = grid_origins(H, W, tile, args.min_overlap)
        print(f"repaired: ys {axis_origins(H, tile[0], args.min_overlap)} "
              f"xs {axis_origins(W, tile[1], args.min_overlap)} -> {len(o)} tiles: {o}")
        return 0
    ap.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
