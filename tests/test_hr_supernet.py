"""HR-NAS search space: supernet structure, transformer, genotype round trip, dense model, backbone hook."""
import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from src.architecture.genotype.genotype import genotype_of, parse_genotype
from src.architecture.hr.inverted_residual import InvertedResidual
from src.architecture.hr.spec import parse_hr_supernet
from src.architecture.hr.supernet import HRSupernet
from src.architecture.hr.transformer import TokenTransformer
from src.config.defaults import get_default_config
from src.network_factory.backbones import build_backbone
from src.network_factory.from_genotype import run_fields
from src.network_factory.registry import build_model

TINY = dict(stem_channels=4, widths=[4, 8, 12, 16], stage_blocks=[[1], [1, 1], [1, 1, 2], [1, 1, 1, 1], [1, 1, 1, 1]],
            expand_ratio=2.0, grid=4)


def tiny_cfg(**hr):
    cfg = get_default_config()
    cfg.MODEL.INPUT_SIZE = [48, 64]
    cfg.MODEL.NUM_JOINTS = 3
    cfg.MODEL.HR.STEM_CHANNELS, cfg.MODEL.HR.WIDTHS = 4, [4, 8, 12, 16]
    cfg.MODEL.HR.STAGE_BLOCKS = [[1], [1, 1], [1, 1, 1], [1, 1, 1, 1]]
    cfg.MODEL.HR.EXPAND_RATIO, cfg.MODEL.HR.HEAD_EXPAND_RATIO, cfg.MODEL.HR.LAST_CHANNEL = 2.0, 1.0, 8
    cfg.MODEL.HR.TRANSFORMER_GRID = 4
    for k, v in hr.items():
        cfg.MODEL.HR[k] = v
    return cfg


def test_supernet_branches_widths_and_blocks():
    net = HRSupernet(**TINY).eval()
    outs = net(torch.randn(2, 3, 64, 48))
    assert [tuple(o.shape) for o in outs] == [(2, 4, 16, 12), (2, 8, 8, 6), (2, 12, 4, 3), (2, 16, 2, 2)]
    assert net.out_channels == [4, 8, 12, 16]
    names = [n for n, _ in net.named_blocks()]
    # fuse edges: 1 + (1 + new) + (4 + new) + (7 + new) + 10 = 26; parallel: 1 + 2 + 4 + 4 + 4 = 15
    assert len(names) == 26 + 15
    assert "stages.3.fuse.edges.2_3" in names and "stages.4.fuse.edges.3_2" in names
    assert "stages.4.fuse.edges.0_2" not in names  # only neighbouring branches are fused
    edge = dict(net.named_blocks())["stages.4.fuse.edges.1_2"]
    assert (edge.stride, edge.skip_kind, [p.kernel_size for p in edge.paths]) == (2, "none", [3, 5, 7])
    assert [p.hidden for p in edge.paths] == [16, 16, 16]  # expand 2 x input width 8, one width per path
    assert dict(net.named_blocks())["stages.4.parallel.3.0"].skip_kind == "identity"


def test_gates_are_depthwise_bn_scales_and_token_gates():
    net = HRSupernet(**TINY, transformer_blocks=["stages.4.parallel.*"], tokens=5)
    gates = dict(net.named_gates())
    assert "stages.0.parallel.0.0.paths.2.dw_bn.weight" in gates
    assert sum(1 for n in gates if n.endswith("transformer.gate")) == 4
    assert all(g.shape == (5,) for n, g in gates.items() if n.endswith("transformer.gate"))
    small = HRSupernet(**TINY, transformer_blocks=["stages.4.parallel.*"], tokens=5, gate_init=0.1)
    assert all(torch.all(g == 0.1) for _, g in small.named_gates())


def test_transformer_pattern_that_matches_nothing_is_refused():
    with pytest.raises(ValueError, match="stages.9"):
        HRSupernet(**TINY, transformer_blocks=["stages.9.*"])


def test_transformer_shapes_and_flops_formula():
    t = TokenTransformer(6, 10, tokens=7, grid=4).eval()
    y = t(torch.randn(1, 6, 13, 9), (7, 5))
    assert y.shape == (1, 10, 7, 5)
    with FlopCounterMode(display=False) as counter:
        t(torch.randn(1, 6, 13, 9), (7, 5))
    assert counter.get_total_flops() == t.flops(7)


