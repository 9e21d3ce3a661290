"""The DARTS second-order hypergradient, without copying the model.

With L_w the weight-batch loss, L_a the arch-batch loss and w' = step(w, g), g = grad_w L_w(w, alpha),
one virtual step of the weight optimizer's own rule (SGD with momentum / dampening / nesterov / weight
decay, or Adam / AdamW from its current exp_avg, exp_avg_sq and step; TRAIN.GRAD_CLIP included), the
hypergradient is

    d/dalpha L_a(w', alpha) = grad_alpha L_a(w', alpha) + (dg/dalpha)^T z,   z = (dw'/dg)^T grad_w' L_a(w', alpha)

(for plain SGD z = -lr * grad_w' L_a, DARTS' form; for Adam dw'/dg is the diagonal of its update rule).
Only weights are unrolled, never alpha/beta. All modes compute z by a VJP through the virtual step and
differ in the Hessian-vector product (dg/dalpha)^T z = grad_alpha <g, z>:
- `finite_difference` (default): [grad_alpha L_w(w + Rz) - grad_alpha L_w(w)] / R, R = FD_EPS / ||z|| (the
  perturbation R z has norm FD_EPS). The forward at w + Rz replays the ReLU masks, max-pool argmaxes and RNG
  state of the weight-batch forward at w (src/search/activation_pattern.py), so it differentiates the same
  piecewise-smooth branch as autograd and converges to the exact product; grad_alpha L_w(w) comes from the
  backward that gives g. One extra forward and one alpha-only backward. DARTS takes the central difference
  without a fixed pattern, which does not converge on ReLU networks (activation kinks). When a training-mode
  batch norm of the weight forward normalises fewer than FEW_BN_VALUES values per channel (batch 2 at a 1x1
  map), the loss is nearly kinked there and the step computes the product by `forward_mode` instead (warned).
- `forward_mode`: reverse-over-forward AD (src/search/forward_hvp.py): one forward with dual weights
  (w, z) gives <g, z> as the loss's tangent, one backward of it gives the product. Exact, and cheaper than
  `exact` because no graph of the weight-batch backward is built; g itself comes from a plain backward.
- `exact`: a double backward through the weight-batch graph (g is computed with `create_graph`).
  Fabric depthwise convolutions use `DepthwiseConv2d` (src/architecture/fabric/depthwise.py), whose backward is
  cheap to differentiate; PyTorch's own grouped-conv double backward loops over channels.
Every forward at w', (w, z), w + Rz is a `torch.func.functional_call` on new tensors: no module weight is
ever written, and buffers are restored (`preserved_buffers`). g at the current (w, alpha) is computed once;
it drives the virtual step and is returned for the real weight step (which therefore sees the arch values
from before this iteration's arch update).

Accuracy and cost: `bench/search_step.py` prints both (cosine with an unrolled autograd reference, seconds per
step against first order); the measured numbers are in the README.

Under torch.distributed (`reduce` = all_reduce_mean_), g, (grad_alpha, grad_w') and the Hessian-vector
product are averaged, so every rank perturbs by the same R z and the step equals a large-batch step (each
rank differentiates its own batch, at its own activation pattern, and the products are averaged).
"""
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import torch
from torch.func import functional_call

from src.search.activation_pattern import FEW_BN_VALUES, ActivationPattern
from src.search.base import check_finite, preserved_buffers
from src.search.forward_hvp import tangent_loss
from src.utils.distributed import all_reduce_mean_

MODES = ("exact", "forward_mode", "finite_difference")


