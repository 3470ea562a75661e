#!/usr/bin/env python3
"""Export a PyTorch model with DRConv2d layers to ONNX: one ``drconv.DRConv2d`` node per layer.

Every module shaped like the seed's ``DRConv2d`` (its class or any module with the same
structure, nested anywhere: ``Sequential``, ``ModuleList``, YOLO's ``model.model[i]``) becomes
one node of the custom domain ``drconv`` (version 1)::

    y = drconv.DRConv2d(x, conv_kernel.1.weight, conv_kernel.1.bias,
                        conv_kernel.3.weight, conv_kernel.3.bias,
                        conv_guide.weight, conv_guide.bias)
        attributes: kernel_size, region_num, stride, padding, dilation (ints)

whose six weights are initializers under their ``state_dict`` names. Everything else is left to
PyTorch's exporter (Conv + BatchNorm folded as usual). ``drconv::onnx::DrConv2dOp`` (the Rust
crate, feature ``onnx``) turns the node into ``drconv::burn::DrConv2dFn`` when burn-onnx generates
the model.

A YOLOv5 user who added the seed's ``DRConv2d`` to ``models/common.py``::

    python -c "import torch, drconv_onnx; m = torch.load('best.pt', weights_only=False)['model']; \\
        drconv_onnx.export(m.float(), torch.zeros(1, 3, 640, 640), 'best.onnx')"

or ``python python/drconv_onnx.py model.pt model.onnx --shape 1 3 640 640`` (a whole model
saved with ``torch.save(model)``, or a checkpoint dict holding one under ``model`` / ``ema``).
Needs ``pip install torch onnx``.
"""
import argparse
import contextlib
import os
import sys
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

DOMAIN = "drconv"
OP_TYPE = "DRConv2d"
VERSION = 1
# The node's inputs after x, as the layer's state_dict names them.
PARAM_NAMES = (
    "conv_kernel.1.weight",
    "conv_kernel.1.bias",
    "conv_kernel.3.weight",
    "conv_kernel.3.bias",
    "conv_guide.weight",
    "conv_guide.bias",
)


class ExportError(ValueError):
    """A DRConv2d layer the node cannot express, or an export that did not come out right."""


def _pair_value(path, name, value):
    """The one int a (possibly tuple) conv argument holds; an error when its two sides differ."""
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise ExportError(
                f"{path}: {name} {tuple(value)} differs between height and width; "
                f"drconv.DRConv2d takes one {name} for both"
            )
        value = value[0]
    return int(value)


def _is_drconv_shaped(module):
    """Has the seed's parts (whatever its class is called); checked in detail by `layer_attrs`."""
    return (
        isinstance(getattr(module, "conv_kernel", None), nn.Sequential)
        and isinstance(getattr(module, "conv_guide", None), nn.Conv2d)
        and hasattr(module, "region_num")
    )


def _check_kernel_generator(path, gen, i, o, k, r):
    """The generator must be the seed's: pool to k x k, 1x1 I -> r*r, sigmoid, grouped 1x1."""
    parts = list(gen)
    kinds = (nn.AdaptiveAvgPool2d, nn.Conv2d, nn.Sigmoid, nn.Conv2d)
    if len(parts) != 4 or not all(isinstance(p, t) for p, t in zip(parts, kinds)):
        found = ", ".join(type(p).__name__ for p in parts)
        raise ExportError(
            f"{path}.conv_kernel is [{found}]; drconv.DRConv2d expects "
            "[AdaptiveAvgPool2d, Conv2d, Sigmoid, Conv2d] (a modified layer)"
        )
    pool, c1, _, c3 = parts
    size = pool.output_size
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    expect = {
        "conv_kernel.0 output_size": (size, (k, k)),
        "conv_kernel.1 in/out channels": ((c1.in_channels, c1.out_channels), (i, r * r)),
        "conv_kernel.1 kernel_size": (tuple(c1.kernel_size), (1, 1)),
        "conv_kernel.1 groups": (c1.groups, 1),
        "conv_kernel.3 in/out channels": ((c3.in_channels, c3.out_channels), (r * r, r * i * o)),
        "conv_kernel.3 kernel_size": (tuple(c3.kernel_size), (1, 1)),
        "conv_kernel.3 groups": (c3.groups, r),
    }
    for what, (got, want) in expect.items():
        if got != want:
            raise ExportError(f"{path}: {what} is {got}, the layer needs {want} (a modified layer)")
    for name, conv in (("conv_kernel.1", c1), ("conv_kernel.3", c3)):
        if conv.bias is None:
            raise ExportError(f"{path}.{name} has no bias; drconv.DRConv2d needs all six tensors")
        if tuple(conv.stride) != (1, 1) or tuple(conv.padding) != (0, 0):
            raise ExportError(f"{path}.{name} has stride {conv.stride} / padding {conv.padding}")


