"""The search strategies (`--search NAME` / SEARCH.STRATEGY) and `build_strategy`.

none                   arch logits 0 (uniform mixture), frozen; weights train on the weight batch
random                 arch logits drawn once as N(0, 1) from cfg.SEED (shape of each arch tensor), frozen
sync                   one weight optimizer over weights and arch (arch group at SEARCH.ARCH_LR / ARCH_WD),
                       both trained on the training batch (single level, no split)
first_order_gradient   bilevel: an Adam arch step on the arch batch (weights fixed), then a weight step
second_order_gradient  bilevel with the DARTS unrolled hypergradient (src/search/hypergradient.py); the
                       weight step reuses the weight-batch gradient of the virtual step
gdas                   first order with sampled single-path forwards (GDAS, Dong & Yang, CVPR 2019): one
                       Gumbel-max op per edge in the arch and the weight forward, straight-through gradient
                       to alpha (src/architecture/fabric/sampling.py), temperature SEARCH.TAU_MAX -> TAU_MIN
oneshot                ScaleNAS one-shot supernet training: the subnet of step t is a function of (SEED, t),
                       sandwich rule and in-place distillation from the largest subnet (src/search/oneshot.py)

Strategies take values (`StrategySettings`); `build_strategy` reads them from the config (`strategy_settings`).
Bilevel strategies take the arch batch from the arch split (src/search/split.py); while not `arch_active`
(SEARCH.WARMUP_EPOCHS) only the weight step runs, on the weight batch. Under DDP arch gradients are
averaged explicitly (autograd on the unwrapped module bypasses DDP's hooks), so all ranks keep the same
alpha/beta. The first-order weight step goes through the DDP wrapper (its hooks average weight grads);
the second-order one applies the averaged virtual-step gradient itself, after broadcasting rank 0's
buffers as the bypassed DDP forward would (`broadcast_buffers`).
"""
from typing import Dict, List

import numpy as np
import torch

from src.architecture.arch_params import unwrap
from src.architecture.fabric.fabric import Fabric, sampled_forwards
from src.architecture.fabric.sampling import GumbelSampler
from src.architecture.genotype.prune import is_searchable
from src.architecture.scale.space import OneShotSettings
from src.search.base import (SearchStrategy, StrategySettings, build_arch_optimizer, check_finite,
                             preserved_buffers)
from src.search.hypergradient import MODES, compute_hypergradient
from src.search.oneshot import OneShotStrategy
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
    """DARTS unrolled step; SEARCH.HESSIAN = finite_difference (at a fixed activation pattern), forward_mode, exact."""

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


class GdasStrategy(FirstOrderStrategy):
    """First order, every forward of a step (arch and weight) sampled: one op per fabric edge. The temperature
    of epoch e is TAU_MAX + (TAU_MIN - TAU_MAX) * e / (EPOCHS - 1). The noise of the strategy's step t comes
    from a generator seeded with (SEED, t), drawn in forward order: the same on every rank, and on resume
    (t is checkpointed)."""

    name = "gdas"
    skips_modules = True

    def __init__(self, settings: StrategySettings, model, criterion):
        if not settings.tau_max >= settings.tau_min > 0:
            raise ValueError(f"gdas needs SEARCH.TAU_MAX >= SEARCH.TAU_MIN > 0, got {settings.tau_max} and "
                             f"{settings.tau_min}")
        if not any(isinstance(m, Fabric) and is_searchable(m) for m in unwrap(model).modules()):
            raise ValueError("gdas samples the ops of fabric edges: the model has no searchable fabric")
        super().__init__(settings, model, criterion)
        self.steps, self.tau = 0, settings.tau_max

    def set_epoch(self, epoch: int) -> None:
        s = self.settings
        self.tau = s.tau_max + (s.tau_min - s.tau_max) * min(epoch, s.epochs - 1) / max(1, s.epochs - 1)

    def step(self, weight_batch, arch_batch=None, arch_active: bool = True) -> Dict[str, float]:
        # torch's CPU generator keeps 32 bits of a seed: mix (seed, step) into them
        state = np.random.SeedSequence([self.settings.seed % 2 ** 32, self.steps]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(state))
        self.steps += 1
        with sampled_forwards(self.core, GumbelSampler(self.tau, generator)):
            return super().step(weight_batch, arch_batch, arch_active)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "sample_steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.steps = int(state.get("sample_steps", 0))


STRATEGIES = {cls.name: cls for cls in (SearchStrategy, RandomStrategy, SyncStrategy,
                                        FirstOrderStrategy, SecondOrderStrategy, GdasStrategy, OneShotStrategy)}


def strategy_settings(cfg) -> StrategySettings:
    """The TRAIN.*, SEARCH.* and SEED values a strategy uses."""
    t, s = cfg.TRAIN, cfg.SEARCH
    return StrategySettings(t.OPTIMIZER, t.LR, t.WD, t.MOMENTUM, t.GRAD_CLIP, s.ARCH_LR, tuple(s.ARCH_BETAS), s.ARCH_WD,
                            cfg.SEED, s.HESSIAN, s.FD_EPS, s.TAU_MAX, s.TAU_MIN, t.EPOCHS,
                            OneShotSettings.from_config(cfg.ONESHOT))


def strategy_class(cfg) -> type:
    """The class of cfg.SEARCH.STRATEGY (train.py --search NAME sets it)."""
    name = str(cfg.SEARCH.STRATEGY).lower()
    if name not in STRATEGIES:
        raise ValueError(f"unknown SEARCH.STRATEGY '{cfg.SEARCH.STRATEGY}' ({', '.join(STRATEGIES)})")
    return STRATEGIES[name]


def build_strategy(cfg, model, criterion) -> SearchStrategy:
    """The strategy named by cfg.SEARCH.STRATEGY, with the config's values."""
    return strategy_class(cfg)(strategy_settings(cfg), model, criterion)
