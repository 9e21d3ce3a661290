"""HRFormer (HRT) block: pre-norm local-window multi-head self-attention with a learned relative position
bias, and a 1x1 -> depthwise 3x3 -> 1x1 convolutional FFN (BN + GELU), each on a residual with drop path.

Windows are square and non-overlapping. A map whose sides are not multiples of the window is zero-padded
(centred, as HRFormer does) and cropped back after attention: padded tokens take part as keys exactly as on
an explicitly zero-padded map, so any input size works and the result equals "attention on the zero-padded
map, cropped back". There are no shifted windows: information crosses windows through the FFN's depthwise
conv and through multi-scale fusion.

`hrt_op` is the fabric operation `hrt_window_attention` (C -> C, stride 1 or 2), registered by
src/architecture/hr/__init__.py.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from src.architecture.layers import dw_sep_down


def relative_position_index(window_size: int) -> torch.Tensor:
    """[ws*ws, ws*ws] index into a (2ws-1)^2 bias table: entry (i, j) encodes the offset (yi-yj, xi-xj)."""
    ws = window_size
    ys, xs = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # [2, N]
    rel = coords[:, :, None] - coords[:, None, :] + (ws - 1)  # [2, N, N], each in 0..2ws-2
    return rel[0] * (2 * ws - 1) + rel[1]


def window_padding(height: int, width: int, window_size: int) -> Tuple[int, int, int, int]:
    """Centred zero padding (left, right, top, bottom) that makes a map a multiple of the window."""
    ph, pw = -height % window_size, -width % window_size
    return pw // 2, pw - pw // 2, ph // 2, ph - ph // 2


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole samples of a residual branch with probability p (rescaled by 1/(1-p))."""
    if p == 0.0 or not training:
        return x
    keep = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(1 - p)
    return x * keep / (1 - p)


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x):
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping ws x ws windows of a channels-last map (B, H, W, C)."""

    def __init__(self, dim: int, num_heads: int, window_size: int = 7):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"HRT attention: dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.window_size = dim, num_heads, window_size
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)

    def relative_position_bias(self) -> torch.Tensor:
        """[heads, N, N] additive attention bias, N = ws*ws."""
        n = self.window_size ** 2
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return bias.reshape(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        ws = self.window_size
        left, right, top, bottom = window_padding(h, w, ws)
        if left or right or top or bottom:
            x = F.pad(x, (0, 0, left, right, top, bottom))
        hp, wp = x.shape[1], x.shape[2]
        nh, nw = hp // ws, wp // ws
        # windows become the batch: [B*nh*nw, ws*ws, C]
        x = x.reshape(b, nh, ws, nw, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b * nh * nw, ws * ws, c)
        qkv = self.qkv(x).reshape(x.shape[0], ws * ws, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1) + self.relative_position_bias()).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(-1, ws * ws, c)
        x = self.proj(x)
        x = x.reshape(b, nh, nw, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
        return x[:, top:top + h, left:left + w]

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, window_size={self.window_size}"


class ConvFFN(nn.Module):
    """HRFormer's MlpDWBN on a (B, C, H, W) map: 1x1 C->hidden, dw 3x3, 1x1 hidden->C, each + BN + GELU."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(dim, hidden, 1), nn.BatchNorm2d(hidden), nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden), nn.BatchNorm2d(hidden), nn.GELU(),
            nn.Conv2d(hidden, dim, 1), nn.BatchNorm2d(dim), nn.GELU())

    def forward(self, x):
        return self.net(x)


class HRTBlock(nn.Module):
    """x += DropPath(WindowAttention(LN(x))); x += DropPath(FFN(LN(x))) on a (B, C, H, W) map; C preserved."""

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, mlp_ratio: float = 4.0,
                 drop_path: float = 0.0, ffn_hidden: Optional[int] = None):
        """`ffn_hidden` (default int(dim * mlp_ratio)) sets the FFN width; 0 = no FFN (attention only)."""
        super().__init__()
        hidden = int(dim * mlp_ratio) if ffn_hidden is None else ffn_hidden
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = WindowAttention(dim, num_heads, window_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6) if hidden else None
        self.ffn = ConvFFN(dim, hidden) if hidden else None
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # channels last for LayerNorm and attention
        x = x + self.drop_path(self.attn(self.norm1(x)))
        if self.ffn is None:
            return x.permute(0, 3, 1, 2).contiguous()
        y = self.ffn(self.norm2(x).permute(0, 3, 1, 2).contiguous())
        return x.permute(0, 3, 1, 2).contiguous() + self.drop_path(y)  # contiguous NCHW: fast BN/conv on CPU


def default_num_heads(channels: int, head_dim: int = 32) -> int:
    """About channels / head_dim heads (at least 1), lowered until it divides `channels`."""
    heads = max(1, channels // head_dim)
    while channels % heads:
        heads -= 1
    return heads


def hrt_op(channels: int, stride: int) -> nn.Module:
    """An HRT block (window 7, heads of ~32 channels); stride 2 first applies HRFormer's depthwise-separable
    downsampling (dw 3x3 s2 + BN, 1x1 + BN)."""
    block = HRTBlock(channels, default_num_heads(channels))
    return block if stride == 1 else nn.Sequential(*dw_sep_down(channels, channels), block)
