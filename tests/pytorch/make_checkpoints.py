"""Writes the PyTorch checkpoints of tests/pytorch_checkpoint.rs without PyTorch.

torch.save's format is a zip (stored entries) of `<name>/data.pkl` (a protocol-2 pickle), one
`<name>/data/<key>` file per storage and `<name>/version`. In the pickle a tensor is the call
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`, its
storage the persistent id ('storage', torch.<Type>Storage, key, location, numel), a parameter
`torch._utils._rebuild_parameter(tensor, requires_grad, hooks)`, and a module a plain object
(NEWOBJ of its class, then BUILD with its __dict__: `_parameters`, `_buffers`, `_modules`).
Stand-ins for those classes and functions, registered under PyTorch's module names, make the
standard pickle module write exactly that.

Values: element i (row-major, logical order) of the t-th tensor written is
((7 i + 13 t) % 23 - 11) / 8, exact in float16 and float32; the test recomputes them.

    python3 tests/pytorch/make_checkpoints.py   # writes tests/pytorch/*.pt
"""
import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


def module(name):
    """A stand-in module `name` (and its parents: pickle imports the whole path)."""
    if name in sys.modules:
        return sys.modules[name]
    m = types.ModuleType(name)
    sys.modules[name] = m
    if "." in name:
        parent, child = name.rsplit(".", 1)
        setattr(module(parent), child, m)
    return m


def register(mod, obj, name):
    obj.__module__, obj.__qualname__, obj.__name__ = mod.__name__, name, name
    setattr(mod, name, obj)
    return obj


torch = module("torch")
utils = module("torch._utils")
for kind in ("FloatStorage", "HalfStorage"):
    register(torch, type(kind, (), {}), kind)


def _rebuild_tensor_v2(*args):
    raise NotImplementedError


def _rebuild_parameter(*args):
    raise NotImplementedError


register(utils, _rebuild_tensor_v2, "_rebuild_tensor_v2")
register(utils, _rebuild_parameter, "_rebuild_parameter")


class Storage:
    def __init__(self, kind, values):
        self.kind, self.values = kind, values


class Tensor:
    """A view of a storage; pickles as PyTorch's tensors do."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce_ex__(self, proto):
        args = (self.storage, self.offset, tuple(self.size), tuple(self.stride), False,
                collections.OrderedDict())
        return (_rebuild_tensor_v2, args)


class Parameter:
    def __init__(self, tensor):
        self.tensor = tensor

    def __reduce_ex__(self, proto):
        return (_rebuild_parameter, (self.tensor, True, collections.OrderedDict()))


COUNTER = [0]


def value(t, i):
    return ((7 * i + 13 * t) % 23 - 11) / 8


def tensor(size, kind="FloatStorage", transposed=False):
    """The next tensor of `size`, contiguous, or (2-D and up) stored with its first two axes
    swapped and strides to match (a non-contiguous view)."""
    t = COUNTER[0]
    COUNTER[0] += 1
    n = 1
    for s in size:
        n *= s
    logical = [value(t, i) for i in range(n)]
    stride = [1] * len(size)
    for d in range(len(size) - 2, -1, -1):
        stride[d] = stride[d + 1] * size[d + 1]
    if not transposed:
        return Tensor(Storage(kind, logical), 0, size, stride)
    # Storage laid out as the tensor with axes 0 and 1 swapped, 3 leading spare elements.
    a, b, rest = size[0], size[1], n // (size[0] * size[1])
    stored = [0.0] * 3 + [0.0] * n
    for i in range(a):
        for j in range(b):
            for k in range(rest):
                stored[3 + (j * a + i) * rest + k] = logical[(i * b + j) * rest + k]
    return Tensor(Storage(kind, stored), 3, size, [rest, a * rest] + stride[2:])


class Module:
    def __init__(self):
        self.training = False
        self._parameters = collections.OrderedDict()
        self._buffers = collections.OrderedDict()
        self._non_persistent_buffers_set = set()
        self._modules = collections.OrderedDict()


def module_class(mod, name):
    return register(module(mod), type(name, (Module,), {}), name)


Conv2d = module_class("torch.nn.modules.conv", "Conv2d")
Sigmoid = module_class("torch.nn.modules.activation", "Sigmoid")
Pool = module_class("torch.nn.modules.pooling", "AdaptiveAvgPool2d")
BatchNorm2d = module_class("torch.nn.modules.batchnorm", "BatchNorm2d")
Sequential = module_class("torch.nn.modules.container", "Sequential")
DRConv2d = module_class("models.common", "DRConv2d")
Conv = module_class("models.common", "Conv")
Model = module_class("models.yolo", "Model")


def conv(i, o, k, kind, bias=True, transposed=False):
    m = Conv2d()
    m._parameters["weight"] = Parameter(tensor([o, i, k, k], kind, transposed))
    m._parameters["bias"] = Parameter(tensor([o], kind)) if bias else None
    return m


def drconv(i, o, k, r, kind):
    """The seed's DRConv2d: conv_kernel = (pool, 1x1 conv, sigmoid, grouped 1x1 conv)."""
    m = DRConv2d()
    ck = Sequential()
    ck._modules["0"] = Pool()
    ck._modules["1"] = conv(i, r * r, 1, kind)
    ck._modules["2"] = Sigmoid()
    ck._modules["3"] = conv(r, r * i * o, 1, kind)
    m._modules["conv_kernel"] = ck
    m._modules["conv_guide"] = conv(i, r, k, kind)
    return m


