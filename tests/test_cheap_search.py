"""Cheaper search methods: partial channels with edge normalisation (PC-DARTS) and the sampled single-path
strategy `gdas` (GDAS): exactness, what runs, the estimator's form, planted answers, Prune, DDP, train.py."""
import json

import pytest
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from src.architecture.arch_params import ArchMixin
from src.architecture.fabric.fabric import Fabric, sampled_forwards, triangle_spec
from src.architecture.fabric.mixed_op import MixedOp, channel_shuffle, partial_channels
from src.architecture.fabric.sampling import GumbelSampler, straight_through
from src.architecture.genotype.genotype import parse_genotype
from src.architecture.genotype.prune import prune_report
from src.network_factory.registry import build_model
from src.search.strategies import GdasStrategy, build_strategy
from tests.conftest import ROOT, tiny_train_opts
from tests.test_operators_cells import ALL_OPS
from tests.test_prune_genotype import KEEP_ALL, image, prune, quiet, searched, tiny_cfg
from tests.test_search import make_batch, make_cfg, pose_mse
from tests.test_search_ddp import _flat_params, assert_same_on_every_rank, run_on_two_ranks
from tests.test_search_decides import _shift, planted_batch, planted_loss

PC = {"SEARCH.PARTIAL_CHANNELS": 4, "SEARCH.EDGE_NORM": True, "MODEL.FABRIC.INPUT_NODES_NUM": 2,
      "MODEL.FABRIC.HIDDEN_STATES_NUM": 2}


def mixed_ops(model):
    return [m for f in model.modules() if isinstance(f, Fabric) for m in f.modules() if isinstance(m, MixedOp)]


def count_op_calls(model):
    """{mixed op: [calls of each of its ops]}, filled by forward hooks."""
    calls = {}
    for m in mixed_ops(model):
        calls[m] = [0] * len(m.ops)
        for i, op in enumerate(m.ops.values()):
            op.register_forward_hook(lambda mod, args, out, m=m, i=i: calls[m].__setitem__(i, calls[m][i] + 1))
    return calls


# ---------------------------------------------------------------- partial channels
@pytest.mark.parametrize("seed", range(3))
def test_partial_channels_with_k1_equal_the_full_mixed_op_exactly(seed):
    x = torch.randn(2, 8, 9, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    weights = torch.softmax(torch.randn(len(ALL_OPS), dtype=torch.float64), 0)
    torch.manual_seed(seed)
    full = MixedOp(8, ALL_OPS).double()
    torch.manual_seed(seed)
    partial = MixedOp(8, ALL_OPS, partial=1).double()
    assert torch.equal(partial(x, weights), full(x, weights))
    assert torch.equal(partial_channels(x, 1, lambda part: full(part, weights)), full(x, weights))


def test_partial_channels_with_k4_send_a_quarter_of_the_channels_through_the_ops_and_shuffle():
    torch.manual_seed(0)
    mixed = MixedOp(16, ALL_OPS, partial=4)
    seen = []
    for op in mixed.ops.values():
        op.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[1]))
    x, w = torch.randn(2, 16, 6, 5), torch.softmax(torch.randn(len(ALL_OPS)), 0)
    out = mixed(x, w)
    assert seen == [4] * (len(ALL_OPS) - 1)  # every op but zero (skipped: it adds nothing)
    assert mixed.ops["sep_conv_3x3"][1].weight.shape == (4, 4, 1, 1)  # ops are built for C/K channels
    y = torch.cat([mixed._mix(x[:, :4], w, None), x[:, 4:]], 1)  # channel g*4 + i of y -> i*4 + g of out
    for g in range(4):
        for i in range(4):
            assert torch.equal(out[:, i * 4 + g], y[:, g * 4 + i])
    assert torch.equal(channel_shuffle(channel_shuffle(y, 4), 4), y)  # C = K^2: the shuffle is an involution


def test_a_partial_channel_supernet_runs_every_op_on_a_quarter_and_derives_a_plain_network():
    cfg = tiny_cfg(**PC)
    model = searched(cfg)
    seen, expected = [], []
    for fabric in (m for m in model.modules() if isinstance(m, Fabric)):
        for cell in fabric.cells.values():
            for mixed in cell.edges.values():
                expected += [fabric.spec.channels(cell.spec.scale) // 4] * len(mixed.ops)
                for op in mixed.ops.values():
                    op.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[1]))
    model(image())
    assert len(seen) == len(expected) - len(expected) // 4  # every op but zero (skipped) runs once
    assert sorted(seen) == sorted(c for i, c in enumerate(expected) if i % 4)  # zero is the first of 4 ops
    lines = []
    derived, g = prune(model, cfg, log_fn=lines.append)
    assert mixed_ops(derived) and all(m.partial == 1 for m in mixed_ops(derived))
    assert any("start fresh" in line and "1/4" in line for line in lines)
    assert derived(image()).shape == model(image()).shape


