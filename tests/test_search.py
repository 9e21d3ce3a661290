"""Search strategies: hypergradient vs exact, bit-identical arch/weight steps, determinism, resume, NaN, split."""
import copy
import io
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from src.architecture.arch_params import ArchMixin, new_arch_parameter
from src.config.defaults import get_default_config
from src.network_factory.registry import build_model
from src.search.base import NonFiniteError
from src.search import hypergradient
from src.search.hypergradient import compute_hypergradient, virtual_step
from src.search.split import SplitSampler, bilevel_split
from src.search.strategies import STRATEGIES, build_strategy

# the strategies of fabric / arch-parameter models; `oneshot` trains a ScaleNAS supernet (tests/test_scalenas.py)
FABRIC_STRATEGIES = [name for name in STRATEGIES if name != "oneshot"]
from src.utils import distributed as dist_utils

NUM_JOINTS = 4


class _Edge(nn.Module):
    def __init__(self, c, bn):
        super().__init__()
        norm = (lambda: nn.BatchNorm2d(c)) if bn else (lambda: nn.Identity())
        self.ops = nn.ModuleList([nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), norm(), nn.ReLU()),
                                  nn.Sequential(nn.Conv2d(c, c, 1, bias=False), norm(), nn.Tanh()),
                                  nn.Identity()])
        self.alpha = new_arch_parameter(len(self.ops))

    def forward(self, x):
        w = torch.softmax(self.alpha, -1)
        return sum(wi * op(x) for wi, op in zip(w, self.ops))


class TinySearchNet(ArchMixin, nn.Module):
    """Two mixed edges (alpha) and a two-input merge (beta), output at stride 4; BatchNorm optional
    (without it a batch split across ranks is exactly a large batch)."""

    def __init__(self, c=4, bn=True):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, stride=4, padding=1)
        self.e1, self.e2 = _Edge(c, bn), _Edge(c, bn)
        self.head = nn.Conv2d(c, NUM_JOINTS, 1)
        self.beta = new_arch_parameter(2)

    def forward(self, x):
        a = self.e1(F.relu(self.stem(x)))
        w = torch.softmax(self.beta, -1)
        return self.head(w[0] * a + w[1] * self.e2(a))


def tiny_fabric(parts=1, joints=NUM_JOINTS):
    """The real part_cnf: MobileNet-V2 (x0.25) backbone, `parts` searchable CNFs of factor 2 (input 32x24)."""
    cfg = get_default_config()
    cfg.MODEL.NAME, cfg.MODEL.BACKBONE, cfg.MODEL.BACKBONE_WIDTH_MULT = "part_cnf", "mobilenet_v2", 0.25
    cfg.MODEL.FABRIC.FACTOR, cfg.MODEL.PARTS.NUM, cfg.MODEL.NUM_JOINTS = 2, parts, joints
    cfg.MODEL.INPUT_SIZE = [24, 32]
    return build_model(cfg)


def pose_mse(output, batch):
    w = batch["target_weight"].unsqueeze(-1).unsqueeze(-1)
    return 0.5 * ((output - batch["target"]) ** 2 * w).mean()


def make_batch(seed, n=2, h=32, w=24, dtype=torch.float32, joints=NUM_JOINTS):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(n, 3, h, w, generator=g).to(dtype),
            "target": torch.rand(n, joints, h // 4, w // 4, generator=g).to(dtype),
            "target_weight": torch.ones(n, joints, dtype=dtype)}


def make_cfg(strategy="none", optimizer="adam", **search):
    cfg = get_default_config()
    cfg.SEED = 3
    cfg.SEARCH.STRATEGY = strategy
    cfg.TRAIN.OPTIMIZER = optimizer
    cfg.TRAIN.LR = 0.05 if optimizer == "sgd" else 1e-2
    cfg.TRAIN.WD = 1e-3
    cfg.SEARCH.ARCH_LR = 0.05
    for k, v in search.items():
        cfg.SEARCH[k] = v
    return cfg


def make_model(seed=0, dtype=torch.float32, kind="fabric", **kw):
    torch.manual_seed(seed)
    model = tiny_fabric(**kw) if kind == "fabric" else TinySearchNet(**kw)
    return model.to(dtype)


