#!/usr/bin/env python3
"""A small YOLO-style detector with two DRConv2d neck blocks, trained on synthetic shapes.

It exists to give this crate a real multi-layer model with DRConv inside (exported to ONNX with
the DRConv2d layers as custom ``drconv.DRConv2d`` nodes) plus fixtures to check a Rust
re-implementation of the whole pipeline against PyTorch. Needs ``torch``, ``onnx`` and
``numpy`` (``onnxruntime`` optional); ``python/drconv_onnx.py`` does the DRConv export and the
seed's ``DRConv2d`` comes from ``examples/export_pytorch.py`` (which imports ``safetensors`` and
``PIL``). Both exports are checked against PyTorch (max |diff| < 1e-4): the plain-conv one in
onnxruntime, the DRConv one in onnx's reference evaluator with the custom node run by the seed's
layer. Run from the repository root::

    python python/detector.py train --out examples/onnx_detector          # 1500 steps per model
    python python/detector.py train --out /tmp/det --minutes 0.5          # quick smoke run
    python python/detector.py preview --out preview.png                   # look at the data

``train`` trains the DRConv model and a plain-conv twin (same data, same seeds), evaluates both,
and writes into ``--out``:

* ``detector.onnx``       the DRConv model (``drconv_onnx.export``, opset 17, dynamic batch)
* ``detector_conv.onnx``  the plain-conv model (``torch.onnx.export``, opset 17, dynamic batch)
* ``sample.png``          held-out image 0, 128x128 RGB
* ``fixtures.safetensors`` F32 tensors: ``input_b1`` [1,3,128,128] (= sample.png / 255),
  ``p8_b1`` [1,8,16,16], ``p16_b1`` [1,8,8,8] (DRConv model, PyTorch, eval mode),
  ``input_b3`` [3,3,128,128] (held-out images 0, 1, 2), ``p8_b3``, ``p16_b3``; the plain-conv
  model's outputs for the same inputs as ``conv_p8_b1``, ``conv_p16_b1``, ``conv_p8_b3``,
  ``conv_p16_b3``
* ``metrics.json``        mAP@0.5 of both models, steps, wall time, parameter counts, seeds,
  versions, and the detections of both models on sample.png after ``decode`` + ``nms``

Every image is quantised to 8 bits (``round(255 x) / 255``) when drawn, so an image read back
from a PNG is bit-for-bit the tensor the model saw. Training stops after ``--steps`` steps or
``--minutes`` of wall time, whichever comes first, so with a time budget the step count (and so
the weights) depends on the machine; the data and the initialisation do not.

Model: input ``images`` [B,3,128,128] RGB in [0,1] (no normalisation), outputs ``p8``
[B,8,16,16] (stride 8) and ``p16`` [B,8,8,8] (stride 16). Channels per cell (row gy, column gx)
at stride s::

    0     objectness logit            obj = sigmoid(t0)
    1, 2  tx, ty                      cx = (gx + sigmoid(tx)) * s,  cy = (gy + sigmoid(ty)) * s
    3, 4  tw, th                      w = s * exp(clamp(tw, -4, 4)), h = s * exp(clamp(th, -4, 4))
    5..7  class logits (0 circle, 1 square, 2 triangle)

Training assignment: a box (x1, y1, x2, y2) goes to stride 8 if max(w, h) < 32 px, else stride
16, and there to the cell gx = floor(cx / s), gy = floor(cy / s) (clamped to the grid); the
synthetic data never puts two boxes in one cell.

``decode((p8, p16), conf)``: for each image, scales in the order p8 then p16, cells row-major
(gy, then gx): p = softmax(class logits), cls = argmax p (lowest index on ties), score =
sigmoid(t0) * max p; a cell is kept if score > conf, as the box (cx - w/2, cy - h/2, cx + w/2,
cy + h/2) (not clipped), cls, score. ``nms(dets, iou)``: stable sort by score, highest first;
walk the list and keep a box unless a kept box of the same class has IoU > iou with it; at most
100 boxes. IoU = inter / (area_a + area_b - inter) with continuous coordinates (no +1),
inter = max(0, min(x2) - max(x1)) * max(0, min(y2) - max(y1)), 0 if the union is <= 0.
Defaults: conf 0.25, iou 0.45 (evaluation uses conf 0.001). decode computes in float64.

mAP@0.5 is VOC-style (all-point interpolated AP per class, averaged over the 3 classes) on 200
held-out images. Torch runs on one CPU thread (``DETECTOR_THREADS=n`` for more).
"""
import argparse
import json
import math
import os
import struct
import sys
import time
import warnings
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
sys.path.insert(0, HERE)
from export_pytorch import DRConv2d  # noqa: E402  (the seed's reference layer, verbatim)

