#!/usr/bin/env python3
"""Writes the ONNX fixtures of the import hook's tests (committed: CI needs no PyTorch).

* ``examples/onnx_detector/fixtures/attrs.onnx``: four DRConv2d layers covering every attribute
  (k = 1, 3, 5; r = 1, 16, 3, 2; stride 2; dilation 2; padding 0, 1, 4) with SiLU between them,
  nested in ``Sequential`` and ``ModuleList``, exported by ``drconv_onnx.export``; and
  ``attrs_io.safetensors``: inputs ``x_b1`` (1x3x21x19), ``x_b3`` (3x3x21x19) and PyTorch's
  outputs ``y_b1``, ``y_b3``. The seed is the first from 0 whose guide logits keep every
  pixel's top two regions at least 1e-3 apart in every layer, so an f32 re-implementation picks
  the same regions.
* ``tests/onnx/*.onnx``: broken variants of a one-layer export for the build-error tests:
  ``missing_weight`` (no ``conv_guide.bias`` input), ``wrong_shape`` (``conv_kernel.3.weight``
  of the wrong shape), ``unknown_attribute`` (an extra ``groups``), ``computed_weight``
  (``conv_guide.weight`` a graph input, known only at run time, not an initializer).

``pip install torch onnx`` then ``python python/make_onnx_fixtures.py``.
"""
import os
import struct
import sys
import json

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "examples"))
import drconv_onnx  # noqa: E402
from export_pytorch import DRConv2d  # noqa: E402  (the seed's layer, verbatim)

GAP = 1e-3


class Attrs(nn.Module):
    """Every attribute of the node at least once, nested two ways."""

    def __init__(self):
        super().__init__()
        self.first = nn.Sequential(DRConv2d(3, 4, 1, region_num=1), nn.SiLU())
        self.blocks = nn.ModuleList([
            DRConv2d(4, 6, 3, region_num=16, stride=2, padding=1),
            DRConv2d(6, 5, 5, region_num=3, padding=4, dilation=2),
            DRConv2d(5, 4, 3, region_num=2, stride=2, dilation=2),
        ])

    def forward(self, x):
        x = self.first(x)
        for block in self.blocks:
            x = nn.functional.silu(block(x))
        return x


def guide_gap(model, x):
    """The smallest top-two gap of the guide logits over every layer and pixel."""
    gaps = []

    def hook(_, __, out):
        top = out.topk(2, dim=1).values if out.shape[1] > 1 else None
        if top is not None:
            gaps.append((top[:, 0] - top[:, 1]).min().item())

    handles = [m.conv_guide.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, DRConv2d)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return min(gaps)


def save_safetensors(path, tensors):
    """safetensors without the package: a JSON header, then raw little-endian f32 data."""
    header, blobs, at = {}, [], 0
    for name, t in tensors.items():
        data = t.detach().contiguous().float().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [at, at + len(data)]}
        blobs.append(data)
        at += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def write_attrs(out):
    for seed in range(1000):
        torch.manual_seed(seed)
        model = Attrs().eval()
        x1, x3 = torch.randn(1, 3, 21, 19), torch.randn(3, 3, 21, 19)
        if min(guide_gap(model, x1), guide_gap(model, x3)) >= GAP:
            break
    else:
        raise SystemExit("no seed below 1000 keeps the guide logits apart")
    os.makedirs(out, exist_ok=True)
    drconv_onnx.export(model, x1, os.path.join(out, "attrs.onnx"), output_names=["y"])
    with torch.no_grad():
        io = {"x_b1": x1, "y_b1": model(x1), "x_b3": x3, "y_b3": model(x3)}
    save_safetensors(os.path.join(out, "attrs_io.safetensors"), io)
    print(f"attrs: seed {seed}")


def one_layer(path):
    torch.manual_seed(0)
    model = nn.Sequential(DRConv2d(4, 3, 3, region_num=2, padding=1))
    drconv_onnx.export(model, torch.randn(1, 4, 8, 8), path, output_names=["y"])
    return onnx.load(path)


def node_of(proto):
    return next(n for n in proto.graph.node if n.domain == drconv_onnx.DOMAIN)


def write_broken(out):
    os.makedirs(out, exist_ok=True)
    base = os.path.join(out, "one_layer.onnx")

    def save(name, edit):
        proto = one_layer(base)
        edit(proto)
        onnx.save(proto, os.path.join(out, f"{name}.onnx"))

    def missing_weight(p):
        node = node_of(p)
        del node.input[6]

    def wrong_shape(p):
        init = next(t for t in p.graph.initializer if t.name.endswith("conv_kernel.3.weight"))
        value = numpy_helper.to_array(init)
        init.CopyFrom(numpy_helper.from_array(value[:-2].copy(), init.name))

    def unknown_attribute(p):
        node_of(p).attribute.append(helper.make_attribute("groups", 2))

    def computed_weight(p):
        # conv_guide.weight as a graph input (as keep_initializers_as_inputs exports it).
        init = next(t for t in p.graph.initializer if t.name.endswith("conv_guide.weight"))
        p.graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, init.dims))
        p.graph.initializer.remove(init)

    for name, edit in [("missing_weight", missing_weight), ("wrong_shape", wrong_shape),
                       ("unknown_attribute", unknown_attribute),
                       ("computed_weight", computed_weight)]:
        save(name, edit)
    os.remove(base)


def main():
    torch.set_num_threads(1)
    write_attrs(os.path.join(ROOT, "examples", "onnx_detector", "fixtures"))
    write_broken(os.path.join(ROOT, "tests", "onnx"))


if __name__ == "__main__":
    main()