def snapshot(model, which="all"):
    named = {"arch": model.named_arch_parameters, "weights": model.named_weight_parameters}
    if which == "all":
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {k: v.detach().clone() for k, v in named[which]()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- virtual step and hypergradient
@pytest.mark.parametrize("optimizer,kwargs", [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("SGD", dict(lr=0.1, momentum=0.8, dampening=0.3, weight_decay=0.0)),
    ("SGD", dict(lr=0.1)),
    ("Adam", dict(lr=1e-2, weight_decay=1e-2)),
    ("AdamW", dict(lr=1e-2, weight_decay=1e-1, betas=(0.5, 0.9))),
])
def test_virtual_step_matches_the_optimizer(optimizer, kwargs):
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(5, 3, dtype=torch.float64)), nn.Parameter(torch.randn(4, dtype=torch.float64))]
    opt = getattr(torch.optim, optimizer)(params, **kwargs)
    for step in range(4):  # from the empty state on, the virtual step is what step() then does
        grads = [torch.randn_like(p) for p in params]
        predicted = virtual_step(opt, params, grads)
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        for p, w in zip(params, predicted):
            torch.testing.assert_close(p.detach(), w, rtol=1e-12, atol=1e-14)


def _direct_arch_grad(model, optimizer, weight_batch, arch_batch):
    """grad_alpha L_arch(w', alpha) with the implicit term left out (reference for the correction)."""
    from torch.func import functional_call
    named = list(model.named_weight_parameters())
    loss = pose_mse(model(weight_batch["image"]), weight_batch)
    g = torch.autograd.grad(loss, [p for _, p in named])
    stepped = virtual_step(optimizer, [p for _, p in named], [x.detach() for x in g])
    out = functional_call(model, {n: w.detach() for (n, _), w in zip(named, stepped)}, (arch_batch["image"],))
    return torch.cat([x.flatten() for x in torch.autograd.grad(pose_mse(out, arch_batch), model.arch_parameters())])


def _hypergradients(optimizer, modes, n=2):
    """Each mode's hypergradient and the direct term, on the real fabric (MobileNet-V2 x0.25 + 3 part CNFs) in
    float64 so comparisons are meaningful, after 3 weight steps (optimizer state the unroll must use); batch n."""
    model = make_model(dtype=torch.float64, parts=3, joints=17)
    with torch.no_grad():
        for p in model.arch_parameters():
            p.normal_()
    cfg = make_cfg("second_order_gradient", optimizer, FD_EPS=1e-7)  # float64: truncation error only
    cfg.TRAIN.LR = 0.5 if optimizer == "sgd" else 0.05  # a large step makes the implicit term large
    strategy = build_strategy(cfg, model, pose_mse)
    batch = lambda seed: make_batch(seed, n=n, dtype=torch.float64, joints=17)  # noqa: E731
    for i in range(3):
        strategy.weight_step(batch(10 + i))
    wb, ab = batch(1), batch(2)
    model.train()
    weights = snapshot(model, "weights")
    result = {}
    for mode in modes:
        hyper = compute_hypergradient(model, pose_mse, strategy.weight_optimizer, wb, ab, mode, cfg.SEARCH.FD_EPS)
        result[mode] = torch.cat([g.flatten() for g in hyper.arch_grads])
        assert same(snapshot(model, "weights"), weights)
    return result, _direct_arch_grad(model, strategy.weight_optimizer, wb, ab)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_finite_difference_hypergradient_matches_exact(optimizer):
    """At the replayed activation pattern the one-sided difference converges (ReLU6 MobileNet-V2 fabric):
    its only error is the truncation of a step of norm FD_EPS, which shrinks in proportion to it. Batch 8: with 2,
    its 1x1 maps' batch norms would send the step to forward_mode (test_search_decides.py)."""
    result, direct = _hypergradients(optimizer, ("finite_difference", "exact"), n=8)
    fd, exact = result["finite_difference"], result["exact"]
    assert F.cosine_similarity(fd, exact, dim=0) >= 0.9999
    assert (fd - exact).norm() <= 1e-4 * exact.norm()
    # the comparison is meaningful: the second-order correction is a sizeable part, and matches too
    implicit_fd, implicit_exact = fd - direct, exact - direct
    assert implicit_exact.norm() >= 0.1 * direct.norm()
    assert F.cosine_similarity(implicit_fd, implicit_exact, dim=0) >= 0.9999
    assert (implicit_fd - implicit_exact).norm() <= 1e-4 * implicit_exact.norm()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_forward_mode_hypergradient_equals_exact(optimizer):
    """Reverse-over-forward and double backward are two exact routes to one number (ReLU and train-mode BN
    included): they agree to rounding."""
    result, direct = _hypergradients(optimizer, ("forward_mode", "exact"))
    assert (result["exact"] - direct).norm() >= 0.1 * direct.norm()  # the product is a sizeable part
    torch.testing.assert_close(result["forward_mode"], result["exact"], rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- bit-identical steps
def test_first_order_arch_step_leaves_weights_and_buffers_bit_identical():
    model = make_model()
    strategy = build_strategy(make_cfg("first_order_gradient"), model, pose_mse)
    strategy.weight_step(make_batch(0))
    before = snapshot(model)
    model.train()
    stats = strategy.arch_step(make_batch(1))
    after = snapshot(model)
    arch = set(snapshot(model, "arch"))
    assert all(torch.equal(before[k], after[k]) for k in before if k not in arch)  # weights and BN stats
    assert all(not torch.equal(before[k], after[k]) for k in arch)
    assert stats["arch_grad_norm"] > 0 and all(p.grad is None for p in model.arch_parameters())


@pytest.mark.parametrize("mode", hypergradient.MODES)
def test_second_order_arch_part_leaves_weights_bit_identical(mode):
    """compute_hypergradient writes no weight; BN stats change only by the (training) weight-batch forward.
    Batch 8, so that finite_difference runs its own pass (at batch 2 it hands the product to forward_mode)."""
    model = make_model()
    strategy = build_strategy(make_cfg("second_order_gradient", "sgd"), model, pose_mse)
    strategy.weight_step(make_batch(0, n=8))
    reference = copy.deepcopy(model).train()
    reference(make_batch(1, n=8)["image"])
    model.train()
    weights = snapshot(model, "weights")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="SEARCH.HESSIAN")  # no hand-over to forward_mode
        compute_hypergradient(model, pose_mse, strategy.weight_optimizer, make_batch(1, n=8), make_batch(2, n=8), mode)
    assert same(snapshot(model, "weights"), weights)
    assert same(dict(model.named_buffers()), dict(reference.named_buffers()))