@dataclass
class Hypergradient:
    arch_grads: List[torch.Tensor]  # d L_a(w'(alpha), alpha) / d alpha, aligned with arch_parameters()
    weight_grads: List[Optional[torch.Tensor]]  # grad_w L_w at the current (w, alpha); None = unused weight
    weight_loss: float
    arch_loss: float


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt with a zero (not NaN) derivative at 0, so double backward through Adam stays finite."""
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, torch.ones_like(x)).sqrt(), torch.zeros_like(x))


def virtual_step(optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor],
                 grads: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """The values `optimizer.step()` would give `params` with `grads`, without changing anything.

    Differentiable in `grads`; uses each parameter's group (current lr, momentum, betas, weight decay)
    and state. Supports SGD (momentum, dampening, nesterov) and Adam/AdamW (not amsgrad).
    """
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    is_sgd = isinstance(optimizer, torch.optim.SGD)
    if not is_sgd and not isinstance(optimizer, torch.optim.Adam):
        raise ValueError(f"second-order search cannot unroll {type(optimizer).__name__} (SGD, Adam, AdamW)")
    new = []
    for p, g in zip(params, grads):
        if id(p) not in group_of:
            raise ValueError("second-order search: a weight with a gradient is not in the weight optimizer")
        group, state, w = group_of[id(p)], optimizer.state.get(p, {}), p.detach()
        if group.get("maximize") or group.get("amsgrad"):
            raise ValueError("second-order search cannot unroll an optimizer with maximize or amsgrad")
        lr, wd = float(group["lr"]), group["weight_decay"]
        if is_sgd:
            d = g + wd * w if wd else g
            momentum = group["momentum"]
            if momentum:
                buf = state.get("momentum_buffer")
                buf = d if buf is None else momentum * buf + (1 - group["dampening"]) * d
                d = d + momentum * buf if group["nesterov"] else buf
            new.append(w - lr * d)
            continue
        beta1, beta2 = group["betas"]
        step = float(state["step"]) + 1 if "step" in state else 1.0
        if wd and group.get("decoupled_weight_decay", isinstance(optimizer, torch.optim.AdamW)):
            w = w * (1 - lr * wd)
        elif wd:
            g = g + wd * p.detach()
        exp_avg = state.get("exp_avg", torch.zeros_like(w))
        exp_avg_sq = state.get("exp_avg_sq", torch.zeros_like(w))
        exp_avg = beta1 * exp_avg + (1 - beta1) * g
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
        denom = _safe_sqrt(exp_avg_sq) / (1 - beta2 ** step) ** 0.5 + group["eps"]
        new.append(w - (lr / (1 - beta1 ** step)) * exp_avg / denom)
    return new


def _loss(core, criterion, batch, weights: Optional[dict] = None) -> torch.Tensor:
    output = core(batch["image"]) if weights is None else functional_call(core, weights, (batch["image"],))
    return criterion(output, batch)


def _grads_or_zeros(loss, inputs, **kwargs) -> List[torch.Tensor]:
    grads = torch.autograd.grad(loss, inputs, allow_unused=True, **kwargs)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


def _clip_coef(grads: Sequence[torch.Tensor], max_norm: float):
    """The factor clip_grad_norm_(max_norm) will apply to `grads` (1 when off), as a constant."""
    if max_norm <= 0 or not grads:
        return 1.0
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach()) for g in grads]))
    return torch.clamp(max_norm / (norm + 1e-6), max=1.0)


def compute_hypergradient(core, criterion, optimizer, weight_batch, arch_batch,
                          mode: str = "finite_difference", fd_eps: float = 1e-3, grad_clip: float = 0.0,
                          reduce: Callable = all_reduce_mean_) -> Hypergradient:
    """The hypergradient and the reusable weight gradient; `core` is the unwrapped model in train mode.

    The weight-batch forward is a plain forward (it is the training forward: BN running stats update
    once); all later forwards leave weights and buffers untouched. With `grad_clip` (TRAIN.GRAD_CLIP)
    the virtual step clips g like the real step, its factor held constant in the derivative.
    """
    if mode not in MODES:
        raise ValueError(f"unknown SEARCH.HESSIAN '{mode}' ({', '.join(MODES)})")
    double_backward = mode == "exact"
    named = [(n, p) for n, p in core.named_weight_parameters() if p.requires_grad]
    names, weights = [n for n, _ in named], [p for _, p in named]
    alphas = core.arch_parameters()

    pattern = ActivationPattern() if mode == "finite_difference" else None
    with pattern.record() if pattern else nullcontext():
        weight_loss = _loss(core, criterion, weight_batch)
    check_finite(weight_loss, "training loss")
    if pattern is not None and pattern.nearly_kinked:
        warnings.warn(f"SEARCH.HESSIAN finite_difference: a batch norm normalises {pattern.fewest_bn_values} values "
                      f"per channel (fewer than {FEW_BN_VALUES}); the loss is nearly kinked there, so this step's "
                      "product is computed by forward_mode", stacklevel=2)
        mode, pattern = "forward_mode", None
    # finite_difference also takes grad_alpha L_w at w from this backward (the base point of its difference)
    g = torch.autograd.grad(weight_loss, weights + (alphas if pattern else []), allow_unused=True,
                            create_graph=double_backward)
    g, arch_grad_at_w = g[:len(weights)], g[len(weights):]
    used = [i for i, gi in enumerate(g) if gi is not None]
    g_mean = reduce([g[i].detach().clone() if double_backward else g[i] for i in used])  # keep g's graph intact
    coef = _clip_coef(g_mean, grad_clip)

    with preserved_buffers(core):
        unrolled = dict(zip(names, weights))  # unused weights keep their value (the optimizer skips them)
        g_leaf = [gi.detach().requires_grad_() for gi in g_mean]
        with torch.enable_grad():  # kept for the VJP that gives the direction z
            stepped = virtual_step(optimizer, [weights[i] for i in used], [gl * coef for gl in g_leaf])
        w_prime = [w.detach().requires_grad_() for w in stepped]
        unrolled.update((names[i], w) for i, w in zip(used, w_prime))
        arch_loss = _loss(core, criterion, arch_batch, unrolled)
        check_finite(arch_loss, "arch loss")
        grads = reduce(_grads_or_zeros(arch_loss, alphas + w_prime))
        direct, v = grads[:len(alphas)], grads[len(alphas):]
        z = [zi if zi is not None else torch.zeros_like(gl)
             for gl, zi in zip(g_leaf, torch.autograd.grad(stepped, g_leaf, v, allow_unused=True))]
        z_names = [names[i] for i in used]
        if double_backward:  # grad_alpha <g, z> by a double backward through this rank's weight-batch graph
            hvp = _grads_or_zeros(sum((g[i] * zi).sum() for i, zi in zip(used, z)), alphas)
        elif mode == "forward_mode":
            hvp = _grads_or_zeros(tangent_loss(core, criterion, weight_batch, dict(named), z_names, z), alphas)
        else:
            hvp = _finite_difference_hvp(core, criterion, weight_batch, dict(named), z_names, z, fd_eps, pattern,
                                         arch_grad_at_w)
        arch_grads = [a + h for a, h in zip(direct, reduce(hvp))]
    weight_grads = [None] * len(g)
    for i, gi in zip(used, g_mean):
        weight_grads[i] = gi.detach()
    return Hypergradient(arch_grads, weight_grads, weight_loss.item(), arch_loss.item())


def _finite_difference_hvp(core, criterion, weight_batch, weights: dict, z_names, z, fd_eps,
                           pattern: ActivationPattern, arch_grad_at_w) -> List[torch.Tensor]:
    """(dg/dalpha)^T z ~ [grad_alpha L_w(w + Rz) - grad_alpha L_w(w)] / R, R = fd_eps / ||z||; the forward at
    w + Rz replays the activation pattern (and RNG state) of the weight-batch forward at w."""
    alphas = core.arch_parameters()
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(zi) for zi in z])) if z else 0.0
    if not norm > 0:
        return [torch.zeros_like(a) for a in alphas]
    radius = fd_eps / norm
    perturbed = {n: w.detach() for n, w in weights.items()}
    perturbed.update((n, weights[n].detach() + radius * zi) for n, zi in zip(z_names, z))
    with pattern.replay():
        loss = _loss(core, criterion, weight_batch, perturbed)
    check_finite(loss, "training loss at the finite-difference point")
    return [(gp if g0 is None else gp - g0) / radius for gp, g0 in zip(_grads_or_zeros(loss, alphas), arch_grad_at_w)]


def unrolled_hypergradient(core, criterion, optimizer, weight_batch, arch_batch) -> torch.Tensor:
    """Reference for tests and `bench/search_step.py`: d L_a(w'(alpha), alpha) / d alpha by plain autograd
    through g (create_graph) and the virtual step in one backward (no reuse, no reduction, one process);
    flattened in `arch_parameters()` order. Leaves weights and buffers unchanged."""
    named = [(n, p) for n, p in core.named_weight_parameters() if p.requires_grad]
    weights, alphas = [p for _, p in named], core.arch_parameters()
    with preserved_buffers(core):
        g = torch.autograd.grad(_loss(core, criterion, weight_batch), weights, create_graph=True, allow_unused=True)
        used = [i for i, gi in enumerate(g) if gi is not None]
        stepped = virtual_step(optimizer, [weights[i] for i in used], [g[i] for i in used])
        unrolled = dict(named)
        unrolled.update((named[i][0], w) for i, w in zip(used, stepped))
        grads = _grads_or_zeros(_loss(core, criterion, arch_batch, unrolled), alphas)
    return torch.cat([gr.flatten() for gr in grads])