def test_block_output_sizes_for_strides_and_skips():
    x = torch.randn(2, 6, 9, 7)
    for stride, skip, oup in ((1, "identity", 6), (2, "none", 10), (2, "conv", 4)):
        blk = InvertedResidual(6, oup, stride, [3, 5], [4, 3], skip, tokens=2, grid=4)
        assert blk(x).shape == (2, oup, -(-9 // stride), -(-7 // stride))
    with pytest.raises(ValueError, match="identity skip"):
        InvertedResidual(6, 8, 1, [3], [4], "identity")


def test_genotype_round_trip_rebuilds_the_same_network():
    net = HRSupernet(**TINY, transformer_blocks=["stages.4.parallel.3.*"], tokens=3)
    g = json.loads(json.dumps(net.genotype().to_dict()))
    assert g["blocks"]["stages.4.parallel.3.0"]["tokens"] == 3
    assert g["blocks"]["stages.2.parallel.2.1"] == {"in": 12, "out": 12, "stride": 1, "skip": "identity",
                                                   "kernels": [3, 5, 7], "channels": [24, 24, 24], "tokens": 0}
    rebuilt = HRSupernet.from_genotype(parse_hr_supernet(g))
    rebuilt.load_state_dict(net.state_dict())
    x = torch.randn(1, 3, 64, 48)
    for a, b in zip(net.eval()(x), rebuilt.eval()(x)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("edit, message", [
    (lambda g: g.update(format="other"), "'format'"),
    (lambda g: g["blocks"]["stages.1.parallel.0.0"].update(out=5),
     r"'blocks\.stages\.1\.parallel\.0\.0\.out': must be 4 \(the network's\), got 5"),
    (lambda g: g["blocks"]["stages.1.parallel.0.0"].update(kernels=[3, 4, 7]),
     r"'blocks\.stages\.1\.parallel\.0\.0\.kernels': must hold odd sizes"),
    (lambda g: g["blocks"]["stages.1.parallel.0.0"].pop("channels"),
     r"'blocks\.stages\.1\.parallel\.0\.0\.channels': missing"),
    (lambda g: g["blocks"].pop("stages.1.parallel.0.0"), r"'blocks\.stages\.1\.parallel\.0\.0': missing"),
    (lambda g: g["blocks"].update({"stages.7.parallel.0.0": g["blocks"]["stages.1.parallel.0.0"]}), "stages.7"),
    (lambda g: g.update(branches=[True, False, True, True]), "'branches'"),
])
def test_bad_genotype_is_refused_naming_the_field(edit, message):
    g = json.loads(json.dumps(HRSupernet(**TINY).genotype().to_dict()))
    edit(g)
    with pytest.raises(ValueError, match=message):
        HRSupernet.from_genotype(parse_hr_supernet(g))


def test_hr_dense_runs_forward_backward_and_round_trips():
    cfg = tiny_cfg()
    cfg.MODEL.NAME = "hr_dense"
    model = build_model(cfg)
    x = torch.randn(2, 3, 64, 48)
    out = model(x)
    assert out.shape == (2, 3, 16, 12)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.weight_parameters())
    assert model.arch_parameters() == []
    g = json.loads(json.dumps(genotype_of(run_fields(cfg), model).to_dict()))
    rebuilt = type(model).from_genotype(parse_genotype(g))
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x))


def test_hr_supernet_is_a_backbone_of_four_maps():
    cfg = tiny_cfg()
    cfg.MODEL.BACKBONE = "hr_supernet"
    cfg.MODEL.BACKBONE_WIDTH_MULT = 2.0
    import src.network_factory.models  # noqa: F401  (registers the hr_supernet backbone)
    net = build_backbone(cfg)
    outs = net(torch.randn(1, 3, 64, 48))
    assert net.out_channels == [8, 16, 24, 32] == [o.shape[1] for o in outs]
    assert [o.shape[-1] for o in outs] == [12, 6, 3, 2]
    cfg.MODEL.HR.STAGE_BLOCKS = [[1], [1, 1]]
    with pytest.raises(ValueError, match="4 branches"):
        build_backbone(cfg)