@pytest.mark.parametrize("name", ["none", "random", "first_order_gradient", "second_order_gradient"])
def test_weight_step_leaves_arch_bit_identical(name):
    model = make_model()
    strategy = build_strategy(make_cfg(name), model, pose_mse)
    arch, weights = snapshot(model, "arch"), snapshot(model, "weights")
    strategy.step(make_batch(0), make_batch(1), arch_active=False)
    assert same(snapshot(model, "arch"), arch)
    assert not same(snapshot(model, "weights"), weights)


@pytest.mark.parametrize("name,arch_active", [("second_order_gradient", False), ("first_order_gradient", True),
                                               ("second_order_gradient", True)])
def test_bilevel_step_updates_the_weights_on_the_weight_batch_only(name, arch_active):
    """The weights move exactly as the `none` weight step on the weight batch: in warm-up (arch_active=False, no
    second update), and with the arch frozen (arch LR 0) on arch-active steps. PoseNFS zeroes the weight gradients
    once per iteration, before its arch step, whose loss.backward() on the arch batch leaves weight gradients that
    the weight step then adds: its weights also train on the arch split."""
    plain, bilevel = make_model(), make_model()
    cfg = make_cfg(name)
    cfg.SEARCH.ARCH_LR = 0.0
    s_plain = build_strategy(make_cfg("none"), plain, pose_mse)
    s_bilevel = build_strategy(cfg, bilevel, pose_mse)
    s_plain.step(make_batch(0))
    s_bilevel.step(make_batch(0), make_batch(1), arch_active=arch_active)
    assert same(snapshot(plain, "arch"), snapshot(bilevel, "arch"))
    assert same(snapshot(plain, "weights"), snapshot(bilevel, "weights"))


