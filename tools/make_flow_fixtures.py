#!/usr/bin/env python3
"""Generate perceiver-cl's optical-flow fixtures: tests/fixtures/flow_tiles/ (HF, tiled) and
tests/fixtures/haiku_flow/ (DeepMind's own model as a pickle).

  flow_tiles/model/      tiny random-weight PerceiverForOpticalFlow (train_size = tile 48x64):
                         config.json, model.safetensors (save_pretrained), meta.json
  flow_tiles/<case>/     frame1.png, frame2.png[, frame3.png]  (uint8 RGB, smooth texture +
                                                                a disc, moving between frames)
                         expected.safetensors:
                           flow         float32 [n_pairs][H][W][2]  pixels (u = +x right, v = +y
                                        down) = 20 x blended HF logits (tools/flow_ref.py)
                           tiles        int32   [n][2]  tile origins (y, x), processing order
                           tile_logits  float32 [n_pairs][n][48][64][2]  HF per-tile logits
                                        (the model's /100 included, no x20)
                         expected.flo (case a_larger only): flow[0] as Middlebury .flo
                         meta.json: description, tolerance profiles, seed, versions, shapes, the
                         DeepMind grid and whether it is valid, diagnostics

Cases (tile 48x64, min overlap 20 -> steps 28 / 44):
  a_larger    77x111: larger than the tile in both dims, not a multiple of the steps; DeepMind's
              grid is valid: ys [0,28,29], xs [0,44,47] -> 9 tiles
  b_exact     48x64: exactly one tile; DeepMind's grid is 4 x (0,0) (deepmind-research#265)
  c_repaired  60x100: DeepMind's grid has out-of-frame origins (ys [0,28,12]: 28 > 60-48;
              xs [0,44,36]: 44 > 100-64); repaired ys [0,12], xs [0,36] -> 4 tiles
  d_sequence  50x80, 3 frames -> 2 pairs (1->2, 2->3); ys [0,2], xs [0,16] -> 4 tiles per pair

How the expected values are made (venv of tools/requirements.txt):
  * tile inputs: tools/flow_ref.py (float64-then-float32 normalisation, crop, zero-pad 1,
    3x3 patches, HF layout [1][2][27][48][64]); logits: transformers' forward, one tile at a
    time (batch 1), float32 CPU; flow: flow_ref.flow_from_tile_logits (x20, integer weights,
    float32 accumulation, reciprocal multiply).
  * independent path (second venv, tools/requirements-haiku.txt, jax + DeepMind's code from
    --deepmind-src): the colab's own normalize + compute_optical_flow (jax.numpy, CPU) with
    the model replaced by an HF-backed lookup: for each crop the notebook passes, DeepMind's
    io_processors.patches_for_flow output (transposed to HF layout) must EQUAL the HF tile input
    we used, and the HF logits of that tile x FLOW_SCALE_FACTOR are returned. The tiles come from
    the notebook's compute_grid_indices where its grid is valid (cases a, d) and from the
    repaired grid otherwise (b, c; for b the notebook's own 4 x (0,0) grid is also run and
    its difference recorded). The script asserts the two flows are bit-identical.
  * float64 diagnostics: the same HF model in float64 on the same inputs, blended in float64;
    recorded per case as a fraction of the tolerance (must be < 10 %).
  * mutation diagnostics: flows an engine would produce with plausible mistakes (patches taken
    from the whole frame instead of the cropped tile, uniform or pre-fix weights, no x20,
    u/v swapped, float32 normalisation) and whether the fixture's tolerance catches them.

haiku_flow/ (--only haiku): DeepMind's optical-flow model built by the colab's own construction
code (tools/deepmind_flow.py; sizes reduced textually to TRAIN_SIZE 48x64, 8 latents x 32,
2 self-attends, 2 heads), hk.transform init with jax.random.PRNGKey(1321), every parameter
perturbed (perturb_params), then:
  optical_flow_checkpoint.pystate  pickle.dumps of the params as dm-haiku returns them: plain
                                   dict {scope: {name: float32 ndarray}}, protocol 4 (the colab
                                   loads DeepMind's file with pickle.loads and passes it to apply)
  config.json                      PerceiverConfig with the tiny sizes (architectures
                                   ["PerceiverForOpticalFlow"], train_size [48, 64])
  frame1.png, frame2.png           54x86 (DeepMind's grid valid: ys [0,6] x xs [0,22])
  inputs.safetensors               inputs [1][2][27][48][64]: tile (0,0), DeepMind's
                                   patches_for_flow transposed to HF layout
  expected.safetensors             flow [54][86][2] (colab compute_optical_flow, x20), logits
                                   [1][48][64][2] (the colab's jitted apply on tile (0,0), x20),
                                   last_hidden_state [1][8][32] (encoder output, intercepted),
                                   tiles [4][2], tile_flows [4][48][64][2] (x20)
  expected_hf.safetensors          transformers on the same weights (HF conversion rules):
                                   logits (/100, no x20), last_hidden_state
  fixture.json                     description, profiles (flow-haiku-tiny, flow-tiny), versions,
                                   JAX float32 vs float64 (jax_enable_x64), haiku-vs-hf gap
  (fixture.json, not meta.json: tests/test_golden.c treats every <fixture>/meta.json as an HF
  golden fixture.) flow_ref's patches and blending are asserted to reproduce DeepMind's bit for
  bit on this fixture too.

Run:  python tools/make_flow_fixtures.py --deepmind-src /path/to/deepmind-research
      [--only tiles,haiku] [--out DIR] [--venv-haiku /work/venv-haiku] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import flow_ref  # noqa: E402

TILE = (48, 64)
MODEL_SEED = 1301
TINY_FLOW = dict(vocab_size=262, hidden_act="gelu", attention_probs_dropout_prob=0.1,
                 train_size=list(TILE), num_latents=8, d_latents=32, d_model=322,
                 num_blocks=1, num_self_attends_per_block=2, num_self_attention_heads=2,
                 num_cross_attention_heads=1, qk_channels=None, v_channels=None,
                 self_attention_widening_factor=1, cross_attention_widening_factor=1,
                 use_query_residual=True)
# name, (H, W), frames, seed, (dy, dx) texture motion per frame, (dy, dx) disc motion, description
CASES = [
    ("a_larger", (77, 111), 2, 1311, (1.5, 2.5), (-2.0, 3.0),
     "frame pair larger than the tile in both dimensions, not a multiple of the steps (28, 44); "
     "DeepMind's grid is valid and equals the repaired one: ys [0,28,29] x xs [0,44,47] = 9 tiles"),
    ("b_exact", (48, 64), 2, 1312, (-1.0, 2.0), (2.0, -1.5),
     "frame pair of exactly the tile size: one tile at (0,0). DeepMind's compute_grid_indices "
     "returns (0,0) four times (deepmind-research#265); the repaired grid has one tile"),
    ("c_repaired", (60, 100), 2, 1313, (2.0, -1.5), (1.0, 2.5),
     "size where DeepMind's unrepaired grid leaves the frame: ys [0,28,12] (a tile at y=28 "
     "needs rows 28..75 > 59) and xs [0,44,36] (44+64 > 100); repaired (clamp + dedupe) "
     "ys [0,12] x xs [0,36] = 4 tiles"),
    ("d_sequence", (50, 80), 3, 1314, (1.0, 1.5), (-1.5, -2.0),
     "3-frame sequence = 2 consecutive pairs (frame1->frame2, frame2->frame3); DeepMind's grid "
     "is valid: ys [0,2] x xs [0,16] = 4 tiles per pair"),
]
FLO_CASE = "a_larger"
# Haiku fixture: DeepMind's own model (colab construction, tiny sizes), same tile
HAIKU_SIZES = dict(train_size=TILE, num_self_attends_per_block=2, z_index_dim=8, num_z_channels=32,
                   num_self_attend_heads=2)
HAIKU_SEED = 1321            # jax.random.PRNGKey for init, NumPy seed for the perturbation
HAIKU_FRAMES = ((54, 86), 1322, (1.0, -2.0), (1.5, 1.0))  # size, seed, texture and disc motion
HAIKU_PICKLE = "optical_flow_checkpoint.pystate"
HAIKU_PICKLE_PROTOCOL = 4
MAX_FP64_TOL_USAGE = 0.1


# --------------------------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------------------------

def dump_json(obj, indent: int = 0) -> str:
    """JSON with 2-space indentation, but lists of scalars (and lists of such lists) on one line."""
    pad = "  " * indent

    def flat(x):
        return not isinstance(x, (dict, list)) or (isinstance(x, list) and all(flat(v) for v in x))

    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad}  {json.dumps(k)}: {dump_json(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and not flat(obj):
        items = [f"{pad}  {dump_json(v, indent + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj)


def write_json(path: Path, obj) -> None:
    text = dump_json(obj) + "\n"
    assert json.loads(text) == json.loads(json.dumps(obj))
    path.write_text(text)
    path.chmod(0o644)


def make_frames(H: int, W: int, n: int, seed: int, tex_motion, disc_motion) -> list[np.ndarray]:
    """Smooth random texture (12 sinusoids per channel, periods 7..40 px) translated by
    tex_motion per frame, plus a soft disc moving by disc_motion; uint8 RGB."""
    rng = np.random.default_rng(seed)
    k = 12
    period = rng.uniform(7, 40, (3, k))
    ang = rng.uniform(0, 2 * np.pi, (3, k))
    fx, fy = np.cos(ang) / period, np.sin(ang) / period
    phase = rng.uniform(0, 2 * np.pi, (3, k))
    amp = rng.uniform(0.5, 1.0, (3, k))
    disc_col = rng.uniform(0, 255, 3)
    r = min(H, W) * 0.18
    c0 = np.array([H * 0.45, W * 0.4])
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    frames = []
    for t in range(n):
        ty, tx = t * tex_motion[0], t * tex_motion[1]
        img = np.empty((H, W, 3))
        for c in range(3):
            s = np.zeros((H, W))
            for j in range(k):
                s += amp[c, j] * np.sin(2 * np.pi * (fx[c, j] * (xx - tx) + fy[c, j] * (yy - ty)) + phase[c, j])
            img[..., c] = 128 + 100 * s / amp[c].sum() * 2.2
        cy, cx = c0[0] + t * disc_motion[0], c0[1] + t * disc_motion[1]
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        alpha = np.clip(r - d + 0.5, 0, 1)[..., None]
        img = img * (1 - alpha) + disc_col * alpha
        frames.append(np.clip(np.rint(img), 0, 255).astype(np.uint8))
    return frames


def save_png(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(img, "RGB").save(path, format="PNG", compress_level=9)
    back = np.asarray(Image.open(path).convert("RGB"))
    if not np.array_equal(back, img):
        raise RuntimeError(f"{path}: PNG round trip changed the pixels")
    path.chmod(0o644)


# --------------------------------------------------------------------------------------------
# DeepMind stage (runs in the jax venv, NumPy + jax + DeepMind's code only)
# --------------------------------------------------------------------------------------------

def stage_dm_blend(args) -> int:
    """Independent path: the colab's compute_optical_flow with an HF-backed lookup model."""
    import jax
    import jax.numpy as jnp

    import deepmind_flow

    work = Path(args.work)
    req = json.loads((work / "dm_request.json").read_text())
    tile = tuple(req["tile"])
    ns = deepmind_flow.colab_helpers(args.deepmind_src, train_size=tile, use_jax=True)
    _, io_processors, _ = deepmind_flow.import_perceiver(args.deepmind_src)
    patches = jax.jit(io_processors.patches_for_flow)
    result = {"jax": jax.__version__, "cases": {}}
    arrays = {}
    for case in req["cases"]:
        name = case["name"]
        data = np.load(work / f"{name}.npz")
        frames = [data[f"frame{i}"] for i in range(case["n_frames"])]
        H, W = frames[0].shape[:2]
        ours = [tuple(o) for o in case["tiles"]]
        dm_grid = [tuple(int(v) for v in o) for o in ns["compute_grid_indices"]((H, W), patch_size=tile)]
        valid = flow_ref.grid_is_valid(dm_grid, H, W, tile)
        res = {"deepmind_grid": dm_grid, "deepmind_grid_valid": valid, "pairs": []}
        for p in range(case["n_frames"] - 1):
            tin = data[f"tile_inputs{p}"]     # [n][2][27][th][tw] what HF was given
            logits = data[f"tile_logits{p}"]  # [n][th][tw][2]
            calls = []

            def hf_model(params, rng, piece, _tin=tin, _logits=logits, _calls=calls):
                pt = np.asarray(patches(piece)).transpose(0, 1, 4, 2, 3)[0]  # [2][27][th][tw]
                if pt.shape != _tin.shape[1:]:
                    raise ValueError(f"crop of shape {tuple(piece.shape)}: not a full tile")
                hits = [i for i in range(len(_tin)) if np.array_equal(pt, _tin[i])]
                if not hits:
                    raise RuntimeError("DeepMind's patches_for_flow of a crop matches no HF tile input")
                _calls.append(hits[0])
                return jnp.asarray(_logits[hits[0]][None]) * ns["FLOW_SCALE_FACTOR"]

            deepmind_flow.set_model(ns, hf_model)
            img1, img2 = ns["normalize"](frames[p]), ns["normalize"](frames[p + 1])
            grid = dm_grid if valid else ours
            flow = np.asarray(ns["compute_optical_flow"](None, None, img1, img2, iter(grid),
                                                         patch_size=tile))[0]
            arrays[f"{name}_flow{p}"] = flow
            pr = {"grid_used": "deepmind" if valid else "repaired",
                  "tiles_matched": calls == list(range(len(ours)))}
            if not valid:
                calls.clear()
                try:
                    f2 = np.asarray(ns["compute_optical_flow"](None, None, img1, img2, iter(dm_grid),
                                                               patch_size=tile))[0]
                    pr["deepmind_grid_run"] = ("ran; max |flow - repaired-grid flow| = "
                                               f"{float(np.abs(f2 - flow).max()):.3g} "
                                               f"({len(dm_grid)} tile evaluations)")
                except Exception as e:  # noqa: BLE001 - recorded, expected for case c
                    pr["deepmind_grid_run"] = f"fails: {type(e).__name__}: {str(e)[:160]}"
            res["pairs"].append(pr)
        result["cases"][name] = res
    np.savez(work / "dm_result.npz", **arrays)
    (work / "dm_result.json").write_text(json.dumps(result))
    return 0


