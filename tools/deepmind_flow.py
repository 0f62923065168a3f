"""Run DeepMind's OWN optical-flow code (google-deepmind/deepmind-research, folder perceiver/)
from a local checkout, for the reference tooling of perceiver-cl.

Nothing of DeepMind's code is copied into this repository. Every function here takes
``deepmind_src``: the folder that CONTAINS ``perceiver/`` (e.g. a checkout or
``git archive HEAD perceiver`` of google-deepmind/deepmind-research, tested at f5de0ed), and
imports or executes the code found there:

* ``perceiver/perceiver.py``, ``io_processors.py``, ``position_encoding.py``: imported as the
  package ``perceiver`` (needs jax, dm-haiku, einops, numpy: tools/requirements-haiku.txt).
* ``perceiver/colabs/optical_flow.ipynb``: the notebook's code cells are read from its JSON at
  run time and executed (``exec``) in a private namespace:
    - "Model construction" (defines FLOW_SCALE_FACTOR, TRAIN_SIZE and ``optical_flow``);
    - "Function to compute flow between pairs of images" (compute_grid_indices,
      compute_optical_flow, and ``_apply_optical_flow_model = jax.jit(optical_flow.apply)``);
    - "Image Utility Functions" (normalize, visualize_flow).
  The "Imports" cell is not executed (it imports cv2/imageio/matplotlib, which are not needed);
  the same modules it imports are put into the namespace instead.

Patches: NONE are needed. DeepMind's 2021 code runs unmodified on jax 0.10.2 / dm-haiku
0.0.17 / einops 0.8.2 (the versions of tools/requirements-haiku.txt). The only thing this module
changes is TEXTUAL, in the model-construction cell, and only when a caller asks for a tiny
model: the literal sizes ``TRAIN_SIZE = (368, 496)``, ``num_self_attends_per_block=24``,
``z_index_dim=2048``, ``num_z_channels=512`` and ``num_self_attend_heads=16`` are replaced by
the requested ones (each must match exactly once, else an error), so the construction code is
otherwise DeepMind's. The helper cell may also be executed WITHOUT jax (``jnp`` = NumPy and a
stub ``jax.jit``) to use compute_grid_indices, which is pure Python.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import types
from pathlib import Path

NOTEBOOK = Path("perceiver") / "colabs" / "optical_flow.ipynb"


def check_src(deepmind_src) -> Path:
    src = Path(deepmind_src).resolve()
    for f in ("perceiver/perceiver.py", "perceiver/io_processors.py",
              "perceiver/position_encoding.py", str(NOTEBOOK)):
        if not (src / f).is_file():
            raise FileNotFoundError(f"--deepmind-src {src}: missing {f} (pass the folder that "
                                    "contains perceiver/ of google-deepmind/deepmind-research)")
    return src


def notebook_cells(deepmind_src) -> list[str]:
    """Source text of every code cell of DeepMind's optical_flow.ipynb, in order."""
    nb = json.loads((check_src(deepmind_src) / NOTEBOOK).read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c.get("cell_type") == "code"]


def _cell(deepmind_src, marker: str) -> str:
    hits = [c for c in notebook_cells(deepmind_src) if marker in c]
    if len(hits) != 1:
        raise RuntimeError(f"optical_flow.ipynb: expected exactly one code cell containing "
                           f"{marker!r}, found {len(hits)}")
    return hits[0]


def model_cell(deepmind_src) -> str:
    return _cell(deepmind_src, "def optical_flow(images)")


def helper_cell(deepmind_src) -> str:
    return _cell(deepmind_src, "def compute_grid_indices(")


def utility_cell(deepmind_src) -> str:
    return _cell(deepmind_src, "def normalize(im)")


def colab_constants(deepmind_src) -> dict:
    """FLOW_SCALE_FACTOR and TRAIN_SIZE as written in the notebook (top-level literals of the
    model-construction cell, read with ast; nothing executed)."""
    tree = ast.parse(model_cell(deepmind_src))
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name) and \
                node.targets[0].id in ("FLOW_SCALE_FACTOR", "TRAIN_SIZE"):
            out[node.targets[0].id] = ast.literal_eval(node.value)
    if set(out) != {"FLOW_SCALE_FACTOR", "TRAIN_SIZE"}:
        raise RuntimeError(f"optical_flow.ipynb: constants not found ({out})")
    return out


def _stub_jax():
    jax = types.ModuleType("jax_stub")
    jax.jit = lambda f, **kw: f
    return jax


def colab_helpers(deepmind_src, train_size=None, *, use_jax: bool = False) -> dict:
    """Execute the notebook's helper cells; returns their namespace (compute_grid_indices,
    compute_optical_flow, normalize, TRAIN_SIZE, FLOW_SCALE_FACTOR, ...).

    train_size: the TRAIN_SIZE global the helpers see (compute_grid_indices steps by
    TRAIN_SIZE - min_overlap; default: the notebook's (368, 496)).
    use_jax: run with the real jax / jax.numpy (bit-faithful float32 semantics of the colab);
    otherwise jnp = NumPy and jax.jit = identity (enough for compute_grid_indices).
    The model used by compute_optical_flow is the namespace's ``_apply_optical_flow_model``;
    replace it with set_model(ns, fn) (fn(params, rng, images[1,2,h,w,3]) -> flow [1,h,w,2]).
    """
    import itertools

    consts = colab_constants(deepmind_src)
    if use_jax:
        import jax
        import jax.numpy as jnp
    else:
        import numpy as jnp  # noqa: N813 - the notebook's name
        jax = _stub_jax()
    import numpy as np

    def _no_model(*a, **k):
        raise RuntimeError("no model: call set_model(ns, fn) first")

    ns = {
        "itertools": itertools, "jax": jax, "jnp": jnp, "np": np,
        "FLOW_SCALE_FACTOR": consts["FLOW_SCALE_FACTOR"],
        "TRAIN_SIZE": tuple(train_size) if train_size is not None else tuple(consts["TRAIN_SIZE"]),
        "optical_flow": types.SimpleNamespace(apply=_no_model),
    }
    exec(compile(helper_cell(deepmind_src), "optical_flow.ipynb:helpers", "exec"), ns)
    exec(compile(utility_cell(deepmind_src), "optical_flow.ipynb:utilities", "exec"), ns)
    return ns


