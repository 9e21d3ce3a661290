"""The one registry of architecture parameters.

Every searchable decision is an `nn.Parameter` registered under an attribute named exactly `alpha`
(ops of an edge / of a cell), `beta` (inputs of a cell) or `gamma` (PC-DARTS edge normalisation: the edges
entering one hidden state, src/architecture/fabric/edge_norm.py). Each is softmaxed over its last dim.
Gates (channels, FFN channels, tokens) are weights trained by slimming, exposed by `named_gates()` (HR
supernet: BN scales, token gates; see src/search/slimming.py). Everything here works on plain or
DDP-wrapped models, on state dicts and on copies, because it only looks at parameter names.
"""
import math
from typing import Dict, Iterator, List, Tuple

import torch
from torch import nn

ARCH_NAMES = ("alpha", "beta", "gamma")


def new_arch_parameter(*shape: int) -> nn.Parameter:
    """A zero-initialised (uniform after softmax) arch logit tensor."""
    return nn.Parameter(torch.zeros(*shape))


def is_arch_name(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in ARCH_NAMES


def arch_parameter_names(model: nn.Module) -> List[str]:
    """Names of the model's arch parameters (empty for a network without a search space)."""
    return [name for name, _ in model.named_parameters() if is_arch_name(name)]


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP/DataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


class ArchMixin:
    """Mixed into every top-level model: a disjoint split of its parameters into arch and weights."""

    def named_arch_parameters(self) -> Iterator[Tuple[str, nn.Parameter]]:
        for name, p in self.named_parameters():
            if is_arch_name(name):
                yield name, p

    def named_weight_parameters(self) -> Iterator[Tuple[str, nn.Parameter]]:
        for name, p in self.named_parameters():
            if not is_arch_name(name):
                yield name, p

    def arch_parameters(self) -> List[nn.Parameter]:
        return [p for _, p in self.named_arch_parameters()]

    def weight_parameters(self) -> List[nn.Parameter]:
        return [p for _, p in self.named_weight_parameters()]

    def arch_state(self) -> Dict[str, list]:
        """Named, JSON-able snapshot: softmax over the last dim of every arch tensor."""
        return {name: torch.softmax(p.detach().float(), dim=-1).cpu().tolist()
                for name, p in self.named_arch_parameters()}

    def arch_entropy(self) -> float:
        """Mean normalised entropy H(p) / log(n) of the softmaxed rows (last dim) of every arch tensor with
        n >= 2 entries: 1 = uniform (undecided), 0 = one-hot (decided); nan without arch parameters."""
        rows = []
        for _, p in self.named_arch_parameters():
            logits = p.detach().double().reshape(-1, p.shape[-1])
            if logits.shape[-1] < 2:
                continue
            logp = torch.log_softmax(logits, dim=-1)
            rows.append(-(logp.exp() * logp).sum(-1) / math.log(logits.shape[-1]))
        return float(torch.cat(rows).mean()) if rows else float("nan")
