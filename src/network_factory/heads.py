"""Heads. Part heads map a CNF's 1/4-scale output to the part's heatmaps [N, K, H/4, W/4]:

- plain: ReLU -> 1x1 conv C -> K (unbounded heatmaps), started at N(0, 0.001) with zero bias (HRNet).
- vector-in-pixel "2D": ReLU -> 1x1 conv C -> K*D -> one D-vector per joint and pixel -> squash.
- vector-in-pixel "3D": 1x1 conv C -> C*D -> ReLU -> [N, C, D, H, W] -> Conv3d(C -> K, 1) -> squash over D.
squash(v) = |v|^2 / (1 + |v|^2), in [0, 1).
Dense heads start from `upsample_concat`: every branch upsampled to the first (1/4) map and concatenated.
"""
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.architecture.genotype.part import HEAD_MODES


def upsample_concat(feats: List[Tensor]) -> Tensor:
    """The maps of a multi-branch network upsampled (bilinear) to the size of the first one, concatenated."""
    size = feats[0].shape[-2:]
    return torch.cat([feats[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False)
                                   for f in feats[1:]], 1)


def squash(v: Tensor, dim: int) -> Tensor:
    n2 = v.pow(2).sum(dim)
    return n2 / (1.0 + n2)


class VectorHead2D(nn.Module):
    def __init__(self, channels: int, num_joints: int, vector_dim: int):
        super().__init__()
        self.num_joints, self.vector_dim = num_joints, vector_dim
        self.conv = nn.Conv2d(channels, num_joints * vector_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        v = self.conv(torch.relu(x))
        n, _, h, w = v.shape
        return squash(v.view(n, self.num_joints, self.vector_dim, h, w), 2)


class VectorHead3D(nn.Module):
    def __init__(self, channels: int, num_joints: int, vector_dim: int):
        super().__init__()
        self.channels, self.vector_dim = channels, vector_dim
        self.expand = nn.Conv2d(channels, channels * vector_dim, 1)
        self.conv3d = nn.Conv3d(channels, num_joints, 1)

    def forward(self, x: Tensor) -> Tensor:
        v = torch.relu(self.expand(x))
        n, _, h, w = v.shape
        return squash(self.conv3d(v.view(n, self.channels, self.vector_dim, h, w)), 2)


VECTOR_HEADS = dict(zip(HEAD_MODES, (VectorHead2D, VectorHead3D)))  # one class per mode, in HEAD_MODES order


def init_heatmap_layer(conv: nn.Conv2d) -> nn.Conv2d:
    """HRNet's init of the layer that outputs heatmaps: N(0, 0.001) weights, zero bias, so training starts
    from near-zero maps instead of sitting on the constant-heatmap plateau (README "What made the demo learn")."""
    nn.init.normal_(conv.weight, std=0.001)
    nn.init.zeros_(conv.bias)
    return conv


def build_head(channels: int, num_joints: int, vector_in_pixel: bool = False, vector_dim: int = 8,
               mode: str = "2D") -> nn.Module:
    if not vector_in_pixel:
        return nn.Sequential(nn.ReLU(), init_heatmap_layer(nn.Conv2d(channels, num_joints, 1)))
    if vector_dim < 1:
        raise ValueError(f"MODEL.PARTS.VECTOR_DIM must be >= 1, got {vector_dim}")
    if mode not in HEAD_MODES:
        raise ValueError(f"MODEL.PARTS.CONVOLUTION_MODE must be one of {', '.join(HEAD_MODES)}, got '{mode}'")
    return VECTOR_HEADS[mode](channels, num_joints, vector_dim)