def _guide_padding(path, guide, k, d):
    """The guide's padding as one int ('same' and 'valid' resolved)."""
    padding = guide.padding
    if padding == "valid":
        return 0
    if padding == "same":
        if (d * (k - 1)) % 2:
            raise ExportError(f"{path}: padding 'same' with dilation {d}, k {k} is asymmetric")
        return d * (k - 1) // 2
    return _pair_value(path, "padding", padding)


def layer_attrs(path, module):
    """The node's attributes of one DRConv2d-shaped module, or an `ExportError` naming the part
    the node cannot express."""
    guide = module.conv_guide
    r = int(module.region_num)
    i, k = guide.in_channels, _pair_value(path, "kernel_size", guide.kernel_size)
    if guide.out_channels != r:
        raise ExportError(f"{path}: conv_guide has {guide.out_channels} outputs, region_num {r}")
    if guide.groups != 1 or guide.bias is None or guide.padding_mode != "zeros":
        raise ExportError(
            f"{path}: conv_guide has groups {guide.groups}, bias {guide.bias is not None}, "
            f"padding_mode {guide.padding_mode!r}; the layer needs 1, True, 'zeros'"
        )
    gen_out = module.conv_kernel[3].out_channels if len(module.conv_kernel) == 4 else 0
    if gen_out % (r * i):
        raise ExportError(f"{path}: conv_kernel.3 has {gen_out} outputs, not a multiple of r*I")
    o = gen_out // (r * i)
    _check_kernel_generator(path, module.conv_kernel, i, o, k, r)
    s = _pair_value(path, "stride", guide.stride)
    d = _pair_value(path, "dilation", guide.dilation)
    extra = set(getattr(module, "kwargs", {}) or {}) - {"stride", "padding", "dilation"}
    if extra:
        raise ExportError(f"{path}: keyword arguments {sorted(extra)} are not part of the node")
    return {
        "in_channels": i,
        "out_channels": o,
        "kernel_size": k,
        "region_num": r,
        "stride": s,
        "padding": _guide_padding(path, guide, k, d),
        "dilation": d,
    }


def find_drconv_layers(model):
    """(state_dict prefix, module, attributes) of every DRConv2d-shaped module, in model order."""
    found = []
    for path, module in model.named_modules():
        if _is_drconv_shaped(module):
            found.append((path, module, layer_attrs(path or "<model>", module)))
    return found