def perturb_params(params, seed: int) -> dict:
    """Seeded noise on every parameter (sorted name order), so that no parameter keeps a
    trivial init: biases 0.1 N, LayerNorm scale 1 + 0.1 N and offset 0.1 N, latents
    (pos_embs, init 0.02 N) + N(0,1), weights w + 0.2 N/sqrt(fan_in) (the decoder output w,
    zero-initialised by the colab's output_w_init=jnp.zeros, becomes N/sqrt(fan_in))."""
    rng = np.random.default_rng(seed)
    out = {}
    for scope in sorted(params):
        out[scope] = {}
        for name in sorted(params[scope]):
            a = np.asarray(params[scope][name])
            n = rng.standard_normal(a.shape)
            if name == "b" or name == "offset":
                v = a + 0.1 * n
            elif name == "scale":
                v = a + 0.1 * n
            elif name == "pos_embs":
                v = a + n
            elif name == "w":
                g = 1.0 if not np.any(a) else 0.2
                v = a + g * n / np.sqrt(a.shape[0])
            else:
                raise RuntimeError(f"perturb_params: no rule for {scope}/{name}")
            out[scope][name] = v.astype(a.dtype)
    return out


def stage_haiku(args) -> int:
    """DeepMind's own flow model (colab construction, tiny sizes): init, perturb, pickle,
    colab pipeline at float32 and float64."""
    import pickle

    import haiku as hk
    import jax
    import jax.numpy as jnp

    import deepmind_flow

    work = Path(args.work)
    req = json.loads((work / "haiku_request.json").read_text())
    tile = tuple(req["sizes"]["train_size"])
    ns = deepmind_flow.build_colab_model(args.deepmind_src, **{
        k: tuple(v) if k == "train_size" else v for k, v in req["sizes"].items()})
    assert tuple(ns["TRAIN_SIZE"]) == tile
    frames = np.load(work / "haiku_frames.npz")
    im1, im2 = frames["frame0"], frames["frame1"]
    H, W = im1.shape[:2]

    params0 = ns["optical_flow"].init(jax.random.PRNGKey(req["seed"]),
                                      jnp.zeros((1, 2) + tile + (3,), jnp.float32))
    params = perturb_params(jax.device_get(params0), req["seed"])
    if type(params0) is not dict or any(type(v) is not dict for v in params0.values()):
        raise RuntimeError(f"dm-haiku init returned {type(params0)}; expected plain dicts")
    blob = pickle.dumps(params, protocol=req["protocol"])
    (Path(req["pickle"])).write_bytes(blob)
    back = pickle.loads(blob)
    assert all(np.array_equal(back[s][n], params[s][n]) for s in params for n in params[s])

    rng = jax.random.PRNGKey(42)  # the colab's rng (unused by the model: dropout rate 0)
    grid = [tuple(int(v) for v in o) for o in ns["compute_grid_indices"](im1.shape)]
    if not flow_ref.grid_is_valid(grid, H, W, tile) or grid != flow_ref.grid_origins(H, W, tile):
        raise RuntimeError(f"haiku frames {H}x{W}: DeepMind grid {grid} is not valid")

    def pipeline(p, dtype):
        """Colab cells 'Compute optical flow' + per-tile apply + run/latents on tile 0."""
        flow = np.asarray(ns["compute_optical_flow"](p, rng, ns["normalize"](im1), ns["normalize"](im2),
                                                     iter(grid)))[0]
        imgs = jnp.stack([ns["normalize"](im1), ns["normalize"](im2)], axis=0)[None]
        assert imgs.dtype == dtype
        tiles = []
        for y, x in grid:
            piece = imgs[..., y:y + tile[0], x:x + tile[1], :]
            tiles.append(np.asarray(ns["_apply_optical_flow_model"](p, rng, piece))[0])
        piece0 = imgs[..., 0:tile[0], 0:tile[1], :]
        inputs = np.asarray(ns["io_processors"].patches_for_flow(piece0)).transpose(0, 1, 4, 2, 3)
        lat_fn = deepmind_flow.encoder_latents_fn(ns, args.deepmind_src)
        flow0, z = jax.jit(lat_fn.apply)(p, rng, piece0)
        return flow, np.stack(tiles), inputs, np.asarray(flow0), np.asarray(z)

    res = {}
    flow, tiles, inputs, flow0, z = pipeline(params, jnp.float32)
    res.update(flow=flow, tile_flows=tiles, inputs=inputs, logits=tiles[0][None],
               logits_latents_fn=flow0, last_hidden_state=z)
    jax.config.update("jax_enable_x64", True)
    p64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    flow64, tiles64, inputs64, _, z64 = pipeline(p64, jnp.float64)
    res.update(flow_f64=flow64, tile_flows_f64=tiles64, logits_f64=tiles64[0][None],
               last_hidden_state_f64=z64, inputs_f64=inputs64)
    res["tiles"] = np.asarray(grid, np.int32)
    for scope in params:
        for name, a in params[scope].items():
            res[f"param:{scope}/{name}"] = a
    np.savez(work / "haiku_result.npz", **res)
    info = {"jax": jax.__version__, "haiku": hk.__version__, "numpy": np.__version__,
            "python": sys.version.split()[0], "n_arrays": sum(len(v) for v in params.values()),
            "n_values": int(sum(a.size for v in params.values() for a in v.values())),
            "pickle_bytes": len(blob)}
    (work / "haiku_result.json").write_text(json.dumps(info))
    return 0


