"""ActivationPattern: a replayed forward equals the recorded one at w, is smooth around w, and refuses what it
cannot freeze; the finite difference at the frozen pattern converges to autograd's Hessian-vector product."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from src.search.activation_pattern import ActivationPattern


class _KinkNet(nn.Module):
    """ReLU (functional, method and in-place), ReLU6, a 2-D max pool and dropout: every kind the pattern handles."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 1)
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Conv2d(8, 2, 1)
        self.alpha = nn.Parameter(torch.tensor([0.3, -0.2]))

    def forward(self, x):
        mix = torch.softmax(self.alpha, 0)
        h = F.relu6(10 * self.conv1(x))  # both bounds reached
        h = F.max_pool2d(h, 3, 1, 1)
        h = mix[0] * self.act(self.conv2(h)) + mix[1] * self.conv3(h).relu()
        return self.head(F.dropout(torch.relu(h), 0.3, training=True))


def _setup():
    torch.manual_seed(0)
    net = _KinkNet().double()
    x = torch.randn(4, 3, 10, 10, dtype=torch.float64)
    weights = {n: p for n, p in net.named_parameters() if n != "alpha"}
    return net, x, weights


def _loss(net, x, weights):
    return functional_call(net, weights, (x,)).pow(2).mean()


def test_replay_at_w_equals_the_recorded_forward_and_its_gradients():
    net, x, weights = _setup()
    pattern = ActivationPattern()
    with pattern.record():
        recorded = _loss(net, x, weights)
    grads = torch.autograd.grad(recorded, list(weights.values()) + [net.alpha])
    assert [e[0] for e in pattern.entries] == ["piecewise", "max_pool2d", "piecewise", "piecewise", "piecewise"]
    mask, clamped = pattern.entries[0][2]
    assert set(clamped[mask == 0].unique().tolist()) == {0.0, 6.0} and mask.sum() > 0
    for _ in range(2):  # the same RNG state (dropout mask) on every replay
        state = torch.get_rng_state()
        with pattern.replay():
            replayed = _loss(net, x, weights)
        assert torch.equal(torch.get_rng_state(), state)  # forked: the caller's stream is left where it was
        assert torch.equal(replayed, recorded)
        for a, b in zip(torch.autograd.grad(replayed, list(weights.values()) + [net.alpha]), grads):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_finite_difference_at_the_frozen_pattern_converges_to_the_exact_product():
    """The one-sided difference of grad_alpha along a weight direction z converges to autograd's mixed
    product at w's pattern; without the replay (a fresh dropout draw) it is far off."""
    net, x, weights = _setup()
    names, params = list(weights), list(weights.values())
    gen = torch.Generator().manual_seed(1)
    z = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
    pattern = ActivationPattern()
    with pattern.record():
        loss = _loss(net, x, weights)
    grads = torch.autograd.grad(loss, params + [net.alpha], create_graph=True)
    exact = torch.autograd.grad(sum((g * zi).sum() for g, zi in zip(grads[:-1], z)), net.alpha)[0]
    base = grads[-1].detach()
    norm = torch.sqrt(sum((zi * zi).sum() for zi in z))

    def estimate(eps, frozen):
        radius = eps / norm
        moved = {n: p.detach() + radius * zi for n, p, zi in zip(names, params, z)}
        if frozen:
            with pattern.replay():
                moved_loss = _loss(net, x, moved)
        else:
            moved_loss = _loss(net, x, moved)
        return (torch.autograd.grad(moved_loss, net.alpha)[0] - base) / radius

    assert exact.norm() > 0.1 * base.norm() > 0
    torch.testing.assert_close(estimate(1e-4, True), exact, rtol=1e-3, atol=0)
    torch.testing.assert_close(estimate(1e-6, True), exact, rtol=1e-5, atol=0)
    assert (estimate(1e-6, False) - exact).norm() > 0.1 * exact.norm()


def test_replay_refuses_a_different_forward():
    net, x, weights = _setup()
    pattern = ActivationPattern()
    with pytest.raises(RuntimeError, match="before record"):
        with pattern.replay():
            pass
    with pattern.record():
        _loss(net, x, weights)
    with pytest.raises(RuntimeError, match="does not match the recorded forward"):
        with pattern.replay():
            _loss(net, x[:, :, :8, :8], weights)
    with pytest.raises(RuntimeError, match="made 1 of the 5 recorded calls"):
        with pattern.replay():
            F.relu(net.conv1(x))


@pytest.mark.parametrize("activation", [F.hardswish, F.leaky_relu])
def test_recording_refuses_kinks_it_cannot_freeze(activation):
    with pytest.raises(NotImplementedError, match=f"{activation.__name__}; use SEARCH.HESSIAN forward_mode"):
        with ActivationPattern().record():
            activation(torch.randn(3))


def test_recording_notes_batch_norms_over_few_values():
    bn = nn.BatchNorm2d(4).train()
    pattern = ActivationPattern()
    with pattern.record():
        bn(torch.randn(8, 4, 1, 1))
        bn.eval()
        bn(torch.randn(2, 4, 1, 1))  # running statistics: smooth
    assert pattern.fewest_bn_values == 8 and not pattern.nearly_kinked
    with pattern.record():
        bn.train()
        bn(torch.randn(2, 4, 1, 1))
        bn(torch.randn(2, 4, 3, 3))
    assert pattern.fewest_bn_values == 2 and pattern.nearly_kinked
