#!/usr/bin/env python3
"""Moving DRConv2d weights between PyTorch and this crate, both ways, with safetensors.

The file format is just the layer's ``state_dict()``: six tensors named
``conv_kernel.1.weight``, ``conv_kernel.1.bias``, ``conv_kernel.3.weight``, ``conv_kernel.3.bias``,
``conv_guide.weight``, ``conv_guide.bias`` (``drconv::weights`` reads and writes exactly these).

1. PyTorch -> here. ``export`` trains a DRConv2d nested in a bigger model (``Net.neck.drconv``)
   on the demo's task in PyTorch and saves the layer's sub-state-dict; run it here, then let
   PyTorch check the result::

       python examples/export_pytorch.py export --out drconv_layer.safetensors
       cargo run --release --example demo -- --weights drconv_layer.safetensors --out demo-apply
       # or, with the binary:   drconv demo --weights drconv_layer.safetensors --image photo.png
       python examples/export_pytorch.py check demo-apply

   ``export`` also writes the whole model (``model.safetensors``, keys ``neck.drconv.*``), which
   the demo reads with ``--prefix neck.drconv.``. From Rust::

       let bytes = std::fs::read("drconv_layer.safetensors")?;
       let config = drconv::weights::infer_config(&bytes, 1, 1, 1)?;   // stride, padding, dilation
       let params = drconv::weights::load_safetensors_bytes(&config, &bytes)?;
       let mut layer = drconv::DrConv2d::new(ctx, &params)?;            // ctx: Arc<GpuContext>
       let x_gpu = layer.upload(&x)?;                                   // x: Tensor 1 x 3 x H x W
       let y = layer.forward(&x_gpu, drconv::Mode::Inference).await?;  // GpuTensor; .read(&ctx)

   Stride, padding and dilation are not in a state_dict: pass them to ``infer_config`` (the demo
   assumes stride 1, dilation 1, padding (k - 1) // 2 unless ``--padding`` says otherwise).

2. Here -> PyTorch. ``cargo run --release --example demo`` writes ``demo-out/weights.safetensors``
   (the region-aware layer it trained). Load it into the reference module and check that PyTorch
   computes the demo's output from the demo's input::

       python examples/export_pytorch.py check demo-out

The demo feeds images as RGB in [-0.5, 0.5] (``pixel / 255 - 0.5``) and shows outputs + 0.5;
``check`` does the same. Needs ``pip install torch safetensors numpy pillow``.
"""
import argparse
import json
import os

import numpy as np
import torch
from PIL import Image
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

# ---- The reference DRConv2d: verbatim from the seed (tests/golden/README.md describes its maths).
from torch.autograd import Variable, Function  # noqa: E402,F401  (as in the seed)


class asign_index(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kernel, guide_feature):
        ctx.save_for_backward(kernel, guide_feature)
        guide_mask = torch.zeros_like(guide_feature).scatter_(1, guide_feature.argmax(dim=1, keepdim=True),
                                                              1).unsqueeze(2)  # B x 3 x 1 x 25 x 25
        return torch.sum(kernel * guide_mask, dim=1)

    @staticmethod
    def backward(ctx, grad_output):
        kernel, guide_feature = ctx.saved_tensors
        guide_mask = torch.zeros_like(guide_feature).scatter_(1, guide_feature.argmax(dim=1, keepdim=True),
                                                              1).unsqueeze(2)  # B x 3 x 1 x 25 x 25
        grad_kernel = grad_output.clone().unsqueeze(1) * guide_mask  # B x 3 x 256 x 25 x 25
        grad_guide = grad_output.clone().unsqueeze(1) * kernel  # B x 3 x 256 x 25 x 25
        grad_guide = grad_guide.sum(dim=2)  # B x 3 x 25 x 25
        softmax = F.softmax(guide_feature, 1)  # B x 3 x 25 x 25
        grad_guide = softmax * (grad_guide - (softmax * grad_guide).sum(dim=1, keepdim=True))  # B x 3 x 25 x 25
        return grad_kernel, grad_guide


def xcorr_slow(x, kernel, kwargs):
    """for loop to calculate cross correlation
    """
    batch = x.size()[0]
    out = []
    for i in range(batch):
        px = x[i]
        pk = kernel[i]
        px = px.view(1, px.size()[0], px.size()[1], px.size()[2])
        pk = pk.view(-1, px.size()[1], pk.size()[1], pk.size()[2])
        po = F.conv2d(px, pk, **kwargs)
        out.append(po)
    out = torch.cat(out, 0)
    return out


