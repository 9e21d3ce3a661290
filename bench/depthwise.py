"""Backward of `DepthwiseConv2d` against PyTorch's native depthwise backward on CPU, per kernel and in a whole
fabric model. Prints JSON.

    python bench/depthwise.py [--threads 2] [--rounds 7] [--cfg configs/synthetic_search_demo.yaml]

`layers`: forward + backward (input and weight gradients, for a given channels-last output gradient) of one
depthwise convolution (batch 32, 32 channels, 32x24, channels_last) as `nn.Conv2d` (native) and as `DepthwiseConv2d` (column strips for wide undilated
kernels, phases for dilated ones: src/architecture/fabric/depthwise.py). `model`: forward + backward of the
config's model on one training batch of random images, with `DepthwiseConv2d`'s phase path on, and off (its
dilated kernels then take the native backward). Each pair runs interleaved in one loop (compare ratios of one
run, not times across runs); each figure is the median over `--rounds` timed rounds after a warm-up.
"""
import argparse
import json
import statistics
import time
from unittest import mock

import torch
from torch import nn

from src.architecture.fabric import depthwise
from src.architecture.fabric.depthwise import DepthwiseConv2d
from src.config.loader import load_config
from src.engine.trainer import place
from src.network_factory.registry import build_model

LAYERS = [(3, 1, 1), (5, 1, 1), (7, 1, 1), (3, 2, 1), (3, 1, 2), (3, 2, 2), (5, 1, 2)]  # kernel, stride, dilation


def native_dilated():
    """`DepthwiseConv2d` with its phase path off: dilated kernels take the native backward."""
    def native(gy, x, weight, s, p, d, need_x, need_w):
        return depthwise._native_backward(gy, x, weight, (s, s), p, (d, d), need_x, need_w)
    return mock.patch.object(depthwise, "_phase_backward", native)


def interleaved(fns: dict, rounds: int) -> dict:
    """Median seconds of each `fn()` over `rounds` rounds, the functions interleaved within a round."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def step(module, x, gy=None):
    """Forward + backward of `module(x)`: with the output gradient `gy`, or of the mean square output."""
    def run():
        x.grad = None
        module.zero_grad(set_to_none=True)
        out = module(x)
        if gy is None:
            out.float().pow(2).mean().backward()
        else:
            out.backward(gy)
    return run


def layer_times(rounds: int) -> list:
    rows = []
    for kernel, stride, dilation in LAYERS:
        ours = DepthwiseConv2d(32, kernel, stride, dilation).to(memory_format=torch.channels_last)
        native = nn.Conv2d(32, 32, kernel, stride, ours.padding, dilation, groups=32, bias=False)
        native = native.to(memory_format=torch.channels_last)
        native.weight.data.copy_(ours.weight.data)
        x = torch.randn(32, 32, 32, 24).contiguous(memory_format=torch.channels_last).requires_grad_()
        gy = torch.randn_like(native(x)).contiguous(memory_format=torch.channels_last)
        t = interleaved({"native": step(native, x, gy), "ours": step(ours, x, gy)}, rounds)
        rows.append({"kernel": kernel, "stride": stride, "dilation": dilation,
                     "native_ms": round(1e3 * t["native"], 3), "ours_ms": round(1e3 * t["ours"], 3),
                     "ours_over_native": round(t["ours"] / t["native"], 3)})
    return rows


def model_times(cfg_path: str, rounds: int) -> dict:
    cfg = load_config(cfg_path)
    model = place(cfg, build_model(cfg), torch.device("cpu")).train()
    width, height = cfg.MODEL.INPUT_SIZE
    x = torch.randn(cfg.TRAIN.BATCH_SIZE, 3, height, width).contiguous(memory_format=torch.channels_last)
    dilated = sum(isinstance(m, DepthwiseConv2d) and m.dilation != (1, 1) for m in model.modules())
    run = step(model, x)

    def without_phases():
        with native_dilated():
            run()
    t = interleaved({"phases": run, "native_dilated": without_phases}, rounds)
    return {"cfg": cfg_path, "batch": cfg.TRAIN.BATCH_SIZE, "dilated_depthwise_layers": dilated,
            "phases_s": round(t["phases"], 4), "native_dilated_s": round(t["native_dilated"], 4),
            "phases_over_native": round(t["phases"] / t["native_dilated"], 3)}



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cfg", default="configs/synthetic_search_demo.yaml", help="model of the `model` entry")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(json.dumps({"threads": args.threads, "layers": layer_times(args.rounds),
                      "model": model_times(args.cfg, args.rounds)}, indent=1))


if __name__ == "__main__":
    main()
