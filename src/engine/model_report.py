"""Model size reports: `--param_flop` (params, FLOPs and MACs of the model and each part) and the
supernet-versus-derived comparison written at the end of a search (params, FLOPs, CPU latency per image)."""
import copy
import statistics
import time
from typing import Sequence

import torch
from torch import nn

from src.architecture.arch_params import unwrap
from src.utils.flops import complexity_table, count_flops, count_params, example_input, model_complexity


def _shape(input_size: Sequence[int]):
    w, h = input_size  # config convention: [width, height]
    return (1, 3, int(h), int(w))


def print_param_flop(cfg, model: nn.Module, print_fn=print) -> str:
    """Params, FLOPs and MACs of the whole model and per part (via `complexity_groups()`), at MODEL.INPUT_SIZE."""
    core = unwrap(model)
    groups = core.complexity_groups()
    w, h = cfg.MODEL.INPUT_SIZE
    text = f"parameters and FLOPs at input {w}x{h} (batch 1):\n" + complexity_table(
        model_complexity(core, _shape(cfg.MODEL.INPUT_SIZE), groups))
    print_fn(text)
    return text


@torch.no_grad()
def cpu_latency(model: nn.Module, input_size: Sequence[int], runs: int = 5, warmup: int = 2) -> float:
    """Median seconds per image of an eval forward on CPU at batch 1 (the model itself is left untouched)."""
    net = unwrap(model)
    on_cpu = all(p.device.type == "cpu" for p in net.parameters())
    net = net if on_cpu else copy.deepcopy(net).cpu()
    was_training = net.training
    net.eval()
    x = example_input(net, _shape(input_size), torch.randn)
    try:
        for _ in range(warmup):
            net(x)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t0)
    finally:
        net.train(was_training)
    return statistics.median(times)


def compare_models(supernet: nn.Module, derived: nn.Module, input_size: Sequence[int], runs: int = 5) -> str:
    """A table of params, FLOPs (and MACs) and CPU latency per image of the supernet and the derived model."""
    shape = _shape(input_size)
    rows = []
    for name, m in (("supernet", supernet), ("derived", derived)):
        flops = count_flops(unwrap(m), shape)
        rows.append((name, count_params(unwrap(m)), flops, cpu_latency(m, input_size, runs)))
    w, h = input_size
    lines = [f"supernet vs derived at input {w}x{h} (batch 1, CPU, {torch.get_num_threads()} threads):",
             f"{'model':<9} {'params (M)':>10} {'GFLOPs':>9} {'GMACs':>9} {'latency (ms)':>12}"]
    lines += [f"{n:<9} {p / 1e6:10.4f} {f / 1e9:9.4f} {f / 2e9:9.4f} {t * 1e3:12.2f}" for n, p, f, t in rows]
    (_, p0, f0, t0), (_, p1, f1, t1) = rows
    lines.append(f"{'ratio':<9} {p1 / p0:10.3f} {f1 / max(f0, 1):9.3f} {f1 / max(f0, 1):9.3f} {t1 / t0:12.3f}")
    return "\n".join(lines)
