"""Part-specific CNF model: body parts, heads, backbones, arch parameters, checkpoints, FLOPs, configs."""
from pathlib import Path

import pytest
import torch

from src.config.defaults import get_default_config
from src.config.loader import load_config
from src.network_factory.backbones import build_backbone
from src.network_factory.body_parts import COCO_JOINTS, MPII_JOINTS, body_parts
from src.network_factory.heads import build_head
from src.network_factory.part_cnf import build_part_cnf, default_part_spec
from src.network_factory.registry import build_model
from src.utils.flops import complexity_table, count_flops, count_params, model_complexity

ROOT = Path(__file__).resolve().parents[1]
SHARED = {"shoulder", "elbow", "knee"}


def tiny_cfg(**opts):
    cfg = get_default_config()
    base = {"MODEL.NAME": "part_cnf", "MODEL.BACKBONE": "mobilenet_v2", "MODEL.BACKBONE_WIDTH_MULT": 0.25,
            "MODEL.FABRIC.FACTOR": 2, "MODEL.FABRIC.BACKBONE_FACTOR": 2, "MODEL.INPUT_SIZE": [48, 64]}
    base.update(opts)
    cfg.merge_from_list([x for kv in base.items() for x in kv])
    return cfg


def image(batch=2):
    torch.manual_seed(0)
    return torch.randn(batch, 3, 64, 48)


@pytest.mark.parametrize("num_joints, names", [(17, COCO_JOINTS), (16, MPII_JOINTS)])
@pytest.mark.parametrize("num_parts", [1, 3, 5, 8])
def test_body_parts_cover_every_joint(num_joints, names, num_parts):
    parts = body_parts(num_joints, num_parts)
    assert len(parts) == num_parts
    count = torch.bincount(torch.tensor([j for _, js in parts for j in js]), minlength=num_joints)
    assert (count >= 1).all() and len(count) == num_joints
    if num_parts < 8:  # a partition
        assert (count == 1).all()
    else:  # shoulders, elbows and knees are shared by two parts
        assert [names[j] for j in torch.nonzero(count == 2).flatten()] == \
            [n for n in names if n.split("_")[-1] in SHARED]
        assert (count <= 2).all()


def test_mpii_parts_use_the_native_mpii_order():
    head, upper, lower = body_parts(16, 3)
    assert head == ("head", [9, 8, 7]) and sorted(upper[1]) == [10, 11, 12, 13, 14, 15]
    assert sorted(lower[1]) == [0, 1, 2, 3, 4, 5, 6]
    assert dict(body_parts(16, 5))["hips"] == [6, 3, 2]  # pelvis, l_hip, r_hip
    with pytest.raises(ValueError, match="MODEL.PARTS.NUM must be 1, 3, 5 or 8"):
        body_parts(17, 4)
    with pytest.raises(ValueError, match="17 \\(COCO\\) or 16 \\(MPII\\)"):
        body_parts(14, 3)
    assert body_parts(14, 1) == [("all", list(range(14)))]


@pytest.mark.parametrize("num_parts", [5, 8])
def test_parts_write_their_joints_and_shared_joints_are_averaged(num_parts):
    model = build_model(tiny_cfg(**{"MODEL.PARTS.NUM": num_parts}))
    for i, part in enumerate(model.parts):  # part i predicts the constant i + 1 for each of its joints
        k = len(model.part_joints[i])
        part.forward = lambda feats, k=k, v=float(i + 1): feats[0].new_full((feats[0].shape[0], k, 16, 12), v)
    out = model(image())
    expected = torch.zeros(17)
    count = torch.zeros(17)
    for i, joints in enumerate(model.part_joints):
        expected[joints] += i + 1
        count[joints] += 1
    expected /= count
    assert out.shape == (2, 17, 16, 12)
    torch.testing.assert_close(out[0, :, 0, 0], expected)
    if num_parts == 8:  # e.g. the left shoulder (5): head_shoulder (1) and l_upper_arm (2) -> 1.5
        assert out[0, 5, 0, 0].item() == pytest.approx(1.5)


