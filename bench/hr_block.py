"""Forward + backward time of the searchable HR block (and of a whole HR-NAS model), before and after the
CPU speed-up, and its time per FLOP against a plain conv block. Prints JSON.

    python bench/hr_block.py [--threads 2] [--batch 32] [--rounds 5] [--cfg configs/synthetic_hrnas_cpu.yaml]

"before" is `InvertedResidual` as it ran before the CPU speed-ups: NCHW throughout (its `memory_format` switched
back) and the native depthwise weight gradient for every kernel (no column strips, `DepthwiseConv2d`'s
`STRIP` raised); "after" the current one (channels_last, strips); for the whole model also "native_dw"
(channels_last without strips). Both run on the same modules in one interleaved loop (the machine is shared
and noisy: compare the ratios of one run, not absolute times across runs); each figure is the median over
`--rounds` timed rounds after a warm-up. The plain conv block is the baseline CNN's BasicBlock (3x3 conv-BN-
ReLU-3x3 conv-BN + identity) at the same width and map size, timed in its fastest layout (the one `conv_layout`
names). FLOPs are FlopCounterMode counts of one forward of the batch.
"""
import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from src.architecture.fabric import depthwise
from src.architecture.hr.inverted_residual import InvertedResidual
from src.config.loader import load_config
from src.network_factory.baseline import BasicBlock
from src.network_factory.registry import build_model
from src.utils.malloc import keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]


def no_strips():
    """The native depthwise weight gradient for every kernel (`DepthwiseConv2d`'s column strips off)."""
    return mock.patch.object(depthwise, "STRIP", 10 ** 9)


@contextlib.contextmanager
def as_before():
    """The block as it ran before the speed-ups: NCHW throughout, native depthwise weight gradients."""
    with mock.patch.object(InvertedResidual, "memory_format", torch.contiguous_format), no_strips():
        yield


def under(patch, fn):
    """`fn` run inside the context `patch()`."""
    def run(t):
        with patch():
            return fn(t)
    return run


