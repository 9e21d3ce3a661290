"""Parameter and FLOP counting with `torch.utils.flop_counter.FlopCounterMode` (MACs = FLOPs / 2).

`model_complexity(model, input_shape, groups)` counts the whole model and named submodules (e.g. a part
model's backbone and each part's subnetwork, via its `complexity_groups()`) in one forward;
`complexity_table(rows)` formats the result.
"""
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def example_input(model: nn.Module, input_shape: Sequence[int], fill=torch.zeros) -> torch.Tensor:
    """`fill(*input_shape)` (zeros, randn, ...) in the dtype and on the device of the model's first floating
    parameter or buffer (default dtype on CPU for a model without any)."""
    ref = next((t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()), None)
    if ref is None:
        return fill(*input_shape)
    return fill(*input_shape, dtype=ref.dtype, device=ref.device)


def flop_counts(model: nn.Module, input_shape: Sequence[int]) -> Dict[str, int]:
    """FLOPs per module name ("Global" = total; submodules as "<RootClass>.<name>") of one eval forward on
    zeros of the model's dtype and device."""
    x = example_input(model, input_shape)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward on zeros of `input_shape` (e.g. (1, 3, H, W))."""
    return flop_counts(model, input_shape).get("Global", 0)


def model_complexity(model: nn.Module, input_shape: Sequence[int],
                     groups: Optional[Dict[str, str]] = None) -> List[dict]:
    """Rows {name, params, flops, macs}: the whole model, then each `groups` label -> submodule name."""
    flops = flop_counts(model, input_shape)
    rows = [{"name": "model", "params": count_params(model), "flops": flops.get("Global", 0)}]
    root = type(model).__name__
    for label, sub in (groups or {}).items():
        rows.append({"name": label, "params": count_params(model.get_submodule(sub)),
                     "flops": flops.get(f"{root}.{sub}", 0)})
    for row in rows:
        row["macs"] = row["flops"] // 2
    return rows


def complexity_table(rows: List[dict]) -> str:
    width = max(len(r["name"]) for r in rows)
    lines = [f"{'module'.ljust(width)}  {'params (M)':>10}  {'GFLOPs':>8}  {'GMACs':>8}"]
    lines += [f"{r['name'].ljust(width)}  {r['params'] / 1e6:10.3f}  {r['flops'] / 1e9:8.3f}  {r['macs'] / 1e9:8.3f}"
              for r in rows]
    return "\n".join(lines)