SIZE = 128
NUM_CLASSES = 3
CLASS_NAMES = ["circle", "square", "triangle"]
STRIDES = (8, 16)
SPLIT = 32  # boxes with max side < SPLIT px go to stride 8, the rest to stride 16
TRAIN_SEED, EVAL_SEED, INIT_SEED = 1, 2, 0


# ---------------------------------------------------------------- synthetic data

def _background(rng, size):
    """A linear gradient between two random colours, sometimes with faint stripes, so the
    detector cannot find shapes by colour or flatness alone."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    a = rng.uniform(0, 2 * np.pi)
    t = (xx * np.cos(a) + yy * np.sin(a)) / size
    t = (t - t.min()) / (t.max() - t.min())
    c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    img = c0[:, None, None] * (1 - t) + c1[:, None, None] * t
    if rng.random() < 0.5:
        b = rng.uniform(0, 2 * np.pi)
        period = rng.uniform(6, 20)
        phase = np.sin(2 * np.pi * (xx * np.cos(b) + yy * np.sin(b)) / period)
        img = img + rng.uniform(0.03, 0.12) * rng.uniform(-1, 1, 3)[:, None, None] * phase
    return img.astype(np.float32)


def _shape_mask(rng, cls, cx, cy, side, size):
    """Boolean mask (pixel centres) and exact box of a shape whose box has max side `side`."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    if cls == 0:  # circle
        r = side / 2
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r, (cx - r, cy - r, cx + r, cy + r)
    if cls == 1:  # axis-aligned square
        h = side / 2
        return (abs(xx - cx) <= h) & (abs(yy - cy) <= h), (cx - h, cy - h, cx + h, cy + h)
    # Equilateral triangle, random rotation, scaled so its box's longer side is `side`.
    ang = rng.uniform(0, 2 * np.pi) + np.array([0, 2, 4]) * np.pi / 3
    vx, vy = np.cos(ang), np.sin(ang)
    k = side / max(vx.max() - vx.min(), vy.max() - vy.min())
    vx, vy = cx + k * (vx - (vx.max() + vx.min()) / 2), cy + k * (vy - (vy.max() + vy.min()) / 2)
    inside = np.ones((size, size), bool)
    for i in range(3):  # inside = same side of all three (counter-clockwise) edges
        j = (i + 1) % 3
        inside &= (vx[j] - vx[i]) * (yy - vy[i]) - (vy[j] - vy[i]) * (xx - vx[i]) >= 0
    return inside, (vx.min(), vy.min(), vx.max(), vy.max())


def _overlap_ok(box, boxes):
    """Partial overlap is fine, heavy overlap or two boxes in one head cell are not."""
    for b in boxes:
        iw = min(box[2], b[2]) - max(box[0], b[0])
        ih = min(box[3], b[3]) - max(box[1], b[1])
        inter = max(iw, 0) * max(ih, 0)
        small = min((box[2] - box[0]) * (box[3] - box[1]), (b[2] - b[0]) * (b[3] - b[1]))
        if inter > 0.3 * small or assign(box) == assign(b):
            return False
    return True


