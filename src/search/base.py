"""The interface every search strategy implements, and the weight optimizer they share.

A strategy owns both optimizers and does one training iteration in `step`:

    strategy = build_strategy(cfg, model, criterion)     # src/search/strategies.py
    stats = strategy.step(weight_batch, arch_batch, arch_active=epoch >= warm-up)

`model` may be wrapped in DDP; `unwrap(model)` has `arch_parameters()` / `weight_parameters()`.
`criterion(output, batch) -> scalar loss`; the network input is `batch["image"]`.
"""
from typing import Dict, Optional

import torch
from torch import nn

from src.architecture.arch_params import unwrap


def build_weight_optimizer(cfg, params) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    name = cfg.TRAIN.OPTIMIZER.lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.TRAIN.LR, weight_decay=cfg.TRAIN.WD)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.TRAIN.LR, weight_decay=cfg.TRAIN.WD)
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg.TRAIN.LR, momentum=cfg.TRAIN.MOMENTUM,
                               weight_decay=cfg.TRAIN.WD, nesterov=cfg.TRAIN.MOMENTUM > 0)
    raise ValueError(f"unknown TRAIN.OPTIMIZER '{cfg.TRAIN.OPTIMIZER}' (adam, adamw, sgd)")


class NonFiniteError(RuntimeError):
    """A NaN or inf in a loss or gradient: the run stops, the last good checkpoint is kept."""


def check_finite(value: torch.Tensor, what: str) -> None:
    if not torch.isfinite(value).all():
        raise NonFiniteError(f"non-finite {what} ({value.detach().flatten()[:4].tolist()}); stopping, last good checkpoint kept")


class SearchStrategy:
    """Base: plain weight training with frozen arch parameters (the `none` strategy)."""

    name = "none"
    uses_arch_split = False  # True: the engine feeds a batch of the arch split to every step

    def __init__(self, cfg, model: nn.Module, criterion):
        self.cfg = cfg
        self.model = model
        self.core = unwrap(model)
        self.criterion = criterion
        self.arch_optimizer: Optional[torch.optim.Optimizer] = None
        for p in self.core.arch_parameters():
            p.requires_grad_(self.trains_arch_with_weights())
        self.weight_optimizer = build_weight_optimizer(cfg, self.weight_optimizer_params())

    # -- what the weight optimizer holds
    def trains_arch_with_weights(self) -> bool:
        return False

    def weight_optimizer_params(self):
        return self.core.weight_parameters()

    # -- one iteration
    def weight_step(self, batch) -> Dict[str, float]:
        self.model.train()
        self.weight_optimizer.zero_grad(set_to_none=True)
        output = self.model(batch["image"])
        loss = self.criterion(output, batch)
        check_finite(loss, "training loss")
        loss.backward()
        if self.cfg.TRAIN.GRAD_CLIP > 0:
            torch.nn.utils.clip_grad_norm_(self.weight_optimizer_params(), self.cfg.TRAIN.GRAD_CLIP)
        self.weight_optimizer.step()
        return {"loss": loss.item()}

    def step(self, weight_batch, arch_batch=None, arch_active: bool = True) -> Dict[str, float]:
        return self.weight_step(weight_batch)

    # -- checkpoints
    def state_dict(self) -> dict:
        state = {"weight_optimizer": self.weight_optimizer.state_dict()}
        if self.arch_optimizer is not None:
            state["arch_optimizer"] = self.arch_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.weight_optimizer.load_state_dict(state["weight_optimizer"])
        if self.arch_optimizer is not None and "arch_optimizer" in state:
            self.arch_optimizer.load_state_dict(state["arch_optimizer"])
