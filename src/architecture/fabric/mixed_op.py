"""Mixed op: the weighted sum of an edge's candidate (or kept) operations.

The weights are passed in by the owner of alpha (one-shot search shares one alpha per CNF, so the op does
not own it): `forward(x, weights)` with one softmaxed weight per op, or `weights=None` for a derived edge,
which applies its fixed mixing weights (`weights=` at construction: a non-persistent buffer, the pruned
supernet's softmax values) or else averages its kept ops (the same function as a zero-logit alpha). Ops are
an `nn.ModuleDict` keyed by op name, so a derived edge's parameter names are a subset of the supernet edge's.
"""
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from src.architecture.fabric.op_registry import build_op


class MixedOp(nn.Module):
    def __init__(self, channels: int, ops: Sequence[str], stride: int = 1, weights: Optional[Sequence[float]] = None):
        super().__init__()
        if not ops:
            raise ValueError("a mixed op needs at least one operation")
        if len(set(ops)) != len(ops):
            raise ValueError(f"duplicate operations in {list(ops)}")
        self.ops = nn.ModuleDict({name: build_op(name, channels, stride) for name in ops})
        if weights is not None:
            if len(weights) != len(ops):
                raise ValueError(f"{len(ops)} operations {list(ops)} need {len(ops)} fixed weights, got {len(weights)}")
            self.register_buffer("fixed_weights", torch.tensor([float(w) for w in weights]), persistent=False)

    def forward(self, x: Tensor, weights: Optional[Tensor] = None) -> Tensor:
        if weights is None:
            weights = getattr(self, "fixed_weights", None)
        out = None
        for i, op in enumerate(self.ops.values()):
            if getattr(op, "is_zero", False):  # contributes exactly 0 (alpha still gets its softmax gradient)
                continue
            y = op(x) if weights is None else weights[i] * op(x)
            out = y if out is None else out + y
        if out is None:  # only zero ops
            return next(iter(self.ops.values()))(x)
        return out / len(self.ops) if weights is None and len(self.ops) > 1 else out
