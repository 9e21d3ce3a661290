"""Resource-aware network slimming (HR-NAS): FLOPs-weighted L1 on gates, progressive physical shrinking.

    slimmer = build_slimmer(cfg, model)            # None unless SLIM.METHOD == "slimming"
    loss = task_loss + slimmer.penalty()           # every iteration
    slimmer.update_rho(epoch + it / iters)         # rho schedule, or FLOPs-target adaptation
    stats = slimmer.maybe_shrink(epoch, optimizer) # after each epoch; re-wrap DDP when stats is not None

Gate groups (found in the model, recounted after each shrink):
- "channel": the depthwise-BN scales of one kernel path of an `InvertedResidual`, or of the ConvFFN of its
  HRT part (unit = one hidden channel);
- "token": the token gates of a `TokenTransformer` (unit = one token).
penalty = rho * sum_g w_g * |gate_g|_1 with w_g = FLOPs of one unit of g (a token: F(n)/n, i.e. with its
share of the attention cost) / the supernet's mean FLOPs per unit (fixed at construction). FLOPs are
FlopCounterMode counts of one image at MODEL.INPUT_SIZE; the projected FLOPs are those left once every unit
with |gate| < SLIM.THRESHOLD is gone. `Slimmer` takes values; `build_slimmer` reads them from cfg.SLIM.
"""
import copy
import itertools
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor, nn

from src.architecture.arch_params import unwrap
from src.architecture.hr.inverted_residual import InvertedResidual
from src.architecture.hr.shrink import Surgery, prune_dead_structure, shrink_block
from src.architecture.hr.supernet import HRSupernet
from src.utils.distributed import is_main
from src.utils.flops import flop_counts


@dataclass
class GateGroup:
    name: str  # module path of the path / transformer / HRT FFN
    kind: str  # "channel" or "token"
    gate: nn.Parameter
    cost: Callable[[int], float]  # FLOPs of the group's units when n of them are alive
    owner: nn.Module  # the block

    @property
    def size(self) -> int:
        return self.gate.numel()


def meta_copy(module: nn.Module) -> nn.Module:
    """A copy of `module` whose parameters and buffers live on the meta device (shapes only, no data)."""
    memo = {id(t): nn.Parameter(t.detach().to("meta"), t.requires_grad) if isinstance(t, nn.Parameter)
            else t.detach().to("meta") for t in itertools.chain(module.parameters(), module.buffers())}
    return copy.deepcopy(module, memo)


