#!/usr/bin/env python3
"""Generate tests/fixtures/linspace/cases.json: float32 bit patterns of torch.linspace and
jnp.linspace for every (start, stop, n) the Perceiver models use, plus a few complete Fourier
position-feature tensors from transformers and from DeepMind's position_encoding.py.

torch.linspace(a, b, n, dtype=float32) on CPU, as observed with torch 2.15 (checked here for
every listed case and for RANDOM_CASES random (a, b, n), in two processes: the CPU's best ATen
kernel capability (AVX2 here) and ATEN_CPU_CAPABILITY=default):

    n == 1:  [a]
    step   = float32( float32(b - a) / float32(n - 1) )     (one float32 subtraction, one division)
    i <  n/2 (integer division):  v_i = a + (float)i * step
    i >= n/2:                     v_i = b - (float)(n - 1 - i) * step

i.e. start + i*step for the first half and stop - (n-1-i)*step for the second half, element by
element (no vector-chunk effects), with ONE difference between kernel builds:
  * AVX2 (and presumably AVX-512) kernels, which torch picks on any x86 CPU of the last decade
    and which produced every HF value in this repository: each v_i is a FUSED multiply-add, one
    rounding: v_i = fmaf(step, (float)i, a), resp. fmaf(-step, (float)(n-1-i), b) (C <math.h>
    fmaf; correctly rounded, hardware or software alike). 0 mismatches.
  * ATEN_CPU_CAPABILITY=default (no FMA in the build): the same expressions rounded twice,
    v_i = a + (float)(step * (float)i). 0 mismatches. The two differ in the last bit of many
    elements, so torch.linspace itself is CPU-dependent at 1 ulp.
v_0 = a and v_{n-1} = b exactly in both.

jnp.linspace(a, b, n, dtype=float32) (jax 0.10.2, XLA:CPU) is NOT the formula of haiku-vs-hf.md
G8 (t_i = i/(n-1); a*(1-t_i) + b*t_i; last = b), which reproduces few cases exactly: jnp.linspace
is jitted, and XLA rewrites it (optimized HLO) to r = float32(1/(n-1)) (constant), t_i = i*r,
a*(1 - t_i) + i*(b*r), and LLVM contracts part of it into an FMA. The closest closed form,
recorded as "xla" below, is
    r = 1/(float)(n-1);  t_i = (float)i * r;  k_i = a * (1 - t_i);  v_i = fmaf((float)i, b*r, k_i)
with v_{n-1} = b, n == 1: [a]. Measured (jax 0.10.2, this CPU): bit-exact on 35 of the 38 listed
cases (not n = 368, 496, 1920, which XLA evidently evaluates differently) and on 1338 of 3000
random cases (74 % of the elements), never more than 2 ulp of max(|a|,|b|) off; the G8 formula
is bit-exact on 7 of 38 listed cases, within 3 ulp (statistics in cases.json random_check.jax). Inside a bigger jitted graph (the
DeepMind model) XLA may fuse differently again, so JAX's linspace bits are not a stable target:
the haiku-profile tolerances allow for ~1 ulp in positions and frequencies. The jitted values of
the listed cases are recorded where they differ from the eager call.

Fourier features (perceiver-io.md 4.4): positions = build_linear_positions(index_dims) (ij meshgrid
of linspace(-1, 1, n_d), flattened row-major), freqs_d = linspace(1, max_res_d/2, K), features
[pos_0..pos_{D-1}, sin(pi*f) (d-major, k-minor), cos(pi*f)] with f = pos_d * freq_{d,k} (float32
product) and pi*f a float32 product with float32(pi). Both implementations are stored in full.

cases.json layout (all floats as 8-digit lowercase hex of the float32 bit pattern, e.g. 3f800000):
  {"linspace": [{"a": float, "b": float, "n": int, "use": str, "torch": [hex], "jax": [hex],
                 ("jax_jit": [hex] only if it differs from "jax")}],
   "fourier": [{"name", "index_dims", "num_bands", "max_resolution", "shape": [N, C],
                "hf": [hex, row-major], "deepmind": [hex], "n_differ", "max_abs_diff"}],
   "random_check": {...}, "versions": {...}, "comment": ...}

Run (two venvs: torch here, jax + DeepMind's code in --venv-haiku):
  python tools/make_linspace_fixture.py --deepmind-src /path/to/deepmind-research
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

F32 = np.float32
RANDOM_CASES = 3000
RANDOM_SEED = 4096


def case_list() -> list[tuple[float, float, int, str]]:
    cases = []
    for n in (6, 7, 8, 13, 16, 20, 24, 32, 48, 55, 56, 64, 224, 368, 496, 1920):
        cases.append((-1.0, 1.0, n, "position grid linspace(-1, 1, n)"))
    for r, k, use in ((224, 64, "ImageNet Fourier 224"), (56, 64, "ImageNet conv 56"),
                      (368, 64, "flow height"), (496, 64, "flow width"),
                      (16, 32, "multimodal time 16"), (56, 32, "multimodal space 56"),
                      (30720, 192, "multimodal audio 30720"),
                      (48, 64, "flow_tiles/haiku_flow tile height"), (64, 64, "flow_tiles/haiku_flow tile width"),
                      (6, 64, "flow_small height"), (8, 64, "flow_small width"),
                      (1000, 8, "fourier 1-D case below")):
        cases.append((1.0, r / 2, k, f"Fourier frequencies linspace(1, {r}/2, {k}): {use}"))
    for a, b, n in ((-1.0, 1.0, 1), (-1.0, 1.0, 2), (-1.0, 1.0, 3), (0.0, 1.0, 2), (-3.7, 11.3, 17),
                    (2.5, -2.5, 9), (0.001, 1000.0, 33), (1.0, 1.0, 5), (-100.25, 7.125, 101),
                    (1e-8, 3e-8, 11)):
        cases.append((a, b, n, "odd case"))
    return cases


def hexs(a) -> list[str]:
    return [f"{v:08x}" for v in np.asarray(a, F32).ravel().view(np.uint32)]


# --------------------------------------------------------------------------------------------
# the documented formulas (NumPy, exact single-rounding FMA)
# --------------------------------------------------------------------------------------------

def _round_f32_exact(q: Fraction) -> np.float32:
    """Correctly rounded (nearest-even) float32 of a rational (normal range)."""
    if q == 0:
        return F32(0)
    neg = q < 0
    q = -q if neg else q
    e = q.numerator.bit_length() - q.denominator.bit_length()
    while Fraction(2) ** e > q:
        e -= 1
    while Fraction(2) ** (e + 1) <= q:
        e += 1
    scale = Fraction(2) ** (max(e, -126) - 23)
    m = q / scale
    fl = m.numerator // m.denominator
    rem = m - fl
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and fl % 2 == 1):
        fl += 1
    v = F32(float(fl * scale))
    return -v if neg else v


def fmaf(x, y, z) -> np.ndarray:
    """Elementwise float32 fma(x, y, z) = round(x*y + z), one rounding. x*y is exact in float64;
    the float64 sum is exact unless TwoSum reports an error, and only a float64 result lying
    exactly halfway between two float32s can then round wrongly: those few use Fractions."""
    x, y, z = (np.asarray(v, F32) for v in np.broadcast_arrays(x, y, z))
    p = x.astype(np.float64) * y.astype(np.float64)
    zz = z.astype(np.float64)
    s = p + zz
    bp = s - zz
    err = (p - bp) + (zz - (s - bp))
    r = s.astype(F32)
    for i in np.flatnonzero(err != 0):
        r.flat[i] = _round_f32_exact(Fraction(float(x.flat[i])) * Fraction(float(y.flat[i])) +
                                     Fraction(float(z.flat[i])))
    return r


def torch_formula(a, b, n: int, fused: bool = True) -> np.ndarray:
    """torch.linspace float32 on CPU: fused=True for AVX2/AVX-512 kernels, False for 'default'."""
    a, b = F32(a), F32(b)
    if n == 1:
        return np.array([a], F32)
    step = F32(F32(b - a) / F32(n - 1))
    i = np.arange(n)
    k_lo, k_hi = i.astype(F32), (n - 1 - i).astype(F32)
    if fused:
        lo = fmaf(step, k_lo, a)
        hi = fmaf(-step, k_hi, b)
    else:
        lo = (a + (step * k_lo).astype(F32)).astype(F32)
        hi = (b - (step * k_hi).astype(F32)).astype(F32)
    return np.where(i < n // 2, lo, hi).astype(F32)


def jax_formula_g8(a, b, n: int) -> np.ndarray:
    """haiku-vs-hf.md G8: t = i/(n-1) (division), a*(1-t) + b*t, last = b."""
    a, b = F32(a), F32(b)
    if n == 1:
        return np.array([a], F32)
    t = np.arange(n - 1, dtype=F32) / F32(n - 1)
    v = (a * (F32(1) - t)).astype(F32) + (b * t).astype(F32)
    return np.concatenate([v.astype(F32), [b]]).astype(F32)


def jax_formula_xla(a, b, n: int) -> np.ndarray:
    """What XLA:CPU makes of jnp.linspace (see the header): closest closed form found."""
    a, b = F32(a), F32(b)
    if n == 1:
        return np.array([a], F32)
    r = F32(1) / F32(n - 1)
    i = np.arange(n - 1, dtype=F32)
    t = (i * r).astype(F32)
    k = (a * (F32(1) - t).astype(F32)).astype(F32)
    v = fmaf(i, F32(b * r), k)
    return np.concatenate([v, [b]]).astype(F32)


def _same(x, y) -> bool:
    return np.array_equal(np.asarray(x, F32).view(np.uint32), np.asarray(y, F32).view(np.uint32))


def _formula_stats(pairs, labels=None) -> dict:
    """pairs: (actual, formula) arrays -> cases/elements matched exactly, and the worst difference
    in units of the float32 spacing at the case's largest magnitude (max(|a|, |b|) for linspace;
    counting ulps of each element would explode near zero)."""
    n_cases = n_ok = n_el = n_el_ok = 0
    worst = 0.0
    inexact = []
    for c, (act, f) in enumerate(pairs):
        act, f = np.asarray(act, F32), np.asarray(f, F32)
        n_cases += 1
        same = act.view(np.uint32) == f.view(np.uint32)
        n_ok += bool(same.all())
        n_el += same.size
        n_el_ok += int(same.sum())
        if not same.all():
            unit = float(np.spacing(F32(np.abs(act).max())))
            worst = max(worst, float(np.abs(act.astype(np.float64) - f).max()) / unit)
            if labels is not None:
                inexact.append(list(labels[c]) + [int((~same).sum())])
    out = {"cases": n_cases, "cases_exact": n_ok, "elements": n_el, "elements_exact": n_el_ok,
           "max_diff_in_ulps_of_max_abs": worst}
    if labels is not None:
        out["inexact_cases_a_b_n_count"] = inexact
    return out


def random_cases(seed: int, count: int):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        kind = k % 4
        if kind == 0:
            a, b = rng.uniform(-2, 2, 2)
        elif kind == 1:
            a, b = 1.0, rng.uniform(1, 20000)
        elif kind == 2:
            a, b = rng.uniform(-1e4, 1e4, 2)
        else:
            a, b = -1.0, 1.0
        n = int(rng.integers(1, 600)) if kind != 3 else int(rng.integers(1, 4000))
        out.append((float(F32(a)), float(F32(b)), n))
    return out


# --------------------------------------------------------------------------------------------
# stages
# --------------------------------------------------------------------------------------------

FOURIER = [
    ("grid_6x8_K4", (6, 8), 4, (6, 8)),
    ("points_20_K8_res1000", (20,), 8, (1000,)),
    ("grid_2x3x4_K3_res16x56x56", (2, 3, 4), 3, (16, 56, 56)),
]


def stage_torch(out: Path) -> int:
    import torch
    from transformers.models.perceiver import modeling_perceiver as mp

    torch.set_num_threads(1)
    cap = torch.backends.cpu.get_cpu_capability()
    fused = cap.upper() != "DEFAULT"
    res = {"torch": torch.__version__, "capability": cap, "fused": fused,
           "linspace": [], "fourier": {}, "formula_mismatch_listed": [], "random": {}}
    for a, b, n, _ in case_list():
        t = torch.linspace(a, b, n, dtype=torch.float32).numpy()
        res["linspace"].append(hexs(t))
        if not _same(t, torch_formula(a, b, n, fused)):
            res["formula_mismatch_listed"].append([a, b, n])
    bad = []
    other = []
    for a, b, n in random_cases(RANDOM_SEED, RANDOM_CASES):
        t = torch.linspace(a, b, n, dtype=torch.float32).numpy()
        if not _same(t, torch_formula(a, b, n, fused)):
            bad.append([a, b, n])
        other.append((t, torch_formula(a, b, n, not fused)))
    res["random"] = {"cases": RANDOM_CASES, "seed": RANDOM_SEED,
                     "formula": "fmaf (one rounding)" if fused else "a + (float)(i*step) (two roundings)",
                     "n_mismatching_cases": len(bad), "mismatching_cases": bad[:20],
                     "other_formula_" + ("unfused" if fused else "fused"): _formula_stats(other)}
    for name, dims, k, mr in FOURIER:
        pos = mp.build_linear_positions(dims).reshape(1, -1, len(dims))
        feat = mp.generate_fourier_features(pos, k, max_resolution=mr, concat_pos=True, sine_only=False)
        res["fourier"][name] = {"shape": list(feat.shape[1:]), "hex": hexs(feat[0].numpy())}
    import transformers
    res["transformers"] = transformers.__version__
    out.write_text(json.dumps(res))
    return 0


def stage_jax(out: Path, deepmind_src) -> int:
    import jax
    import jax.numpy as jnp

    res = {"jax": jax.__version__, "linspace": [], "linspace_jit": [], "jit_differs_listed": [], "fourier": {}}
    jl = jax.jit(lambda a, b, n: jnp.linspace(a, b, n, dtype=jnp.float32), static_argnums=2)
    listed_g8, listed_xla = [], []
    for a, b, n, _ in case_list():
        e = np.asarray(jnp.linspace(a, b, n, dtype=jnp.float32))
        j = np.asarray(jl(F32(a), F32(b), n))
        res["linspace"].append(hexs(e))
        res["linspace_jit"].append(hexs(j))
        listed_g8.append((e, jax_formula_g8(a, b, n)))
        listed_xla.append((e, jax_formula_xla(a, b, n)))
        if not _same(e, j):
            res["jit_differs_listed"].append([a, b, n])
    rnd_g8, rnd_xla, bad_jit = [], [], []
    for c, (a, b, n) in enumerate(random_cases(RANDOM_SEED, RANDOM_CASES)):
        e = np.asarray(jnp.linspace(a, b, n, dtype=jnp.float32))
        rnd_g8.append((e, jax_formula_g8(a, b, n)))
        rnd_xla.append((e, jax_formula_xla(a, b, n)))
        if c < 300 and not _same(e, np.asarray(jl(F32(a), F32(b), n))):  # jit compiles per n: a subset
            bad_jit.append([a, b, n])
    res["random"] = {"cases": RANDOM_CASES, "seed": RANDOM_SEED,
                     "listed_formula_g8": _formula_stats(listed_g8),
                     "listed_formula_xla": _formula_stats(listed_xla, [c[:3] for c in case_list()]),
                     "random_formula_g8": _formula_stats(rnd_g8), "random_formula_xla": _formula_stats(rnd_xla),
                     "jit_checked_cases": 300, "n_jit_differs": len(bad_jit), "jit_differs": bad_jit[:20]}
    if deepmind_src:
        import deepmind_flow

        _, _, pe = deepmind_flow.import_perceiver(deepmind_src)
        for name, dims, k, mr in FOURIER:
            pos = pe.build_linear_positions(dims).reshape(-1, len(dims))
            feat = np.asarray(pe.generate_fourier_features(pos, k, max_resolution=mr, concat_pos=True,
                                                           sine_only=False))
            res["fourier"][name] = {"shape": list(feat.shape), "hex": hexs(feat)}
    out.write_text(json.dumps(res))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE.parent / "tests" / "fixtures" / "linspace" / "cases.json")
    ap.add_argument("--deepmind-src", type=Path, help="folder containing perceiver/ (DeepMind Fourier features)")
    ap.add_argument("--venv-haiku", default="/work/venv-haiku")
    ap.add_argument("--stage", default="main", help=argparse.SUPPRESS)
    ap.add_argument("--stage-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.stage == "torch":
        return stage_torch(args.stage_out)
    if args.stage == "jax":
        return stage_jax(args.stage_out, args.deepmind_src)
    if not args.deepmind_src:
        ap.error("--deepmind-src is required (DeepMind's position_encoding.py)")

    me = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        runs = {}
        for cap in ("", "default"):
            env = dict(os.environ)
            if cap:
                env["ATEN_CPU_CAPABILITY"] = cap
            else:
                env.pop("ATEN_CPU_CAPABILITY", None)
            f = td / f"torch_{cap or 'best'}.json"
            subprocess.run([sys.executable, me, "--stage", "torch", "--stage-out", str(f)], check=True, env=env)
            runs[cap or "best"] = json.loads(f.read_text())
        f = td / "jax.json"
        subprocess.run([f"{args.venv_haiku}/bin/python", me, "--stage", "jax", "--stage-out", str(f),
                        "--deepmind-src", str(args.deepmind_src)], check=True)
        jx = json.loads(f.read_text())

    tb, td_ = runs["best"], runs["default"]
    same_caps = tb["linspace"] == td_["linspace"]
    problems = []
    for r in (tb, td_):
        if r["formula_mismatch_listed"] or r["random"]["n_mismatching_cases"]:
            problems.append(f"torch ({r['capability']}): formula mismatches {r['formula_mismatch_listed']} "
                            f"random {r['random']['n_mismatching_cases']}")
    entries = []
    for (a, b, n, use), t, j, jj in zip(case_list(), tb["linspace"], jx["linspace"], jx["linspace_jit"]):
        e = {"a": a, "b": b, "n": n, "use": use, "torch": t, "jax": j}
        if jj != j:
            e["jax_jit"] = jj
        ft = np.array([int(h, 16) for h in t], np.uint32).view(F32)
        fj = np.array([int(h, 16) for h in j], np.uint32).view(F32)
        e["n_torch_jax_differ"] = int(np.sum(ft != fj))
        entries.append(e)
    fourier = []
    for name, dims, k, mr in FOURIER:
        h, d = tb["fourier"][name], jx["fourier"][name]
        assert h["shape"] == d["shape"], (name, h["shape"], d["shape"])
        fh = np.array([int(x, 16) for x in h["hex"]], np.uint32).view(F32)
        fd = np.array([int(x, 16) for x in d["hex"]], np.uint32).view(F32)
        fourier.append({"name": name, "index_dims": list(dims), "num_bands": k, "max_resolution": list(mr),
                        "concat_pos": True, "sine_only": False, "shape": h["shape"],
                        "hf": h["hex"], "deepmind": d["hex"], "n_differ": int(np.sum(fh != fd)),
                        "max_abs_diff": float(np.abs(fh.astype(np.float64) - fd).max())})
    doc = {
        "comment": ("float32 bit patterns (8 hex digits) of torch.linspace / jnp.linspace (CPU) and of complete "
                    "Fourier position features from transformers (hf) and DeepMind's position_encoding.py "
                    "(deepmind). torch (AVX2 kernels, which made every HF value here) is reproduced bit for bit by "
                    "step = f32(f32(b-a)/f32(n-1)); i < n/2: fmaf(step, i, a); else fmaf(-step, n-1-i, b) "
                    "(ATEN_CPU_CAPABILITY=default: the same unfused). jnp.linspace on XLA:CPU follows no simple "
                    "formula exactly (see random_check.jax and the header of tools/make_linspace_fixture.py). "
                    "jax_jit: only where a jitted call differs from the eager one."),
        "versions": {"torch": tb["torch"], "transformers": tb["transformers"], "jax": jx["jax"],
                     "torch_cpu_capability": tb["capability"],
                     "torch_identical_under_ATEN_CPU_CAPABILITY_default": same_caps},
        "random_check": {"torch": tb["random"], "torch_capability_default": td_["random"], "jax": jx["random"],
                         "jax_jit_differs_listed": jx["jit_differs_listed"]},
        "linspace": entries,
        "fourier": fourier,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lines = ["{"]
    for k in ("comment", "versions", "random_check"):
        lines.append(f" {json.dumps(k)}: {json.dumps(doc[k])},")
    for k in ("linspace", "fourier"):
        lines.append(f" {json.dumps(k)}: [")
        lines += ["  " + json.dumps(x) + ("," if i + 1 < len(doc[k]) else "") for i, x in enumerate(doc[k])]
        lines.append(" ]" + ("," if k == "linspace" else ""))
    lines.append("}")
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == json.loads(json.dumps(doc))
    args.out.write_text(text)
    args.out.chmod(0o644)
    print(f"wrote {args.out} ({len(text) / 1e3:.1f} kB): {len(entries)} linspace cases, {len(fourier)} Fourier tensors")
    print(f"torch {tb['torch']} ({tb['capability']}); identical with ATEN_CPU_CAPABILITY=default: {same_caps}")
    print(f"torch formula: listed mismatches {tb['formula_mismatch_listed']}, random {tb['random']['n_mismatching_cases']}"
          f"/{RANDOM_CASES} (default capability: {td_['random']['n_mismatching_cases']})")
    print(f"torch other formula ({'unfused' if tb['fused'] else 'fused'}) on the random cases: "
          f"{list(tb['random'].values())[-1]}")
    jr = jx["random"]
    print(f"jax {jx['jax']}: G8 formula exact on {jr['listed_formula_g8']['cases_exact']}/{jr['listed_formula_g8']['cases']} "
          f"listed, {jr['random_formula_g8']['cases_exact']}/{RANDOM_CASES} random cases "
          f"(elements {jr['random_formula_g8']['elements_exact']}/{jr['random_formula_g8']['elements']}, "
          f"max {jr['random_formula_g8']['max_diff_in_ulps_of_max_abs']:g} ulp of max|v|); xla form exact on {jr['listed_formula_xla']['cases_exact']}/"
          f"{jr['listed_formula_xla']['cases']} listed, {jr['random_formula_xla']['cases_exact']}/{RANDOM_CASES} random "
          f"(elements {jr['random_formula_xla']['elements_exact']}/{jr['random_formula_xla']['elements']}, "
          f"max {jr['random_formula_xla']['max_diff_in_ulps_of_max_abs']:g} ulp of max|v|; listed inexact {jr['listed_formula_xla']['inexact_cases_a_b_n_count']}); "
          f"jit differs from eager: listed "
          f"{jx['jit_differs_listed']}, random {jr['n_jit_differs']}/300")
    print("torch vs jax linspace: " + ", ".join(f"({e['a']:g},{e['b']:g},{e['n']}): {e['n_torch_jax_differ']}"
                                                  for e in entries if e["n_torch_jax_differ"]))
    for f in fourier:
        print(f"fourier {f['name']} {f['shape']}: hf vs deepmind differ in {f['n_differ']} values, "
              f"max abs {f['max_abs_diff']:.3g}")
    if problems:
        print("FORMULA MISMATCH: " + "; ".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