# --------------------------------------------------------------------------------------------
# main stage (reference venv: torch + transformers)
# --------------------------------------------------------------------------------------------

def hf_tile_logits(model, tin: np.ndarray, dtype=None) -> np.ndarray:
    """Per-tile HF forward (batch 1 each): [n][2][27][th][tw] -> [n][th][tw][2]."""
    import torch

    out = []
    with torch.no_grad():
        for t in tin:
            x = torch.from_numpy(np.ascontiguousarray(t[None]))
            if dtype is not None:
                x = x.to(dtype)
            out.append(model(inputs=x).logits[0].numpy())
    return np.stack(out)


def blend64(tile_flows, origins, H, W) -> np.ndarray:
    th, tw = tile_flows.shape[1:3]
    w = flow_ref.tile_weights((th, tw)).astype(np.float64)[:, :, None]
    acc = np.zeros((H, W, 2))
    cnt = np.zeros((H, W, 1))
    for f, (y, x) in zip(tile_flows, origins):
        acc[y:y + th, x:x + tw] += f.astype(np.float64) * w
        cnt[y:y + th, x:x + tw] += w
    return acc / cnt


def mutations(model, frames, origins, tile, flows, tile_logits, atol, rtol) -> dict:
    """Whether the fixture (flow, tolerance profile) catches plausible engine mistakes."""
    import pcl_ref

    H, W = frames[0].shape[:2]
    th, tw = tile

    def caught(alt_flows):
        return not all(pcl_ref.compare(a, e, atol, rtol)["pass"] for a, e in zip(alt_flows, flows))

    res = {}
    # (1) patches cut from the whole frame (neighbours across tile borders) instead of the crop
    alt = []
    for p in range(len(frames) - 1):
        n1, n2 = flow_ref.normalize_frame(frames[p]), flow_ref.normalize_frame(frames[p + 1])
        full = np.stack([flow_ref.frame_patches(n1), flow_ref.frame_patches(n2)])  # [2][27][H][W]
        tin = np.stack([full[:, :, y:y + th, x:x + tw] for y, x in origins])
        alt.append(flow_ref.flow_from_tile_logits(hf_tile_logits(model, tin), origins, H, W))
    res["patches_from_whole_frame_not_tile"] = caught(alt) if len(origins) > 1 else None
    # (2) normalisation in float32 arithmetic (1 ulp on half the byte values)
    alt = []
    for p in range(len(frames) - 1):
        n1, n2 = [(f.astype(np.float32) / np.float32(255) * np.float32(2) - np.float32(1))
                  for f in (frames[p], frames[p + 1])]
        tin = np.concatenate([flow_ref.tile_inputs(n1, n2, y, x, tile) for y, x in origins])
        alt.append(flow_ref.flow_from_tile_logits(hf_tile_logits(model, tin), origins, H, W))
    res["normalisation_in_float32_arithmetic (1-ulp inputs; not expected to be caught)"] = caught(alt)
    # (3) blending variants on the same tile logits
    def reblend(weights):
        out = []
        for tl in tile_logits:
            f = tl * np.float32(20)
            acc = np.zeros((H, W, 2), np.float32)
            cnt = np.zeros((H, W, 1), np.float32)
            for t, (y, x) in zip(f, origins):
                acc[y:y + th, x:x + tw] += t * weights[:, :, None]
                cnt[y:y + th, x:x + tw] += weights[:, :, None]
            out.append(acc / cnt)
        return out
    if len(origins) > 1:
        res["uniform_weights"] = caught(reblend(np.ones(tile, np.float32)))
        # weights 1 + min(distance to top/left edge) only (one-sided, like the pre-fix colab of
        # deepmind-research#259, shifted by 1 to stay positive)
        yy, xx = np.meshgrid(np.arange(th), np.arange(tw), indexing="ij")
        res["one_sided_weights_1+min(x,y)"] = caught(reblend((np.minimum(xx, yy) + 1).astype(np.float32)))
    # a legitimate variant (1 ulp): must NOT be caught
    res["true_division_instead_of_reciprocal (legitimate)"] = caught(
        reblend(flow_ref.tile_weights(tile).astype(np.float32)))
    res["no_x20"] = caught([f / np.float32(20) for f in flows])
    res["u_v_swapped"] = caught([f[..., ::-1] for f in flows])
    return res


