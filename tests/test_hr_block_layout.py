"""The CPU-fast HR block (channels_last) computes what the NCHW block does: outputs, gradients and
BN running statistics agree to float tolerance, in training and eval mode, for every block kind."""
import copy
from unittest import mock

import pytest
import torch

from src.architecture.hr.inverted_residual import InvertedResidual
from src.network_factory.registry import build_model
from tests.test_hr_supernet import tiny_cfg


def run(module, x, reference: bool):
    module = copy.deepcopy(module)
    x = x.clone().requires_grad_()
    if reference:
        with mock.patch.object(InvertedResidual, "memory_format", torch.contiguous_format):  # the NCHW block
            out = module(x)
    else:
        out = module(x)
    out = out if torch.is_tensor(out) else torch.cat([o.flatten(1) for o in out], 1)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    (out * weight).sum().backward()  # a random projection: no gradient cancels out
    grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    return out.detach(), x.grad.detach(), grads, {n: b.clone() for n, b in module.named_buffers()}


def close(new, ref, rel, scale=0.0) -> bool:
    """Norm-wise: |new - ref| <= rel * |ref| + scale."""
    return float((new - ref).norm()) <= rel * float(ref.norm()) + scale


def assert_same(module, x, train: bool):
    """In float64 (exact up to rounding: a train-mode BN over a tiny batch amplifies float32 rounding by orders
    of magnitude in some gradients) outputs, input and parameter gradients and BN statistics agree to 1e-9;
    in float32 the outputs agree to 1e-4."""
    out32 = [run(copy.deepcopy(module).train(train), x, reference)[0] for reference in (True, False)]
    assert close(out32[1], out32[0], 1e-4)
    module, x = copy.deepcopy(module).double(), x.double()
    ref, new = run(module.train(train), x, True), run(copy.deepcopy(module).train(train), x, False)
    assert close(new[0], ref[0], 1e-9)
    assert close(new[1], ref[1], 1e-9)
    assert new[2].keys() == ref[2].keys()
    total = float(torch.stack([g.norm() for g in ref[2].values()]).norm())
    for name in ref[2]:  # gradients that are 0 in exact arithmetic (a bias before a train-mode BN) are round-off
        assert close(new[2][name], ref[2][name], 1e-9, 1e-12 * total), name
    for name in ref[3]:
        assert close(new[3][name].double(), ref[3][name].double(), 1e-9, 1e-12), name


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("stride, skip, oup, tokens, hrt", [
    (1, "identity", 8, 0, None), (2, "none", 12, 0, None), (1, "conv", 6, 0, None), (2, "conv", 4, 3, None),
    (1, "identity", 8, 4, {"heads": 2, "window": 3, "ffn": 8})])
def test_block_matches_the_nchw_block(stride, skip, oup, tokens, hrt, train):
    torch.manual_seed(1)
    block = InvertedResidual(8, oup, stride, [3, 5, 7], [6, 5, 4], skip, tokens=tokens, grid=4, hrt=hrt)
    with torch.no_grad():  # non-trivial BN statistics and gates
        for m in block.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.1, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    assert_same(block, torch.randn(3, 8, 11, 9), train)


def test_block_accepts_both_layouts_and_pathless_blocks():
    block = InvertedResidual(6, 6, 1, [3], [4], "identity").eval()
    x = torch.randn(2, 6, 7, 5)
    torch.testing.assert_close(block(x), block(x.contiguous(memory_format=torch.channels_last)))
    block.paths = torch.nn.ModuleList()
    block.bn = None
    torch.testing.assert_close(block(x), x)


@pytest.mark.parametrize("train", [True, False])
def test_hr_dense_model_matches_the_nchw_model(train):
    cfg = tiny_cfg(TRANSFORMER_BLOCKS=["stages.3.parallel.3.*"], TRANSFORMER_TOKENS=3)
    cfg.MODEL.NAME = "hr_dense"
    torch.manual_seed(0)
    assert_same(build_model(cfg), torch.randn(4, 3, 64, 48), train)