@pytest.mark.parametrize("grad_clip", [0.0, 1e-3])
def test_second_order_unrolls_the_real_weight_step(grad_clip, monkeypatch):
    """The virtual step is what the weight optimizer then does (Adam state, clipping), and the weight step
    applies the weight-batch gradient at the current weights: the weights end exactly at the unrolled w'."""
    model = make_model(dtype=torch.float64)
    cfg = make_cfg("second_order_gradient", "adam")
    cfg.TRAIN.GRAD_CLIP = grad_clip
    strategy = build_strategy(cfg, model, pose_mse)
    strategy.step(make_batch(0, dtype=torch.float64), make_batch(1, dtype=torch.float64))
    wb, ab = make_batch(2, dtype=torch.float64), make_batch(3, dtype=torch.float64)
    twin = copy.deepcopy(model).train()
    grads = torch.autograd.grad(pose_mse(twin(wb["image"]), wb), twin.weight_parameters())
    if grad_clip:
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        assert norm > grad_clip  # the clip is active
        grads = [g * grad_clip / (norm + 1e-6) for g in grads]
    expected = virtual_step(strategy.weight_optimizer, model.weight_parameters(), grads)
    unrolled, loss = {}, hypergradient._loss

    def spy(core, criterion, batch, weights=None):
        if batch is ab:
            unrolled.update((k, v.detach().clone()) for k, v in weights.items())
        return loss(core, criterion, batch, weights)

    monkeypatch.setattr(hypergradient, "_loss", spy)
    strategy.step(wb, ab)
    for (name, p), w in zip(model.named_weight_parameters(), expected):
        torch.testing.assert_close(p.detach(), w, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(p.detach(), unrolled[name], rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- strategies
def test_strategies_change_what_they_should():
    for name in FABRIC_STRATEGIES:
        model, cfg = make_model(), make_cfg(name)
        strategy = build_strategy(cfg, model, pose_mse)
        arch_ids = {id(p) for p in model.arch_parameters()}
        groups = [{id(p) for p in g["params"]} for g in strategy.weight_optimizer.param_groups]
        if name == "sync":  # one optimizer: weights, then arch at the arch lr / wd
            assert groups[1] == arch_ids and strategy.weight_optimizer.param_groups[1]["lr"] == cfg.SEARCH.ARCH_LR
        else:
            assert not set().union(*groups) & arch_ids
        if strategy.uses_arch_split:
            arch_group = strategy.arch_optimizer.param_groups[0]
            assert {id(p) for p in arch_group["params"]} == arch_ids
            assert (arch_group["lr"], arch_group["betas"], arch_group["weight_decay"]) == (
                cfg.SEARCH.ARCH_LR, tuple(cfg.SEARCH.ARCH_BETAS), cfg.SEARCH.ARCH_WD)
        arch, weights = snapshot(model, "arch"), snapshot(model, "weights")
        for i in range(3):
            stats = strategy.step(make_batch(2 * i), make_batch(2 * i + 1))
            assert set(stats) == ({"loss", "arch_loss", "arch_grad_norm"} if strategy.uses_arch_split else {"loss"})
        assert not same(snapshot(model, "weights"), weights), name
        if name in ("none", "random"):
            assert same(snapshot(model, "arch"), arch), name
            assert all(not p.requires_grad for p in model.arch_parameters())
        else:
            assert all(not torch.equal(arch[k], v) for k, v in snapshot(model, "arch").items()), name


def test_none_is_uniform_and_random_draws_seeded_logits_of_the_right_shapes():
    model = make_model(parts=3, joints=17)
    assert {tuple(p.shape) for p in model.arch_parameters()} >= {(1, 4), (2,), (3,)}  # alpha [edges, ops], betas
    with torch.no_grad():
        for p in model.arch_parameters():
            p.fill_(1.5)
    build_strategy(make_cfg("none"), model, pose_mse)
    assert all(torch.count_nonzero(p) == 0 for p in model.arch_parameters())
    cfg = make_cfg("random")
    build_strategy(cfg, model, pose_mse)
    gen = torch.Generator().manual_seed(cfg.SEED)
    for name, p in model.named_arch_parameters():
        assert torch.equal(p.detach(), torch.randn(p.shape, generator=gen)), name
    other = make_model(seed=7, parts=3, joints=17)
    build_strategy(cfg, other, pose_mse)
    assert same(snapshot(model, "arch"), snapshot(other, "arch"))
    cfg.SEED = 4
    build_strategy(cfg, other, pose_mse)
    assert not same(snapshot(model, "arch"), snapshot(other, "arch"))


@pytest.mark.parametrize("name", ["sync", "first_order_gradient", "second_order_gradient"])
def test_same_seed_same_arch_after_n_steps(name):
    runs = []
    for _ in range(2):
        model = make_model(seed=5)
        strategy = build_strategy(make_cfg(name), model, pose_mse)
        for i in range(4):
            strategy.step(make_batch(2 * i), make_batch(2 * i + 1))
        runs.append(snapshot(model))
    assert same(*runs)


@pytest.mark.parametrize("name", ["sync", "first_order_gradient", "second_order_gradient"])
def test_state_dict_round_trip_restores_both_optimizers(name):
    cfg = make_cfg(name, "sgd" if name == "sync" else "adam")
    model = make_model()
    strategy = build_strategy(cfg, model, pose_mse)
    for i in range(2):
        strategy.step(make_batch(2 * i), make_batch(2 * i + 1))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "strategy": strategy.state_dict()}, buffer)
    for i in range(2, 4):
        strategy.step(make_batch(2 * i), make_batch(2 * i + 1))
    expected = snapshot(model)

    buffer.seek(0)
    state = torch.load(buffer, map_location="cpu", weights_only=True)
    resumed = make_model(seed=9)
    resumed_strategy = build_strategy(cfg, resumed, pose_mse)
    resumed.load_state_dict(state["model"])
    resumed_strategy.load_state_dict(state["strategy"])
    if name != "sync":
        assert resumed_strategy.arch_optimizer.state_dict()["state"]
    for i in range(2, 4):
        resumed_strategy.step(make_batch(2 * i), make_batch(2 * i + 1))
    assert same(snapshot(resumed), expected)


