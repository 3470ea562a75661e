#!/usr/bin/env python3
"""Writes the committed seed inputs of the fuzz targets (corpus/*/seed-*), from the `tiny`
golden case. Run from fuzz/: python3 make_seeds.py"""
import json, struct, pathlib

case = pathlib.Path("../tests/golden/tiny")
meta = json.loads((case / "case.json").read_text())
params = ["conv_kernel.1.weight", "conv_kernel.1.bias", "conv_kernel.3.weight",
          "conv_kernel.3.bias", "conv_guide.weight", "conv_guide.bias"]


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, bytes)] -> safetensors file bytes."""
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def param(name):
    tm = meta["tensors"][f"param.{name}.bin"]
    return tm["shape"], (case / f"param.{name}.bin").read_bytes()


def f16(raw):
    import array
    a = array.array("f"); a.frombytes(raw)
    return b"".join(struct.pack("<e", v) for v in a)


out = pathlib.Path("corpus/weights_loader")
out.mkdir(parents=True, exist_ok=True)
f32 = [(n, "F32", *param(n)) for n in params]
(out / "seed-f32").write_bytes(safetensors(f32, {"format": "pt"}))
(out / "seed-f16").write_bytes(safetensors([(n, "F16", s, f16(b)) for n, _, s, b in f32]))
(out / "seed-prefixed").write_bytes(safetensors([("m." + n, d, s, b) for n, d, s, b in f32]))
(out / "seed-missing").write_bytes(safetensors(f32[:-1]))

# case_loader: case.json, NUL, then each manifest file (sorted by name) as u16 length + bytes.
out = pathlib.Path("corpus/case_loader")
out.mkdir(parents=True, exist_ok=True)
keep = ["x.bin"] + [f"param.{n}.bin" for n in params]
for name, extra, sha in [("seed-minimal", [], False), ("seed-region-sha", ["inter.region_index.bin", "output.bin"], True)]:
    m = {k: meta[k] for k in ["case", "B", "in_channels", "out_channels", "kernel_size",
                              "region_num", "H", "W", "H_out", "W_out", "effective_conv_params"]}
    files = sorted(keep + extra)
    m["tensors"] = {}
    for f in files:
        tm = dict(meta["tensors"][f])
        tm.pop("desc", None)
        if not sha:
            tm.pop("sha256", None)
        m["tensors"][f] = tm
    blob = json.dumps(m, separators=(",", ":")).encode() + b"\0"
    for f in files:
        raw = (case / f).read_bytes()
        blob += struct.pack("<H", len(raw)) + raw
    (out / name).write_bytes(blob)
