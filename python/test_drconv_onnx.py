#!/usr/bin/env python3
"""Tests of the exporter (python/drconv_onnx.py): ``python python/test_drconv_onnx.py``.

Needs ``pip install torch onnx`` (CI has no PyTorch: what this proves is committed as the ONNX
fixtures that the Rust tests import).
"""
import os
import sys
import tempfile
import unittest

import onnx
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))
import drconv_onnx  # noqa: E402
from drconv_onnx import ExportError  # noqa: E402
from export_pytorch import DRConv2d  # noqa: E402  (the seed's layer, verbatim)


def layers(channels=4):
    """16 layers: r = 1..16, k = 1/3/5, stride 2 and dilation 2 among them, sizes kept >= 5."""
    out = []
    for r in range(1, 17):
        k = (1, 3, 5)[r % 3]
        stride = 2 if r in (4, 11) else 1
        dilation = 2 if r in (7, 14) else 1
        padding = dilation * (k - 1) // 2
        out.append(DRConv2d(channels, channels, k, region_num=r, stride=stride,
                            padding=padding, dilation=dilation))
    return out


class InSequential(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(*layers())

    def forward(self, x):
        return self.body(x)


class InModuleList(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(layers())

    def forward(self, x):
        for block in self.blocks:
            x = torch.tanh(block(x))
        return x


class YoloStyle(nn.Module):
    """As YOLOv5's DetectionModel keeps its layers: ``model.model[i]``."""

    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), *layers(), nn.Conv2d(4, 2, 1))

    def forward(self, x):
        return self.model(x)


def export(model, x, **kwargs):
    path = os.path.join(tempfile.mkdtemp(), "m.onnx")
    found = drconv_onnx.export(model, x, path, **kwargs)
    return found, onnx.load(path)


class ExportTest(unittest.TestCase):
    def test_one_node_per_layer_nested_three_ways(self):
        for cls, channels in ((InSequential, 4), (InModuleList, 4), (YoloStyle, 3)):
            with self.subTest(cls.__name__):
                torch.manual_seed(0)
                model = cls().eval()
                found, proto = export(model, torch.randn(2, channels, 24, 20))
                nodes = [n for n in proto.graph.node if n.domain == "drconv"]
                self.assertEqual(len(nodes), 16)
                self.assertEqual([a["region_num"] for _, a in found], list(range(1, 17)))
                self.assertEqual({a["kernel_size"] for _, a in found}, {1, 3, 5})
                self.assertIn(2, {a["stride"] for _, a in found})
                self.assertIn(2, {a["dilation"] for _, a in found})
                # Every node's inputs are x and six initializers under state_dict names
                # (export() checks the values bit for bit: check_file).
                for node, (prefix, _) in zip(nodes, found):
                    self.assertEqual(list(node.input[1:]),
                                     [f"{prefix}.{p}" for p in drconv_onnx.PARAM_NAMES])
                opsets = {o.domain: o.version for o in proto.opset_import}
                self.assertEqual(opsets["drconv"], 1)
                self.assertEqual(proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param,
                                 "batch")

    def test_node_maths_is_the_seed_layer(self):
        torch.manual_seed(1)
        for layer in layers(5):
            x = torch.randn(2, 5, 13, 11)
            (prefix, _, attrs), = drconv_onnx.find_drconv_layers(layer)
            params = [layer.get_parameter(n) for n in drconv_onnx.PARAM_NAMES]
            with torch.no_grad():
                want = layer.eval()(x)
                got = drconv_onnx.drconv_forward(x, *params, *[attrs[n] for n in (
                    "kernel_size", "region_num", "stride", "padding", "dilation")])
            self.assertEqual(prefix, "")
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)

    def test_layers_are_restored_after_export(self):
        torch.manual_seed(2)
        model = InSequential().train()
        x = torch.randn(1, 4, 16, 16)
        export(model, x)
        self.assertTrue(model.training)
        self.assertFalse(any("forward" in m.__dict__ for m in model.modules()))
        model(x).sum().backward()  # the seed's own forward and backward again

    def test_static_batch(self):
        _, proto = export(InSequential().eval(), torch.randn(3, 4, 16, 16), dynamic_batch=False)
        self.assertEqual(proto.graph.output[0].type.tensor_type.shape.dim[0].dim_value, 3)

    def test_what_the_node_cannot_express(self):
        def modified(edit):
            layer = DRConv2d(4, 4, 3, region_num=2, padding=1)
            edit(layer)
            return layer

        def no_guide_bias(layer):
            layer.conv_guide = nn.Conv2d(4, 2, 3, padding=1, bias=False)

        def relu_not_sigmoid(layer):
            layer.conv_kernel[2] = nn.ReLU()

        cases = [
            ("asymmetric padding", DRConv2d(4, 4, 3, region_num=2, padding=(1, 2)), "padding"),
            ("strides differ", DRConv2d(4, 4, 3, region_num=2, stride=(1, 2)), "stride"),
            ("dilations differ", DRConv2d(4, 4, 3, region_num=2, dilation=(2, 1)), "dilation"),
            ("guide without bias", modified(no_guide_bias), "bias"),
            ("generator changed", modified(relu_not_sigmoid), "ReLU"),
            ("an extra keyword", DRConv2d(4, 4, 3, region_num=2, padding_mode="reflect"),
             "padding_mode"),
        ]
        for name, layer, word in cases:
            with self.subTest(name):
                with self.assertRaises(ExportError) as err:
                    drconv_onnx.find_drconv_layers(nn.Sequential(layer))
                self.assertIn("0", str(err.exception))  # names the layer's path
                self.assertIn(word, str(err.exception))

    def test_padding_same(self):
        layer = DRConv2d(4, 4, 5, region_num=3, padding="same", dilation=2)
        (_, _, attrs), = drconv_onnx.find_drconv_layers(layer)
        self.assertEqual(attrs["padding"], 4)


if __name__ == "__main__":
    torch.set_num_threads(1)
    unittest.main()
