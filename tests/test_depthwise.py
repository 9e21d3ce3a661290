"""DepthwiseConv2d's custom backward (src/architecture/fabric/depthwise.py): its gradient and its differentiable
backward (the graph the exact second-order hypergradient differentiates) against finite differences, and its
CPU plain backward (strips, phases) against the native one."""
import pytest
import torch
import torch.nn.functional as F

from src.architecture.fabric import depthwise
from src.architecture.fabric.depthwise import DepthwiseConv2d, _phase_grads


@pytest.mark.parametrize("kernel,stride,dilation", [(3, 1, 1), (3, 2, 1), (3, 1, 2), (5, 2, 1), (3, 2, 2)])
def test_backward_and_double_backward_match_finite_differences(kernel, stride, dilation):
    torch.manual_seed(0)
    conv = DepthwiseConv2d(2, kernel, stride=stride, dilation=dilation).double()
    x = torch.randn(1, 2, 7, 6, dtype=torch.double, requires_grad=True)

    def f(inp, weight):
        return torch.func.functional_call(conv, {"weight": weight}, (inp,))
    assert type(f(x, conv.weight).grad_fn).__name__ == "_DepthwiseConvBackward"
    assert torch.autograd.gradcheck(f, (x, conv.weight))
    assert torch.autograd.gradgradcheck(f, (x, conv.weight))


@pytest.mark.parametrize("kernel,stride,dilation", [(5, 1, 1), (7, 1, 1), (7, 2, 1), (5, 2, 2), (9, 1, 1), (4, 1, 1),
                                                    (3, 1, 2), (5, 1, 2), (3, 1, 3)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("size", [(11, 9), (2, 2), (1, 3)])
def test_cpu_backward_in_strips_or_phases_equals_the_native_one(kernel, stride, dilation, memory_format, size,
                                                               monkeypatch):
    """Wide undilated kernels take the weight gradient in strips, dilated stride-1 kernels both gradients over
    the dilation's phases; every case equals the native backward, and the input gradient keeps x's format."""
    phase_calls = []
    monkeypatch.setattr(depthwise, "_phase_grads", lambda *a: phase_calls.append(1) or _phase_grads(*a))
    torch.manual_seed(0)
    conv = DepthwiseConv2d(6, kernel, stride=stride, dilation=dilation).double().to(memory_format=memory_format)
    native = torch.nn.Conv2d(6, 6, kernel, stride, conv.padding, dilation, groups=6, bias=False).double()
    native.weight.data.copy_(conv.weight.data)
    x = torch.randn(3, 6, *size, dtype=torch.double).contiguous(memory_format=memory_format)
    grads = []
    for m in (conv, native):
        inp = x.clone().requires_grad_()
        out = m(inp)
        assert out.shape == native(x).shape
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=torch.double).view(out.shape))
        grads.append((m.weight.grad, inp.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-12, atol=1e-12)
    assert grads[0][1].is_contiguous(memory_format=memory_format)
    assert len(phase_calls) == (stride == 1 and dilation > 1)


def test_phase_backward_of_the_weight_alone():
    """A dilated kernel on an input that needs no gradient (a network's first layer): the weight gradient alone."""
    torch.manual_seed(0)
    conv = DepthwiseConv2d(4, 3, dilation=2).double()
    x = torch.randn(2, 4, 9, 7, dtype=torch.double)
    conv(x).square().sum().backward()
    ref = torch.autograd.grad(F.conv2d(x, conv.weight, None, 1, 2, 2, 4).square().sum(), conv.weight)[0]
    torch.testing.assert_close(conv.weight.grad, ref, rtol=1e-12, atol=1e-12)