def conv_bn(i, o, kind):
    m = Conv()
    m._modules["conv"] = conv(i, o, 3, kind, bias=False, transposed=True)
    bn = BatchNorm2d()
    for name in ("weight", "bias"):
        bn._parameters[name] = Parameter(tensor([o], kind))
    for name in ("running_mean", "running_var"):
        bn._buffers[name] = tensor([o], kind)
    m._modules["bn"] = bn
    return m


class Saver(pickle.Pickler):
    def __init__(self, f):
        super().__init__(f, protocol=2)
        self.storages = {}

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            key, _ = self.storages.setdefault(id(obj), (str(len(self.storages)), obj))
            return ("storage", getattr(torch, obj.kind), key, "cpu", len(obj.values))
        return None


def save(obj, name):
    buf = io.BytesIO()
    saver = Saver(buf)
    saver.dump(obj)
    path = os.path.join(HERE, name + ".pt")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(name + "/data.pkl", buf.getvalue())
        z.writestr(name + "/byteorder", "little")
        for key, storage in saver.storages.values():
            fmt = "<%d%s" % (len(storage.values), "f" if storage.kind == "FloatStorage" else "e")
            z.writestr(name + "/data/" + key, struct.pack(fmt, *storage.values))
        z.writestr(name + "/version", "3\n")
    print(path, os.path.getsize(path), "bytes")


def save_raw(pkl, name):
    """A checkpoint whose data.pkl is `pkl` as given (a crafted one)."""
    path = os.path.join(HERE, name + ".pt")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(name + "/data.pkl", pkl)
        z.writestr(name + "/version", "3\n")
    print(path, os.path.getsize(path), "bytes")


def main():
    # 1. A lone layer's state_dict (an OrderedDict with `_metadata`, as module.state_dict()).
    COUNTER[0] = 0
    sd = collections.OrderedDict()
    layer = drconv(8, 16, 3, 4, "FloatStorage")
    ck = layer._modules["conv_kernel"]._modules
    for prefix, m in (("conv_kernel.1.", ck["1"]), ("conv_kernel.3.", ck["3"]),
                      ("conv_guide.", layer._modules["conv_guide"])):
        for n, p in m._parameters.items():
            sd[prefix + n] = p.tensor
    sd._metadata = collections.OrderedDict([("", {"version": 1})])
    save(sd, "state_dict")

    # 2. A YOLO-style training checkpoint: the whole model pickled, in float16, a transposed
    # conv weight, two DRConv2d layers in a block, the optimizer's state beside it.
    COUNTER[0] = 0
    seq = Sequential()
    seq._modules["0"] = conv_bn(3, 16, "HalfStorage")
    block = Module.__new__(module_class("models.common", "DRBlock"))
    Module.__init__(block)
    block._modules["drconv"] = drconv(16, 16, 3, 8, "HalfStorage")
    block._modules["proj"] = drconv(16, 8, 1, 2, "HalfStorage")
    seq._modules["1"] = block
    model = Model()
    model._modules["model"] = seq
    ckpt = {
        "epoch": 3,
        "best_fitness": 0.25,
        "model": model,
        "ema": None,
        "optimizer": {"state": {0: {"momentum_buffer": tensor([4], "FloatStorage")}},
                      "param_groups": [{"lr": 0.01, "params": [0]}]},
    }
    # A buffer registered with persistent=False: in the pickle, not in the state_dict.
    bn = seq._modules["0"]._modules["bn"]
    bn._buffers["cache"] = tensor([2], "HalfStorage")
    bn._non_persistent_buffers_set.add("cache")
    save(ckpt, "yolo_checkpoint")

    # 3. Crafted: (x, x) nested 100 deep through the memo, 2^100 paths in 500 bytes.
    save_raw(b"\x80\x02N" + b"q\x00h\x00\x86" * 100 + b".", "shared_paths")


if __name__ == "__main__":
    main()
