"""The CPU convolution kernels behind ResNet-20's step, one at a time, against the alternatives torch ships.

    PYTHONPATH=src python benchmarks/cpu_conv_kernels.py [--batch 128] [--calls 20]

For each of ResNet-20's three 3x3 shapes (16 channels at 32x32, 32 at 16x16, 64 at 8x8), milliseconds per call of:
oneDNN's forward (channels_last, NCHW), NNPACK's Winograd forward, oneDNN's fused post-ops (convolution + ReLU,
convolution + add + ReLU: what ``torch.compile`` with freezing emits) against the eager sequence, and the
backward split into the input gradient and the weight gradient. It answers whether a cheaper kernel exists for
the convolutions that take 67 % of a CPU training step and 80 % of folded inference (benchmarks/README.md, CPU
session 7). Every alternative is checked against the eager result before it is timed.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from resnetlab.train.environment import keep_freed_memory_for_reuse

SHAPES = ((16, 32), (32, 16), (64, 8))  # (channels, side) of ResNet-20's three stages
ONE, PAD = [1, 1], [1, 1]


def milliseconds(call: Callable[[], object], calls: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        call()
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls * 1e3


def check(name: str, got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got, want, rtol=1e-3, atol=5e-3, msg=lambda m: f"{name}: {m}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    keep_freed_memory_for_reuse()  # as resnetlab's training and bench run on a CPU
    torch.manual_seed(0)
    pointwise = torch.ops.mkldnn._convolution_pointwise
    backward = torch.ops.aten.convolution_backward
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads, NNPACK {'available' if torch.backends.nnpack.is_available() else 'no'}"
          f"; batch {args.batch}, ms per call")
    for channels, side in SHAPES:
        shape = (args.batch, channels, side, side)
        nchw, shortcut_nchw = torch.randn(shape), torch.randn(shape)
        x = nchw.contiguous(memory_format=torch.channels_last)
        shortcut = shortcut_nchw.contiguous(memory_format=torch.channels_last)
        weight = (torch.randn(channels, channels, 3, 3) * 0.1).contiguous(memory_format=torch.channels_last)
        bias = torch.randn(channels)
        rows = {}
        with torch.inference_mode():
            plain = F.conv2d(x, weight, bias, padding=1)
            rows["forward, channels_last"] = milliseconds(lambda: F.conv2d(x, weight, bias, padding=1), args.calls)
            rows["forward, NCHW"] = milliseconds(lambda: F.conv2d(nchw, weight.contiguous(), bias, padding=1),
                                                 args.calls)
            if torch.backends.nnpack.is_available():
                def winograd():
                    return torch._nnpack_spatial_convolution(nchw, weight.contiguous(), bias, PAD, ONE)
                check("NNPACK", winograd(), plain)
                rows["forward, NNPACK Winograd (NCHW)"] = milliseconds(winograd, args.calls)

            def conv_relu():
                return pointwise(x, weight, bias, PAD, ONE, ONE, 1, "relu", [], "")

            def conv_add_relu():
                return pointwise.binary(x, shortcut, weight, bias, PAD, ONE, ONE, 1, "add", None, "relu", [], "")
            check("conv + ReLU", conv_relu(), plain.relu())
            check("conv + add + ReLU", conv_add_relu(), (plain + shortcut).relu())
            rows["conv + ReLU, eager"] = milliseconds(lambda: F.conv2d(x, weight, bias, padding=1).relu_(),
                                                      args.calls)
            rows["conv + ReLU, oneDNN post-op"] = milliseconds(conv_relu, args.calls)
            rows["conv + add + ReLU, eager in place"] = milliseconds(
                lambda: F.conv2d(x, weight, bias, padding=1).add_(shortcut).relu_(), args.calls)
            rows["conv + add + ReLU, oneDNN post-ops"] = milliseconds(conv_add_relu, args.calls)
        for layout, (inputs, grads, weights) in {
                "channels_last": (x, shortcut, weight),
                "NCHW": (nchw, shortcut_nchw, weight.contiguous())}.items():
            def grad(mask, inputs=inputs, grads=grads, weights=weights):
                return backward(grads, inputs, weights, None, ONE, PAD, ONE, False, [0, 0], 1, mask)
            rows[f"backward, both gradients, {layout}"] = milliseconds(lambda: grad([True, True, False]), args.calls)
            rows[f"backward, input gradient, {layout}"] = milliseconds(lambda: grad([True, False, False]),
                                                                       args.calls)
            rows[f"backward, weight gradient, {layout}"] = milliseconds(lambda: grad([False, True, False]),
                                                                        args.calls)
        flop = 2 * args.batch * channels * channels * 9 * side * side
        print(f"\n{channels} channels at {side}x{side} ({flop / 1e9:.2f} GFLOP per forward; channels_last forward at "
              f"{flop / rows['forward, channels_last'] / 1e6:.0f} GFLOP/s)")
        base = rows["forward, channels_last"]
        for name, ms in rows.items():
            print(f"  {name:<40} {ms:7.2f} ms  {ms / base:5.2f}x the channels_last forward")


if __name__ == "__main__":
    main()
