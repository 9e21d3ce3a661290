"""Candidate operations of a fabric edge and the fixed cross-scale connections of a cell.

The operations register by name in the op registry (op_registry.py: `OPS[name](C, stride) -> nn.Module`).
Convolutions follow PoseNFS: conv -> BN(affine=False) -> ReLU; pooling is followed by an affine-free BN.
An op class with `is_zero = True` outputs zeros, so a mixed op may skip running it.

Connections carry a neighbour's map to a cell's scale (never searched): `SameConnect` (identity, or 1x1
conv + BN when channels differ), `ReduceConnect` (finer map: 3x3 stride-2 conv + BN), `UpsampleConnect`
(coarser map: 1x1 conv + BN, then bilinear resize to the cell's size). All take `(x, size)`.
"""
from typing import List, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from src.architecture.fabric.depthwise import DepthwiseConv2d
from src.architecture.fabric.op_registry import register_op
from src.architecture.layers import conv_bn


class Zero(nn.Module):
    """Outputs zeros of the op's output shape."""
    is_zero = True

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        s = self.stride
        return x.new_zeros(n, c, (h - 1) // s + 1, (w - 1) // s + 1)


def _dw_pw(c: int, kernel: int, stride: int, dilation: int) -> List[nn.Module]:
    """Depthwise k x k (dilated) -> pointwise 1x1 -> BN(affine=False) -> ReLU (the depthwise conv with a
    cheap double backward, for the exact hypergradient: src/architecture/fabric/depthwise.py)."""
    return [DepthwiseConv2d(c, kernel, stride, dilation), nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c, affine=False), nn.ReLU(inplace=False)]


@register_op("zero")
def _zero(c: int, stride: int) -> nn.Module:
    return Zero(stride)


@register_op("skip_connect")
def _skip(c: int, stride: int) -> nn.Module:
    return nn.Identity() if stride == 1 else conv_bn(c, c, 1, stride, affine=False)


def _sep_conv(kernel: int):
    return lambda c, stride: nn.Sequential(*_dw_pw(c, kernel, stride, 1), *_dw_pw(c, kernel, 1, 1))


def _atr_conv(kernel: int):
    return lambda c, stride: nn.Sequential(*_dw_pw(c, kernel, stride, 2))


register_op("sep_conv_3x3")(_sep_conv(3))
register_op("sep_conv_5x5")(_sep_conv(5))
register_op("atr_conv_3x3")(_atr_conv(3))
register_op("atr_conv_5x5")(_atr_conv(5))


@register_op("max_pool_3x3")
def _max_pool(c: int, stride: int) -> nn.Module:
    return nn.Sequential(nn.MaxPool2d(3, stride, 1), nn.BatchNorm2d(c, affine=False))


@register_op("avg_pool_3x3")
def _avg_pool(c: int, stride: int) -> nn.Module:
    return nn.Sequential(nn.AvgPool2d(3, stride, 1, count_include_pad=False), nn.BatchNorm2d(c, affine=False))


class SameConnect(nn.Module):
    """Same-scale input: identity, or 1x1 conv + BN when the channels differ."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.proj = conv_bn(c_in, c_out) if c_in != c_out else None

    def forward(self, x: Tensor, size: Sequence[int]) -> Tensor:
        return x if self.proj is None else self.proj(x)


class ReduceConnect(nn.Module):
    """Finer input (twice the resolution): 3x3 stride-2 conv + BN."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = conv_bn(c_in, c_out, 3, 2)

    def forward(self, x: Tensor, size: Sequence[int]) -> Tensor:
        return self.conv(x)


class UpsampleConnect(nn.Module):
    """Coarser input (half the resolution): 1x1 conv + BN at low resolution, then bilinear resize to `size`
    (align_corners=False, which matches the pixel-centre convention of src/utils/geometry.py)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = conv_bn(c_in, c_out)

    def forward(self, x: Tensor, size: Sequence[int]) -> Tensor:
        return F.interpolate(self.conv(x), size=tuple(size), mode="bilinear", align_corners=False)


CONNECTIONS = {"same": SameConnect, "finer": ReduceConnect, "coarser": UpsampleConnect}
