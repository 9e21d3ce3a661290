"""DepthwiseConv2d's custom backward (src/architecture/fabric/depthwise.py): its gradient and its differentiable
backward (the graph the exact second-order hypergradient differentiates) against finite differences."""
import pytest
import torch

from src.architecture.fabric.depthwise import DepthwiseConv2d


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