# ---------------------------------------------------------------- edge normalisation
@pytest.mark.parametrize("one_shot", [True, False])
def test_edge_norm_parameters_are_arch_parameters_shown_and_recorded(one_shot):
    cfg = tiny_cfg(**{**PC, "SEARCH.PARTIAL_CHANNELS": 1, "MODEL.FABRIC.ONE_SHOT_SEARCH": one_shot})
    model = searched(cfg)
    gammas = [n for n, _ in model.named_arch_parameters() if n.endswith(".gamma")]
    assert gammas and not [n for n, _ in model.named_weight_parameters() if n.endswith(".gamma")]
    assert (gammas[0] == "parts.0.fabric.edge_norm.s0.gamma") == one_shot
    assert all(n in model.arch_state() for n in gammas)
    assert "edge norm" in model.arch_table()
    gamma = dict(model.named_arch_parameters())[gammas[0]]
    before = model.arch_entropy()
    with torch.no_grad():
        gamma[0] = 30.0
    assert model.arch_entropy() < before
    # keeping everything is lossless: the derived op weights carry the edge weights
    derived, g = prune(model, cfg, **KEEP_ALL, log_fn=quiet)
    with torch.no_grad():
        torch.testing.assert_close(derived(image()), model(image()), atol=1e-5, rtol=0)
    record = g.search.fabrics["parts.0.fabric"]
    assert record.edge is not None and all(0 < w <= 1 for ws in record.edge.values() for w in ws.values())
    assert parse_genotype(json.loads(json.dumps(g.to_dict()))) == g


@pytest.mark.parametrize("one_shot", [True, False])
def test_edge_weights_rank_the_edges_prune_keeps(one_shot):
    """State 0 of a two-input-node cell reads edges 0 (node 0) and 1 (node 1): the edge kept with
    edges_topk 1 follows gamma, whatever alpha says."""
    cfg = tiny_cfg(**{**PC, "SEARCH.PARTIAL_CHANNELS": 1, "MODEL.FABRIC.ONE_SHOT_SEARCH": one_shot})
    model = searched(cfg)
    s0 = [p for n, p in model.named_arch_parameters() if n.endswith("s0.gamma")]
    for favoured in (0, 1):
        with torch.no_grad():
            for p in s0:
                p.copy_(torch.tensor([8.0, -8.0] if favoured == 0 else [-8.0, 8.0]))
        derived, g = prune(model, cfg, edges_topk=1, log_fn=quiet)
        both = [c.name for c in g.search.fabrics["parts.0.fabric"].fabric.cells if {0, 1} <= set(c.edges)]
        kept = {c.name: c for c in g.arch.parts[0].fabric.cells}
        assert both and all([e for e in kept[c].edges if e < 2] == [favoured] for c in both if c in kept)
        assert g.search.prune.edges_topk == 1 and "edges_topk 1" in prune_report(g)
        assert derived(image()).shape == (2, 17, 16, 12)


# ---------------------------------------------------------------- sampled single path (gdas)
def test_gdas_forward_runs_exactly_one_op_per_edge_and_the_same_one_in_every_cell():
    model = searched(tiny_cfg(**{"MODEL.PARTS.NUM": 1}))
    calls = count_op_calls(model)
    with sampled_forwards(model, GumbelSampler(1.0, torch.Generator().manual_seed(0))):
        model(image())
    assert all(sum(c) == 1 and max(c) == 1 for c in calls.values())
    assert len({tuple(c) for c in calls.values()}) == 1  # one sample of the shared alpha per forward
    for c in calls.values():
        c[:] = [0] * len(c)
    model(image())  # outside the block: the full mixture (zero is skipped)
    assert all(c == [0, 1, 1, 1] for c in calls.values())


def test_gdas_strategy_samples_per_step_deterministically_from_the_seed():
    def run(seed):
        torch.manual_seed(0)
        model = build_model(tiny_cfg(**{"MODEL.PARTS.NUM": 1}))
        cfg = make_cfg("gdas")
        cfg.SEED, cfg.MODEL.NUM_JOINTS = seed, 17
        strategy = build_strategy(cfg, model, pose_mse)
        calls = count_op_calls(model)
        picks = []
        for step in range(4):
            strategy.step(*[make_batch(2 * step + k, h=64, w=48, joints=17) for k in (0, 1)])
            picks.append([tuple(c) for c in calls.values()])
            for c in calls.values():
                c[:] = [0] * len(c)
        return picks, torch.cat([p.detach().flatten() for p in model.parameters()]), strategy
    a, params_a, strategy = run(3)
    b, params_b, _ = run(3)
    assert a == b and torch.equal(params_a, params_b)
    assert all(sum(c) == 2 for step in a for c in step)  # arch forward + weight forward, one op each
    assert run(4)[0] != a
    assert strategy.state_dict()["sample_steps"] == 4