def xcorr_fast(x, kernel, kwargs):
    """group conv2d to calculate cross correlation
    """
    batch = kernel.size()[0]
    pk = kernel.view(-1, x.size()[1], kernel.size()[2], kernel.size()[3])
    px = x.view(1, -1, x.size()[2], x.size()[3])
    po = F.conv2d(px, pk, **kwargs, groups=batch)
    po = po.view(batch, -1, po.size()[2], po.size()[3])
    return po


class Corr(Function):
    @staticmethod
    def symbolic(g, x, kernel, groups):
        return g.op("Corr", x, kernel, groups_i=groups)

    @staticmethod
    def forward(self, x, kernel, groups, kwargs):
        """group conv2d to calculate cross correlation
        """
        batch = x.size(0)
        channel = x.size(1)
        x = x.view(1, -1, x.size(2), x.size(3))
        kernel = kernel.view(-1, channel // groups, kernel.size(2), kernel.size(3))
        out = F.conv2d(x, kernel, **kwargs, groups=groups * batch)
        out = out.view(batch, -1, out.size(2), out.size(3))
        return out


class Correlation(nn.Module):
    use_slow = True

    def __init__(self, use_slow=None):
        super(Correlation, self).__init__()
        if use_slow is not None:
            self.use_slow = use_slow
        else:
            self.use_slow = Correlation.use_slow

    def extra_repr(self):
        if self.use_slow: return "xcorr_slow"
        return "xcorr_fast"

    def forward(self, x, kernel, **kwargs):
        if self.training:
            if self.use_slow:
                return xcorr_slow(x, kernel, kwargs)
            else:
                return xcorr_fast(x, kernel, kwargs)
        else:
            return Corr.apply(x, kernel, 1, kwargs)


class DRConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, region_num=8, **kwargs):
        super(DRConv2d, self).__init__()
        self.region_num = region_num

        self.conv_kernel = nn.Sequential(
            nn.AdaptiveAvgPool2d((kernel_size, kernel_size)),
            nn.Conv2d(in_channels, region_num * region_num, kernel_size=1),
            nn.Sigmoid(),
            nn.Conv2d(region_num * region_num, region_num * in_channels * out_channels, kernel_size=1,
                      groups=region_num)
        )
        self.conv_guide = nn.Conv2d(in_channels, region_num, kernel_size=kernel_size, **kwargs)

        self.corr = Correlation(use_slow=False)
        self.kwargs = kwargs
        self.asign_index = asign_index.apply

    def forward(self, input):
        kernel = self.conv_kernel(input)
        kernel = kernel.view(kernel.size(0), -1, kernel.size(2), kernel.size(3))  # B x (r*in*out) x W X H
        output = self.corr(input, kernel, **self.kwargs)  # B x (r*out) x W x H
        output = output.view(output.size(0), self.region_num, -1, output.size(2), output.size(3))  # B x r x out x W x H
        guide_feature = self.conv_guide(input)
        output = self.asign_index(output, guide_feature)
        return output
# ---- end of the reference.


class Net(nn.Module):
    """A bigger model with the DRConv2d inside (its keys are 'neck.drconv.*'), as in practice."""

    def __init__(self, region_num=4):
        super().__init__()
        self.neck = nn.Module()
        self.neck.drconv = DRConv2d(3, 3, 3, region_num=region_num, padding=1)
        self.head = nn.Linear(3, 10)  # e.g. a classifier on top: not part of the export

    def forward(self, x):
        feat = self.neck.drconv(x)
        return feat, self.head(feat.mean(dim=(2, 3)))


def demo_target(x):
    """The demo's target (src/demo/target.rs): grey where the 3x3 mean luma is >= mid-grey,
    doubled contrast elsewhere, both 3x3-smoothed with zero padding. x: centred 1 x 3 x H x W."""
    box = lambda t: F.avg_pool2d(t, 3, stride=1, padding=1, count_include_pad=True)  # noqa: E731
    lum = (torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1) * x).sum(dim=1, keepdim=True)
    lum_box = box(lum)
    return torch.where(lum_box >= 0, lum_box.expand_as(x), 2.0 * box(x))


def load_image(path, size):
    """Centred 1 x 3 x H x W tensor, longer side downscaled to `size` (as the demo does)."""
    img = Image.open(path).convert("RGB")
    img.thumbnail((size, size), Image.LANCZOS)
    a = np.asarray(img, dtype=np.float32) / 255.0 - 0.5
    return torch.from_numpy(a).permute(2, 0, 1)[None].contiguous()


def sub_state_dict(model, prefix):
    """The tensors under `prefix` (e.g. 'neck.drconv.'), renamed to the layer's own names.
    Equivalent to `model.neck.drconv.state_dict()` when you can reach the module."""
    return {k[len(prefix):]: v for k, v in model.state_dict().items() if k.startswith(prefix)}