def flops_of(fn, x: Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(x)
    return counter.get_total_flops()


def max_abs_diff(a: Tensor, b: Tensor) -> float:
    return float((a - b).detach().abs().max())


def fwd_bwd(fn, x: Tensor, gy: Tensor = None) -> float:
    """Seconds of `fn(x)` and its backward: for the output gradient `gy`, or of the mean square output."""
    x = x.detach().requires_grad_()
    t0 = time.perf_counter()
    out = fn(x)
    out = out[0] if isinstance(out, (list, tuple)) else out
    if gy is None:
        out.float().square().mean().backward()
    else:
        out.backward(gy)
    return time.perf_counter() - t0


def timed(cases: dict, rounds: int) -> dict:
    """{name: median seconds} of fwd_bwd for every (fn, x[, gy]) in `cases`, interleaved round by round."""
    times = {name: [] for name in cases}
    for r in range(rounds + 1):
        for name, case in cases.items():
            t = fwd_bwd(*case)
            if r:  # round 0 warms up (oneDNN primitive creation, allocator)
                times[name].append(t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def block_cases(cfg, batch: int):
    """(name, block, input) for the block kinds of an HR-NAS config: one parallel block per branch, a
    stride-2 fusion edge, an upsampling fusion edge and the dense head; hidden widths as in the supernet."""
    hr = cfg.MODEL.HR
    w, h = cfg.MODEL.INPUT_SIZE
    widths, ks, er = list(hr.WIDTHS[:len(hr.STAGE_BLOCKS[-1])]), list(hr.KERNEL_SIZES), hr.EXPAND_RATIO
    size = lambda b: (-(-h // (4 * 2 ** b)), -(-w // (4 * 2 ** b)))  # noqa: E731
    hidden = lambda c, r=er: [max(1, int(round(r * c)))] * len(ks)  # noqa: E731
    out = [(f"parallel_b{b}", InvertedResidual(c, c, 1, ks, hidden(c), "identity"), torch.randn(batch, c, *size(b)))
           for b, c in enumerate(widths)]
    out.append(("fuse_down_b0_b1", InvertedResidual(widths[0], widths[1], 2, ks, hidden(widths[0]), "none"),
                torch.randn(batch, widths[0], *size(0))))
    out.append(("fuse_up_b1_b0", InvertedResidual(widths[1], widths[0], 1, ks, hidden(widths[1]), "none"),
                torch.randn(batch, widths[1], *size(1))))
    inp = sum(widths)
    out.append(("head", InvertedResidual(inp, hr.LAST_CHANNEL, 1, ks, hidden(inp, hr.HEAD_EXPAND_RATIO), "conv"),
                torch.randn(batch, inp, *size(0))))
    return out


def conv_block_case(channels: int, x: Tensor):
    """The baseline's BasicBlock at this width, and the faster of its two layouts."""
    block = BasicBlock(channels, channels).train()
    xs = {"nchw": x, "channels_last": x.contiguous(memory_format=torch.channels_last)}
    return block, xs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cfg", default="configs/synthetic_hrnas_cpu.yaml", help="HR-NAS config (MODEL.HR, input size)")
    p.add_argument("--no-model", action="store_true", help="skip the whole-model comparison")
    args = p.parse_args(argv)
    keep_freed_memory()  # the allocator settings of train.py
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(args.cfg if Path(args.cfg).is_file() else str(ROOT / args.cfg))
    result = {"threads": args.threads, "batch": args.batch, "rounds": args.rounds, "cfg": args.cfg,
              "torch": torch.__version__, "blocks": []}
    for name, block, x in block_cases(cfg, args.batch):
        block.train()
        before = under(as_before, block)
        ref, new = before(x), block(x)
        diff = max_abs_diff(ref, new)
        conv, conv_xs = conv_block_case(block.inp, x)
        cases = {"before": (before, x), "after": (block, x),
                 **{f"conv_{k}": (conv, v) for k, v in conv_xs.items()}}
        t = timed(cases, args.rounds)
        layout = min(conv_xs, key=lambda k: t[f"conv_{k}"])
        flops, conv_flops = flops_of(block, x), flops_of(conv, x)
        per_flop_conv = t[f"conv_{layout}"] / conv_flops
        result["blocks"].append({
            "name": name, "input": list(x.shape), "out": block.oup, "stride": block.stride,
            "kernels": [pth.kernel_size for pth in block.paths], "hidden": [pth.hidden for pth in block.paths],
            "gflops": flops / 1e9, "max_abs_diff": diff,
            "before_ms": 1e3 * t["before"], "after_ms": 1e3 * t["after"], "after_over_before": t["after"] / t["before"],
            "conv_block_gflops": conv_flops / 1e9, "conv_layout": layout, "conv_block_ms": 1e3 * t[f"conv_{layout}"],
            "per_flop_vs_conv_before": t["before"] / flops / per_flop_conv,
            "per_flop_vs_conv_after": t["after"] / flops / per_flop_conv})
        print(json.dumps(result["blocks"][-1]), file=sys.stderr, flush=True)
    if not args.no_model:
        w, h = cfg.MODEL.INPUT_SIZE
        x = torch.randn(args.batch, 3, h, w)
        model = build_model(cfg).train()
        base_cfg = load_config(str(ROOT / "configs/synthetic_baseline.yaml"))
        baseline = build_model(base_cfg).train()
        with as_before():
            ref = model(x)
            model_flops = flops_of(model, x)
        diff = max_abs_diff(ref, model(x))
        t = timed({"before": (under(as_before, model), x), "after": (model, x),
                   "native_dw": (under(no_strips, model), x), "baseline": (baseline, x)}, args.rounds)
        base_flops = flops_of(baseline, x)
        per_flop_base = t["baseline"] / base_flops
        result["model"] = {
            "name": cfg.MODEL.NAME, "input": list(x.shape), "gflops": model_flops / 1e9, "max_abs_diff": diff,
            "before_s": t["before"], "after_s": t["after"], "after_over_before": t["after"] / t["before"],
            "baseline_cnn_gflops": base_flops / 1e9, "baseline_cnn_s": t["baseline"],
            "per_flop_vs_baseline_before": t["before"] / model_flops / per_flop_base,
            "per_flop_vs_baseline_after": t["after"] / model_flops / per_flop_base,
            "native_dw_s": t["native_dw"],
            "per_flop_vs_baseline_native_dw": t["native_dw"] / model_flops / per_flop_base}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
