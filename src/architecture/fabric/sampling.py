"""Sampled single-path forwards of GDAS (Dong & Yang, "Searching for a Robust Neural Architecture in Four GPU
Hours", CVPR 2019): each edge runs one op, drawn by Gumbel-max from softmax(alpha), and alpha learns through
a straight-through Gumbel-softmax.

For an edge with logits a (its alpha row over its ops), Gumbel noise g_k = -log(E_k), E_k ~ Exp(1), and
temperature tau:

    soft = softmax((log_softmax(a) + g) / tau)      k* = argmax(soft)  (a sample of softmax(a), whatever tau)
    h    = one_hot(k*) - soft.detach() + soft       (value one_hot(k*), gradient that of soft)
    out  = h[k*] * op_k*(x)

The other ops are not computed, so their terms h_k op_k(x) (value 0) are left out of the sum, and with them
their share of the gradient: dL/dsoft = <dL/dout, op_k*(x)> e_k*, hence dL/da = that scalar * soft[k*] *
(e_k* - soft) / tau. (GDAS's code adds the unchosen h_k as broadcast scalars; their value is 0 and this
form leaves them out.) The sampled edge's expectation over the noise is the DARTS mixture sum_k
softmax(a)_k op_k(x), which is what an unsampled forward (evaluation, derivation) computes.

`GumbelSampler(tau, generator)` draws the noise, on the CPU from its own generator (the strategy seeds it from
the run's seed and step: the same draws on every rank and every device). A fabric draws it at each forward
while its `sampler` is set (src/architecture/fabric/fabric.py, `sampled_forwards`).
"""
from typing import Tuple

import torch
from torch import Tensor


class GumbelSampler:
    def __init__(self, tau: float, generator: torch.Generator):
        if not tau > 0:
            raise ValueError(f"Gumbel-softmax temperature must be > 0, got {tau}")
        self.tau, self.generator = float(tau), generator

    def noise(self, like: Tensor) -> Tensor:
        """Gumbel(0, 1) noise of `like`'s shape, dtype and device."""
        e = torch.empty(like.shape, dtype=torch.float64).exponential_(generator=self.generator)
        return (-e.clamp_min(1e-300).log()).to(dtype=like.dtype, device=like.device)


def straight_through(logits: Tensor, noise: Tensor, tau: float) -> Tuple[Tensor, int]:
    """(h, k*) of one edge (see the module doc): h has one_hot(k*)'s value and soft's gradient."""
    soft = torch.softmax((torch.log_softmax(logits, -1) + noise) / tau, -1)
    index = int(soft.detach().argmax())
    hard = torch.zeros_like(soft)
    hard[index] = 1.0
    return hard - soft.detach() + soft, index