def set_model(ns: dict, fn) -> None:
    ns["_apply_optical_flow_model"] = fn


def import_perceiver(deepmind_src):
    """DeepMind's package ``perceiver`` (perceiver.py, io_processors.py, position_encoding.py)."""
    src = str(check_src(deepmind_src))
    if src not in sys.path:
        sys.path.insert(0, src)
    from perceiver import io_processors, perceiver, position_encoding  # noqa: F401

    mod = sys.modules["perceiver"]
    if not str(Path(mod.__path__[0]).resolve()).startswith(src):
        raise RuntimeError(f"imported a different 'perceiver' package: {mod.__path__}")
    return perceiver, io_processors, position_encoding


# (literal in the notebook, keyword written back) -> value of the full-size model
_SIZE_LITERALS = {
    "train_size": (r"TRAIN_SIZE = \(368, 496\)", "TRAIN_SIZE = ({}, {})"),
    "num_self_attends_per_block": (r"num_self_attends_per_block=24,", "num_self_attends_per_block={},"),
    "z_index_dim": (r"z_index_dim=2048,", "z_index_dim={},"),
    "num_z_channels": (r"num_z_channels=512,", "num_z_channels={},"),
    "num_self_attend_heads": (r"num_self_attend_heads=16,", "num_self_attend_heads={},"),
}
FULL_SIZE = dict(train_size=(368, 496), num_self_attends_per_block=24, z_index_dim=2048,
                 num_z_channels=512, num_self_attend_heads=16)


def build_colab_model(deepmind_src, **sizes) -> dict:
    """Execute the notebook's model-construction cell (optionally with smaller sizes, see the
    module docstring) and then its helper cells, in one namespace, with the real jax.

    Returns the namespace: ``optical_flow`` (the hk.transform-ed function of the colab, output
    = decoder / 100 * FLOW_SCALE_FACTOR), ``optical_flow_fn`` (the same function before
    hk.transform, for intercepting), ``_apply_optical_flow_model`` (jax.jit of its apply, as
    in the colab), compute_grid_indices, compute_optical_flow, normalize, TRAIN_SIZE, ...
    """
    import functools
    import itertools
    import pickle

    import haiku as hk
    import jax
    import jax.numpy as jnp
    import numpy as np

    perceiver, io_processors, _ = import_perceiver(deepmind_src)
    code = model_cell(deepmind_src)
    unknown = set(sizes) - set(_SIZE_LITERALS)
    if unknown:
        raise ValueError(f"unknown size(s) {unknown}")
    for key, val in sizes.items():
        pattern, repl = _SIZE_LITERALS[key]
        new = repl.format(*val) if key == "train_size" else repl.format(int(val))
        code, n = re.subn(pattern, new, code)
        if n != 1:
            raise RuntimeError(f"model cell: {pattern!r} matched {n} times (expected 1)")
    # keep the raw function too: the cell ends with `optical_flow = hk.transform(optical_flow)`
    last = "optical_flow = hk.transform(optical_flow)"
    if code.count(last) != 1:
        raise RuntimeError(f"model cell: {last!r} not found exactly once")
    code = code.replace(last, "optical_flow_fn = optical_flow\n" + last)
    ns = {"functools": functools, "itertools": itertools, "pickle": pickle, "hk": hk,
          "jax": jax, "jnp": jnp, "np": np, "perceiver": perceiver,
          "io_processors": io_processors}
    exec(compile(code, "optical_flow.ipynb:model", "exec"), ns)
    exec(compile(helper_cell(deepmind_src), "optical_flow.ipynb:helpers", "exec"), ns)
    exec(compile(utility_cell(deepmind_src), "optical_flow.ipynb:utilities", "exec"), ns)
    return ns


def encoder_latents_fn(ns: dict, deepmind_src):
    """hk.transform of the colab's function that also returns the encoder output z (the
    PerceiverEncoder.__call__ result, [B][z_index_dim][num_z_channels]) via hk.intercept_methods.
    Same module names, so it takes the same params."""
    import haiku as hk

    perceiver, _, _ = import_perceiver(deepmind_src)
    fn = ns["optical_flow_fn"]

    def with_latents(images):
        captured = {}

        def icpt(next_f, args, kwargs, context):
            out = next_f(*args, **kwargs)
            if isinstance(context.module, perceiver.PerceiverEncoder) and \
                    context.method_name == "__call__":
                captured["z"] = out
            return out

        with hk.intercept_methods(icpt):
            flow = fn(images)
        return flow, captured["z"]

    return hk.transform(with_latents)