def output_size(size, k, s, p, d):
    """The layer's output height or width (as PyTorch's conv computes it)."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def drconv_forward(x, w1, b1, w3, b3, gw, gb, k, r, s, p, d):
    """The layer's maths in plain functional ops (what the node stands for in the trace): each
    pixel takes the output of the region its guide logits rank first (first maximum on ties)."""
    n, i = x.shape[0], x.shape[1]
    pooled = F.adaptive_avg_pool2d(x, (k, k))
    kernels = F.conv2d(torch.sigmoid(F.conv2d(pooled, w1, b1)), w3, b3, groups=r)
    kernels = kernels.reshape(n * r * (w3.shape[0] // (r * i)), i, k, k)
    y = F.conv2d(x.reshape(1, n * i, *x.shape[2:]), kernels, None, s, p, d, groups=n)
    y = y.reshape(n, r, -1, y.shape[-2], y.shape[-1])
    region = F.conv2d(x, gw, gb, s, p, d).argmax(dim=1, keepdim=True)
    index = region.unsqueeze(2).expand(-1, -1, y.shape[2], -1, -1)
    return y.gather(1, index).squeeze(1)


class _DrConvNode(torch.autograd.Function):
    """One drconv.DRConv2d node in TorchScript export."""

    @staticmethod
    def forward(ctx, x, w1, b1, w3, b3, gw, gb, k, r, s, p, d, dynamic_batch):
        # The node stands for the body: keep it out of the trace (TorchScript's peephole pass
        # trips over the recorded body when r = 1).
        state = torch._C._get_tracing_state()
        torch._C._set_tracing_state(None)
        try:
            return drconv_forward(x, w1, b1, w3, b3, gw, gb, k, r, s, p, d)
        finally:
            torch._C._set_tracing_state(state)

    @staticmethod
    def symbolic(g, x, w1, b1, w3, b3, gw, gb, k, r, s, p, d, dynamic_batch):
        y = g.op(
            f"{DOMAIN}::{OP_TYPE}",
            x,
            w1,
            b1,
            w3,
            b3,
            gw,
            gb,
            kernel_size_i=k,
            region_num_i=r,
            stride_i=s,
            padding_i=p,
            dilation_i=d,
        )
        sizes = x.type().varyingSizes()
        if sizes is not None and len(sizes) == 4:
            o = w3.type().varyingSizes()[0] // (r * sizes[1])
            hw = [None if v is None else output_size(v, k, s, p, d) for v in sizes[2:]]
            batch = None if dynamic_batch else sizes[0]
            y.setType(x.type().with_sizes([batch, o, *hw]))
        return y


@contextlib.contextmanager
def _as_nodes(layers, dynamic_batch):
    """Each layer's forward replaced by the node for the export, restored afterwards."""

    def node_forward(module, a):
        def forward(x):
            params = [module.get_parameter(n) for n in PARAM_NAMES]
            attrs = [a[n] for n in ("kernel_size", "region_num", "stride", "padding", "dilation")]
            return _DrConvNode.apply(x, *params, *attrs, dynamic_batch)

        return forward

    try:
        for _, module, attrs in layers:
            module.forward = node_forward(module, attrs)
        yield
    finally:
        for _, module, _ in layers:
            if "forward" in module.__dict__:
                del module.forward


def export(model, example_input, path, opset=17, dynamic_batch=True, input_names=None,
           output_names=None, check=True):
    """Export `model` (run on `example_input`) to the ONNX file `path`: every DRConv2d-shaped
    layer as one drconv.DRConv2d node, the rest by PyTorch's exporter, in eval mode. Returns the
    layers found as (state_dict prefix, attributes). Raises `ExportError` for a layer the node
    cannot express or a node that did not come out as expected."""
    was_training = model.training
    model.eval()
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    input_names = input_names or [f"input{i}" if i else "images" for i in range(len(inputs))]
    try:
        layers = find_drconv_layers(model)
        with torch.no_grad():
            outputs = model(*inputs)
        count = len(outputs) if isinstance(outputs, (tuple, list)) else 1
        output_names = output_names or [f"output{i}" for i in range(count)]
        axes = {n: {0: "batch"} for n in [*input_names, *output_names]} if dynamic_batch else None
        with _as_nodes(layers, dynamic_batch), torch.no_grad(), warnings.catch_warnings():
            # The custom node needs the TorchScript exporter, which PyTorch marks deprecated.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                model,
                inputs,
                path,
                dynamo=False,
                opset_version=opset,
                custom_opsets={DOMAIN: VERSION},
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=axes,
                do_constant_folding=True,
            )
    finally:
        model.train(was_training)
    if dynamic_batch:
        _name_batch_dims(path)
    if check:
        check_file(path, model, layers)
    return [(prefix, attrs) for prefix, _, attrs in layers]


