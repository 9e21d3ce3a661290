"""A depthwise convolution whose backward is itself cheap to differentiate.

PyTorch's double backward of a grouped convolution (`_convolution_double_backward`) loops over the groups,
one small convolution per channel: on the demo fabric it made the exact second-order hypergradient cost
about 3x a first-order step. `DepthwiseConv2d` is an `nn.Conv2d` (same parameters, same state-dict names,
same forward kernel) whose backward uses the native kernel for a plain backward, and, when a graph of the
backward is requested (`create_graph=True`), differentiable pieces instead: the input gradient is a
grouped transposed convolution (one kernel call), the weight gradient k*k shifted products of input and
output gradient. Double backward then costs a few kernel calls per layer, not one per channel.
On CPU the plain backward's weight gradient of an undilated kernel wider than 3 is taken in column strips of
width <= 3 (`_strip_weight_grad`): oneDNN's depthwise weight gradient is fast for such kernels and many times
slower per FLOP for wider ones (bench/hr_block.py, README "Speed"). oneDNN's backward of a dilated kernel is
slower still (bench/depthwise.py), so on CPU a dilated stride-1 kernel takes both gradients as one undilated
backward over the dilation's phases (`_phase_grads`, the space-to-batch form of a dilated convolution).
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


STRIP = 3  # widest kernel whose CPU depthwise weight gradient oneDNN computes fast


def _strip_weight_grad(gy: Tensor, x: Tensor, weight: Tensor, stride, padding, dilation) -> Tensor:
    """The weight gradient of a depthwise convolution as native gradients of its column strips: taps
    [j, j + STRIP) of the kernel see the padded input from column j * dilation on, so each strip is a
    padding-free depthwise convolution of that part of the input (F.pad with negative amounts crops), made
    contiguous in channels-last, where oneDNN is fast."""
    kh, kw = weight.shape[-2:]
    gy = gy.contiguous(memory_format=torch.channels_last)
    (ho, wo), (h, w) = gy.shape[2:], x.shape[2:]
    rows = (ho - 1) * stride[0] + (kh - 1) * dilation[0] + 1
    strips = []
    for j in range(0, kw, STRIP):
        taps = weight[..., j:j + STRIP]
        left = j * dilation[1] - padding[1]  # first input column the strip reads
        cols = (wo - 1) * stride[1] + (taps.shape[-1] - 1) * dilation[1] + 1
        if left >= w or left + cols <= 0:  # the strip sees only padding
            strips.append(torch.zeros_like(taps))
            continue
        xs = F.pad(x, (-left, left + cols - w, padding[0], rows - padding[0] - h))
        strips.append(torch.ops.aten.convolution_backward(
            gy, xs.contiguous(memory_format=torch.channels_last), taps, None, stride, [0, 0], dilation, False,
            [0, 0], weight.shape[0], [False, True, False])[1])
    return torch.cat(strips, dim=3)


def _phases(t: Tensor, rows: int, cols: int, top: int, left: int, dilation) -> Tensor:
    """[N, C, H, W] zero-padded to [N, C, rows, cols] (`top` rows and `left` columns before it), then split into
    its dilation's d_h * d_w phases (rows a + d_h * q, columns b + d_w * r), stacked phase-major along the batch:
    [d_h * d_w * N, C, rows / d_h, cols / d_w], channels-last."""
    (n, c, h, w), (dh, dw) = t.shape, dilation
    padded = t.new_zeros(n, rows, cols, c)
    padded[:, top:top + h, left:left + w] = t.permute(0, 2, 3, 1)
    split = padded.view(n, rows // dh, dh, cols // dw, dw, c).permute(2, 4, 0, 1, 3, 5)
    return split.reshape(dh * dw * n, rows // dh, cols // dw, c).permute(0, 3, 1, 2)


def _phase_grads(gy: Tensor, x: Tensor, weight: Tensor, padding, dilation, need_x: bool, need_w: bool):
    """Both gradients of a stride-1 dilated depthwise convolution from one undilated native backward. Output
    (a + d_h q, b + d_w r) reads only padded-input rows a + d_h (q + i) and columns b + d_w (r + j): phase (a, b)
    of the output is an undilated, padding-free convolution of phase (a, b) of the padded input. The output is
    padded to whole phases with zero gradient, the input with zeros to match."""
    (n, c, h, w), (kh, kw), (dh, dw) = x.shape, weight.shape[-2:], dilation
    qh, qw = -(-gy.shape[2] // dh), -(-gy.shape[3] // dw)  # output rows, columns per phase
    rows, cols = dh * (qh + kh - 1), dw * (qw + kw - 1)
    gx, gw, _ = torch.ops.aten.convolution_backward(
        _phases(gy, dh * qh, dw * qw, 0, 0, dilation), _phases(x, rows, cols, padding[0], padding[1], dilation),
        weight, None, [1, 1], [0, 0], [1, 1], False, [0, 0], c, [need_x, need_w, False])
    if need_x:
        full = gx.permute(0, 2, 3, 1).reshape(dh, dw, n, rows // dh, cols // dw, c).permute(2, 3, 0, 4, 1, 5)
        crop = full.reshape(n, rows, cols, c)[:, padding[0]:padding[0] + h, padding[1]:padding[1] + w]
        gx = torch.empty_like(x).copy_(crop.permute(0, 3, 1, 2))  # in x's memory format
    return gx, gw


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
        if not torch.is_grad_enabled():  # plain backward: the native kernel (in strips for a wide one on CPU)
            if x.device.type == "cpu" and tuple(dilation) != (1, 1) and tuple(stride) == (1, 1):
                return (*_phase_grads(gy, x, weight, padding, dilation, need_x, need_w), None, None, None)
            strips = need_w and x.device.type == "cpu" and weight.shape[-1] > STRIP and tuple(dilation) == (1, 1)
            gx, gw, _ = torch.ops.aten.convolution_backward(
                gy, x, weight, None, stride, padding, dilation, False, [0, 0], weight.shape[0],
                [need_x, need_w and not strips, False])
            if strips:
                gw = _strip_weight_grad(gy, x, weight, stride, padding, dilation)
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