def write_model(out: Path):
    import torch
    from transformers import PerceiverConfig, PerceiverForOpticalFlow

    import pcl_ref

    if out.exists():
        shutil.rmtree(out)
    torch.manual_seed(MODEL_SEED)
    model = PerceiverForOpticalFlow(PerceiverConfig(**TINY_FLOW)).eval()
    model.config.architectures = ["PerceiverForOpticalFlow"]
    pcl_ref.randomize_parameters(model, MODEL_SEED)
    pcl_ref.save_hf_model(model, out)
    for f in out.iterdir():
        f.chmod(0o644)
    re = PerceiverForOpticalFlow.from_pretrained(str(out)).eval()
    sd0, sd1 = model.state_dict(), re.state_dict()
    if sd0.keys() != sd1.keys() or any(not torch.equal(sd0[k], sd1[k]) for k in sd0):
        raise RuntimeError("reloaded flow model differs")
    meta = {
        "class": "PerceiverForOpticalFlow",
        "seed": MODEL_SEED,
        **pcl_ref.versions(),
        "description": ("Tiny random-weight PerceiverForOpticalFlow for the tiled-flow fixtures: "
                        "train_size (tile) 48x64, 8 latents x 32, 2 self-attention layers (2 heads), "
                        "1 cross head, d_model 322 (54->64 patches linear + 258 Fourier channels, "
                        "64 bands, max_resolution = train_size); every parameter randomised "
                        "(pcl_ref.randomize_parameters: LayerNorm 1+0.1N / 0.1N, biases 0.1N, "
                        "Linear N/sqrt(fan_in), latents N)."),
        "num_parameters": pcl_ref.count_parameters(model),
        "model_safetensors_bytes": (out / "model.safetensors").stat().st_size,
        "generated_by": "tools/make_flow_fixtures.py",
    }
    write_json(out / "meta.json", meta)
    return re