def test_gdas_temperature_is_annealed_linearly_over_the_epochs():
    cfg = make_cfg("gdas")
    cfg.SEARCH.TAU_MAX, cfg.SEARCH.TAU_MIN, cfg.TRAIN.EPOCHS = 10.0, 0.1, 5
    strategy = build_strategy(cfg, build_model(tiny_cfg(**{"MODEL.PARTS.NUM": 1})), pose_mse)
    taus = []
    for epoch in range(5):
        strategy.set_epoch(epoch)
        taus.append(strategy.tau)
    assert taus == pytest.approx([10.0, 7.525, 5.05, 2.575, 0.1])
    cfg.SEARCH.TAU_MIN = 20.0
    with pytest.raises(ValueError, match="TAU_MAX >= SEARCH.TAU_MIN"):
        build_strategy(cfg, build_model(tiny_cfg(**{"MODEL.PARTS.NUM": 1})), pose_mse)
    cfg.SEARCH.TAU_MIN = 0.1
    with pytest.raises(ValueError, match="no searchable fabric"):
        build_strategy(cfg, build_model(tiny_cfg(**{"MODEL.NAME": "baseline"})), pose_mse)


@pytest.mark.parametrize("seed", range(3))
def test_gdas_gradient_is_the_documented_straight_through_form(seed):
    """dL/dalpha = <dL/dout, op_k*(x)> * soft[k*] * (e_k* - soft) / tau, soft = softmax((log_softmax(a) + g) / tau)."""
    gen = torch.Generator().manual_seed(seed)
    ops = ["skip_connect", "avg_pool_3x3", "max_pool_3x3", "sep_conv_3x3"]
    torch.manual_seed(seed)
    mixed = MixedOp(3, ops).double()
    alpha = torch.randn(len(ops), dtype=torch.float64, generator=gen).requires_grad_()
    noise = GumbelSampler(1.0, gen).noise(alpha)
    x, r = (torch.randn(2, 3, 5, 5, dtype=torch.float64, generator=gen) for _ in range(2))
    tau = 0.7
    h, k = straight_through(alpha, noise, tau)
    out = mixed(x, h, k)
    (grad,) = torch.autograd.grad((out * r).sum(), alpha)
    with torch.no_grad():
        y = list(mixed.ops.values())[k](x)
        soft = torch.softmax((torch.log_softmax(alpha, 0) + noise) / tau, 0)
        expected = (r * y).sum() * soft[k] * (torch.nn.functional.one_hot(torch.tensor(k), len(ops)) - soft) / tau
    assert k == int(torch.argmax(alpha.detach() + noise))  # Gumbel-max: a sample of softmax(alpha)
    torch.testing.assert_close(out, y, rtol=1e-12, atol=0)  # the value is the chosen op's output
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------- planted answers
class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


PLANTED = ["skip_connect", "avg_pool_3x3", "max_pool_3x3", "zero"]  # names of the op slots, replaced below


class PlantedFabric(ArchMixin, nn.Module):
    """x -> 1x1 conv -> a one-cell fabric whose edge holds the parameter-free ops of test_search_decides
    (identity, avg pool, max pool, shift) -> 1x1 conv."""

    def __init__(self, c=12, **search):
        super().__init__()
        self.pre, self.post = nn.Conv2d(3, c, 1), nn.Conv2d(c, 3, 1)
        self.fabric = Fabric(triangle_spec([1], c, PLANTED, 1), [c], **search)
        mixed = self.fabric.cells["L0_S0"].edges["0"]
        mixed.ops = nn.ModuleDict(zip(PLANTED, [nn.Identity(), nn.AvgPool2d(3, 1, 1), nn.MaxPool2d(3, 1, 1),
                                                _Fn(_shift)]))

    def forward(self, x):
        return self.post(self.fabric([self.pre(x)])[0])


def planted_search(strategy, answer, seed, steps, **search):
    torch.manual_seed(seed)
    model = PlantedFabric(**search)
    cfg = make_cfg(strategy)
    cfg.SEARCH.ARCH_LR, cfg.TRAIN.LR = 0.05, 0.01
    st = build_strategy(cfg, model, planted_loss)
    gen = torch.Generator().manual_seed(100 + seed)
    for _ in range(steps):
        st.step(planted_batch(gen, answer), planted_batch(gen, answer))
    return torch.softmax(model.fabric.alpha.detach()[0], -1), model.arch_entropy()


