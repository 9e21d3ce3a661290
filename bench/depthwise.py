"""Forward + backward of one depthwise convolution as `DepthwiseConv2d` and as a native `nn.Conv2d` on CPU, per
kernel, stride and dilation. Prints JSON.

    python bench/depthwise.py [--threads 2] [--rounds 7]

Batch 32, 32 channels, 32x24, channels_last, the same channels-last output gradient for both (input and weight
gradients). `DepthwiseConv2d` takes the weight gradient of a wide undilated kernel in column strips and
both gradients of a dilated stride-1 kernel over the dilation's phases (src/architecture/fabric/depthwise.py);
every other case (stride 2) is the native backward in both. The pair runs interleaved (bench/hr_block.py's `timed`: compare ratios
of one run, not times across runs); each figure is the median over `--rounds` timed rounds after a warm-up.
"""
import argparse
import json

import torch
from torch import nn

from src.architecture.fabric.depthwise import DepthwiseConv2d

from hr_block import timed  # bench/hr_block.py, beside this script

LAYERS = [(3, 1, 1), (5, 1, 1), (7, 1, 1), (3, 2, 1), (3, 1, 2), (3, 2, 2), (5, 1, 2)]  # kernel, stride, dilation


def layer_times(rounds: int) -> list:
    rows = []
    for kernel, stride, dilation in LAYERS:
        ours = DepthwiseConv2d(32, kernel, stride, dilation).to(memory_format=torch.channels_last)
        native = nn.Conv2d(32, 32, kernel, stride, ours.padding, dilation, groups=32, bias=False)
        native = native.to(memory_format=torch.channels_last)
        native.weight.data.copy_(ours.weight.data)
        x = torch.randn(32, 32, 32, 24).contiguous(memory_format=torch.channels_last)
        gy = torch.randn_like(native(x)).contiguous(memory_format=torch.channels_last)
        t = timed({"native": (native, x, gy), "ours": (ours, x, gy)}, rounds)
        rows.append({"kernel": kernel, "stride": stride, "dilation": dilation,
                     "native_ms": round(1e3 * t["native"], 3), "ours_ms": round(1e3 * t["ours"], 3),
                     "ours_over_native": round(t["ours"] / t["native"], 3)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(json.dumps({"threads": args.threads, "layers": layer_times(args.rounds)}, indent=1))


if __name__ == "__main__":
    main()