@pytest.mark.parametrize("mode", ["2D", "3D"])
def test_vector_in_pixel_heads_output_in_unit_interval(mode):
    torch.manual_seed(0)
    head = build_head(8, 5, vector_in_pixel=True, vector_dim=4, mode=mode)
    out = head(3 * torch.randn(2, 8, 16, 12))
    assert out.shape == (2, 5, 16, 12)
    assert out.min() >= 0 and out.max() < 1 and out.max() > 0.5
    assert build_head(8, 5)(torch.randn(2, 8, 4, 4)).shape == (2, 5, 4, 4)
    with pytest.raises(ValueError, match="CONVOLUTION_MODE"):
        build_head(8, 5, True, 4, "4D")


def test_model_heatmaps_of_a_vector_head_lie_in_unit_interval():
    out = build_model(tiny_cfg(**{"MODEL.PARTS.CONVOLUTION_MODE": "3D", "MODEL.PARTS.NUM": 8}))(image())
    assert out.shape == (2, 17, 16, 12) and out.min() >= 0 and out.max() < 1


def test_one_shot_alpha_per_cnf_versus_alpha_per_cell():
    shapes = {n: tuple(p.shape) for n, p in build_model(tiny_cfg()).named_arch_parameters() if n.endswith("alpha")}
    assert shapes == {f"parts.{i}.fabric.alpha": (1, 4) for i in range(3)}
    model = build_model(tiny_cfg(**{"MODEL.FABRIC.ONE_SHOT_SEARCH": False}))
    shapes = {n: tuple(p.shape) for n, p in model.named_arch_parameters() if n.endswith("alpha")}
    cells = ["L3_S0", "L3_S1", "L3_S2", "L4_S0", "L4_S1", "L5_S0"]
    assert shapes == {f"parts.{i}.fabric.cells.{c}.alpha": (1, 4) for i in range(3) for c in cells}
    assert "edge" in model.arch_table()


def test_arch_and_weight_parameters_are_disjoint_and_cover_the_model():
    model = build_model(tiny_cfg(**{"MODEL.BACKBONE": "fabric"}))
    arch, weights = {id(p) for p in model.arch_parameters()}, {id(p) for p in model.weight_parameters()}
    assert arch and not arch & weights and arch | weights == {id(p) for p in model.parameters()}
    names = [n for n, _ in model.named_arch_parameters()]
    assert "backbone.fabric.alpha" in names and "parts.0.fabric.cells.L3_S1.beta" in names
    assert all(n.rsplit(".", 1)[-1] in ("alpha", "beta") for n in names)
    table = model.arch_table()
    assert table.startswith("backbone") and "part 2 lower_limb" in table and "L5_S0" in table


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50", "mobilenet_v2", "hrnet_w32", "fabric"])
def test_every_parameter_gets_a_gradient(backbone):
    mult = 1.0 if backbone.startswith("resnet") else 0.25
    model = build_model(tiny_cfg(**{"MODEL.BACKBONE": backbone, "MODEL.BACKBONE_WIDTH_MULT": mult,
                                    "MODEL.FABRIC.INPUT_NODES_NUM": 2, "MODEL.FABRIC.HIDDEN_STATES_NUM": 2}))
    out = model(image())
    assert out.shape == (2, 17, 16, 12)
    out.pow(2).mean().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    assert all(p.grad.abs().sum() > 0 for p in model.arch_parameters())


def test_plain_fabric_model_uses_every_parameter():
    model = build_model(tiny_cfg(**{"MODEL.NAME": "fabric", "MODEL.FABRIC.FACTOR": 2}))
    assert len(model.parts[0].fabric.cells) == 15  # layers 0..5 of a depth-6 triangle: 2+3+4+3+2+1
    model(image()).pow(2).mean().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_backbones_return_four_maps_at_strides_4_to_32():
    for name in ("mobilenet_v2", "hrnet_w32", "fabric"):
        backbone = build_backbone(tiny_cfg(**{"MODEL.BACKBONE": name}))
        outs = backbone(image(1))
        assert [tuple(o.shape[1:]) for o in outs] == [(c,) + hw for c, hw in
                                                       zip(backbone.out_channels, [(16, 12), (8, 6), (4, 3), (2, 2)])]
    with pytest.raises(ValueError, match="BACKBONE_WIDTH_MULT is not supported by resnet18"):
        build_backbone(tiny_cfg(**{"MODEL.BACKBONE": "resnet18"}))
    with pytest.raises(ValueError, match="unknown MODEL.BACKBONE 'vgg'"):
        build_backbone(tiny_cfg(**{"MODEL.BACKBONE": "vgg"}))