@pytest.mark.parametrize("seed", range(3))
def test_planted_max_pool_gets_the_largest_weight_with_partial_channels(seed):
    weights, entropy = planted_search("first_order_gradient", 2, seed, 60, partial_channels=4)
    assert int(weights.argmax()) == 2 and entropy < 0.85, weights


@pytest.mark.parametrize("answer", [0, 3])  # identity, shift
@pytest.mark.parametrize("seed", range(3))
def test_planted_operation_gets_the_largest_weight_with_gdas(answer, seed):
    weights, entropy = planted_search("gdas", answer, seed, 150)  # first order needs 60 (test_search_decides)
    assert int(weights.argmax()) == answer and entropy < 0.85, weights


@pytest.mark.xfail(strict=True, reason="gdas ranks avg pool above the planted max pool: the straight-through "
                                        "gradient rewards an op whose scaled-up output lowers the loss (avg pool lies "
                                        "below max pool everywhere), and the exact op's gradient vanishes (README)")
def test_planted_max_pool_with_gdas():
    weights, _ = planted_search("gdas", 2, 0, 150)
    assert int(weights.argmax()) == 2, weights


# ---------------------------------------------------------------- DDP
def _ddp_worker(rank):
    for name, opts in (("first_order_gradient", PC), ("gdas", {"SEARCH.PARTIAL_CHANNELS": 2})):
        torch.manual_seed(1)
        core = build_model(tiny_cfg(**{**opts, "MODEL.PARTS.NUM": 1, "MODEL.NUM_JOINTS": 4,
                                       "MODEL.INPUT_SIZE": [24, 32]})).double()
        strategy = build_strategy(make_cfg(name, "sgd"), DistributedDataParallel(
            core, find_unused_parameters=GdasStrategy.skips_modules if name == "gdas" else False), pose_mse)
        calls = count_op_calls(core)
        for step in range(3):
            seed = 100 * rank + 2 * step  # different data on every rank
            strategy.step(make_batch(seed, dtype=torch.float64), make_batch(seed + 1, dtype=torch.float64))
        picks = torch.tensor([float(n) for c in calls.values() for n in c], dtype=torch.float64)
        assert_same_on_every_rank(torch.cat([_flat_params(core), picks]), f"{name}: ranks diverged")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_cheap_searches_keep_ranks_identical_under_ddp(tmp_path):
    """Partial channels + edge norm (first order) and gdas: the same arch, weights and sampled ops on 2 ranks."""
    run_on_two_ranks(_ddp_worker, tmp_path)


# ---------------------------------------------------------------- train.py
@pytest.mark.slow
@pytest.mark.parametrize("strategy,extra", [
    ("first_order_gradient", {"SEARCH.PARTIAL_CHANNELS": 4, "SEARCH.EDGE_NORM": True,
                              "MODEL.FABRIC.HIDDEN_STATES_NUM": 2, "DERIVE.EDGES_TOPK": 1}),
    ("gdas", {}),
])
def test_one_epoch_train_run_writes_a_genotype_that_rebuilds(tiny_synthetic, tmp_path, strategy, extra):
    from src.config.loader import load_config
    from src.engine.entry import train_main
    from src.network_factory.from_genotype import build_from_genotype_file
    out = tmp_path / strategy
    opts = tiny_train_opts(tiny_synthetic, out, **{"SEARCH.STRATEGY": strategy, "TRAIN.EPOCHS": 1,
                                                   "SEARCH.WARMUP_EPOCHS": 0, "MODEL.FABRIC.FACTOR": 2, **extra})
    assert train_main(["--cfg", "configs/synthetic_search_demo.yaml", "--show_arch_value", *opts]) == 0
    cfg = load_config(str(ROOT / "configs/synthetic_search_demo.yaml"), opts)
    genotype = json.loads((out / "genotype.json").read_text())
    assert genotype["search"]["strategy"] == strategy
    assert ("edge" in genotype["search"]["fabrics"]["parts.0.fabric"]) == bool(extra)
    model = build_from_genotype_file(cfg, str(out / "genotype.json"))
    assert not [m for m in mixed_ops(model) if m.partial != 1]
    assert model.eval()(torch.randn(1, 3, 64, 48)).shape == (1, 17, 16, 12)
    log = (out / "train.log").read_text()
    assert "architecture values" in log and (("edge norm" in log) == bool(extra))