def make_sample(rng, size=SIZE):
    """One image (float32 3 x size x size in [0,1], 8-bit quantised) and its boxes, an
    (n, 5) float32 array of (x1, y1, x2, y2, class) in pixels, 1 <= n <= 4."""
    img = _background(rng, size)
    boxes = []
    for _ in range(rng.integers(1, 5)):
        for _try in range(30):
            cls, side = int(rng.integers(0, NUM_CLASSES)), rng.uniform(14, 44)
            cx, cy = rng.uniform(side / 2 + 1, size - side / 2 - 1, 2)
            mask, box = _shape_mask(rng, cls, cx, cy, side, size)
            if _overlap_ok(box, boxes):
                break
        else:
            continue
        local = img[:, mask].mean(axis=1)
        for _try in range(50):  # a colour that stands out from the background under it
            colour = rng.uniform(0, 1, 3)
            if np.linalg.norm(colour - local) > 0.45:
                break
        img[:, mask] = colour[:, None]
        boxes.append((*box, cls))
    img = img + rng.normal(0, rng.uniform(0.01, 0.05), img.shape)
    img = np.round(np.clip(img, 0, 1) * 255) / 255
    return img.astype(np.float32), np.array(boxes, np.float32).reshape(-1, 5)


def make_dataset(n, seed):
    rng = np.random.default_rng(seed)
    return [make_sample(rng) for _ in range(n)]


# ---------------------------------------------------------------- model

class Conv(nn.Sequential):
    def __init__(self, c_in, c_out, k=1, s=1):
        super().__init__(nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.SiLU())


class C3(nn.Module):
    """CSP block: one 1x1 branch through a residual bottleneck, one straight, concat, 1x1."""

    def __init__(self, c):
        super().__init__()
        h = c // 2
        self.cv1, self.cv2, self.cv3 = Conv(c, h), Conv(c, h), Conv(2 * h, c)
        self.m = nn.Sequential(Conv(h, h, 1), Conv(h, h, 3))

    def forward(self, x):
        a = self.cv1(x)
        return self.cv3(torch.cat([a + self.m(a), self.cv2(x)], 1))


def neck_block(c_in, c_out, regions, drconv):
    if not drconv:
        conv = nn.Conv2d(c_in, c_out, 3, padding=1)
    else:
        conv = DRConv2d(c_in, c_out, 3, region_num=regions, padding=1)
        # The seed's default init generates kernels with std ~sqrt(1/12 + 1/(3r)) (~0.35),
        # ~20x a plain 3x3 conv's default (1/sqrt(3 * 9 c_in)); scale the generator down so
        # both models start with kernels of the same size (Adam's steps are absolute, so the
        # weight scale sets how fast a layer behind BatchNorm moves).
        gen = conv.conv_kernel[3]
        scale = (3 * 9 * c_in * (1 / 12 + 1 / (3 * regions))) ** -0.5
        with torch.no_grad():
            gen.weight.mul_(scale)
            gen.bias.mul_(scale)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.SiLU())


class Detector(nn.Module):
    """Backbone to stride 16, DRConv neck (P4, then upsampled + P3), 1x1 heads at stride 8, 16."""

    def __init__(self, num_classes=NUM_CLASSES, drconv=True):
        super().__init__()
        self.b8 = nn.Sequential(Conv(3, 16, 3, 2), Conv(16, 32, 3, 2), C3(32),
                                Conv(32, 64, 3, 2), C3(64))
        self.b16 = nn.Sequential(Conv(64, 96, 3, 2), C3(96))
        self.n16 = neck_block(96, 64, 4, drconv)
        self.n8 = neck_block(128, 64, 8, drconv)
        self.h8, self.h16 = nn.Conv2d(64, 5 + num_classes, 1), nn.Conv2d(64, 5 + num_classes, 1)
        for h in (self.h8, self.h16):  # start with objectness ~0.01: few positives per image
            nn.init.constant_(h.bias[:1], -4.6)

    def forward(self, x):
        p3 = self.b8(x)
        p4 = self.n16(self.b16(p3))
        f8 = self.n8(torch.cat([F.interpolate(p4, scale_factor=2.0, mode="nearest"), p3], 1))
        return self.h8(f8), self.h16(p4)


# ---------------------------------------------------------------- targets, loss, decode

