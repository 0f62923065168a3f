#!/usr/bin/env python3
"""Writes tests/fixtures/linspace_exact/reference.json: the float32 bit patterns of torch.linspace
and of JAX's linspace for the (start, stop, steps) the Perceiver models use, plus seeded random
ones. tests/test_fourier.c checks pcv_linspace_torch and pcv_linspace_jax against them bit for bit.

The two halves come from two environments (torch and JAX are not installed together):

    /work/venv-ref/bin/python   tools/linspace_reference.py torch   # the "torch" section
    /work/venv-haiku/bin/python tools/linspace_reference.py jax     # the "jax" section

Each run rewrites its own section and keeps the other.

torch: torch.linspace(a, b, n, dtype=float32) on the CPU, as transformers calls it
(PerceiverFourierPositionEncoding: positions linspace(-1, 1, n) and frequencies
linspace(1, max_resolution / 2, num_bands)). Measured with torch 2.15: the CPU kernel computes
every element with the scalar formula (a + step*i for i < n/2, b - step*(n-1-i) after, step =
(b-a)/(n-1)), and ATen's AVX2/AVX-512 builds of it contract each product-and-sum into one fused
multiply-add; only the non-vectorized build (ATEN_CPU_CAPABILITY=default) rounds twice. The
fused form is what transformers computes on any x86-64 CPU with AVX2, so it is the reference;
the script records the capability it ran with and refuses the default one.

jax: DeepMind's code calls jnp.linspace under JAX 0.2.x (2021), whose linspace was plain
un-jitted Python (jax/_numpy/lax_numpy.py): step = iota(n) / (n-1); out = a*(1-step) + b*step,
each primitive dispatched on its own. That is evaluated here the same way, one jitted XLA
primitive per operation with every operand passed as a runtime array, so that XLA can neither
fold the division into a reciprocal nor fuse anything. Today's jnp.linspace is itself jitted
(XLA rewrites the division into a multiplication by the float32 reciprocal, reassociates
b*(i*r) into i*(b*r), and LLVM contracts FMAs differently in vectorized and remainder loops), so
its last bit depends on the JAX version, the length and the CPU; the script records how far the
installed jnp.linspace is from the op-by-op result (the "jnp_jit_diff" entry) for information.
"""
import json
import platform
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests/fixtures/linspace_exact/reference.json"

# (start, stop, steps): every linspace of the architectures perceiver-cl runs, then the tiny
# fixtures' grids, then seeded random ones.
MODEL_CASES = [
    (-1.0, 1.0, 224), (1.0, 112.0, 64),      # Fourier ImageNet model: 224x224 grid, 64 bands
    (-1.0, 1.0, 56), (-1.0, 1.0, 55), (1.0, 28.0, 64),  # conv model: 56 (haiku) / 55 (hf) grid
    (-1.0, 1.0, 368), (-1.0, 1.0, 496), (1.0, 184.0, 64), (1.0, 248.0, 64),  # optical flow
    (-1.0, 1.0, 16), (1.0, 8.0, 32), (1.0, 112.0, 32),  # multimodal video grid
    (-1.0, 1.0, 13), (-1.0, 1.0, 9), (-1.0, 1.0, 7), (-1.0, 1.0, 2), (-1.0, 1.0, 1),
    (1.0, 4.5, 5), (1.0, 3.5, 6),
]


def cases():
    rng = np.random.default_rng(20240509)
    out = list(MODEL_CASES)
    for _ in range(24):
        a, b = (float(v) for v in rng.uniform(-300, 300, 2).astype(np.float32))
        n = int(rng.integers(2, 100))
        out.append((a, b, n))
    return out


def bits(v):
    return [int(x) for x in np.asarray(v, dtype=np.float32).view(np.uint32)]


def torch_section():
    import torch
    cap = torch.backends.cpu.get_cpu_capability()
    if cap.upper() == "DEFAULT":
        sys.exit("run with an AVX2 or AVX-512 build of torch's CPU kernels (ATEN_CPU_CAPABILITY unset)")
    rows = [{"start": a, "stop": b, "steps": n,
             "bits": bits(torch.linspace(a, b, n, dtype=torch.float32).numpy())} for a, b, n in cases()]
    return {"library": f"torch {torch.__version__}", "cpu_capability": cap,
            "machine": platform.machine(), "cases": rows}


def jax_section():
    import jax
    import jax.numpy as jnp
    from jax import lax
    div, sub, mul, add = (jax.jit(f) for f in (lax.div, lax.sub, lax.mul, lax.add))

    def linspace_op_by_op(a, b, n):
        if n == 1:
            return np.array([a], np.float32)
        full = lambda v: jnp.full((n,), v, jnp.float32)  # noqa: E731
        step = div(lax.iota(jnp.float32, n), full(n - 1))
        return np.asarray(add(mul(full(a), sub(full(1.0), step)), mul(full(b), step)))

    rows, worst = [], 0.0
    for a, b, n in cases():
        v = linspace_op_by_op(np.float32(a), np.float32(b), n)
        rows.append({"start": a, "stop": b, "steps": n, "bits": bits(v)})
        j = np.asarray(jnp.linspace(np.float32(a), np.float32(b), n, dtype=jnp.float32))
        scale = max(abs(a), abs(b)) * float(np.finfo(np.float32).eps)
        worst = max(worst, float(np.max(np.abs(j.astype(np.float64) - v)) / scale))
    return {"library": f"jax {jax.__version__} (XLA CPU), JAX 0.2.x linspace evaluated op by op",
            "machine": platform.machine(),
            "jnp_jit_diff": f"today's jitted jnp.linspace differs from these by at most {worst:.2f} "
                            "float32 epsilons of max(|start|, |stop|)",
            "cases": rows}


def dump(doc):
    """JSON with one case per line (readable, small diffs)."""
    out = ["{"]
    keys = sorted(doc)
    for i, k in enumerate(keys):
        v = doc[k]
        sep = "," if i + 1 < len(keys) else ""
        if not isinstance(v, dict):
            out.append(f" {json.dumps(k)}: {json.dumps(v)}{sep}")
            continue
        out.append(f" {json.dumps(k)}: {{")
        for key in sorted(x for x in v if x != "cases"):
            out.append(f"  {json.dumps(key)}: {json.dumps(v[key])},")
        out.append('  "cases": [')
        out += [f"   {json.dumps(r)}" + ("," if j + 1 < len(v["cases"]) else "") for j, r in enumerate(v["cases"])]
        out.append("  ]")
        out.append(f" }}{sep}")
    out.append("}")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ("torch", "jax"):
        sys.exit(__doc__)
    doc = json.loads(OUT.read_text()) if OUT.exists() else {}
    doc["comment"] = ("float32 bit patterns (uint32) of linspace(start, stop, steps); written by "
                      "tools/linspace_reference.py, checked by tests/test_fourier.c")
    doc[sys.argv[1]] = torch_section() if sys.argv[1] == "torch" else jax_section()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(dump(doc))


if __name__ == "__main__":
    main()
