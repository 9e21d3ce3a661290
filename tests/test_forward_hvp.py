"""CompositeNormalisations (src/search/forward_hvp.py): batch norm, layer norm, (log-)softmax and cross entropy
built from elementary ops give the native outputs, and their forward-AD tangents are correctly differentiable by
backward AD (the property the forward_mode Hessian-vector product relies on), checked against finite differences."""
import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F

from src.search.forward_hvp import CompositeNormalisations

D = torch.float64
LABELS = torch.tensor([[[0, 2], [1, 2]], [[2, 2], [0, 1]]])  # [N, H, W] class indices, some ignored (2) in one case
CASES = {
    "batch_norm_train": (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [(3, 4, 3, 3), (4,), (4,)]),
    "batch_norm_eval": (lambda x, w, b: F.batch_norm(x, torch.arange(4, dtype=D), torch.arange(1, 5, dtype=D), w, b),
                        [(3, 4, 3, 3), (4,), (4,)]),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, (5,), w, b), [(3, 5), (5,), (5,)]),
    "softmax": (lambda x: x.softmax(-1) + torch.softmax(x, 0) + F.softmax(x, dim=1), [(3, 5)]),
    "log_softmax": (lambda x: x.log_softmax(-1) + torch.log_softmax(x, 0) + F.log_softmax(x, dim=1), [(3, 5)]),
    "cross_entropy": (lambda x: F.cross_entropy(x, LABELS) + F.cross_entropy(x, LABELS, reduction="none").sum()
                      + F.cross_entropy(x, LABELS, ignore_index=2, label_smoothing=0.1), [(2, 3, 2, 2)]),
}


@pytest.mark.parametrize("name", CASES)
def test_composite_matches_native_and_its_tangent_is_differentiable(name):
    f, shapes = CASES[name]
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(s, dtype=D, generator=gen).requires_grad_() for s in shapes]
    vs = [torch.randn(s, dtype=D, generator=gen) for s in shapes]
    with CompositeNormalisations():
        got = f(*xs)
    torch.testing.assert_close(got, f(*xs), rtol=1e-12, atol=1e-12)

    def tangent(*primals):
        with fwAD.dual_level(), CompositeNormalisations():
            return fwAD.unpack_dual(f(*[fwAD.make_dual(p, v) for p, v in zip(primals, vs)])).tangent
    assert torch.autograd.gradcheck(tangent, xs)


def test_unsupported_cross_entropy_is_refused():
    x = torch.randn(2, 3, 2, 2, dtype=D)
    with CompositeNormalisations(), pytest.raises(NotImplementedError, match="SEARCH.HESSIAN exact"):
        F.cross_entropy(x, LABELS, weight=torch.ones(3, dtype=D))
