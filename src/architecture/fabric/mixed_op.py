"""Mixed op: the weighted sum of an edge's candidate (or kept) operations.

The weights are passed in by the owner of alpha (one-shot search shares one alpha per CNF, so the op does
not own it): `forward(x, weights)` with one softmaxed weight per op, or `weights=None` for a derived edge,
which applies its fixed mixing weights (`weights=` at construction: a non-persistent buffer, the pruned
supernet's softmax values) or else averages its kept ops (the same function as a zero-logit alpha). Ops are
an `nn.ModuleDict` keyed by op name, so a derived edge's parameter names are a subset of the supernet edge's.

`forward(x, weights, chosen=k)` is a sampled single-path forward (GDAS, src/architecture/fabric/sampling.py):
only op k runs, scaled by weights[k] (the straight-through sample).

Partial channels (PC-DARTS, Xu et al., ICLR 2020; `partial=K`, searchable edges only): the ops are built for
C/K channels and see the first C/K channels of x; the other channels bypass them, and the concatenation is
channel-shuffled (K groups) so that the next edge's ops see other channels. K = 1 is the plain mixed op.
"""
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from src.architecture.fabric.op_registry import build_op


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Channel g * C/groups + i moves to i * groups + g (ShuffleNet / PC-DARTS); one copy, memory format kept."""
    n, c, h, w = x.shape
    out = torch.empty_like(x)
    out.view(n, c // groups, groups, h, w).copy_(x.view(n, groups, c // groups, h, w).transpose(1, 2))
    return out


def partial_channels(x: Tensor, k: int, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """shuffle(cat(fn(first C/k channels of x), the other channels), k)."""
    c = x.shape[1] // k
    return channel_shuffle(torch.cat([fn(x[:, :c]), x[:, c:]], 1), k)


class MixedOp(nn.Module):
    def __init__(self, channels: int, ops: Sequence[str], stride: int = 1, weights: Optional[Sequence[float]] = None,
                 partial: int = 1):
        super().__init__()
        if not ops:
            raise ValueError("a mixed op needs at least one operation")
        if len(set(ops)) != len(ops):
            raise ValueError(f"duplicate operations in {list(ops)}")
        if partial < 1 or channels % partial or (partial > 1 and stride != 1):
            raise ValueError(f"partial channels K={partial} must be >= 1, divide the {channels} channels and "
                             "(K > 1) be on a stride-1 edge")
        self.partial = partial
        self.ops = nn.ModuleDict({name: build_op(name, channels // partial, stride) for name in ops})
        if weights is not None:
            if len(weights) != len(ops):
                raise ValueError(f"{len(ops)} operations {list(ops)} need {len(ops)} fixed weights, got {len(weights)}")
            self.register_buffer("fixed_weights", torch.tensor([float(w) for w in weights]), persistent=False)

    def forward(self, x: Tensor, weights: Optional[Tensor] = None, chosen: Optional[int] = None) -> Tensor:
        if self.partial == 1:
            return self._mix(x, weights, chosen)
        return partial_channels(x, self.partial, lambda part: self._mix(part, weights, chosen))

    def _mix(self, x: Tensor, weights: Optional[Tensor], chosen: Optional[int]) -> Tensor:
        if chosen is not None:  # sampled single path: only the chosen op runs
            return weights[chosen] * list(self.ops.values())[chosen](x)
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