def _name_batch_dims(path):
    """The nodes' outputs get the graph's batch axis name (PyTorch invents one per custom node)."""
    import onnx

    proto = onnx.load(path)
    outs = {o for n in proto.graph.node if n.domain == DOMAIN for o in n.output}
    for info in proto.graph.value_info:
        dims = info.type.tensor_type.shape.dim
        if info.name in outs and dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
    onnx.save(proto, path)


def _node_attrs(node):
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def check_file(path, model, layers):
    """onnx.checker on the file, then one node per layer with the layer's attributes and its six
    weights exact, under their state_dict names."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(path)
    onnx.checker.check_model(proto)
    nodes = [n for n in proto.graph.node if n.domain == DOMAIN and n.op_type == OP_TYPE]
    if len(nodes) != len(layers):
        raise ExportError(f"{path}: {len(nodes)} drconv.DRConv2d nodes for {len(layers)} layers")
    inits = {t.name: t for t in proto.graph.initializer}
    state = model.state_dict()
    for node, (prefix, _, attrs) in zip(nodes, layers):
        want = {n: attrs[n] for n in ("kernel_size", "region_num", "stride", "padding", "dilation")}
        if _node_attrs(node) != want:
            raise ExportError(f"{path}: node {node.name} has {_node_attrs(node)}, layer {want}")
        for name, param in zip(node.input[1:], PARAM_NAMES):
            key = f"{prefix}.{param}" if prefix else param
            if name != key or name not in inits:
                raise ExportError(f"{path}: node {node.name} input {name!r}, expected {key!r}")
            value = torch.from_numpy(numpy_helper.to_array(inits[name]).copy())
            if not torch.equal(value, state[key].detach().cpu()):
                raise ExportError(f"{path}: initializer {name} differs from the state_dict")


def _load_model(path):
    """A whole model from torch.save(model), or a checkpoint holding one (YOLO: 'ema'/'model')."""
    # The model's classes come from the user's code (YOLOv5's models/common.py): importable from
    # the working directory, as YOLO's own scripts run.
    sys.path.insert(0, os.getcwd())
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as e:
        raise ExportError(
            f"{path}: the model's class needs module {e.name!r}: run from the directory that "
            "has it (YOLOv5's root) or put it on PYTHONPATH"
        ) from e
    if isinstance(obj, dict):
        # Not `or`: a module's truth is its length for Sequential-like models.
        obj = obj["ema"] if obj.get("ema") is not None else obj.get("model")
    if not isinstance(obj, nn.Module):
        raise ExportError(f"{path} holds no model (a state_dict needs its model class: use export())")
    return obj.float()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="torch.save(model) file or a checkpoint with 'model'/'ema'")
    parser.add_argument("out", help="the .onnx file to write")
    parser.add_argument("--shape", type=int, nargs=4, default=[1, 3, 640, 640],
                        metavar=("N", "C", "H", "W"), help="the example input's shape")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--static-batch", action="store_true", help="no dynamic batch axis")
    args = parser.parse_args()
    model = _load_model(args.model)
    layers = export(model, torch.zeros(args.shape), args.out, args.opset, not args.static_batch)
    for prefix, attrs in layers:
        print(f"{prefix}: drconv.DRConv2d {attrs}")
    print(f"wrote {args.out}: {len(layers)} DRConv2d nodes")


if __name__ == "__main__":
    try:
        main()
    except ExportError as e:
        sys.exit(f"drconv_onnx: {e}")
