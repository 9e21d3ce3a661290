"""Importance scores of prunable weights (higher = kept), one function per TICKET.METHOD, one interface:

    score_fn(modules, ctx) -> [score tensor per module, shaped like its weight]

`modules` are the prunable (name, module) pairs; `ctx` a `ScoreContext` (model, criterion, batches, seed).
Every score is computed from the trained tensor (`weight_orig` when pruned), so pruned weights have a score
too (used only when TICKET.REACTIVATE lets them compete).

- magnitude: |w| (global L1, SuperTickets' `Mag`);
- lamp: layer-adaptive magnitude (Lee et al., ICLR 2021): w_u^2 / sum of w_v^2 over the weights v of the same
  layer with |w_v| >= |w_u|. One global threshold on it gives every layer its own magnitude threshold, and the
  largest weight of a layer scores 1, so no layer is emptied. Ranked on `weight_orig` like every score here
  (pruned weights' kept values count in their layer's sums: a simplification of the paper, which ranks the
  surviving weights after each step);
- random: uniform noise from a generator seeded with (seed, step): the same on every rank and on resume;
- snip: |w * dL/dw| on `ctx.batches` (Lee et al., ICLR 2019), the gradient of the dense network;
- synflow: |w * dR/dw| with R = sum of the output of the network with |w| on an all-ones input, BN in eval
  mode (Tanaka et al., NeurIPS 2020), data-free; one round (the paper iterates; here the gradual schedule does).
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn

from src.search.tickets.masks import is_pruned, weight_param


@dataclass
class ScoreContext:
    model: nn.Module  # the unwrapped network
    criterion: Callable = None  # (output, batch) -> loss; snip
    batches: Sequence[dict] = field(default_factory=list)  # snip
    seed: int = 0  # random
    input_shape: Tuple[int, ...] = (1, 3, 64, 64)  # synflow


Modules = List[Tuple[str, nn.Module]]


def magnitude_scores(modules: Modules, ctx: ScoreContext) -> List[Tensor]:
    return [weight_param(m).detach().abs() for _, m in modules]


def lamp_scores(modules: Modules, ctx: ScoreContext) -> List[Tensor]:
    out = []
    for _, m in modules:
        w = weight_param(m).detach()
        sq, order = w.reshape(-1).square().sort()
        tail = sq.flip(0).cumsum(0).flip(0)  # sum of the squares from this rank up
        score = torch.empty_like(sq)
        score[order] = sq / tail.clamp_min(torch.finfo(sq.dtype).tiny)
        out.append(score.view_as(w))
    return out


def random_scores(modules: Modules, ctx: ScoreContext) -> List[Tensor]:
    gen = torch.Generator().manual_seed(int(ctx.seed))
    return [torch.rand(weight_param(m).shape, generator=gen).to(weight_param(m).device) for _, m in modules]


def _effective_weight_grads(modules: Modules, loss_fn: Callable[[], Tensor]) -> List[Tensor]:
    """d loss / d (effective weight) of every module, masks ignored (the dense gradient)."""
    params = [weight_param(m) for _, m in modules]
    saved = [(m.weight_mask.clone() if is_pruned(m) else None) for _, m in modules]
    try:
        for _, m in modules:
            if is_pruned(m):
                m.weight_mask.fill_(1)
        grads = torch.autograd.grad(loss_fn(), params, allow_unused=True)
    finally:
        for (_, m), mask in zip(modules, saved):
            if mask is not None:
                m.weight_mask.copy_(mask)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def snip_scores(modules: Modules, ctx: ScoreContext) -> List[Tensor]:
    if not ctx.batches:
        raise ValueError("TICKET.METHOD snip needs training batches")
    total = [torch.zeros_like(weight_param(m)) for _, m in modules]
    was_training = ctx.model.training
    ctx.model.train()
    try:
        for batch in ctx.batches:
            grads = _effective_weight_grads(modules, lambda b=batch: ctx.criterion(ctx.model(b["image"]), b))
            total = [t + g for t, g in zip(total, grads)]
    finally:
        ctx.model.train(was_training)
    return [(t * weight_param(m).detach()).abs() for t, (_, m) in zip(total, modules)]


@torch.no_grad()
def _signs_to_abs(model: nn.Module) -> Dict[str, Tensor]:
    signs = {}
    for name, p in model.state_dict().items():
        if p.is_floating_point() and not name.endswith("_mask") and "running_" not in name:
            signs[name] = torch.sign(p)
            p.abs_()
    return signs


def synflow_scores(modules: Modules, ctx: ScoreContext) -> List[Tensor]:
    model = ctx.model
    modes = {m: m.training for m in model.modules()}
    model.eval()
    signs = _signs_to_abs(model)
    try:
        ref = weight_param(modules[0][1])
        x = torch.ones(ctx.input_shape, dtype=ref.dtype, device=ref.device)

        def objective():
            out = model(x)
            return out.sum() if torch.is_tensor(out) else sum(o.sum() for o in out)
        grads = _effective_weight_grads(modules, objective)
        scores = [(g * weight_param(m).detach()).abs() for g, (_, m) in zip(grads, modules)]
    finally:
        with torch.no_grad():
            for name, p in model.state_dict().items():
                if name in signs:
                    p.mul_(signs[name])
        for m, mode in modes.items():
            m.train(mode)
    return scores


SCORES = {"magnitude": magnitude_scores, "lamp": lamp_scores, "random": random_scores, "snip": snip_scores,
          "synflow": synflow_scores}


def score_fn(method: str) -> Callable[[Modules, ScoreContext], List[Tensor]]:
    if method not in SCORES:
        raise ValueError(f"unknown TICKET.METHOD '{method}' (none, {', '.join(SCORES)})")
    return SCORES[method]
