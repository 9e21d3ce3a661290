"""HRT as a block type of the HR supernet: placement, FFN channel gates, exact shrinking, genotype round trip."""
import copy
import json

import pytest
import torch

from src.architecture.hr.hrt_block import HRTBlock, default_num_heads
from src.architecture.hr.spec import parse_hr_supernet
from src.architecture.hr.supernet import HRSupernet
from src.network_factory.registry import build_model
from src.search.slimming import build_slimmer
from src.utils.flops import count_flops, count_params
from tests.test_hr_supernet import tiny_cfg
from tests.test_slimming import STAGES, randomize_bn, slim_cfg

HRT = ["stages.4.parallel.0.*", "stages.4.parallel.2.*"]


def hrt_net(**kw):
    torch.manual_seed(0)
    net = HRSupernet(4, [4, 8, 12, 16], STAGES, expand_ratio=2.0, grid=4, hrt_blocks=HRT, hrt_window=3, **kw)
    randomize_bn(net)
    return net


def flops(model):
    return count_flops(model, (1, 3, 64, 48))


def ffn_gate(net, name):
    return dict(net.named_blocks())[name].hrt.ffn.net[4].weight


def test_hrt_blocks_placed_on_matching_parallel_blocks_and_train():
    net = hrt_net()
    blocks = dict(net.named_blocks())
    with_hrt = sorted(n for n, b in blocks.items() if b.hrt is not None)
    assert with_hrt == ["stages.4.parallel.0.0", "stages.4.parallel.2.0"]
    hrt = blocks["stages.4.parallel.2.0"].hrt
    assert hrt.spec() == {"heads": default_num_heads(12), "window": 3, "ffn": 48}  # FFN = 4 x width
    assert not blocks["stages.4.parallel.2.0"].inert
    x = torch.randn(2, 3, 64, 48)
    outs = net.train()(x)
    assert [tuple(o.shape) for o in outs] == [(2, 4, 16, 12), (2, 8, 8, 6), (2, 12, 4, 3), (2, 16, 2, 2)]
    sum(o.square().mean() for o in outs).backward()
    for p in (hrt.attn.qkv.weight, hrt.attn.relative_position_bias_table, hrt.ffn.net[0].weight, hrt.ffn.net[4].weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    # from the config: MODEL.HR.HRT_BLOCKS, window MODEL.HRT.WINDOW_SIZE, FFN MODEL.HRT.MLP_RATIO x width
    cfg = tiny_cfg(HRT_BLOCKS=["stages.3.parallel.3.*"])
    cfg.MODEL.NAME, cfg.MODEL.HRT.WINDOW_SIZE, cfg.MODEL.HRT.MLP_RATIO = "hr_dense", 5, 2.0
    model = build_model(cfg)
    assert dict(model.backbone.named_blocks())["stages.3.parallel.3.0"].hrt.spec() == {"heads": 1, "window": 5,
                                                                                       "ffn": 32}
    model(torch.randn(2, 3, 64, 48)).mean().backward()


def test_slimmer_finds_ffn_channel_gates_with_their_flops_cost():
    net = hrt_net()
    slimmer = build_slimmer(slim_cfg(), net)
    groups = {g.name: g for g in slimmer.groups}
    group = groups["stages.4.parallel.2.0.hrt.ffn"]
    assert group.kind == "channel" and group.gate is ffn_gate(net, "stages.4.parallel.2.0") and group.size == 48
    assert sum(1 for n in groups if n.endswith("hrt.ffn")) == 2
    # per channel: 1x1 12->1, dw 3x3, 1x1 1->12 on the 4x3 map of branch 2, 2 FLOPs per MAC
    assert group.cost(1) == 2 * (12 + 9 + 12) * 4 * 3
    weight = slimmer.weights[slimmer.groups.index(group)]
    assert weight == pytest.approx(group.cost(1) / slimmer.norm)
    slimmer.update_rho(1.0)
    slimmer.penalty().backward()
    assert torch.all(group.gate > 0)  # so d|g|/dg = 1
    torch.testing.assert_close(group.gate.grad, torch.full((48,), slimmer.rho * weight))


def test_half_dead_ffn_shrinks_exactly_with_fewer_params_and_flops():
    net = hrt_net()
    name = "stages.4.parallel.2.0"
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.randn(2, 3, 64, 48)
    sum(o.square().mean() for o in net.train()(x)).backward()
    opt.step()
    slimmer = build_slimmer(slim_cfg(), net)
    dead = torch.arange(0, 48, 2)
    with torch.no_grad():
        ffn_gate(net, name)[dead] = 0
    masked_eval = net.eval()(x)
    masked_train = copy.deepcopy(net).train()(x)
    params, before = count_params(net), flops(net)
    expand = dict(net.named_blocks())[name].hrt.ffn.net[0]
    kept = torch.arange(1, 48, 2)
    moment, old_weight, old_bias = opt.state[expand.weight]["exp_avg"][kept], expand.weight[kept], expand.bias[kept]
    predicted = slimmer.projected_flops()
    stats = slimmer.shrink(opt)
    hrt = dict(net.named_blocks())[name].hrt
    assert stats["channel_units_removed"] == 24 and hrt.spec()["ffn"] == 24
    assert hrt.ffn.net[3].weight.shape == (24, 1, 3, 3) and hrt.ffn.net[6].weight.shape == (12, 24, 1, 1)
    for a, b in zip(net.eval()(x), masked_eval):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for a, b in zip(copy.deepcopy(net).train()(x), masked_train):  # training-mode BN removes the constants too
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert count_params(net) < params and flops(net) == predicted == stats["flops"] < before
    assert before - flops(net) == 24 * 2 * (12 + 9 + 12) * 4 * 3
    # the optimizer follows the sliced parameters (weights, biases and Adam moments)
    expand = hrt.ffn.net[0]
    torch.testing.assert_close(expand.weight, old_weight)
    torch.testing.assert_close(expand.bias, old_bias)
    torch.testing.assert_close(opt.state[expand.weight]["exp_avg"], moment)
    assert len(opt.param_groups[0]["params"]) == len(list(net.parameters()))
    opt.zero_grad()
    sum(o.square().mean() for o in net.train()(x)).backward()
    opt.step()


def test_dead_ffn_disappears_attention_stays_and_genotype_rebuilds_it():
    net = hrt_net()
    with torch.no_grad():
        ffn_gate(net, "stages.4.parallel.0.0").zero_()
        ffn_gate(net, "stages.4.parallel.2.0")[:12] = 0
    x = torch.randn(1, 3, 64, 48)
    masked = net.eval()(x)
    params = count_params(net)
    build_slimmer(slim_cfg(), net).shrink()
    block = dict(net.named_blocks())["stages.4.parallel.0.0"]
    assert block.hrt is not None and block.hrt.ffn is None and block.hrt.norm2 is None and not block.inert
    assert block.hrt.folded_bias.abs().sum() > 0
    assert count_params(net) < params
    out = net.eval()(x)
    for a, b in zip(out, masked):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    g = json.loads(json.dumps(net.genotype().to_dict()))
    assert g["blocks"]["stages.4.parallel.0.0"]["hrt"] == {"heads": 1, "window": 3, "ffn": 0}
    assert g["blocks"]["stages.4.parallel.2.0"]["hrt"] == {"heads": 1, "window": 3, "ffn": 36}
    assert "hrt" not in g["blocks"]["stages.4.parallel.1.0"]
    rebuilt = HRSupernet.from_genotype(parse_hr_supernet(g))
    rebuilt.load_state_dict(net.state_dict())
    for a, b in zip(rebuilt.eval()(x), out):
        torch.testing.assert_close(a, b)
    assert flops(rebuilt) == flops(net)
    # heads and window come from the genotype
    g["blocks"]["stages.4.parallel.2.0"]["hrt"].update(heads=2, window=5)
    attn = dict(HRSupernet.from_genotype(parse_hr_supernet(g)).named_blocks())["stages.4.parallel.2.0"].hrt.attn
    assert (attn.num_heads, attn.window_size) == (2, 5)


def test_hrt_block_without_ffn_is_backwards_compatible():
    keys = set(HRTBlock(8, 2, 3).state_dict())
    assert "ffn.net.4.weight" in keys and "norm2.weight" in keys
    assert set(HRTBlock(8, 2, 3, mlp_ratio=2.0, ffn_hidden=5).state_dict()) == keys
    assert HRTBlock(8, 2, 3, ffn_hidden=5).ffn.net[4].num_features == 5
    bare = HRTBlock(8, 2, 3, ffn_hidden=0).eval()
    assert bare.ffn is None and not any(k.startswith(("ffn", "norm2")) for k in bare.state_dict())
    x = torch.randn(2, 8, 5, 4)
    expected = x + bare.attn(bare.norm1(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
    torch.testing.assert_close(bare(x), expected)


@pytest.mark.parametrize("patterns, message", [
    (["stages.9.parallel.*"], "HRT block pattern 'stages.9.parallel.\\*' matches no block"),
    (["stages.4.*"], "'stages.4.\\*' matches fusion block 'stages.4.fuse.edges.0_0'"),
    (["*edges.1_2"], "matches fusion block 'stages.2.fuse.edges.1_2'"),
])
def test_bad_hrt_pattern_is_refused(patterns, message):
    with pytest.raises(ValueError, match=message):
        HRSupernet(4, [4, 8, 12, 16], STAGES, expand_ratio=2.0, grid=4, hrt_blocks=patterns)


@pytest.mark.parametrize("edit, message", [
    (lambda b: b["stages.4.parallel.2.0"].update(hrt={"heads": 1, "window": 3}),
     r"'blocks\.stages\.4\.parallel\.2\.0\.hrt\.ffn': missing"),
    (lambda b: b["stages.4.parallel.2.0"]["hrt"].update(ffn=-1),
     r"'blocks\.stages\.4\.parallel\.2\.0\.hrt\.ffn': must be in"),
    (lambda b: b["stages.4.parallel.2.0"]["hrt"].update(heads=5), "divisible"),
    (lambda b: b["stages.4.fuse.edges.2_2"].update(hrt={"heads": 1, "window": 3, "ffn": 4}),
     "stages.4.fuse.edges.2_2.*only allowed on parallel"),
    (lambda b: b["stages.4.fuse.edges.1_2"].update(hrt={"heads": 1, "window": 3, "ffn": 4}), "stride 1"),
])
def test_bad_hrt_genotype_is_refused_naming_the_field(edit, message):
    g = json.loads(json.dumps(hrt_net().genotype().to_dict()))
    edit(g["blocks"])
    with pytest.raises(ValueError, match=message):
        HRSupernet.from_genotype(parse_hr_supernet(g))