def make_tiles(args) -> None:
    import torch
    from safetensors.numpy import save_file

    import pcl_ref

    pcl_ref.setup_torch(args.threads)
    root = args.out / "flow_tiles"
    root.mkdir(parents=True, exist_ok=True)
    model = write_model(root / "model")
    m64 = copy.deepcopy(model).double()
    tol = pcl_ref.load_tolerances()["models"]
    tl_prof, fl_prof = "flow-tiny", "flow-tiles-tiny"
    tl_atol, tl_rtol = float(tol[tl_prof]["atol"]), float(tol[tl_prof]["rtol"])
    fl_atol, fl_rtol = float(tol[fl_prof]["atol"]), float(tol[fl_prof]["rtol"])

    made = {}
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        req = {"tile": list(TILE), "cases": []}
        for name, (H, W), n_frames, seed, tex, disc, desc in CASES:
            d = root / name
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
            frames = make_frames(H, W, n_frames, seed, tex, disc)
            for i, f in enumerate(frames):
                save_png(d / f"frame{i + 1}.png", f)
            origins = flow_ref.grid_origins(H, W, TILE)
            tin_all, logits_all, flows, flows64, logits64 = [], [], [], [], []
            for p in range(n_frames - 1):
                n1, n2 = flow_ref.normalize_frame(frames[p]), flow_ref.normalize_frame(frames[p + 1])
                tin = np.concatenate([flow_ref.tile_inputs(n1, n2, y, x, TILE) for y, x in origins])
                lg = hf_tile_logits(model, tin)
                tin_all.append(tin)
                logits_all.append(lg)
                flows.append(flow_ref.flow_from_tile_logits(lg, origins, H, W))
                lg64 = hf_tile_logits(m64, tin, torch.float64)
                logits64.append(lg64)
                flows64.append(blend64(lg64 * 20.0, origins, H, W))
            flow = np.stack(flows)
            tile_logits = np.stack(logits_all)
            assert flow.dtype == np.float32 and tile_logits.dtype == np.float32
            assert np.isfinite(flow).all() and np.isfinite(tile_logits).all()
            np.savez(td / f"{name}.npz", **{f"frame{i}": f for i, f in enumerate(frames)},
                     **{f"tile_inputs{p}": t for p, t in enumerate(tin_all)},
                     **{f"tile_logits{p}": t for p, t in enumerate(logits_all)})
            req["cases"].append({"name": name, "n_frames": n_frames, "tiles": origins})
            made[name] = dict(H=H, W=W, n_frames=n_frames, seed=seed, tex=tex, disc=disc, desc=desc,
                              frames=frames, origins=origins, flow=flow, tile_logits=tile_logits,
                              flows64=np.stack(flows64), logits64=np.stack(logits64))
        (td / "dm_request.json").write_text(json.dumps(req))
        cmd = [f"{args.venv_haiku}/bin/python", str(Path(__file__).resolve()), "--stage", "dm-blend",
               "--work", str(td), "--deepmind-src", str(args.deepmind_src)]
        print("independent path: running DeepMind's compute_optical_flow in", args.venv_haiku, "...")
        subprocess.run(cmd, check=True)
        dm = json.loads((td / "dm_result.json").read_text())
        dm_flows = dict(np.load(td / "dm_result.npz"))

    # reload check: the saved model folder reproduces one tile's logits exactly
    from transformers import PerceiverForOpticalFlow
    again = PerceiverForOpticalFlow.from_pretrained(str(root / "model")).eval()
    c0 = made[CASES[0][0]]
    n1, n2 = flow_ref.normalize_frame(c0["frames"][0]), flow_ref.normalize_frame(c0["frames"][1])
    y, x = c0["origins"][0]
    if not np.array_equal(hf_tile_logits(again, flow_ref.tile_inputs(n1, n2, y, x, TILE))[0],
                          c0["tile_logits"][0][0]):
        raise RuntimeError("reloaded model does not reproduce the tile logits exactly")

    for name, c in made.items():
        d = root / name
        dmc = dm["cases"][name]
        for p in range(c["n_frames"] - 1):
            ind = dm_flows[f"{name}_flow{p}"]
            same = np.array_equal(ind, c["flow"][p])
            if not same or not dmc["pairs"][p]["tiles_matched"]:
                raise RuntimeError(f"{name} pair {p}: DeepMind's compute_optical_flow with the HF tile "
                                   f"logits differs from flow_ref (max {np.abs(ind - c['flow'][p]).max():.3g}, "
                                   f"tiles matched {dmc['pairs'][p]['tiles_matched']})")
        save_file({"flow": c["flow"], "tiles": np.asarray(c["origins"], np.int32).reshape(-1, 2),
                   "tile_logits": c["tile_logits"]}, str(d / "expected.safetensors"),
                  metadata={"format": "pt"})
        (d / "expected.safetensors").chmod(0o644)
        if name == FLO_CASE:
            flow_ref.write_flo(d / "expected.flo", c["flow"][0])
            (d / "expected.flo").chmod(0o644)
            import cv2
            if not np.array_equal(cv2.readOpticalFlow(str(d / "expected.flo")), c["flow"][0]):
                raise RuntimeError("cv2.readOpticalFlow disagrees with expected.flo")
        fp64 = {
            "tile_logits": {k: v for k, v in pcl_ref.compare(c["tile_logits"], c["logits64"], tl_atol, tl_rtol).items()
                            if k in ("max_abs_err", "max_rel_err", "nmse", "tol_usage")},
            "flow": {k: v for k, v in pcl_ref.compare(c["flow"], c["flows64"], fl_atol, fl_rtol).items()
                     if k in ("max_abs_err", "max_rel_err", "nmse", "tol_usage")},
        }
        worst = max(v["tol_usage"] for v in fp64.values())
        if worst > MAX_FP64_TOL_USAGE:
            raise RuntimeError(f"{name}: HF float32 vs float64 uses {worst:.3f} of the tolerance")
        mut = mutations(model, c["frames"], c["origins"], TILE, list(c["flow"]), c["tile_logits"],
                        fl_atol, fl_rtol)
        n = len(c["origins"])
        meta = {
            "description": c["desc"],
            "model": "../model",
            "frames": [f"frame{i + 1}.png" for i in range(c["n_frames"])],
            "pairs": [[f"frame{i + 1}.png", f"frame{i + 2}.png"] for i in range(c["n_frames"] - 1)],
            "frame_size": [c["H"], c["W"]],
            "tile": list(TILE),
            "min_overlap": flow_ref.MIN_OVERLAP,
            "tiles": [list(o) for o in c["origins"]],
            "deepmind_grid": [list(o) for o in dmc["deepmind_grid"]],
            "deepmind_grid_valid": dmc["deepmind_grid_valid"],
            "tolerance": {"flow": fl_prof, "tile_logits": tl_prof},
            "seed": c["seed"],
            "frame_motion": {"texture_dy_dx_per_frame": list(c["tex"]), "disc_dy_dx_per_frame": list(c["disc"])},
            **pcl_ref.versions(),
            "outputs": {
                "flow": {"dtype": "float32", "shape": list(c["flow"].shape),
                         "units": "pixels; [..., 0] = u (+x right), [..., 1] = v (+y down); "
                                  "= 20 x blended tile logits"},
                "tiles": {"dtype": "int32", "shape": [n, 2], "units": "tile origin (y, x) in pixels, processing order"},
                "tile_logits": {"dtype": "float32", "shape": list(c["tile_logits"].shape),
                                "units": "HF PerceiverForOpticalFlow logits of each tile (decoder / 100, no x20)"},
            },
            "files": ["expected.safetensors"] + (["expected.flo (flow[0], Middlebury)"] if name == FLO_CASE else []),
            "diagnostics": {
                "hf_fp32_vs_fp64": fp64,
                "independent_path": {
                    "what": ("DeepMind's colab normalize + compute_optical_flow (jax.numpy, CPU, "
                             f"jax {dm['jax']}) fed HF tile logits through a lookup keyed by DeepMind's "
                             "patches_for_flow of each crop; bit-identical to 'flow'"),
                    "pairs": dmc["pairs"],
                },
                "mutation_caught": mut,
                "max_abs_flow": float(np.abs(c["flow"]).max()),
            },
            "generated_by": "tools/make_flow_fixtures.py",
        }
        write_json(d / "meta.json", meta)
        print(f"{name}: {c['H']}x{c['W']}, {c['n_frames']} frames, {n} tiles {c['origins']}; "
              f"DeepMind grid {'valid' if dmc['deepmind_grid_valid'] else 'INVALID'} {dmc['deepmind_grid']}")
        print(f"    fp32-vs-fp64: " + "; ".join(f"{k} max_abs={v['max_abs_err']:.2e} tol_usage={v['tol_usage']:.4f}"
                                                for k, v in fp64.items()))
        print(f"    independent path: {dmc['pairs']}")
        print(f"    mutations caught: {mut}")
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    print(f"total size of {root}: {total / 1e6:.2f} MB")