def assign(box):
    """(scale index, gy, gx) of the head cell responsible for a box."""
    w, h = box[2] - box[0], box[3] - box[1]
    si = 0 if max(w, h) < SPLIT else 1
    s, g = STRIDES[si], SIZE // STRIDES[si]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return si, min(max(int(cy // s), 0), g - 1), min(max(int(cx // s), 0), g - 1)


def build_targets(boxes_list):
    """Per scale: objectness [B,G,G], box targets [B,4,G,G] (fx, fy in [0,1), log(w/s),
    log(h/s)) and class [B,G,G] (-1 where no object)."""
    out = []
    for s in STRIDES:
        g = SIZE // s
        n = len(boxes_list)
        out.append((torch.zeros(n, g, g), torch.zeros(n, 4, g, g), torch.full((n, g, g), -1)))
    for b, boxes in enumerate(boxes_list):
        for box in boxes:
            si, gy, gx = assign(box)
            s = STRIDES[si]
            obj, reg, cls = out[si]
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            obj[b, gy, gx] = 1
            reg[b, :, gy, gx] = torch.tensor([cx / s - gx, cy / s - gy,
                                              math.log((box[2] - box[0]) / s),
                                              math.log((box[3] - box[1]) / s)])
            cls[b, gy, gx] = int(box[4])
    return out


def loss_fn(outputs, targets):
    """BCE objectness on every cell, L1 box + CE class on positive cells; each term summed and
    divided by the number of objects (so few positives still count)."""
    l_obj = l_box = l_cls = 0.0
    npos = max(sum(int(t[0].sum()) for t in targets), 1)
    for p, (obj, reg, cls) in zip(outputs, targets):
        l_obj = l_obj + F.binary_cross_entropy_with_logits(p[:, 0], obj, reduction="sum")
        pos = obj > 0
        if pos.any():
            pr = p[:, 1:5].permute(0, 2, 3, 1)[pos]
            tr = reg.permute(0, 2, 3, 1)[pos]
            pr = torch.cat([pr[:, :2].sigmoid(), pr[:, 2:]], 1)
            l_box = l_box + (pr - tr).abs().sum()
            l_cls = l_cls + F.cross_entropy(p[:, 5:].permute(0, 2, 3, 1)[pos], cls[pos],
                                            reduction="sum")
    return (l_obj + 5 * l_box + l_cls) / npos, (l_obj / npos, l_box / npos, l_cls / npos)


def decode(outputs, conf=0.25):
    """Per image, an (n, 6) float64 array (x1, y1, x2, y2, score, cls); rules in the docstring."""
    outputs = [o.detach().double().numpy() if torch.is_tensor(o) else np.asarray(o, np.float64)
               for o in outputs]
    result = []
    for b in range(outputs[0].shape[0]):
        dets = []
        for p, s in zip(outputs, STRIDES):
            p = p[b]  # C x G x G
            g = p.shape[1]
            gy, gx = np.mgrid[0:g, 0:g]
            sig = lambda t: 1 / (1 + np.exp(-t))  # noqa: E731
            logits = p[5:] - p[5:].max(axis=0)
            prob = np.exp(logits) / np.exp(logits).sum(axis=0)
            score = sig(p[0]) * prob.max(axis=0)
            cls = prob.argmax(axis=0)
            cx, cy = (gx + sig(p[1])) * s, (gy + sig(p[2])) * s
            w, h = s * np.exp(np.clip(p[3], -4, 4)), s * np.exp(np.clip(p[4], -4, 4))
            d = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, score, cls], -1)
            dets.append(d.reshape(-1, 6)[score.reshape(-1) > conf])
        result.append(np.concatenate(dets))
    return result


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter = iw * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms(dets, iou_thr=0.45, max_det=100):
    """Greedy class-aware NMS on one image's decode() output; rules in the docstring."""
    keep = []
    for i in np.argsort(-dets[:, 4], kind="stable"):
        if all(dets[k, 5] != dets[i, 5] or iou(dets[k], dets[i]) <= iou_thr for k in keep):
            keep.append(i)
            if len(keep) == max_det:
                break
    return dets[keep]


def detect(model, images, conf=0.25, iou_thr=0.45):
    model.eval()
    with torch.no_grad():
        outs = model(torch.as_tensor(images))
    return [nms(d, iou_thr) for d in decode(outs, conf)]