def test_load_state_dict_rejects_garbage():
    strategy = build_strategy(make_cfg("first_order_gradient"), make_model(), pose_mse)
    with pytest.raises(ValueError, match="weight_optimizer"):
        strategy.load_state_dict({"model": {}})


@pytest.mark.parametrize("name", FABRIC_STRATEGIES)
def test_nan_loss_raises(name):
    strategy = build_strategy(make_cfg(name), make_model(), pose_mse)
    bad = make_batch(0)
    bad["image"][0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="non-finite"):
        strategy.step(bad, make_batch(1))
    if strategy.uses_arch_split:
        with pytest.raises(NonFiniteError, match="arch"):
            strategy.step(make_batch(1), bad)


def test_nonfinite_arch_gradient_raises():
    strategy = build_strategy(make_cfg("first_order_gradient"), make_model(), pose_mse)
    with pytest.raises(NonFiniteError, match="arch gradient"):
        strategy.apply_arch_grads([torch.full_like(p, float("inf")) for p in strategy.core.arch_parameters()])


def test_bad_names_are_refused():
    with pytest.raises(ValueError, match="SEARCH.STRATEGY 'darts'"):
        build_strategy(make_cfg("darts"), make_model(), pose_mse)
    with pytest.raises(ValueError, match="SEARCH.HESSIAN 'lanczos'"):
        build_strategy(make_cfg("second_order_gradient", HESSIAN="lanczos"), make_model(), pose_mse)
    with pytest.raises(ValueError, match="arch batch"):
        build_strategy(make_cfg("first_order_gradient"), make_model(), pose_mse).step(make_batch(0), None)


# ---------------------------------------------------------------- split and distributed helpers
def test_bilevel_split_is_a_seeded_random_partition():
    w, a = bilevel_split(range(10), 0.7, seed=1)
    assert len(w) == 7 and len(a) == 3 and sorted(w + a) == list(range(10))
    assert (w, a) == bilevel_split(range(10), 0.7, seed=1)
    assert w != list(range(7))  # not the ordered split of the original
    assert bilevel_split(range(10), 0.7, seed=2) != (w, a)
    for ratio in (0.0, 1.0, 0.01):
        with pytest.raises(ValueError, match="SPLIT_RATIO"):
            bilevel_split(range(10), ratio, seed=1)


def test_split_sampler_reshuffles_per_epoch_and_shards_by_rank():
    indices = list(range(100, 111))  # 11 samples
    single = SplitSampler(indices, seed=0)
    assert len(single) == 11 and sorted(single) == indices
    first = list(single)
    assert list(single) == first
    single.set_epoch(1)
    assert list(single) != first and sorted(single) == indices
    shards = [SplitSampler(indices, seed=0, rank=r, world_size=2) for r in range(2)]
    for s in shards:
        s.set_epoch(3)
    assert [len(s) for s in shards] == [6, 6]
    assert set(shards[0]) | set(shards[1]) == set(indices)
    dropped = [list(SplitSampler(indices, seed=0, rank=r, world_size=2, drop_last=True)) for r in range(2)]
    assert [len(d) for d in dropped] == [5, 5] and not set(dropped[0]) & set(dropped[1])
    with pytest.raises(ValueError, match="rank 2"):
        SplitSampler(indices, rank=2, world_size=2)


def test_distributed_helpers_are_no_ops_in_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert dist_utils.init_distributed() is False
    assert (dist_utils.get_rank(), dist_utils.get_world_size(), dist_utils.is_main()) == (0, 1, True)
    t = torch.arange(3.0)
    assert dist_utils.all_reduce_mean_([t])[0] is t and torch.equal(t, torch.arange(3.0))
    assert torch.equal(dist_utils.broadcast_([t])[0], torch.arange(3.0))
    dist_utils.barrier()
    dist_utils.cleanup()
