"""One-shot training of the ScaleNAS supernet (`SEARCH.STRATEGY oneshot`, settings ONESHOT.*).

Step t trains the subnet `subnet_for_step(spec, SEED, t, groups)` (src/architecture/scale/space.py): group
t mod G of the fusion-percentage x depth-range groups (plus the smallest and largest subnets with the
sandwich rule), drawn from a generator seeded by (SEED, t). It depends on nothing else, so every DDP rank
trains the same subnet, and t is checkpointed (`oneshot_steps`), so a resumed run continues the sequence.

With ONESHOT.SANDWICH the largest subnet is trained in the same step on the same batch (task loss), and its
output, detached, is the in-place distillation target of the sampled subnet:
    loss = task(subnet) + ONESHOT.KD_RATIO * MSE(subnet output, largest output)
(heatmaps for pose, logits for segmentation); both backward passes accumulate into one weight step (the
original trained a second, pre-trained supernet as a fixed teacher). Under DDP each backward averages its
gradients over the ranks, and the wrapper looks for the weights a subnet leaves unused (`skips_modules`).
After the step the largest subnet is active again, so evaluations and checkpoints during training see it.
"""
from typing import Dict

import torch.nn.functional as F

from src.architecture.scale.space import groups, largest, subnet_for_step
from src.architecture.scale.supernet import find_scale_supernet
from src.search.base import SearchStrategy, StrategySettings, check_finite


class OneShotStrategy(SearchStrategy):
    name = "oneshot"
    skips_modules = True

    def __init__(self, settings: StrategySettings, model, criterion):
        super().__init__(settings, model, criterion)
        self.supernet = find_scale_supernet(self.core)
        if self.supernet.only is not None:
            raise ValueError("SEARCH.STRATEGY oneshot trains a supernet, not a standalone subnet (use none)")
        self.groups = groups(self.supernet.spec, settings.oneshot)
        self.largest = largest(self.supernet.spec)
        self.steps = 0

    def subnet_of_step(self, step: int):
        return subnet_for_step(self.supernet.spec, self.settings.seed, step, self.groups)

    def _forward_backward(self, batch, target=None):
        """One forward/backward of the active subnet; returns (output, task loss, kd loss or None)."""
        output = self.model(batch["image"])
        task = self.criterion(output, batch)
        kd = None
        loss = task
        if target is not None and self.settings.oneshot.kd_ratio > 0:
            kd = F.mse_loss(output, target)
            loss = task + self.settings.oneshot.kd_ratio * kd
        check_finite(loss, "training loss")
        loss.backward()
        return output, task, kd

    def step(self, weight_batch, arch_batch=None, arch_active: bool = True) -> Dict[str, float]:
        subnet = self.subnet_of_step(self.steps)
        self.steps += 1
        self.model.train()
        self.weight_optimizer.zero_grad(set_to_none=True)
        stats, target = {}, None
        try:
            if self.settings.oneshot.sandwich:
                self.supernet.set_active(self.largest)
                output, task, _ = self._forward_backward(weight_batch)
                target, stats["loss_largest"] = output.detach(), task.item()
            if target is None or subnet != self.largest:
                self.supernet.set_active(subnet)
                _, task, kd = self._forward_backward(weight_batch, target)
                if kd is not None:
                    stats["kd_loss"] = kd.item()
            stats["loss"] = task.item()
            self.apply_weight_grads()
        finally:
            self.supernet.set_active(self.largest)
        stats.update(subnet_depth=subnet.mean_depth(), subnet_fusion=subnet.fusion_fraction())
        return stats

    def state_dict(self) -> dict:
        return {**super().state_dict(), "oneshot_steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.steps = int(state.get("oneshot_steps", 0))
