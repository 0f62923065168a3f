#!/usr/bin/env python3
"""tests/fixtures/flow_color: the Middlebury flow colour wheel as computed by flow_vis (PyPI
flow-vis 0.1, a reimplementation of Scharstein's flowToColor C++ code and Deqing Sun's Matlab
code), the reference for pcv_flow_to_rgb / `perceiver-cl flow --png`.

The field covers every direction and magnitudes from 0 to 1.6x the normalisation, so both the
in-range branch (saturation grows with the magnitude) and the out-of-range branch (0.75 x
darker) are exercised. flow_vis normalises by (max magnitude + 1e-5); perceiver-cl by the max
magnitude itself (or --max-flow), so the fixture calls flow_vis' flow_uv_to_colors on u/m, v/m
computed in float64 with the engine's m:

  flow.safetensors:  flow [H][W][2] float32 (u, v)
                     rgb_auto [H][W][3] uint8   m = max magnitude of the field
                     rgb_max  [H][W][3] uint8   m = 0.5 (most pixels beyond the range)

Run: python tools/make_flow_color_fixture.py   (needs numpy, flow-vis, safetensors)
"""
from pathlib import Path

import numpy as np
from flow_vis.flow_vis import flow_uv_to_colors
from safetensors.numpy import save_file

H, W = 40, 64
out = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "flow_color"
y, x = np.mgrid[0:H, 0:W].astype(np.float64)
theta = 2 * np.pi * x / W + 0.013            # every direction along x
r = 1.6 * y / (H - 1)                        # 0 .. 1.6 along y
flow = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=-1).astype(np.float32) * 3.0
flow[0, 0] = 0                               # a pixel at rest
f64 = flow.astype(np.float64)
mag = np.sqrt(f64[..., 0] ** 2 + f64[..., 1] ** 2)
tensors = {"flow": flow}
for name, m in (("rgb_auto", mag.max()), ("rgb_max", 0.5)):
    tensors[name] = flow_uv_to_colors(f64[..., 0] / m, f64[..., 1] / m)
out.mkdir(parents=True, exist_ok=True)
save_file(tensors, str(out / "flow.safetensors"))
print(f"{out}/flow.safetensors: {H}x{W}, max magnitude {mag.max():.6f}")
