#!/usr/bin/env python3
"""Times the reference DRConv2d (the seed's PyTorch layer, copied below) at the shapes of
`drconv bench`, on CUDA when available (else CPU), for a side-by-side with the WGSL layer.

Per shape: median of N runs after warm-up of
  - DRConv eval forward under no_grad (the reference's Corr.apply path: every region's
    correlation, then one region kept per pixel)
  - DRConv train forward + backward (xcorr_fast path; y.backward(g))
  - the correlation step alone (the grouped F.conv2d the layer runs)
  - a plain nn.Conv2d(in, out, k, padding) forward, the work a per-pixel kernel must do
  - with --graphs (CUDA): the eval forward and the forward + backward again, each captured once
    in a CUDA graph and timed as graph replays (no Python or launch overhead)
GPU times use CUDA events around each call. Shapes: S1-S4 as `drconv bench`, and the YOLO neck's
Y1 and Y16 (B1 and B16, 256->256, r8, 40x40; by default on CUDA, with --yolo on the CPU).
--tf32 on|off sets both torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
(PyTorch's own default, kept without the flag, is TF32 off for matmuls and ON for convolutions).
The JSON is rewritten after every shape, so a run stopped early keeps the shapes it finished.
Usage:
  python bench_torch.py [--device cuda|cpu] [--n 20] [--json out.json] [--tf32 on|off] [--graphs]
                        [--shape N ...] [--yolo]
"""
import argparse
import json
import statistics
import sys
import time
import warnings

# B, in, out, k, r, H, W, padding: the shapes of `drconv bench` (src/bench/shapes.rs), by tag.
SHAPES = [
    ("S1", (1, 64, 64, 3, 8, 40, 40, 1)),
    ("S2", (1, 128, 128, 3, 8, 20, 20, 1)),
    ("S3", (8, 32, 32, 3, 4, 32, 32, 1)),
    ("S4", (1, 16, 16, 3, 4, 128, 128, 1)),
    ("Y1", (1, 256, 256, 3, 8, 40, 40, 1)),
    ("Y16", (16, 256, 256, 3, 8, 40, 40, 1)),
]
ISSUE_SHAPES = 4  # S1-S4; the YOLO shapes follow


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="Time the reference PyTorch DRConv2d at the shapes of `drconv bench`.")
    ap.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--n", type=int, default=20, help="timed runs per cell, after 5 warm-ups")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--tf32", choices=["on", "off"],
                    help="TF32 for matmuls and cuDNN convolutions (default: PyTorch's defaults)")
    ap.add_argument("--graphs", action="store_true",
                    help="also time the forward and forward+backward as CUDA graph replays (CUDA)")
    ap.add_argument("--shape", type=int, action="append", choices=range(1, len(SHAPES) + 1),
                    metavar="N", dest="shapes",
                    help="run only this shape (1-4: S1-S4, 5: Y1, 6: Y16); repeat for several")
    ap.add_argument("--yolo", action="store_true",
                    help="also run Y1 and Y16 on the CPU (on CUDA they run by default)")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error("--n must be at least 1")
    return args


if __name__ == "__main__":
    # Before importing torch: --help and a bad argument need no PyTorch.
    ARGS = parse_args()

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:
    sys.exit(f"bench_torch.py needs PyTorch ({e}); pip install torch (a CUDA build for GPU times)")

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


def set_tf32(mode):
    """Sets TF32 for matmuls and cuDNN (None: PyTorch's defaults); returns the flags in force
    (None where PyTorch refuses to tell). Only the legacy flags, setter and getter alike: PyTorch
    2.9+ prefers `fp32_precision`, but mixing the two APIs makes the getters raise."""
    with warnings.catch_warnings():  # the legacy flags' deprecation notice
        warnings.simplefilter("ignore")
        if mode is not None:
            torch.backends.cuda.matmul.allow_tf32 = mode == "on"
            torch.backends.cudnn.allow_tf32 = mode == "on"
        flags = {}
        for key, backend in (("matmul", torch.backends.cuda.matmul), ("cudnn", torch.backends.cudnn)):
            try:
                flags[key] = bool(backend.allow_tf32)
            except RuntimeError:
                flags[key] = None
        return flags


def graphed(fn, warm=3):
    """`fn` captured once in a CUDA graph (after warm-up on a side stream, as PyTorch's docs
    do), returned as the graph's replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warm):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    torch.cuda.synchronize()
    return graph.replay


def selected_shapes(args, device):
    if args.shapes:
        return [SHAPES[i - 1] for i in sorted(set(args.shapes))]
    if device.type == "cuda" or args.yolo:
        return SHAPES
    return SHAPES[:ISSUE_SHAPES]


def main(args):
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    if args.graphs and not cuda:
        sys.exit("bench_torch.py: --graphs needs a CUDA device")
    tf32 = set_tf32(args.tf32) if cuda else None
    run = timer(device, args.n, warm=5)
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    print(f"torch {torch.__version__} on {name}, median of {args.n} after 5 warm-ups")
    if args.tf32 or args.graphs:
        def word(v):
            return "?" if v is None else "on" if v else "off"

        flags = f"matmul {word(tf32['matmul'])}, cudnn {word(tf32['cudnn'])}" if tf32 else "n/a (CPU)"
        print(f"TF32: {flags}; CUDA graphs: {'on' if args.graphs else 'off'}")
    header = "shape | DR fwd ms | DR fwd+bwd ms | corr-only ms | conv fwd ms"
    if args.graphs:
        header += " | DR fwd graph ms | DR fwd+bwd graph ms"
    print(header)
    rows = []

    def write_json():
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"torch_version": torch.__version__, "device": name, "n": args.n, "rows": rows,
                           "tf32": args.tf32 or "default", "tf32_flags": tf32, "graphs": args.graphs,
                           "warm": 5}, f, indent=1)

    for tag, (B, I, O, k, r, H, W, p) in selected_shapes(args, device):
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
                   corr_gflop=2 * B * r * O * I * k * k * Ho * Wo / 1e9, tag=tag)
        line = f"{shape} | {fwd:.3f} | {fb:.3f} | {corr:.3f} | {cf:.3f}"
        if args.graphs:
            # Each captured once and replayed; a capture that fails is reported, not fatal.
            for key, fn, mode in [("dr_fwd_graph_ms", dr_fwd, m.eval), ("dr_fwdbwd_graph_ms", dr_fb, m.train)]:
                mode()
                try:
                    row[key] = run(graphed(fn))
                    torch.cuda.synchronize()
                except Exception as e:  # noqa: BLE001 (any capture error: report it, time the rest)
                    row[key] = None
                    row.setdefault("graph_errors", []).append(f"{key}: {type(e).__name__}: {e}")
                    print(f"{shape}: CUDA graph capture failed for {key}: {e}", file=sys.stderr)
            line += "".join(f" | {row[key]:.3f}" if row[key] is not None else " | -"
                            for key in ("dr_fwd_graph_ms", "dr_fwdbwd_graph_ms"))
        rows.append(row)
        print(line, flush=True)
        write_json()
        del m, conv, x, gy, xg, kern, pk, px
        if cuda:
            torch.cuda.empty_cache()
    write_json()


if __name__ == "__main__":
    main(ARGS)