# ---------------------------------------------------------------- evaluation

def average_precision(recall, precision):
    """VOC all-point interpolation: area under the monotone precision envelope."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    i = np.nonzero(r[1:] != r[:-1])[0]
    return float(((r[i + 1] - r[i]) * p[i + 1]).sum())


def evaluate(model, samples, iou_thr=0.5, batch=50):
    """mAP@0.5 (VOC-style: a detection is a true positive if its best-IoU ground truth of the
    same class has IoU >= 0.5 and was not matched before) and the per-class APs."""
    dets = []
    for i in range(0, len(samples), batch):
        x = np.stack([s[0] for s in samples[i:i + batch]])
        dets += detect(model, x, conf=0.001)
    aps = []
    for c in range(NUM_CLASSES):
        gts = [s[1][s[1][:, 4] == c] for s in samples]
        used = [np.zeros(len(g), bool) for g in gts]
        found = [(d[4], i, d) for i, ds in enumerate(dets) for d in ds if d[5] == c]
        found.sort(key=lambda t: -t[0])
        tp = np.zeros(len(found))
        for j, (_, i, d) in enumerate(found):
            ious = [iou(d, g) for g in gts[i]]
            if ious and max(ious) >= iou_thr and not used[i][int(np.argmax(ious))]:
                used[i][int(np.argmax(ious))] = True
                tp[j] = 1
        npos = sum(len(g) for g in gts)
        ctp = np.cumsum(tp)
        recall = ctp / max(npos, 1)
        precision = ctp / np.maximum(np.arange(1, len(found) + 1), 1)
        aps.append(average_precision(recall, precision))
    return float(np.mean(aps)), aps


# ---------------------------------------------------------------- training

def train(drconv, steps=1500, minutes=60.0, batch=16, lr=1e-3, seed=TRAIN_SEED, log_every=50):
    """Trains a Detector on freshly drawn samples (data from `seed`, weights from INIT_SEED)
    until `steps` or `minutes` run out; returns (model, steps done, wall seconds)."""
    torch.manual_seed(INIT_SEED)
    model = Detector(drconv=drconv)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    model.train()
    t0, step = time.time(), 0
    budget = minutes * 60
    while step < steps and time.time() - t0 < budget:
        # Cosine decay over the expected length, whichever of the two limits binds first.
        frac = min(step / steps, (time.time() - t0) / budget)
        for g in opt.param_groups:
            g["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        data = [make_sample(rng) for _ in range(batch)]
        x = torch.from_numpy(np.stack([d[0] for d in data]))
        loss, parts = loss_fn(model(x), build_targets([d[1] for d in data]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % log_every == 0:
            print(f"  {'drconv' if drconv else 'conv  '} step {step:5d} {time.time() - t0:6.1f}s "
                  f"loss {loss.item():.3f} (obj {parts[0]:.3f} box {parts[1]:.3f} "
                  f"cls {parts[2]:.3f})", flush=True)
    return model.eval(), step, time.time() - t0


# ---------------------------------------------------------------- files

def write_png(path, img):
    """8-bit RGB PNG from a 3 x H x W float image in [0,1], with zlib only (no PIL)."""
    a = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
    raw = b"".join(b"\x00" + row.tobytes() for row in a)  # filter type 0 per row

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", a.shape[1], a.shape[0], 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9))
                + chunk(b"IEND", b""))


def write_safetensors(path, tensors):
    """Minimal safetensors writer: u64 LE header size, JSON header, raw LE F32 data."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        a = np.ascontiguousarray(np.asarray(t, dtype="<f4"))
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # keep the data 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def export_conv_onnx(model, path):
    x = torch.zeros(1, 3, SIZE, SIZE)
    dyn = {n: {0: "batch"} for n in ("images", "p8", "p16")}
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, and what we want
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model.eval(), (x,), path, dynamo=False, opset_version=17,
                          input_names=["images"], output_names=["p8", "p16"], dynamic_axes=dyn)