def export(args):
    torch.manual_seed(0)
    model = Net()
    x = load_image(args.image, args.size)
    target = demo_target(x)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for step in range(args.steps):
        feat, _ = model(x)
        loss = F.mse_loss(feat, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"trained Net.neck.drconv in PyTorch for {args.steps} steps: loss {loss.item():.5f}")

    layer_sd = sub_state_dict(model, "neck.drconv.")
    assert set(layer_sd) == set(model.neck.drconv.state_dict())
    # safetensors wants contiguous tensors that share no memory.
    save_file({k: v.detach().contiguous() for k, v in layer_sd.items()}, args.out)
    whole = os.path.join(os.path.dirname(os.path.abspath(args.out)), "model.safetensors")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, whole)
    print(f"wrote {args.out} ({', '.join(sorted(layer_sd))})")
    print(f"wrote {whole} (the whole model; the layer's tensors are under 'neck.drconv.')")
    print("run it here, then compare with PyTorch:")
    print(f"  cargo run --release --example demo -- --weights {args.out} --out demo-apply")
    print(f"  cargo run --release --example demo -- --weights {whole} --prefix neck.drconv. --out demo-apply")
    print("  python examples/export_pytorch.py check demo-apply")


def layer_from_file(path, prefix=""):
    """A reference DRConv2d with the file's weights; the config comes from the tensor shapes and,
    for files written by this crate, the padding etc. from the 'drconv.config' metadata."""
    sd = {k[len(prefix):]: v for k, v in load_file(path).items() if k.startswith(prefix)}
    r, i, k, _ = sd["conv_guide.weight"].shape
    o = sd["conv_kernel.3.bias"].numel() // (r * i)
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    cfg = json.loads(meta["drconv.config"]) if "drconv.config" in meta and not prefix else {}
    kwargs = {"stride": cfg.get("stride", 1), "padding": cfg.get("padding", (k - 1) // 2),
              "dilation": cfg.get("dilation", 1)}
    layer = DRConv2d(i, o, k, region_num=r, **kwargs)
    layer.load_state_dict(sd)  # strict: names and shapes must all match
    return layer.eval(), kwargs


def read_png(path, zoom):
    """The demo writes images magnified `zoom` times by pixel repetition: undo it exactly."""
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    return a[::zoom, ::zoom]


def check(args):
    """Runs the weights of a demo output folder through the reference and compares the images:
    a training run (weights.safetensors -> output_regions.png) or a --weights run (the file it
    read -> output.png)."""
    d = args.demo_out
    summary = json.load(open(os.path.join(d, "summary.json")))
    if summary["mode"] == "apply":
        weights, prefix, out_png = summary["weights"], summary["prefix"], "output.png"
    else:
        weights, prefix, out_png = os.path.join(d, "weights.safetensors"), "", "output_regions.png"
    layer, kwargs = layer_from_file(weights, prefix)
    w, h = summary["width"], summary["height"]
    zoom = Image.open(os.path.join(d, "input.png")).size[0] // w
    img = read_png(os.path.join(d, "input.png"), zoom)
    x = torch.from_numpy(img / 255.0 - 0.5).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        y = layer(x)
    ours = read_png(os.path.join(d, out_png), zoom)
    theirs = np.clip(np.round((y[0].permute(1, 2, 0).numpy() + 0.5) * 255.0), 0, 255)
    diff = np.abs(theirs - ours)
    # 8-bit images: equal up to the rounding of values within float error of a .5 boundary.
    print(f"reference DRConv2d({layer.conv_guide.in_channels}, {theirs.shape[2]}, "
          f"region_num={layer.region_num}, {kwargs}) from {weights} on {w}x{h}: "
          f"max |PyTorch - demo| = {diff.max():.0f}/255, pixels off by more than 1: {(diff > 1).sum()}")
    if diff.max() > 1:
        raise SystemExit("MISMATCH")
    print(f"OK: PyTorch computes the demo's {out_png} from the same weights and input")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="save a (nested) reference DRConv2d as safetensors")
    e.add_argument("--out", default="drconv_layer.safetensors")
    here = os.path.dirname(os.path.abspath(__file__))
    e.add_argument("--image", default=os.path.join(here, "..", "assets", "astronaut.png"))
    e.add_argument("--size", type=int, default=64, help="longer image side, as the demo's --size")
    e.add_argument("--steps", type=int, default=300)
    e.set_defaults(func=export)
    c = sub.add_parser("check", help="load the demo's weights.safetensors into PyTorch and compare")
    c.add_argument("demo_out", nargs="?", default="demo-out")
    c.set_defaults(func=check)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
