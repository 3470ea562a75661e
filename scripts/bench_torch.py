#!/usr/bin/env python3
"""Times the reference DRConv2d (the seed's PyTorch layer, copied below) at the shapes of
`drconv bench`, on CUDA when available (else CPU), for a side-by-side with the WGSL layer.

Per shape: median of N runs after warm-up of
  - DRConv eval forward under no_grad (the reference's Corr.apply path: every region's
    correlation, then one region kept per pixel)
  - DRConv train forward + backward (xcorr_fast path; y.backward(g))
  - the correlation step alone (the grouped F.conv2d the layer runs)
  - a plain nn.Conv2d(in, out, k, padding) forward, the work a per-pixel kernel must do
GPU times use CUDA events around each call. Usage:
  python bench_torch.py [--device cuda|cpu] [--n 20] [--json out.json]
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---- the reference layer, as published in the seed post (only the parts the layer runs) ----


class asign_index(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kernel, guide_feature):
        ctx.save_for_backward(kernel, guide_feature)
        guide_mask = torch.zeros_like(guide_feature).scatter_(1, guide_feature.argmax(dim=1, keepdim=True),
                                                              1).unsqueeze(2)
        return torch.sum(kernel * guide_mask, dim=1)

    @staticmethod
    def backward(ctx, grad_output):
        kernel, guide_feature = ctx.saved_tensors
        guide_mask = torch.zeros_like(guide_feature).scatter_(1, guide_feature.argmax(dim=1, keepdim=True),
                                                              1).unsqueeze(2)
        grad_kernel = grad_output.clone().unsqueeze(1) * guide_mask
        grad_guide = grad_output.clone().unsqueeze(1) * kernel
        grad_guide = grad_guide.sum(dim=2)
        softmax = F.softmax(guide_feature, 1)
        grad_guide = softmax * (grad_guide - (softmax * grad_guide).sum(dim=1, keepdim=True))
        return grad_kernel, grad_guide


def xcorr_fast(x, kernel, kwargs):
    batch = kernel.size()[0]
    pk = kernel.view(-1, x.size()[1], kernel.size()[2], kernel.size()[3])
    px = x.view(1, -1, x.size()[2], x.size()[3])
    po = F.conv2d(px, pk, **kwargs, groups=batch)
    po = po.view(batch, -1, po.size()[2], po.size()[3])
    return po


class Corr(torch.autograd.Function):
    @staticmethod
    def forward(self, x, kernel, groups, kwargs):
        batch = x.size(0)
        channel = x.size(1)
        x = x.view(1, -1, x.size(2), x.size(3))
        kernel = kernel.view(-1, channel // groups, kernel.size(2), kernel.size(3))
        out = F.conv2d(x, kernel, **kwargs, groups=groups * batch)
        out = out.view(batch, -1, out.size(2), out.size(3))
        return out


class Correlation(nn.Module):
    def forward(self, x, kernel, **kwargs):
        if self.training:
            return xcorr_fast(x, kernel, kwargs)
        return Corr.apply(x, kernel, 1, kwargs)


class DRConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, region_num=8, **kwargs):
        super().__init__()
        self.region_num = region_num
        self.conv_kernel = nn.Sequential(
            nn.AdaptiveAvgPool2d((kernel_size, kernel_size)),
            nn.Conv2d(in_channels, region_num * region_num, kernel_size=1),
            nn.Sigmoid(),
            nn.Conv2d(region_num * region_num, region_num * in_channels * out_channels, kernel_size=1,
                      groups=region_num)
        )
        self.conv_guide = nn.Conv2d(in_channels, region_num, kernel_size=kernel_size, **kwargs)
        self.corr = Correlation()
        self.kwargs = kwargs
        self.asign_index = asign_index.apply

    def forward(self, input):
        kernel = self.conv_kernel(input)
        kernel = kernel.view(kernel.size(0), -1, kernel.size(2), kernel.size(3))
        output = self.corr(input, kernel, **self.kwargs)
        output = output.view(output.size(0), self.region_num, -1, output.size(2), output.size(3))
        guide_feature = self.conv_guide(input)
        return self.asign_index(output, guide_feature)


# ---- timing ----

SHAPES = [  # B, in, out, k, r, H, W, padding: the shapes of `drconv bench`
    (1, 64, 64, 3, 8, 40, 40, 1),
    (1, 128, 128, 3, 8, 20, 20, 1),
    (8, 32, 32, 3, 4, 32, 32, 1),
    (1, 16, 16, 3, 4, 128, 128, 1),
]


def timer(device, n, warm):
    cuda = device.type == "cuda"

    def run(fn):
        for _ in range(warm):
            fn()
        if cuda:
            torch.cuda.synchronize()
        ts = []
        for _ in range(n):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                ts.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                ts.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(ts)

    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--json")
    args = ap.parse_args()
    device = torch.device(args.device)
    run = timer(device, args.n, warm=5)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__} on {name}, median of {args.n} after 5 warm-ups")
    print("shape | DR fwd ms | DR fwd+bwd ms | corr-only ms | conv fwd ms")
    rows = []
    for (B, I, O, k, r, H, W, p) in SHAPES:
        torch.manual_seed(0)
        m = DRConv2d(I, O, k, r, padding=p).to(device)
        conv = nn.Conv2d(I, O, k, padding=p).to(device)
        x = torch.randn(B, I, H, W, device=device)
        Ho, Wo = H + 2 * p - k + 1, W + 2 * p - k + 1
        gy = torch.randn(B, O, Ho, Wo, device=device)
        xg = x.clone().requires_grad_(True)

        m.eval()

        def dr_fwd():
            with torch.no_grad():
                m(x)

        fwd = run(dr_fwd)
        m.train()

        def dr_fb():
            m.zero_grad(set_to_none=True)
            xg.grad = None
            m(xg).backward(gy)

        fb = run(dr_fb)
        with torch.no_grad():
            kern = m.conv_kernel(x).view(B, -1, k, k)
        pk = kern.view(-1, I, k, k).contiguous()
        px = x.view(1, -1, H, W)

        def corr_only():
            with torch.no_grad():
                F.conv2d(px, pk, padding=p, groups=B)

        corr = run(corr_only)

        def conv_fwd():
            with torch.no_grad():
                conv(x)

        cf = run(conv_fwd)
        shape = f"B{B} {I}->{O} k{k} r{r} {H}x{W} p{p}"
        row = dict(shape=shape, dr_fwd_ms=fwd, dr_fwdbwd_ms=fb, corr_only_ms=corr, conv_fwd_ms=cf,
                   corr_gflop=2 * B * r * O * I * k * k * Ho * Wo / 1e9)
        rows.append(row)
        print(f"{shape} | {fwd:.3f} | {fb:.3f} | {corr:.3f} | {cf:.3f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch_version": torch.__version__, "device": name, "n": args.n, "rows": rows}, f,
                      indent=1)


if __name__ == "__main__":
    main()