def export_drconv_onnx(model, path):
    """Through python/drconv_onnx.py: each DRConv2d becomes one drconv.DRConv2d node."""
    import drconv_onnx
    drconv_onnx.export(model.eval(), torch.zeros(1, 3, SIZE, SIZE), path, opset=17,
                       dynamic_batch=True, input_names=["images"], output_names=["p8", "p16"])


def max_diff(run, model, inputs):
    """The largest |run(x) - model(x)| over the inputs and both outputs."""
    worst = 0.0
    for x in inputs:
        with torch.no_grad():
            ref = model(torch.from_numpy(x))
        worst = max(worst, *(float(np.abs(g - r.numpy()).max()) for g, r in zip(run(x), ref)))
    return worst


def check_onnx(path, model, inputs):
    """onnxruntime vs PyTorch on the plain-conv export; max abs difference."""
    import onnx
    import onnxruntime as ort
    onnx.checker.check_model(onnx.load(path))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return max_diff(lambda x: sess.run(["p8", "p16"], {"images": x}), model, inputs)


def check_drconv_onnx(path, model, inputs):
    """onnxruntime cannot run drconv.DRConv2d, so run the file in onnx's reference evaluator
    with the node implemented by the seed's DRConv2d (weights and attributes read from the
    node): checks the graph, its wiring and the six initializers against PyTorch."""
    import drconv_onnx
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import OpRun

    class DRConv2dNode(OpRun):
        op_domain = "drconv"

        def _run(self, x, w1, b1, w3, b3, gw, gb, kernel_size=None, region_num=None,
                 stride=None, padding=None, dilation=None):
            c_in = gw.shape[1]
            layer = DRConv2d(c_in, w3.shape[0] // (region_num * c_in), kernel_size, region_num,
                             stride=stride, padding=padding, dilation=dilation)
            layer.load_state_dict({n: torch.from_numpy(np.array(v)) for n, v in
                                   zip(drconv_onnx.PARAM_NAMES, [w1, b1, w3, b3, gw, gb])})
            with torch.no_grad():  # the seed's layer views its input: make it contiguous
                return (layer.eval()(torch.from_numpy(np.ascontiguousarray(x))).numpy(),)

    # The evaluator finds a custom op by (domain, class name).
    ev = ReferenceEvaluator(path, new_ops=[type("DRConv2d", (DRConv2dNode,), {})])
    return max_diff(lambda x: ev.run(["p8", "p16"], {"images": x}), model, inputs)


def det_list(dets):
    return [{"box": [round(float(v), 4) for v in d[:4]], "class": int(d[5]),
             "score": round(float(d[4]), 6)} for d in dets]


