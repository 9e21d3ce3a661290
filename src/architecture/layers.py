"""Layers every room builds with: conv + BN (+ ReLU), the stem to 1/4, HRFormer's depthwise-separable downsampling.

`conv_bn` returns an `nn.Sequential`; splicing it (`nn.Sequential(*conv_bn(..), ..)`) gives a flat layout. `Stem`
is flat too (conv, BN, ReLU, conv, BN, ReLU: state-dict keys 0, 1, 3, 4), as the stems of the HR supernet, of
HRFormer and of the "stem" backbone always were. The compact ResNet's stem used to be two nested conv_bn blocks;
checkpoints with its old keys load through the key map of src/utils/state_dict.py.
"""
from typing import Optional

from torch import nn


def conv_bn(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, *, groups: int = 1, bias: bool = False,
            affine: bool = True, relu: bool = False) -> nn.Sequential:
    """Conv (padding kernel // 2) + BN (+ ReLU)."""
    layers = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=bias),
              nn.BatchNorm2d(c_out, affine=affine)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class Stem(nn.Sequential):
    """Image -> one map at 1/4: two 3x3 stride-2 conv + BN + ReLU, 3 -> `mid` (default `channels`) -> `channels`."""

    def __init__(self, channels: int, mid: Optional[int] = None):
        mid = channels if mid is None else mid
        super().__init__(*conv_bn(3, mid, 3, 2, relu=True), *conv_bn(mid, channels, 3, 2, relu=True))


def dw_sep_down(c_in: int, c_out: int, relu: bool = False, bias: bool = False) -> nn.Sequential:
    """HRFormer's downsampling step: depthwise 3x3 stride 2 + BN, then 1x1 + BN (+ ReLU); `bias`: convs with bias."""
    return nn.Sequential(*conv_bn(c_in, c_in, 3, 2, groups=c_in, bias=bias),
                         *conv_bn(c_in, c_out, 1, bias=bias, relu=relu))