class Slimmer:
    """FLOPs-weighted gate L1 with a rho schedule (or FLOPs target) and periodic physical shrinking."""

    def __init__(self, model: nn.Module, *, rho: float, threshold: float, interval: int, warmup_epochs: float,
                 target_flops: float, rho_gain: float, epochs: int, input_hw: tuple):
        """The SLIM.* settings (see src/config/defaults.py), the run's epochs and the (height, width) of one
        image at which FLOPs are counted."""
        if rho <= 0 or threshold < 0 or interval < 1 or target_flops < 0:
            raise ValueError("SLIM: slimming needs RHO > 0, THRESHOLD >= 0, INTERVAL >= 1, TARGET_FLOPS >= 0")
        self.core = unwrap(model)
        self.threshold, self.interval, self.warmup = threshold, interval, warmup_epochs
        self.base_rho, self.gain, self.epochs = rho, rho_gain, epochs
        self.input_hw = tuple(input_hw)
        self._profile()
        if not self.groups:
            raise ValueError(f"SLIM.METHOD slimming: {type(self.core).__name__} has no gates")
        self.supernet_flops = self.flops
        self.initial_units = self._units_by_kind()
        self.norm = sum(g.cost(g.size) for g in self.groups) / sum(g.size for g in self.groups)
        self._set_weights()
        self.target = target_flops * self.supernet_flops if 0 < target_flops <= 1 else float(target_flops)
        self.scale = self.base_rho
        self.rho = 0.0
        self.update_rho(0.0)

    # -- measuring
    def _profile(self) -> None:
        """Measure the FLOPs (total and per module, on a meta-device copy) and collect the gate groups."""
        core = self.core
        per_module = flop_counts(meta_copy(core), (1, 3, *self.input_hw))
        self.flops = per_module.get("Global", 0)
        root = type(core).__name__
        self.groups: List[GateGroup] = []
        for name, m in core.named_modules():
            prefix = f"{root}.{name}" if name else root
            if isinstance(m, InvertedResidual):
                for sub, kind, gate in m.named_gate_groups():
                    if kind == "channel":
                        unit = per_module.get(f"{prefix}.{sub}", 0) / gate.numel()
                        self.groups.append(GateGroup(f"{name}.{sub}", kind, gate, lambda n, u=unit: u * n, m))
                    else:
                        self.groups.append(GateGroup(f"{name}.{sub}", kind, gate, m.transformer.flops, m))

    def _set_weights(self) -> None:
        self.weights = [g.cost(g.size) / g.size / self.norm for g in self.groups]

    def _units_by_kind(self) -> Dict[str, int]:
        units: Dict[str, int] = {}
        for g in self.groups:
            units[g.kind] = units.get(g.kind, 0) + g.size
        return units

    def _alive_masks(self) -> List[Tensor]:
        return [g.gate.detach().abs().reshape(-1) > self.threshold for g in self.groups]

    def projected_flops(self) -> float:
        """FLOPs (one image at MODEL.INPUT_SIZE) once every unit with |gate| < SLIM.THRESHOLD is removed."""
        alive = torch.stack([m.sum() for m in self._alive_masks()]).tolist()
        return self.flops - sum(g.cost(g.size) - g.cost(a) for g, a in zip(self.groups, alive))

    # -- training-time hooks
    def penalty(self) -> Tensor:
        """rho * sum_g w_g * |gate_g|_1 (a scalar tensor; depends only on the gates)."""
        total = sum(w * g.gate.abs().sum() for w, g in zip(self.weights, self.groups))
        return total * self.rho

    def update_rho(self, epoch: float) -> float:
        """rho = linear warm-up ramp x scale; with a FLOPs target the scale adapts after warm-up."""
        ramp = 1.0 if self.warmup <= 0 else min(1.0, max(0.0, epoch / self.warmup))
        if self.target > 0 and ramp >= 1.0:
            excess = min(1.0, max(-1.0, self.projected_flops() / self.target - 1.0))
            self.scale = min(self.base_rho * 1e3, max(self.base_rho * 1e-3, self.scale * math.exp(self.gain * excess)))
        self.rho = ramp * self.scale
        return self.rho

    def maybe_shrink(self, epoch: int, optimizer: Optional[torch.optim.Optimizer] = None) -> Optional[dict]:
        """After epoch `epoch` (0-based): shrink every SLIM.INTERVAL epochs and after the last one.

        The optimizer is updated in place (same object; its param groups hold the new parameters, their
        state sliced alike). When a dict is returned the model's parameters changed: re-wrap DDP."""
        return self.shrink(optimizer) if self.due(epoch) else None

    def due(self, epoch: int) -> bool:
        """Whether a shrink is due after epoch `epoch` (0-based): every SLIM.INTERVAL epochs and the last."""
        return not (epoch + 1) % self.interval or epoch + 1 >= self.epochs

    # -- shrinking
    def _select(self) -> Optional[List[Tensor]]:
        """Keep masks: all units above threshold; with a target, drop the weakest below it only down to it."""
        keeps = self._alive_masks()
        if self.target > 0:
            weakest = sorted((v, gi, ui) for gi, g in enumerate(self.groups)
                             for ui, v in enumerate(g.gate.detach().abs().reshape(-1).tolist()) if v <= self.threshold)
            keeps = [torch.ones_like(k) for k in keeps]
            alive, flops = [g.size for g in self.groups], self.flops
            for _, gi, ui in weakest:
                if flops <= self.target:
                    break
                g = self.groups[gi]
                flops -= g.cost(alive[gi]) - g.cost(alive[gi] - 1)
                alive[gi] -= 1
                keeps[gi][ui] = False
        return None if all(bool(k.all()) for k in keeps) else keeps

    def shrink(self, optimizer: Optional[torch.optim.Optimizer] = None) -> Optional[dict]:
        """Physically remove the selected units (and what they leave dead); None when nothing goes."""
        keeps = self._select()
        if keeps is None:
            return None
        before, units_before = self.flops, self._units_by_kind()
        surgery = Surgery()
        per_block: Dict[nn.Module, List[Tensor]] = {}
        for g, keep in zip(self.groups, keeps):
            per_block.setdefault(g.owner, []).append(keep)
        for block, masks in per_block.items():
            if not all(bool(m.all()) for m in masks):
                shrink_block(block, masks, surgery)
        removed = {"edges": [], "branches": []}
        for m in list(self.core.modules()):
            if isinstance(m, HRSupernet):
                for key, values in prune_dead_structure(m).items():
                    removed[key] += values
        if optimizer is not None:
            surgery.remap_optimizer(optimizer, self.core)
        self._profile()
        self._set_weights()
        units = self._units_by_kind()
        stats = {"flops_before": before, "flops": self.flops, "surgery": surgery,
                 "edges_removed": removed["edges"], "branches_removed": removed["branches"],
                 "tokens": {g.name: g.size for g in self.groups if g.kind == "token"},
                 **{f"{kind}_units_removed": units_before[kind] - units.get(kind, 0) for kind in units_before}}
        if is_main():
            print(self.report(), flush=True)
        return stats

    def report(self) -> str:
        units = self._units_by_kind()
        lines = [f"slimming: FLOPs {self.flops / 1e6:.2f}M of {self.supernet_flops / 1e6:.2f}M "
                 f"(projected {self.projected_flops() / 1e6:.2f}M"
                 + (f", target {self.target / 1e6:.2f}M" if self.target > 0 else "") + f"), rho {self.rho:.3g}",
                 "  units kept: " + ", ".join(f"{k} {units.get(k, 0)}/{n}" for k, n in self.initial_units.items())]
        for m in self.core.modules():
            if isinstance(m, HRSupernet):
                lines.append(f"  branches kept: {m.num_branches}/{len(m.widths)}; blocks reduced to their skip: "
                             f"{sum(1 for _, b in m.named_blocks() if not len(b.paths))}/{len(list(m.named_blocks()))}")
        tokens = [f"{g.name}={g.size}" for g in self.groups if g.kind == "token"]
        if tokens:
            lines.append("  tokens: " + " ".join(tokens))
        return "\n".join(lines)

    # -- checkpoints (the architecture itself is saved as a genotype)
    def state_dict(self) -> dict:
        """rho's state and what was measured on the unshrunk supernet: a resumed run rebuilds the shrunk
        network, whose own FLOPs would otherwise become the penalty's normaliser and the FLOPs target's base."""
        return {"scale": self.scale, "rho": self.rho, "norm": self.norm, "supernet_flops": self.supernet_flops,
                "target": self.target, "initial_units": dict(self.initial_units)}

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.rho = float(state["scale"]), float(state["rho"])
        if "norm" in state:  # checkpoints written before these were saved carry only rho's state
            self.norm, self.supernet_flops = float(state["norm"]), float(state["supernet_flops"])
            self.target = float(state["target"])
            self.initial_units = {str(k): int(v) for k, v in state["initial_units"].items()}
            self._set_weights()


def build_slimmer(cfg, model: nn.Module) -> Optional[Slimmer]:
    """A Slimmer with the SLIM.* settings for SLIM.METHOD "slimming", None for "none"."""
    p = cfg.SLIM
    method = p.METHOD
    if method == "none":
        return None
    if method != "slimming":
        raise ValueError(f"unknown SLIM.METHOD '{method}' (none, slimming)")
    width, height = cfg.MODEL.INPUT_SIZE
    return Slimmer(model, rho=p.RHO, threshold=p.THRESHOLD, interval=p.INTERVAL, warmup_epochs=p.WARMUP_EPOCHS,
                   target_flops=p.TARGET_FLOPS, rho_gain=p.RHO_GAIN, epochs=cfg.TRAIN.EPOCHS, input_hw=(height, width))
