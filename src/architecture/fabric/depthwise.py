"""A depthwise convolution whose backward is itself cheap to differentiate.

PyTorch's double backward of a grouped convolution (`_convolution_double_backward`) loops over the groups,
one small convolution per channel: on the demo fabric it made the exact second-order hypergradient cost
about 3x a first-order step. `DepthwiseConv2d` is an `nn.Conv2d` (same parameters, same state-dict names,
same forward kernel) whose backward uses the native kernel for a plain backward, and, when a graph of the
backward is requested (`create_graph=True`), differentiable pieces instead: the input gradient is a
grouped transposed convolution (one kernel call), the weight gradient k*k shifted products of input and
output gradient. Double backward then costs a few kernel calls per layer, not one per channel.
Without any gradient to record (no_grad, eval, ONNX export) the forward is a plain grouped `F.conv2d`, the
same kernel call the Function makes: exporters see an ordinary convolution. So is a forward with dual
(forward-AD) tensors, which the Function has no rule for (SEARCH.HESSIAN forward_mode, src/search/forward_hvp.py).
"""
from typing import Tuple

import torch
import torch.nn.functional as F
import torch.autograd.forward_ad as fwAD
from torch import Tensor, nn


def _input_grad(gy: Tensor, weight: Tensor, x_shape, stride, padding, dilation) -> Tensor:
    k = weight.shape[-2:]
    out_pad = [x_shape[2 + i] - ((gy.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (k[i] - 1) + 1)
               for i in range(2)]
    return F.conv_transpose2d(gy, weight, None, stride, padding, out_pad, weight.shape[0], dilation)


def _weight_grad(x: Tensor, gy: Tensor, kernel, stride, padding, dilation) -> Tensor:
    xp = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    ho, wo = gy.shape[2:]
    taps = []
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            r, c = i * dilation[0], j * dilation[1]
            xs = xp[:, :, r:r + stride[0] * (ho - 1) + 1:stride[0], c:c + stride[1] * (wo - 1) + 1:stride[1]]
            taps.append((xs * gy).sum(dim=(0, 2, 3)))
    return torch.stack(taps, dim=1).reshape(x.shape[1], 1, kernel[0], kernel[1])


def _dual(*tensors) -> bool:
    return any(fwAD.unpack_dual(t).tangent is not None for t in tensors)


class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, stride, padding, dilation) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation)
        return F.conv2d(x, weight, None, stride, padding, dilation, weight.shape[0])

    @staticmethod
    def backward(ctx, gy: Tensor) -> Tuple:
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.conf
        need_x, need_w = ctx.needs_input_grad[:2]
        if not torch.is_grad_enabled():  # plain backward: the native kernel
            gx, gw, _ = torch.ops.aten.convolution_backward(
                gy, x, weight, None, stride, padding, dilation, False, [0, 0], weight.shape[0],
                [need_x, need_w, False])
            return gx, gw, None, None, None
        gx = _input_grad(gy, weight, x.shape, stride, padding, dilation) if need_x else None
        gw = _weight_grad(x, gy, weight.shape[-2:], stride, padding, dilation) if need_w else None
        return gx, gw, None, None, None


class DepthwiseConv2d(nn.Conv2d):
    """Depthwise k x k convolution (groups = channels, no bias) with a cheap double backward."""

    def __init__(self, channels: int, kernel: int, stride: int = 1, dilation: int = 1):
        super().__init__(channels, channels, kernel, stride, dilation * (kernel // 2), dilation=dilation,
                         groups=channels, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad) and not _dual(x, self.weight):
            return _DepthwiseConv.apply(x, self.weight, self.stride, self.padding, self.dilation)
        return F.conv2d(x, self.weight, None, self.stride, self.padding, self.dilation, self.groups)
