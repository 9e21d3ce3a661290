"""The interface every search strategy implements, and the pieces they share.

A strategy owns both optimizers and does one training iteration in `step`. It takes values
(`StrategySettings`); `build_strategy` (src/search/strategies.py) reads them from the config:

    strategy = build_strategy(cfg, model, criterion)     # = STRATEGIES[name](strategy_settings(cfg), model, criterion)
    strategy.set_epoch(epoch)                            # at the start of every epoch
    stats = strategy.step(weight_batch, arch_batch, arch_active=epoch >= cfg.SEARCH.WARMUP_EPOCHS)

`model` may be wrapped in DDP (with `find_unused_parameters` when the strategy's class says `skips_modules`:
a step that leaves some weights out of its graph); `unwrap(model)` has `arch_parameters()` /
`weight_parameters()`.
`criterion(output, batch) -> scalar loss`; the network input is `batch["image"]`. `step` returns
`{"loss": weight-batch loss}` plus `arch_loss` / `arch_grad_norm` when an arch step ran (local values
of this rank). Strategies with `uses_arch_split` need an arch batch whenever `arch_active`.

Arch steps run forwards in train mode (batch statistics, as DARTS) on the unwrapped model inside
`preserved_buffers`, so they never change a weight nor a BN running statistic.
"""
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from src.architecture.arch_params import unwrap
from src.architecture.scale.space import OneShotSettings


@dataclass(frozen=True)
class StrategySettings:
    """What the strategies and their optimizers use (the config key each comes from)."""
    optimizer: str  # TRAIN.OPTIMIZER: adam, adamw or sgd, over the weights
    lr: float  # TRAIN.LR
    weight_decay: float  # TRAIN.WD
    momentum: float  # TRAIN.MOMENTUM (sgd; nesterov when > 0)
    grad_clip: float  # TRAIN.GRAD_CLIP: max norm of the weight gradients (0 = off)
    arch_lr: float  # SEARCH.ARCH_LR
    arch_betas: Tuple[float, float]  # SEARCH.ARCH_BETAS
    arch_weight_decay: float  # SEARCH.ARCH_WD (decoupled, see build_arch_optimizer)
    seed: int  # SEED: the random strategy's draw, the gdas strategy's Gumbel noise
    hessian: str  # SEARCH.HESSIAN: finite_difference, forward_mode or exact (second order)
    fd_eps: float  # SEARCH.FD_EPS (second order, finite_difference)
    tau_max: float = 10.0  # SEARCH.TAU_MAX (gdas: temperature of the first epoch)
    tau_min: float = 0.1  # SEARCH.TAU_MIN (gdas: temperature of the last epoch)
    epochs: int = 1  # TRAIN.EPOCHS (gdas: the temperature schedule's length)
    oneshot: OneShotSettings = OneShotSettings()  # ONESHOT.* (oneshot: sampling groups, sandwich, KD ratio)


def build_weight_optimizer(s: StrategySettings, params) -> torch.optim.Optimizer:
    """`s.optimizer` over `params` (tensors, or param-group dicts that may override lr / weight_decay)."""
    params = list(params)
    if params and isinstance(params[0], dict):
        groups = [dict(g, params=[p for p in g["params"] if p.requires_grad]) for g in params]
    else:
        groups = [{"params": [p for p in params if p.requires_grad]}]
    name = s.optimizer.lower()
    if name == "adam":
        return torch.optim.Adam(groups, lr=s.lr, weight_decay=s.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=s.lr, weight_decay=s.weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay,
                               nesterov=s.momentum > 0)
    raise ValueError(f"unknown TRAIN.OPTIMIZER '{s.optimizer}' (adam, adamw, sgd)")


def build_arch_optimizer(s: StrategySettings, params) -> torch.optim.Optimizer:
    """Adam over the arch parameters with SEARCH.ARCH_LR / ARCH_BETAS, and ARCH_WD as *decoupled* decay.

    DARTS adds ARCH_WD * alpha to the gradient (coupled L2) before Adam normalises it. That balance depends
    on the loss scale: with a heatmap MSE of ~5e-3 the arch gradient is ~3e-5 per element, so a coupled
    decay of 1e-3 (DARTS' value for a cross-entropy loss) pins |alpha| near 0.03 and the search never
    leaves uniform. Adam's step is invariant to the gradient's scale; decoupled decay (AdamW: alpha *=
    1 - lr * wd per step) is too, so the data, not the decay, moves alpha whatever the loss scale."""
    return torch.optim.AdamW(list(params), lr=s.arch_lr, betas=s.arch_betas, weight_decay=s.arch_weight_decay)


