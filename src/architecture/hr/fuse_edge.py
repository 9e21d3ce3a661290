"""HRNet's cross-resolution fusion edge: what carries branch j's map to branch i's resolution and width.

- j > i (coarser source): 1x1 conv + BN, then upsampled to branch i's size (`resize_to`);
- j < i (finer source): i - j stride-2 3x3 conv + BN steps (ReLU after all but the last), keeping branch j's
  width until the last one.
Used by the fixed HRNet-W32 backbone's modules and by every fusion of the ScaleNAS supernet
(src/architecture/scale/supernet.py). The module layout (state-dict keys) is HRNet's.
"""
import torch.nn.functional as F
from torch import Tensor, nn

from src.architecture.layers import conv_bn


def hrnet_fuse_edge(c_src: int, c_dst: int, src: int, dst: int) -> nn.Sequential:
    """The edge from branch `src` (width c_src) to branch `dst` (width c_dst), src != dst."""
    if src == dst:
        raise ValueError(f"a fusion edge joins two different branches, got {src} -> {dst}")
    if src > dst:
        return conv_bn(c_src, c_dst, 1)
    steps = dst - src
    return nn.Sequential(*[conv_bn(c_src, c_dst if k == steps - 1 else c_src, 3, 2, relu=k < steps - 1)
                           for k in range(steps)])


def resize_to(y: Tensor, ref: Tensor) -> Tensor:
    """`y` upsampled (nearest, as HRNet) to the spatial size of `ref` when the sizes differ."""
    return y if y.shape[-2:] == ref.shape[-2:] else F.interpolate(y, size=ref.shape[-2:], mode="nearest")
