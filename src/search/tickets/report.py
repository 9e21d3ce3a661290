"""The ticket report: true density per prunable layer and in total, non-zero parameters, sparse MACs.

Sparse MACs are counted per layer: every weight of a convolution or linear layer takes part in the same
number of multiply-accumulates (one per output position), so a layer's sparse MACs are its dense MACs
(FlopCounterMode, one image) x its own density. Layers that are not pruned (BN, attention products,
pooling, ...) count dense. The total is the sum over layers, not dense MACs x global density.
"""
from typing import Dict, List, Sequence

import torch
from torch import nn

from src.architecture.arch_params import unwrap
from src.search.tickets.masks import prunable_modules
from src.utils.flops import flop_counts


def _effective(m: nn.Module) -> torch.Tensor:
    return (m.weight_orig * m.weight_mask if hasattr(m, "weight_mask") else m.weight).detach()


def nonzero_parameters(model: nn.Module) -> int:
    """Non-zero entries of every parameter, pruned weights counted through their masks."""
    core = unwrap(model)
    total = 0
    for name, m in core.named_modules():
        for pname, p in m.named_parameters(recurse=False):
            t = _effective(m) if pname == "weight_orig" else p.detach()
            total += int(torch.count_nonzero(t))
    return total


def ticket_report(model: nn.Module, input_shape: Sequence[int], include=("*",), exclude=()) -> Dict:
    """{"layers": [{name, params, nonzero, density, macs, sparse_macs}], "total": {...}} at `input_shape`."""
    core = unwrap(model)
    flops = flop_counts(core, input_shape)
    root = type(core).__name__
    layers: List[dict] = []
    for name, m in prunable_modules(core, include, exclude):
        w = _effective(m)
        nz = int(torch.count_nonzero(w))
        macs = flops.get(f"{root}.{name}", 0) // 2
        density = nz / w.numel()
        layers.append({"name": name, "params": w.numel(), "nonzero": nz, "density": density, "macs": macs,
                       "sparse_macs": macs * density})
    dense_macs = flops.get("Global", 0) // 2
    layer_macs = sum(r["macs"] for r in layers)
    prunable = sum(r["params"] for r in layers)
    kept = sum(r["nonzero"] for r in layers)
    total = {"prunable_params": prunable, "prunable_nonzero": kept, "density": kept / max(prunable, 1),
             "params": sum(p.numel() for p in core.parameters()), "nonzero_params": nonzero_parameters(core),
             "dense_macs": dense_macs, "sparse_macs": dense_macs - layer_macs + sum(r["sparse_macs"] for r in layers)}
    return {"layers": layers, "total": total}


def format_report(report: Dict) -> str:
    rows = report["layers"]
    width = max([len(r["name"]) for r in rows] + [5])
    lines = [f"{'layer'.ljust(width)}  {'params':>9}  {'nonzero':>9}  {'density':>7}  {'MMACs':>8}  {'sparse MMACs':>12}"]
    lines += [f"{r['name'].ljust(width)}  {r['params']:9d}  {r['nonzero']:9d}  {r['density']:7.4f}  "
              f"{r['macs'] / 1e6:8.3f}  {r['sparse_macs'] / 1e6:12.3f}" for r in rows]
    t = report["total"]
    lines.append(f"total: density {t['density']:.4f} ({t['prunable_nonzero']}/{t['prunable_params']} prunable "
                 f"weights); non-zero parameters {t['nonzero_params']} of {t['params']}; MACs "
                 f"{t['dense_macs'] / 1e6:.3f}M dense, {t['sparse_macs'] / 1e6:.3f}M sparse")
    return "\n".join(lines)