class NonFiniteError(RuntimeError):
    """A NaN or inf in a loss or gradient: the run stops, the last good checkpoint is kept."""


def check_finite(value: torch.Tensor, what: str) -> None:
    if not torch.isfinite(value).all():
        raise NonFiniteError(f"non-finite {what} ({value.detach().flatten()[:4].tolist()}); "
                             "stopping, last good checkpoint kept")


@contextmanager
def preserved_buffers(module: nn.Module):
    """Run auxiliary forwards without changing any buffer (BN running stats, num_batches_tracked)."""
    saved = [(b, b.detach().clone()) for b in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, value in saved:
                b.copy_(value)


class SearchStrategy:
    """Base: plain weight training with frozen arch parameters (the `none` strategy: uniform, zero logits)."""

    name = "none"
    uses_arch_split = False  # True: the engine feeds a batch of the arch split to every arch-active step
    trains_arch = False  # arch parameters change (through either optimizer)
    arch_in_weight_optimizer = False  # True only for `sync`: one optimizer over weights and arch
    skips_modules = False  # True: a step's forward may leave weights unused (gdas), DDP must look for them

    def __init__(self, settings: StrategySettings, model: nn.Module, criterion):
        self.settings = settings
        self.model = model
        self.core = unwrap(model)
        self.criterion = criterion
        self.arch_optimizer: Optional[torch.optim.Optimizer] = None
        for p in self.core.arch_parameters():
            # A DDP wrapper fixed its gradient set at construction: frozen arch params keep
            # requires_grad there (their gradients are dropped); on a plain model they need none.
            if self.trains_arch or self.model is self.core:
                p.requires_grad_(self.trains_arch)
        if not self.trains_arch:
            self.init_arch_values()
        self.weight_optimizer = build_weight_optimizer(settings, self.weight_optimizer_params())

    def rebind(self, model: nn.Module) -> None:
        """Follow a new wrapper of the same (possibly shrunk) network; the optimizers keep their state."""
        self.model, self.core = model, unwrap(model)

    def set_epoch(self, epoch: int) -> None:
        """Called at the start of every epoch (schedules that follow the epoch, e.g. gdas' temperature)."""

    def init_arch_values(self) -> None:
        """Frozen strategies set their arch values here; `none`: every logit 0 (uniform mixture)."""
        with torch.no_grad():
            for p in self.core.arch_parameters():
                p.zero_()

    def weight_optimizer_params(self):
        return self.core.weight_parameters()

    # -- one iteration
    def weight_step(self, batch) -> Dict[str, float]:
        """Forward/backward through `self.model` (DDP all-reduces the weight grads), then step."""
        self.model.train()
        self.weight_optimizer.zero_grad(set_to_none=True)
        output = self.model(batch["image"])
        loss = self.criterion(output, batch)
        check_finite(loss, "training loss")
        loss.backward()
        self.apply_weight_grads()
        return {"loss": loss.item()}

    def apply_weight_grads(self) -> None:
        """Clip (`grad_clip`) and step the weight optimizer on the `.grad`s in place; drop arch grads."""
        if self.settings.grad_clip > 0:
            params = [p for g in self.weight_optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.settings.grad_clip)
        self.weight_optimizer.step()
        if not self.arch_in_weight_optimizer:
            for p in self.core.arch_parameters():
                p.grad = None

    def step(self, weight_batch, arch_batch=None, arch_active: bool = True) -> Dict[str, float]:
        return self.weight_step(weight_batch)

    # -- checkpoints
    def state_dict(self) -> dict:
        state = {"weight_optimizer": self.weight_optimizer.state_dict()}
        if self.arch_optimizer is not None:
            state["arch_optimizer"] = self.arch_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or "weight_optimizer" not in state:
            raise ValueError("search strategy state is not a dict with a 'weight_optimizer' entry")
        self.weight_optimizer.load_state_dict(state["weight_optimizer"])
        if self.arch_optimizer is not None and "arch_optimizer" in state:
            self.arch_optimizer.load_state_dict(state["arch_optimizer"])
