#!/usr/bin/env python3
"""Round-trip check of `perceiver-cl convert` for all six DeepMind architectures.

For each architecture (MLM, image_classification, image_classification_fourier,
image_classification_conv, optical_flow, multimodal_autoencoding):

1. build a tiny random transformers model of that class and turn its weights into a DeepMind
   Haiku checkpoint with the DeepMind parameter names (tools/haiku_ref.py: hf_to_haiku_tree;
   ImageNet architectures as {'params': ..., 'state': ...} with BatchNorm EMA state), pickled with
   NumPy (protocol 4);
2. run `perceiver-cl convert --pickle_file P --pytorch_dump_folder_path D --config tiny.json`;
3. load D with `from_pretrained(D, output_loading_info=True)` and require no missing, unexpected
   or mismatched keys (strict);
4. build the reference: the same class, with the pickle converted by HF's own rules
   (tools/haiku_ref.py: haiku_to_hf, a port of convert_perceiver_haiku_to_pytorch.py) and
   load_state_dict(strict=True);
5. require identical state dicts and identical forward outputs on random inputs.

Prints one line per architecture and RESULT: PASS|FAIL. Needs the reference venv
(tools/setup_venv.sh) and a built perceiver-cl (--bin).

  .venv-ref/bin/python tools/check_convert.py --bin build/perceiver-cl
"""

from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import haiku_ref  # noqa: E402

TINY = dict(num_latents=8, d_latents=16, d_model=32, num_blocks=2, num_self_attends_per_block=2,
            num_self_attention_heads=2, num_cross_attention_heads=1, num_labels=3, image_size=32,
            train_size=[20, 20], num_frames=5, audio_samples_per_frame=200, samples_per_patch=20,
            output_shape=[1, 5, 32, 32], output_num_channels=32, _label_trainable_num_channels=16,
            max_position_embeddings=24, qk_channels=None, v_channels=None)


def randomize(model, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point():
                continue
            r = torch.randn(t.shape, generator=g)
            if "running_var" in name:
                t.copy_(r.abs() + 0.5)
            elif "layernorm" in name and name.endswith("weight") or "batchnorm.weight" in name:
                t.copy_(1 + 0.1 * r)
            else:
                t.copy_(0.2 * r)


def inputs_for(arch, cfg, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    if arch == "MLM":
        ids = torch.randint(0, cfg.vocab_size, (2, cfg.max_position_embeddings), generator=g)
        mask = torch.ones_like(ids)
        mask[1, 15:] = 0
        return dict(inputs=ids, attention_mask=mask)
    if arch.startswith("image_classification"):
        return dict(inputs=torch.randn(2, 3, cfg.image_size, cfg.image_size, generator=g))
    if arch == "optical_flow":
        return dict(inputs=torch.randn(1, 2, 27, *cfg.train_size, generator=g))
    n_audio = cfg.num_frames * cfg.audio_samples_per_frame
    return dict(
        inputs=dict(image=torch.randn(1, cfg.num_frames, 3, cfg.image_size, cfg.image_size, generator=g),
                    audio=torch.randn(1, n_audio, 1, generator=g),
                    label=torch.zeros(1, cfg.num_labels)),
        subsampled_output_points=dict(image=torch.arange(256), audio=torch.arange(2), label=None))


def outputs(model, inp):
    import torch

    torch.manual_seed(0)  # the multimodal model draws (deterministic) Bernoulli masks
    with torch.no_grad():
        out = model(**inp).logits
    return {k: v.numpy() for k, v in out.items()} if isinstance(out, dict) else {"logits": out.numpy()}


def check(arch, binary, work: Path) -> tuple[bool, str]:
    import torch
    import transformers
    from transformers import PerceiverConfig

    cls = getattr(transformers, haiku_ref.HF_CLASS[arch])
    cfg = PerceiverConfig(**TINY)
    cfg.architectures = [cls.__name__]
    torch.manual_seed(1)
    model = cls(cfg).eval()
    randomize(model, 7)
    sd = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    params, state = haiku_ref.hf_to_haiku_tree(sd, arch, TINY["num_self_attends_per_block"])
    obj = {"params": params, "state": state} if arch.startswith("image_classification") else params
    pk = work / f"{arch}.pystate"
    pk.write_bytes(pickle.dumps(obj, protocol=4))
    cfg_path = work / f"{arch}.json"
    cfg_path.write_text(cfg.to_json_string())
    out_dir = work / f"{arch}-hf"
    r = subprocess.run([binary, "convert", "--pickle_file", str(pk), "--pytorch_dump_folder_path",
                        str(out_dir), "--config", str(cfg_path)], capture_output=True, text=True)
    if r.returncode:
        return False, f"convert failed: {r.stderr.strip()}"
    # strict load of perceiver-cl's folder
    converted, info = cls.from_pretrained(out_dir, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if bad:
        return False, f"from_pretrained is not strict-clean: {bad}"
    # reference: HF's rules applied to the same pickle
    with open(pk, "rb") as f:
        tree = pickle.load(f)  # our own file, written above
    flat = haiku_ref.flatten(tree["params"]) if "params" in tree else haiku_ref.flatten(tree)
    if "state" in tree:
        flat.update(haiku_ref.flatten(tree["state"]))
    ref_sd = {k: torch.from_numpy(v) for k, v in haiku_ref.haiku_to_hf(flat, arch).items()}
    ref = cls(cfg).eval()
    bn = "perceiver.input_preprocessor.convnet.batchnorm.num_batches_tracked"
    if bn in ref.state_dict():
        ref_sd[bn] = torch.tensor(0)
    ref.load_state_dict(ref_sd, strict=True)
    a, b = converted.state_dict(), ref.state_dict()
    diff = [k for k in b if not torch.equal(a[k], b[k])]
    if diff:
        return False, f"weights differ from HF's conversion: {diff[:3]}"
    inp = inputs_for(arch, cfg, 3)
    oa, ob = outputs(converted.eval(), inp), outputs(ref, inp)
    worst = max(float(np.abs(oa[k] - ob[k]).max()) for k in ob)
    if worst != 0.0:
        return False, f"outputs differ (max abs {worst:g})"
    shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in ob.items())
    return True, f"{len(a)} tensors equal; outputs identical ({shapes})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=str(HERE.parent / "build" / "perceiver-cl"))
    ap.add_argument("--only", default="", help="comma-separated architectures")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    ok_all = True
    with tempfile.TemporaryDirectory() as td:
        for arch in haiku_ref.ARCHS:
            if args.only and arch not in args.only.split(","):
                continue
            try:
                ok, msg = check(arch, args.bin, Path(td))
            except Exception as e:  # report and go on with the other architectures
                ok, msg = False, f"{type(e).__name__}: {e}"
            ok_all &= ok
            print(f"{arch:30s} {'PASS' if ok else 'FAIL'}  {msg}")
    print(f"RESULT: {'PASS' if ok_all else 'FAIL'}")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
