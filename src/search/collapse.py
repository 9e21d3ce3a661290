"""Collapse monitor: the dominant eigenvalue of the arch loss's Hessian with respect to alpha/beta.

R-DARTS (Zela et al., ICLR 2020) showed that DARTS' architectures degrade (collapse onto parameter-free ops)
when the largest eigenvalue of the validation-loss Hessian in architecture space grows during the search.
`dominant_eigenvalue` finds it by power iteration on exact Hessian-vector products (a double backward
through the arch loss, arch parameters only), at the current weights, in train mode (batch statistics, as
the arch steps) and without touching any weight or buffer.
"""
from typing import List

import torch

from src.search.base import preserved_buffers


def dominant_eigenvalue(core, criterion, batch, iters: int = 10, seed: int = 0) -> float:
    """Largest-magnitude eigenvalue of d^2 L(batch) / d alpha^2 (all arch parameters as one vector)."""
    alphas: List[torch.Tensor] = core.arch_parameters()
    if not alphas:
        return float("nan")
    gen = torch.Generator().manual_seed(seed)
    with preserved_buffers(core), torch.enable_grad():
        loss = criterion(core(batch["image"]), batch)
        grads = torch.autograd.grad(loss, alphas, create_graph=True, allow_unused=True)
        pairs = [(a, g) for a, g in zip(alphas, grads) if g is not None]
        if not pairs:
            return float("nan")
        v = [torch.randn(a.shape, generator=gen).to(a) for a, _ in pairs]
        eig = 0.0
        for i in range(iters):
            norm = torch.sqrt(sum((vi * vi).sum() for vi in v))
            v = [vi / norm for vi in v]
            hv = torch.autograd.grad([g for _, g in pairs], [a for a, _ in pairs], grad_outputs=v,
                                     retain_graph=i + 1 < iters, allow_unused=True)
            hv = [torch.zeros_like(vi) if h is None else h for vi, h in zip(v, hv)]
            eig = float(sum((h * vi).sum() for h, vi in zip(hv, v)))  # Rayleigh quotient of the unit v
            v = [h.detach() for h in hv]
    return eig
