"""Averaged arch values for the derivation (DERIVE.AVERAGE_ARCH_STEPS).

With Adam at a large arch learning rate, softmaxed alpha and beta values keep swinging until the last arch
step, so a derivation from the last step's values records where each swing stands at the stop. `ArchAverage`
keeps the softmaxed values of the last N arch steps; `apply` sets every arch logit to the log of its mean
value (a softmax of the new logits gives the mean back exactly, since each mean row sums to 1), so that
Prune, the genotype and last.pth all see the average (Polyak averaging of the arch values).
last.pth also keeps the recorded steps, so `recorded_average` re-derives a finished search over a shorter window
(1 = the last arch step's values) without searching again.
"""
from collections import deque
from typing import Dict, List

import torch


class ArchAverage:
    def __init__(self, steps: int):
        if steps < 1:
            raise ValueError(f"DERIVE.AVERAGE_ARCH_STEPS must be >= 1 to average (0 = off), got {steps}")
        self.recent: deque = deque(maxlen=steps)

    def add(self, arch_state: Dict[str, list]) -> None:
        """Records one arch step's softmaxed values, as the model's `arch_state()` gives them (the snapshot the
        arch log writes too)."""
        self.recent.append(arch_state)

    @torch.no_grad()
    def apply(self, model) -> int:
        """Sets every arch logit to log(mean softmaxed value over the recorded steps); returns their count."""
        if not self.recent:
            return 0
        for name, p in model.named_arch_parameters():
            mean = torch.stack([torch.as_tensor(step[name], dtype=torch.float64) for step in self.recent]).mean(0)
            p.copy_(mean.clamp_min(torch.finfo(p.dtype).tiny).log().to(p.dtype))
        return len(self.recent)

    def state_dict(self) -> Dict[str, List[Dict[str, list]]]:
        return {"recent": list(self.recent)}

    def load_state_dict(self, state: dict) -> None:
        self.recent.clear()
        self.recent.extend(state.get("recent", []))


def recorded_average(checkpoint: dict, steps: int, path: str, model) -> ArchAverage:
    """The ArchAverage of the last `steps` arch steps recorded in a search checkpoint (`steps` = 1: the last arch
    step's own values), checked against `model`'s arch parameters; errors name `path`."""
    recent = ((checkpoint.get("arch_monitor") or {}).get("average") or {}).get("recent") or []
    if not isinstance(recent, list) or not 1 <= steps <= len(recent):
        raise ValueError(f"checkpoint {path} records {len(recent) if isinstance(recent, list) else 0} arch steps "
                         f"(its search's DERIVE.AVERAGE_ARCH_STEPS); cannot average the last {steps}")
    shapes = {name: tuple(p.shape) for name, p in model.named_arch_parameters()}
    if not all(_is_arch_state(step, shapes) for step in recent[-steps:]):
        raise ValueError(f"checkpoint {path}: its recorded arch steps are not softmaxed values of the model's arch "
                         f"parameters")
    average = ArchAverage(steps)
    average.load_state_dict({"recent": recent})  # the window keeps the last `steps`
    return average


def _is_arch_state(step, shapes: Dict[str, tuple]) -> bool:
    """`step` holds, for every arch parameter, finite non-negative values of its shape."""
    if not isinstance(step, dict):
        return False
    for name, shape in shapes.items():
        try:
            values = torch.as_tensor(step.get(name, []), dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            return False
        if tuple(values.shape) != shape or not bool(torch.isfinite(values).all() and (values >= 0).all()):
            return False
    return True