def make_haiku(args) -> None:
    import torch
    from safetensors.numpy import save_file
    from transformers import PerceiverConfig, PerceiverForOpticalFlow

    import haiku_ref
    import pcl_ref

    pcl_ref.setup_torch(args.threads)
    d = args.out / "haiku_flow"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    (H, W), fseed, tex, disc = HAIKU_FRAMES
    frames = make_frames(H, W, 2, fseed, tex, disc)
    for i, f in enumerate(frames):
        save_png(d / f"frame{i + 1}.png", f)
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        np.savez(td / "haiku_frames.npz", frame0=frames[0], frame1=frames[1])
        (td / "haiku_request.json").write_text(json.dumps({
            "sizes": {k: list(v) if k == "train_size" else v for k, v in HAIKU_SIZES.items()},
            "seed": HAIKU_SEED, "pickle": str(d / HAIKU_PICKLE), "protocol": HAIKU_PICKLE_PROTOCOL}))
        cmd = [f"{args.venv_haiku}/bin/python", str(Path(__file__).resolve()), "--stage", "haiku",
               "--work", str(td), "--deepmind-src", str(args.deepmind_src)]
        print("DeepMind's flow model: running the colab code in", args.venv_haiku, "...")
        subprocess.run(cmd, check=True)
        r = dict(np.load(td / "haiku_result.npz"))
        info = json.loads((td / "haiku_result.json").read_text())
    (d / HAIKU_PICKLE).chmod(0o644)
    tiles = [tuple(int(v) for v in o) for o in r["tiles"]]

    # our NumPy pipeline must agree with DeepMind's, bit for bit
    n1, n2 = flow_ref.normalize_frame(frames[0]), flow_ref.normalize_frame(frames[1])
    if not np.array_equal(flow_ref.tile_inputs(n1, n2, 0, 0, TILE), r["inputs"]):
        raise RuntimeError("flow_ref.tile_inputs != DeepMind's patches_for_flow on tile (0,0)")
    if not np.array_equal(flow_ref.blend(r["tile_flows"], tiles, H, W), r["flow"]):
        raise RuntimeError("flow_ref.blend of DeepMind's tile outputs != DeepMind's compute_optical_flow")
    lat_vs_apply = float(np.abs(r["logits_latents_fn"] - r["logits"]).max())

    # config.json (tiny sizes; the engine cannot read heads from weights)
    cfg = PerceiverConfig(**dict(TINY_FLOW, train_size=list(TILE),
                                 num_latents=HAIKU_SIZES["z_index_dim"],
                                 d_latents=HAIKU_SIZES["num_z_channels"],
                                 num_self_attends_per_block=HAIKU_SIZES["num_self_attends_per_block"],
                                 num_self_attention_heads=HAIKU_SIZES["num_self_attend_heads"]))
    cfg.architectures = ["PerceiverForOpticalFlow"]
    cfg.save_pretrained(d)
    (d / "config.json").chmod(0o644)

    # the same weights through HF's conversion rules and transformers (hf numerics)
    flat = {k[len("param:"):]: v for k, v in r.items() if k.startswith("param:")}
    sd = haiku_ref.haiku_to_hf(flat, "optical_flow")
    model = PerceiverForOpticalFlow(cfg).eval()
    ref = model.state_dict()
    if set(sd) != set(ref) or any(tuple(sd[k].shape) != tuple(ref[k].shape) for k in sd):
        raise RuntimeError(f"HF conversion of the DeepMind params does not fit PerceiverForOpticalFlow: "
                           f"missing {sorted(set(ref) - set(sd))[:5]}, extra {sorted(set(sd) - set(ref))[:5]}")
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}, strict=True)
    hf = pcl_ref.hf_forward(model, {"inputs": torch.from_numpy(r["inputs"])})
    hf = {k: v.numpy() for k, v in hf.items()}

    expected = {"flow": r["flow"], "logits": r["logits"],
                "last_hidden_state": r["last_hidden_state"], "tiles": r["tiles"],
                "tile_flows": r["tile_flows"]}
    for k, v in expected.items():
        assert v.dtype == (np.int32 if k == "tiles" else np.float32), (k, v.dtype)
    save_file(expected, str(d / "expected.safetensors"), metadata={"format": "pt"})
    # `perceiver-cl run` refuses unexpected tensors in its inputs file: inputs on their own
    save_file({"inputs": r["inputs"]}, str(d / "inputs.safetensors"), metadata={"format": "pt"})
    save_file({"logits": hf["logits"], "last_hidden_state": hf["last_hidden_state"]},
              str(d / "expected_hf.safetensors"), metadata={"format": "pt"})
    for f in ("inputs.safetensors", "expected.safetensors", "expected_hf.safetensors"):
        (d / f).chmod(0o644)

    tol = pcl_ref.load_tolerances()["models"]
    prof = "flow-haiku-tiny"
    atol, rtol = float(tol[prof]["atol"]), float(tol[prof]["rtol"])
    fp64 = {}
    for k, k64 in (("flow", "flow_f64"), ("logits", "logits_f64"), ("last_hidden_state", "last_hidden_state_f64"),
                   ("tile_flows", "tile_flows_f64")):
        s = pcl_ref.compare(r[k], r[k64], atol, rtol)
        fp64[k] = {x: s[x] for x in ("max_abs_err", "max_rel_err", "nmse", "tol_usage")}
    worst = max(v["tol_usage"] for v in fp64.values())
    if worst > MAX_FP64_TOL_USAGE:
        raise RuntimeError(f"haiku_flow: JAX float32 vs float64 uses {worst:.3f} of '{prof}'")
    inputs_f64_err = float(np.abs(r["inputs_f64"] - r["inputs"]).max())
    gap = {"logits_x20": pcl_ref.compare(r["logits"], hf["logits"] * np.float32(20), atol, rtol),
           "last_hidden_state": pcl_ref.compare(r["last_hidden_state"], hf["last_hidden_state"], atol, rtol)}
    gap = {k: {x: v[x] for x in ("max_abs_err", "tol_usage", "pass")} for k, v in gap.items()}

    meta = {
        "description": ("DeepMind's own optical-flow Perceiver (perceiver.py / io_processors.py and the "
                        "optical_flow colab's model construction, executed from --deepmind-src; sizes "
                        "reduced textually: TRAIN_SIZE 48x64, 8 latents x 32, 2 self-attends, 2 self heads), "
                        "hk.transform init with jax.random.PRNGKey(seed), then every parameter perturbed "
                        "(make_flow_fixtures.perturb_params). Run with the colab's code under JAX float32 on "
                        "CPU (the colab's jax.jit(optical_flow.apply), rng PRNGKey(42))."),
        "checkpoint": {
            "file": HAIKU_PICKLE,
            "structure": ("pickle.dumps(params) of the dm-haiku init output after perturbation: a plain "
                          "dict {module scope: {param name: numpy.ndarray float32}} (2 levels, like "
                          "DeepMind's optical_flow_checkpoint.pystate, which the colab loads with "
                          "pickle.loads and passes straight to apply; no 'params'/'state' wrapper), "
                          f"protocol {HAIKU_PICKLE_PROTOCOL}, NumPy {info['numpy']} (numpy._core paths)"),
            "arrays": info["n_arrays"], "values": info["n_values"], "bytes": info["pickle_bytes"],
        },
        "config": "config.json (PerceiverConfig with the tiny sizes, train_size [48, 64]); without it the "
                  "engine's built-in full-size preset would not fit the weights",
        "frames": ["frame1.png", "frame2.png"],
        "frame_size": [H, W],
        "tile": list(TILE),
        "tiles": [list(o) for o in tiles],
        "deepmind_grid_valid": True,
        "tolerance_haiku": prof,
        "tolerance_hf": "flow-tiny",
        "seed": HAIKU_SEED,
        "frame_seed": fseed,
        "versions": {"jax": info["jax"], "dm-haiku": info["haiku"], "numpy": info["numpy"],
                     "python": info["python"], **pcl_ref.versions(),
                     "deepmind-research": "perceiver/ as in --deepmind-src (tested at f5de0ed), unpatched"},
        "outputs": {
            "inputs.safetensors": {
                "inputs": {"dtype": "float32", "shape": list(r["inputs"].shape),
                           "units": "HF layout [B][2][27][h][w] of tile (0,0): DeepMind's patches_for_flow "
                                    "[B][2][h][w][27] transposed (the input of `run`)"},
            },
            "expected.safetensors": {
                "flow": {"dtype": "float32", "shape": list(r["flow"].shape),
                         "units": "pixels (u, v): the colab's compute_optical_flow with its own grid, x20 included"},
                "logits": {"dtype": "float32", "shape": list(r["logits"].shape),
                           "units": "DeepMind's transformed function on that tile = decoder / 100 * 20 "
                                    "(what `perceiver-cl run --numerics haiku` must output)"},
                "last_hidden_state": {"dtype": "float32", "shape": list(r["last_hidden_state"].shape),
                                      "units": "encoder latents z (PerceiverEncoder output, via hk.intercept_methods)"},
                "tiles": {"dtype": "int32", "shape": list(r["tiles"].shape), "units": "tile origins (y, x)"},
                "tile_flows": {"dtype": "float32", "shape": list(r["tile_flows"].shape),
                               "units": "DeepMind's transformed-function output per tile (x20 included)"},
            },
            "expected_hf.safetensors": {
                "logits": {"dtype": "float32", "shape": list(hf["logits"].shape),
                           "units": "transformers on the same weights (HF conversion rules) and the same "
                                    "inputs: hf numerics, decoder / 100, NO x20"},
                "last_hidden_state": {"dtype": "float32", "shape": list(hf["last_hidden_state"].shape)},
            },
        },
        "diagnostics": {
            "jax_fp32_vs_fp64": fp64,
            "fp64_note": ("jax_enable_x64 with float64 params and frames through the same DeepMind code; "
                          "DeepMind's build_linear_positions hard-codes float32 positions, so the float64 run "
                          "still uses float32 position grids"),
            "inputs_fp32_vs_fp64_max_abs": inputs_f64_err,
            "latents_transform_vs_apply_logits_max_abs": lat_vs_apply,
            "haiku_minus_hf": gap,
            "flow_ref_agrees": "tools/flow_ref.py tile_inputs and blend reproduce DeepMind's patches and "
                               "compute_optical_flow bit for bit on this fixture",
        },
        "generated_by": "tools/make_flow_fixtures.py --only haiku",
    }
    write_json(d / "fixture.json", meta)
    print(f"haiku_flow: {H}x{W}, tiles {tiles}; pickle {info['n_arrays']} arrays, {info['pickle_bytes']} bytes")
    print("    jax fp32-vs-fp64: " + "; ".join(f"{k} max_abs={v['max_abs_err']:.2e} tol_usage={v['tol_usage']:.4f}"
                                              for k, v in fp64.items()))
    print(f"    haiku - hf: {gap}; latents-fn vs apply logits {lat_vs_apply:.2e}")
    total = sum(p.stat().st_size for p in d.iterdir())
    print(f"total size of {d}: {total / 1e6:.2f} MB")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE.parent / "tests" / "fixtures")
    ap.add_argument("--deepmind-src", type=Path, required=True,
                    help="folder containing perceiver/ of google-deepmind/deepmind-research")
    ap.add_argument("--venv-haiku", default="/work/venv-haiku",
                    help="venv with jax, dm-haiku, einops (tools/requirements-haiku.txt)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--only", default="", help="comma-separated subset of: tiles, haiku (default both)")
    ap.add_argument("--stage", default="main", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.stage == "dm-blend":
        return stage_dm_blend(args)
    if args.stage == "haiku":
        return stage_haiku(args)
    only = [s for s in args.only.split(",") if s] or ["tiles", "haiku"]
    bad = set(only) - {"tiles", "haiku"}
    if bad:
        ap.error(f"unknown --only item(s) {sorted(bad)}")
    if "tiles" in only:
        make_tiles(args)
    if "haiku" in only:
        make_haiku(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
