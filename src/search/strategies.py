"""The search strategies (`--search NAME` / SEARCH.STRATEGY) and `build_strategy`.

none                   arch logits 0 (uniform mixture), frozen; weights train on the weight batch
random                 arch logits drawn once as N(0, 1) from cfg.SEED (shape of each arch tensor), frozen
sync                   one weight optimizer over weights and arch (arch group at SEARCH.ARCH_LR / ARCH_WD),
                       both trained on the training batch (single level, no split)
first_order_gradient   bilevel: an Adam arch step on the arch batch (weights fixed), then a weight step
second_order_gradient  bilevel with the DARTS unrolled hypergradient (src/search/hypergradient.py); the
                       weight step reuses the weight-batch gradient of the virtual step

Strategies take values (`StrategySettings`); `build_strategy` reads them from the config (`strategy_settings`).
Bilevel strategies take the arch batch from the arch split (src/search/split.py); while not `arch_active`
(SEARCH.WARMUP_EPOCHS) only the weight step runs, on the weight batch. Under DDP arch gradients are
averaged explicitly (autograd on the unwrapped module bypasses DDP's hooks), so all ranks keep the same
alpha/beta. The first-order weight step goes through the DDP wrapper (its hooks average weight grads);
the second-order one applies the averaged virtual-step gradient itself, after broadcasting rank 0's
buffers as the bypassed DDP forward would (`broadcast_buffers`).
"""
from typing import Dict, List

import torch

from src.search.base import (SearchStrategy, StrategySettings, build_arch_optimizer, check_finite,
                             preserved_buffers)
from src.search.hypergradient import MODES, compute_hypergradient
from src.utils.distributed import all_reduce_mean_, broadcast_


class RandomStrategy(SearchStrategy):
    name = "random"

    def init_arch_values(self) -> None:
        """N(0, 1) logits from a generator seeded with `seed` (SEED), drawn in `named_arch_parameters` order."""
        gen = torch.Generator().manual_seed(self.settings.seed)
        with torch.no_grad():
            for p in self.core.arch_parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))


class SyncStrategy(SearchStrategy):
    name = "sync"
    trains_arch = True
    arch_in_weight_optimizer = True

    def weight_optimizer_params(self):
        return [{"params": self.core.weight_parameters()},
                {"params": self.core.arch_parameters(), "lr": self.settings.arch_lr,
                 "weight_decay": self.settings.arch_weight_decay}]


class FirstOrderStrategy(SearchStrategy):
    """Arch step: grad_alpha L_arch(w, alpha) on the arch batch -> Adam; then the usual weight step."""

    name = "first_order_gradient"
    uses_arch_split = True
    trains_arch = True

    def __init__(self, settings: StrategySettings, model, criterion):
        super().__init__(settings, model, criterion)
        self.arch_optimizer = build_arch_optimizer(settings, self.core.arch_parameters())

    def apply_arch_grads(self, grads: List[torch.Tensor]) -> float:
        """Step the arch optimizer on `grads` (already averaged over ranks); returns their norm."""
        flat = torch.cat([g.reshape(-1) for g in grads])
        check_finite(flat, "arch gradient")
        for p, g in zip(self.core.arch_parameters(), grads):
            p.grad = g.detach()
        self.arch_optimizer.step()
        for p in self.core.arch_parameters():
            p.grad = None
        return flat.norm().item()

    def arch_step(self, batch) -> Dict[str, float]:
        alphas = self.core.arch_parameters()
        with preserved_buffers(self.core):
            loss = self.criterion(self.core(batch["image"]), batch)
            check_finite(loss, "arch loss")
            grads = torch.autograd.grad(loss, alphas, allow_unused=True)
        grads = all_reduce_mean_([torch.zeros_like(a) if g is None else g for a, g in zip(alphas, grads)])
        return {"arch_loss": loss.item(), "arch_grad_norm": self.apply_arch_grads(grads)}

    def step(self, weight_batch, arch_batch=None, arch_active: bool = True) -> Dict[str, float]:
        if not arch_active:
            return self.weight_step(weight_batch)
        if arch_batch is None:
            raise ValueError(f"{self.name} needs an arch batch (from the arch split) on arch-active steps")
        self.model.train()
        return self.bilevel_step(weight_batch, arch_batch)

    def bilevel_step(self, weight_batch, arch_batch) -> Dict[str, float]:
        stats = self.arch_step(arch_batch)
        stats.update(self.weight_step(weight_batch))
        return stats


class SecondOrderStrategy(FirstOrderStrategy):
    """DARTS unrolled step; SEARCH.HESSIAN = exact (double backward) or finite_difference (R = FD_EPS / ||z||)."""

    name = "second_order_gradient"

    def __init__(self, settings: StrategySettings, model, criterion):
        if settings.hessian not in MODES:
            raise ValueError(f"unknown SEARCH.HESSIAN '{settings.hessian}' ({', '.join(MODES)})")
        super().__init__(settings, model, criterion)

    def bilevel_step(self, weight_batch, arch_batch) -> Dict[str, float]:
        if getattr(self.model, "broadcast_buffers", False):  # what the DDP forward we bypass would do
            broadcast_(list(self.core.buffers()), src=0)
        s = self.settings
        hyper = compute_hypergradient(self.core, self.criterion, self.weight_optimizer, weight_batch,
                                      arch_batch, s.hessian, s.fd_eps, s.grad_clip)
        grad_norm = self.apply_arch_grads(hyper.arch_grads)
        self.weight_optimizer.zero_grad(set_to_none=True)
        weights = [p for p in self.core.weight_parameters() if p.requires_grad]
        for p, g in zip(weights, hyper.weight_grads):
            p.grad = g  # grad_w L_w(w, alpha before this arch step), averaged over ranks
        self.apply_weight_grads()
        return {"loss": hyper.weight_loss, "arch_loss": hyper.arch_loss, "arch_grad_norm": grad_norm}


STRATEGIES = {cls.name: cls for cls in (SearchStrategy, RandomStrategy, SyncStrategy,
                                        FirstOrderStrategy, SecondOrderStrategy)}


def strategy_settings(cfg) -> StrategySettings:
    """The TRAIN.*, SEARCH.* and SEED values a strategy uses."""
    t, s = cfg.TRAIN, cfg.SEARCH
    return StrategySettings(t.OPTIMIZER, t.LR, t.WD, t.MOMENTUM, t.GRAD_CLIP, s.ARCH_LR, tuple(s.ARCH_BETAS), s.ARCH_WD,
                            cfg.SEED, s.HESSIAN, s.FD_EPS)


def build_strategy(cfg, model, criterion) -> SearchStrategy:
    """The strategy named by cfg.SEARCH.STRATEGY (train.py --search NAME sets it), with the config's values."""
    name = str(cfg.SEARCH.STRATEGY).lower()
    if name not in STRATEGIES:
        raise ValueError(f"unknown SEARCH.STRATEGY '{cfg.SEARCH.STRATEGY}' ({', '.join(STRATEGIES)})")
    return STRATEGIES[name](strategy_settings(cfg), model, criterion)