def run_train(args):
    os.makedirs(args.out, exist_ok=True)
    held_out = make_dataset(200, EVAL_SEED)
    x1 = held_out[0][0][None]
    x3 = np.stack([s[0] for s in held_out[:3]])
    tensors = {"input_b1": x1, "input_b3": x3}
    metrics = {"torch": torch.__version__, "numpy": np.__version__,
               "seeds": {"train_data": TRAIN_SEED, "eval_data": EVAL_SEED, "init": INIT_SEED},
               "eval_images": len(held_out), "image_size": SIZE, "classes": CLASS_NAMES,
               "decode": {"conf": 0.25, "nms_iou": 0.45, "max_det": 100},
               "budget": {"minutes": args.minutes, "max_steps": args.steps, "batch": args.batch}}
    models = {}
    for name, drconv in (("drconv", True), ("conv", False)):
        print(f"training the {name} model", flush=True)
        model, steps, wall = train(drconv, args.steps, args.minutes, args.batch, args.lr)
        models[name] = model
        m, aps = evaluate(model, held_out)
        print(f"{name}: {steps} steps in {wall:.0f}s, mAP@0.5 {m:.4f} "
              f"(per class {', '.join(f'{a:.3f}' for a in aps)})", flush=True)
        prefix = "" if drconv else "conv_"
        with torch.no_grad():
            for tag, x in (("b1", x1), ("b3", x3)):
                p8, p16 = model(torch.from_numpy(x))
                tensors[f"{prefix}p8_{tag}"], tensors[f"{prefix}p16_{tag}"] = p8, p16
        metrics[name] = {"map50": m, "ap50_per_class": aps, "train_steps": steps,
                         "train_seconds": round(wall, 1),
                         "parameters": sum(p.numel() for p in model.parameters()),
                         "sample_detections": det_list(detect(model, x1)[0])}

    write_png(os.path.join(args.out, "sample.png"), held_out[0][0])
    write_safetensors(os.path.join(args.out, "fixtures.safetensors"),
                      {k: v.numpy() if torch.is_tensor(v) else v for k, v in tensors.items()})
    metrics["sample_ground_truth"] = [{"box": [round(float(v), 4) for v in b[:4]],
                                       "class": int(b[4])} for b in held_out[0][1]]
    conv_path = os.path.join(args.out, "detector_conv.onnx")
    export_conv_onnx(models["conv"], conv_path)
    try:
        diff = check_onnx(conv_path, models["conv"], [x1, x3])
        print(f"detector_conv.onnx: onnxruntime vs PyTorch max |diff| {diff:.2e}")
        metrics["conv"]["onnxruntime_max_abs_diff"] = diff
        assert diff < 1e-4, "plain-conv ONNX export does not match PyTorch"
    except ImportError as e:
        print(f"onnxruntime check skipped: {e}")
    dr_path = os.path.join(args.out, "detector.onnx")
    export_drconv_onnx(models["drconv"], dr_path)
    diff = check_drconv_onnx(dr_path, models["drconv"], [x1, x3])
    print(f"detector.onnx: onnx reference evaluator vs PyTorch max |diff| {diff:.2e}")
    metrics["drconv"]["onnx_reference_max_abs_diff"] = diff
    assert diff < 1e-4, "DRConv ONNX export does not match PyTorch"
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    for n in sorted(os.listdir(args.out)):
        print(f"  {n:24s} {os.path.getsize(os.path.join(args.out, n)):>9d} bytes")


def run_preview(args):
    """A grid of training samples with their boxes drawn, to eyeball the data."""
    rng = np.random.default_rng(args.seed)
    tiles = []
    for _ in range(args.n):
        img, boxes = make_sample(rng)
        img = img.copy()
        for x1, y1, x2, y2, c in boxes:
            colour = np.eye(3)[int(c)][:, None]
            x1, y1 = int(max(x1, 0)), int(max(y1, 0))
            x2, y2 = int(min(x2, SIZE - 1)), int(min(y2, SIZE - 1))
            img[:, y1, x1:x2 + 1] = img[:, y2, x1:x2 + 1] = colour
            img[:, y1:y2 + 1, x1] = img[:, y1:y2 + 1, x2] = colour
        tiles.append(np.pad(img, ((0, 0), (2, 2), (2, 2)), constant_values=1))
    cols = 4
    rows = [np.concatenate(tiles[i:i + cols], 2) for i in range(0, len(tiles) - cols + 1, cols)]
    write_png(args.out, np.concatenate(rows, 1))
    print(f"wrote {args.out} (box colour: red circle, green square, blue triangle)")


def main():
    torch.set_num_threads(int(os.environ.get("DETECTOR_THREADS", "1")))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train, evaluate and export both models")
    t.add_argument("--out", default=os.path.join(HERE, "..", "examples", "onnx_detector"))
    # Both models get the same steps (a fair comparison of the layers; DRConv's training
    # forward computes every region, ~4x a conv step on a CPU); the committed files were made
    # with these defaults (DRConv 24 min, conv 6 min on one busy 2-vCPU core).
    t.add_argument("--minutes", type=float, default=60.0, help="wall budget per model")
    t.add_argument("--steps", type=int, default=1500, help="step budget per model")
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=1e-3)
    t.set_defaults(func=run_train)
    v = sub.add_parser("preview", help="write a grid of training samples with boxes")
    v.add_argument("--out", default="preview.png")
    v.add_argument("--n", type=int, default=16)
    v.add_argument("--seed", type=int, default=TRAIN_SEED)
    v.set_defaults(func=run_preview)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