def test_pretrained_backbone_loads_non_strictly_and_bad_files_are_refused(tmp_path):
    source = build_backbone(tiny_cfg(**{"MODEL.BACKBONE": "hrnet_w32"}))
    state = {"module." + k: v for k, v in source.state_dict().items()}
    state["module.stage4.0.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "hr.pth")
    loaded = build_backbone(tiny_cfg(**{"MODEL.BACKBONE": "hrnet_w32", "MODEL.PRETRAINED": str(tmp_path / "hr.pth")}))
    got = loaded.state_dict()
    assert all(torch.equal(got[k], v) for k, v in source.state_dict().items())
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_backbone(tiny_cfg(**{"MODEL.PRETRAINED": str(tmp_path / "missing.pth")}))
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="not a state dict"):
        build_backbone(tiny_cfg(**{"MODEL.PRETRAINED": str(tmp_path / "list.pth")}))


def test_state_dict_round_trip_carries_alpha_and_beta(tmp_path):
    torch.manual_seed(1)
    model = build_model(tiny_cfg(**{"MODEL.FABRIC.ONE_SHOT_SEARCH": False})).eval()
    with torch.no_grad():
        for p in model.arch_parameters():
            p.normal_()
    torch.save(model.state_dict(), tmp_path / "m.pth")
    other = build_model(tiny_cfg(**{"MODEL.FABRIC.ONE_SHOT_SEARCH": False})).eval()
    other.load_state_dict(torch.load(tmp_path / "m.pth", map_location="cpu", weights_only=True))
    for (n, p), (m, q) in zip(model.named_arch_parameters(), other.named_arch_parameters()):
        assert n == m and torch.equal(p, q)
    assert model.arch_state() == other.arch_state()
    torch.testing.assert_close(model(image()), other(image()))


def test_derived_model_from_explicit_specs_has_no_arch_parameters():
    cfg = tiny_cfg(**{"MODEL.PARTS.NUM": 1})
    spec = default_part_spec(cfg, 4)
    for cell in spec.cells:
        cell.edges = {0: ["sep_conv_3x3"]}
    model = build_part_cnf(cfg, specs=[spec], searchable=False)
    assert model.arch_parameters() == [] and model(image()).shape == (2, 17, 16, 12)
    with pytest.raises(ValueError, match="HEATMAP_STRIDE must be 4"):
        build_model(tiny_cfg(**{"MODEL.HEATMAP_STRIDE": 2}))


def test_flops_and_params_of_the_model_and_each_part():
    model = build_model(tiny_cfg(**{"MODEL.PARTS.NUM": 5}))
    rows = model_complexity(model, (1, 3, 64, 48), model.complexity_groups())
    whole, backbone, parts = rows[0], rows[1], rows[2:]
    assert [r["name"] for r in rows] == ["model", "backbone", "part 0 head_shoulder", "part 1 l_arm",
                                         "part 2 r_arm", "part 3 hips", "part 4 legs"]
    assert whole["flops"] == count_flops(model, (1, 3, 64, 48)) > 0
    assert all(r["flops"] > 0 and r["params"] > 0 and r["macs"] == r["flops"] // 2 for r in rows)
    assert backbone["flops"] + sum(r["flops"] for r in parts) <= whole["flops"]
    assert backbone["params"] + sum(r["params"] for r in parts) == whole["params"] == count_params(model)
    assert model.training and "part 4 legs" in complexity_table(rows)


@pytest.mark.parametrize("name, params", [("coco/resnet50_cnf3_256x192", 32804161),
                                          ("coco/mobilenetv2_cnf3_384x288", 3674302),
                                          ("coco/hrnet_w32_cnf5_384x288", 12648935),
                                          ("mpii/hrnet_w32_cnf5_256x256", 12641135)])
def test_published_style_configs_build(name, params):
    cfg = load_config(str(ROOT / "configs" / f"{name}.yaml"))
    model = build_model(cfg)
    assert count_params(model) == params
    assert all(len(part.fabric.cells) == 6 for part in model.parts)
