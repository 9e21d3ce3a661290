"""Network slimming: exact physical removal, optimizer-state slicing, FLOPs accounting, FLOPs target."""
import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from src.architecture.hr.inverted_residual import InvertedResidual
from src.architecture.hr.shrink import Surgery, shrink_block
from src.architecture.hr.spec import parse_hr_supernet
from src.architecture.hr.supernet import HRSupernet
from src.network_factory.registry import build_model
from src.search.slimming import build_slimmer
from src.utils.flops import count_flops
from tests.test_hr_supernet import tiny_cfg

STAGES = [[1], [1, 1], [1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]


def slim_cfg(**slim):
    cfg = tiny_cfg(STAGE_BLOCKS=STAGES)
    cfg.SLIM.METHOD, cfg.SLIM.WARMUP_EPOCHS, cfg.SLIM.RHO = "slimming", 0.0, 1e-3
    for k, v in slim.items():
        cfg.SLIM[k] = v
    return cfg


def tiny_net(**kw):
    torch.manual_seed(0)
    net = HRSupernet(4, [4, 8, 12, 16], STAGES, expand_ratio=2.0, grid=4, **kw)
    randomize_bn(net)
    return net


@torch.no_grad()
def randomize_bn(module):
    """Non-trivial BN statistics and shifts, so that folded constants matter."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.5, 0.5)


def flops(model):
    return count_flops(model, (1, 3, 64, 48))


@torch.no_grad()
def zero_gates(net, name, index=None):
    """Zero channel gates of block `name` (all paths, or {path: [channels]}) and/or its token gates."""
    blk = dict(net.named_blocks())[name]
    for k, path in enumerate(blk.paths):
        if index is None or k in index:
            path.dw_bn.weight[index[k] if index else slice(None)] = 0
    if blk.transformer is not None and (index is None or "tokens" in index):
        blk.transformer.gate[index["tokens"] if index else slice(None)] = 0


@pytest.mark.parametrize("stride, skip, oup", [(1, "identity", 6), (2, "conv", 4), (2, "none", 10)])
def test_zero_gates_remove_exactly_their_channels_and_keep_the_output(stride, skip, oup):
    torch.manual_seed(0)
    blk = InvertedResidual(6, oup, stride, [3, 5, 7], [5, 5, 5], skip, tokens=4, grid=4)
    randomize_bn(blk)
    blk.eval()
    with torch.no_grad():
        blk.paths[0].dw_bn.weight[[1, 3]] = 0
        blk.paths[1].dw_bn.weight[:] = 0
        blk.transformer.gate[[0, 2]] = 0
    x = torch.randn(2, 6, 9, 7)
    masked = blk(x)
    shrink_block(blk, [g.detach() != 0 for _, g in blk.gate_groups()], Surgery())
    spec = blk.spec()
    assert (spec["kernels"], spec["channels"], spec["tokens"]) == ([3, 7], [3, 5], 2)
    assert blk.paths[0].dw.weight.shape == (3, 1, 3, 3) and blk.paths[0].project.weight.shape == (oup, 3, 1, 1)
    torch.testing.assert_close(blk(x), masked, atol=1e-5, rtol=1e-5)
    # no path and no token left: the block is its skip (+ the folded constant)
    with torch.no_grad():
        for _, g in blk.gate_groups():
            g[:] = 0
    masked = blk(x)
    shrink_block(blk, [g.detach() != 0 for _, g in blk.gate_groups()], Surgery())
    assert blk.spec()["kernels"] == [] and blk.transformer is None and blk.bn is None
    torch.testing.assert_close(blk(x), masked, atol=1e-5, rtol=1e-5)


def _loss(outputs, targets):
    return sum(F.mse_loss(o, t) for o, t in zip(outputs, targets))


@pytest.mark.parametrize("make_opt", [lambda ps: torch.optim.Adam(ps, lr=1e-2),
                                      lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9)],
                         ids=["adam", "sgd_momentum"])
def test_shrink_keeps_optimizer_state_aligned(make_opt):
    net = tiny_net(transformer_blocks=["stages.4.parallel.2.*"], tokens=4).double().train()  # float64: exactness
    opt = make_opt(net.parameters())
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 48, dtype=torch.float64)
    targets = [torch.randn_like(o) for o in net(x)]
    for _ in range(2):
        opt.zero_grad()
        _loss(net(x), targets).backward()
        opt.step()
    dead = [("stages.2.parallel.1.0", {0: [0, 5, 9], 2: list(range(16))}),  # channels + a whole path
            ("stages.4.fuse.edges.1_0", {1: [2, 3]}), ("stages.4.parallel.2.0", {"tokens": [1, 3]})]
    for name, index in dead:
        zero_gates(net, name, index)
    shrunk = copy.deepcopy(net)
    shrunk_opt = make_opt(shrunk.parameters())
    shrunk_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # load_state_dict shares tensors
    stats = build_slimmer(slim_cfg(), shrunk).shrink(shrunk_opt)
    assert stats["channel_units_removed"] == 3 + 16 + 2 and stats["token_units_removed"] == 2
    assert sum(p.numel() for p in shrunk.parameters()) < sum(p.numel() for p in net.parameters())
    assert len(shrunk_opt.param_groups[0]["params"]) == len(list(shrunk.parameters()))
    for model, optimizer in ((net, opt), (shrunk, shrunk_opt)):
        optimizer.zero_grad()
        _loss(model(x), targets).backward()
        optimizer.step()
    for name, index in dead:  # the masked net's dead units stay dead
        zero_gates(net, name, index)
    shrunk_params = dict(shrunk.named_parameters())
    for name, p in net.named_parameters():  # untouched tensors stepped identically
        if name in shrunk_params and shrunk_params[name].shape == p.shape:
            torch.testing.assert_close(shrunk_params[name], p, atol=1e-10, rtol=1e-10)
    blk, small = dict(net.named_blocks())["stages.2.parallel.1.0"], dict(shrunk.named_blocks())["stages.2.parallel.1.0"]
    keep = [i for i in range(16) if i not in (0, 5, 9)]
    torch.testing.assert_close(small.paths[0].expand.weight, blk.paths[0].expand.weight[keep], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(small.paths[0].project.weight, blk.paths[0].project.weight[:, keep], atol=1e-10, rtol=1e-10)
    # training-mode outputs (the BN removes the dead units' constants) agree after the step
    for a, b in zip(copy.deepcopy(net)(x), copy.deepcopy(shrunk)(x)):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


def test_token_removal_reduces_flops_by_the_predicted_amount():
    net = tiny_net(transformer_blocks=["stages.4.parallel.*"], tokens=6)
    slimmer = build_slimmer(slim_cfg(), net)
    before = flops(net)
    assert slimmer.flops == before
    t2 = dict(net.named_blocks())["stages.4.parallel.2.0"].transformer
    t3 = dict(net.named_blocks())["stages.4.parallel.3.0"].transformer
    zero_gates(net, "stages.4.parallel.2.0", {"tokens": [0, 4]})
    zero_gates(net, "stages.4.parallel.3.0", {"tokens": [1, 2, 5]})
    predicted = t2.flops(6) - t2.flops(4) + t3.flops(6) - t3.flops(3)
    assert predicted > 0 and before - slimmer.projected_flops() == predicted
    stats = slimmer.shrink()
    assert before - flops(net) == predicted
    assert stats["tokens"]["stages.4.parallel.2.0.transformer"] == 4
    assert stats["tokens"]["stages.4.parallel.3.0.transformer"] == 3
    # per-token penalty weight = its FLOPs incl. the attention share, relative to the mean unit
    group = next(g for g in slimmer.groups if g.name == "stages.4.parallel.3.0.transformer")
    weight = slimmer.weights[slimmer.groups.index(group)]
    assert weight == pytest.approx(t3.flops(3) / 3 / slimmer.norm)


def test_dropped_path_skip_block_and_dead_branch():
    net = tiny_net(transformer_blocks=["stages.4.parallel.3.*"], tokens=3)
    slimmer = build_slimmer(slim_cfg(), net)
    zero_gates(net, "stages.1.parallel.0.0", {1: list(range(8))})  # the 5x5 path dies
    zero_gates(net, "stages.2.parallel.1.0")  # every path dies: the block becomes its skip
    branch3 = [n for n, _ in net.named_blocks() if "parallel.3." in n or n.endswith("_3") or "edges.3_" in n]
    assert len(branch3) == 6  # its creation edge, edges 2_3, 3_3, 3_2 of the last stage, two parallel blocks
    for name in branch3:
        zero_gates(net, name)
    x = torch.randn(2, 3, 64, 48)
    masked = net.eval()(x)
    stats = slimmer.shrink()
    assert stats["branches_removed"] == ["3"]
    assert "stages.4.fuse.edges.3_2" in stats["edges_removed"]
    g = json.loads(json.dumps(net.genotype().to_dict()))
    assert g["blocks"]["stages.1.parallel.0.0"]["kernels"] == [3, 7]
    assert g["blocks"]["stages.2.parallel.1.0"]["kernels"] == [] and g["branches"] == [True, True, True, False]
    assert not any(n in g["blocks"] for n in branch3)
    out = net.eval()(x)
    assert [o.shape for o in out] == [o.shape for o in masked]
    for a, b in zip(out, masked):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    rebuilt = HRSupernet.from_genotype(parse_hr_supernet(g))
    rebuilt.load_state_dict(net.state_dict())
    for a, b in zip(rebuilt.eval()(x), out):
        torch.testing.assert_close(a, b)
    assert flops(rebuilt) == flops(net) == slimmer.flops
    net.train()(x)[0].sum().backward()  # still trains


@pytest.mark.slow
def test_flops_target_run_ends_near_the_target():
    cfg = slim_cfg(TARGET_FLOPS=0.6, RHO=1e-3, RHO_GAIN=0.3, THRESHOLD=1e-2, INTERVAL=1)
    cfg.MODEL.NAME, cfg.MODEL.HR.GATE_INIT = "hr_dense", 0.1
    torch.manual_seed(0)
    model = build_model(cfg)
    slimmer = build_slimmer(cfg, model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(4, 3, 64, 48), torch.rand(4, 3, 16, 12)
    rhos = []
    for step in range(40):
        rhos.append(slimmer.update_rho(step / 10))
        loss = F.mse_loss(model(x), y) + slimmer.penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert max(rhos) > 5 * cfg.SLIM.RHO  # rho rose while the projection was above the target ...
    assert rhos[-1] < max(rhos) / 2  # ... and fell once it was below
    stats = slimmer.maybe_shrink(cfg.TRAIN.EPOCHS - 1, opt)
    measured = flops(model)
    assert stats["flops"] == measured
    assert abs(measured - slimmer.target) <= 0.1 * slimmer.target
    opt.zero_grad()
    F.mse_loss(model.train()(x), y).backward()
    opt.step()  # the remapped optimizer steps the shrunk model


def test_penalty_rho_schedule_and_method_switch():
    net = tiny_net()
    cfg = slim_cfg(WARMUP_EPOCHS=4.0, RHO=1e-3)
    slimmer = build_slimmer(cfg, net)
    assert slimmer.update_rho(0.0) == 0.0 and slimmer.penalty().item() == 0.0
    assert slimmer.update_rho(1.0) == pytest.approx(2.5e-4)
    assert slimmer.update_rho(9.0) == pytest.approx(1e-3)
    expected = sum(w * g.gate.abs().sum() for w, g in zip(slimmer.weights, slimmer.groups)) * 1e-3
    torch.testing.assert_close(slimmer.penalty(), expected)
    # per-channel cost grows with resolution and kernel size
    w = {g.name: wt for g, wt in zip(slimmer.groups, slimmer.weights)}
    assert w["stages.4.parallel.0.0.paths.2"] > w["stages.4.parallel.0.0.paths.0"] > w["stages.4.parallel.3.0.paths.0"]
    assert slimmer.maybe_shrink(0) is None  # INTERVAL 2, nothing below threshold either
    cfg.SLIM.METHOD = "none"
    assert build_slimmer(cfg, net) is None
    cfg.SLIM.METHOD = "magic"
    with pytest.raises(ValueError, match="SLIM.METHOD"):
        build_slimmer(cfg, net)
