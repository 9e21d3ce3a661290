"""Lightweight token transformer (HR-NAS) with one learned gate per token.

A feature map is resized to a fixed G x G grid, two standardised coordinate channels are appended and a
1x1 conv + BN projects it to n token maps; each token is one G*G-dim vector (a learned spatial "concept
map", not a patch). One encoder layer (self-attention) and one decoder layer (learned queries attending
to the encoder output, residual from the queries) follow; the decoded tokens are projected back by a 1x1
conv + BN and upsampled to the output size.

Token j enters every attention as a key weighted by |gate_j| and its decoded map is scaled by gate_j, so a
zero gate removes the token exactly: shrinking it changes no output. FLOPs are a*n + b*n^2 (`flops`).
"""
import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def gated_attention(q: Tensor, k: Tensor, v: Tensor, weight: Tensor) -> Tensor:
    """Single-head softmax attention whose key j counts with weight[j] >= 0 (0 = absent key)."""
    logits = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = torch.exp(logits - logits.amax(-1, keepdim=True)) * weight
    return (scores / scores.sum(-1, keepdim=True).clamp_min(1e-12)) @ v


class AttentionLayer(nn.Module):
    """Post-norm layer: gated attention of `x` over `memory` (residual from x), then a d->d->d FFN."""

    def __init__(self, dim: int):
        super().__init__()
        self.q, self.v, self.out = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim, bias=False)  # a key bias shifts every logit of a query alike: no effect
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, x: Tensor, memory: Tensor, weight: Tensor) -> Tensor:
        x = self.norm1(x + self.out(gated_attention(self.q(x), self.k(memory), self.v(memory), weight)))
        return self.norm2(x + self.ffn(x))


class TokenTransformer(nn.Module):
    """in_ch x H x W -> out_ch x out_hw through `tokens` gated tokens on a `grid` x `grid` map."""

    def __init__(self, in_ch: int, out_ch: int, tokens: int, grid: int = 8):
        super().__init__()
        if tokens < 1 or grid < 1:
            raise ValueError(f"TokenTransformer needs tokens >= 1 and grid >= 1 (got {tokens}, {grid})")
        self.in_ch, self.out_ch, self.grid = in_ch, out_ch, grid
        dim = grid * grid
        axis = torch.linspace(-1.0, 1.0, grid)
        axis = (axis - axis.mean()) / axis.std() if grid > 1 else axis * 0
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        self.register_buffer("coords", torch.stack([xx, yy])[None], persistent=False)
        self.tokenize = nn.Conv2d(in_ch + 2, tokens, 1, bias=False)
        self.token_bn = nn.BatchNorm2d(tokens)
        self.gate = nn.Parameter(torch.ones(tokens))
        self.queries = nn.Parameter(torch.randn(tokens, dim) * 0.02)
        self.encoder, self.decoder = AttentionLayer(dim), AttentionLayer(dim)
        self.project = nn.Conv2d(tokens, out_ch, 1, bias=False)
        self.out_bn = nn.BatchNorm2d(out_ch)

    @property
    def tokens(self) -> int:
        return self.gate.numel()

    def forward(self, x: Tensor, out_hw: Tuple[int, int]) -> Tensor:
        n, g = x.shape[0], self.grid
        t = F.interpolate(x, size=(g, g), mode="bilinear", align_corners=False)
        t = self.token_bn(self.tokenize(torch.cat([t, self.coords.expand(n, -1, -1, -1)], 1))).flatten(2)
        weight = self.gate.abs()
        memory = self.encoder(t, t, weight)
        y = self.decoder(self.queries, memory, weight) * self.gate[:, None]  # queries broadcast over the batch
        y = self.out_bn(self.project(y.reshape(n, -1, g, g)))
        return F.interpolate(y, size=tuple(out_hw), mode="bilinear", align_corners=False)

    def flops(self, tokens: int) -> int:
        """FLOPs of one image (as FlopCounterMode counts them) with `tokens` tokens: a*n + b*n^2."""
        d = self.grid * self.grid
        per_token = 2 * d * (self.in_ch + 2 + self.out_ch) + 2 * (8 * d * d + 4 * d * d)  # convs; 2 layers
        per_pair = 2 * 4 * d  # per layer: q.k^T and attn.v, 2*d each
        return per_token * tokens + per_pair * tokens * tokens
