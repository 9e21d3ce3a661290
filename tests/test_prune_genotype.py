"""Prune (derive the searched architecture), the genotype JSON, and rebuilding / inheriting from it."""
import copy
import dataclasses
import json

import pytest
import torch

from src.architecture.fabric.cell import CellSpec
from src.architecture.fabric.spec import FabricSpec
from src.architecture.genotype.genotype import genotype_of, load_genotype, parse_genotype, save_genotype
from src.architecture.genotype.prune import Prune, prune_report
from src.config.defaults import get_default_config
from src.config.loader import save_config
from src.engine.search_outputs import derive
from src.network_factory.from_genotype import (build_from_genotype, build_from_genotype_file, inherit_weights,
                                              run_fields)
from src.network_factory.registry import build_model
from src.utils.flops import count_flops, count_params

KEEP_ALL = dict(ops_topk=8, beta_threshold=0.0, beta_topk=3)  # every non-zero op / every input


def tiny_cfg(**opts):
    cfg = get_default_config()
    base = {"MODEL.NAME": "part_cnf", "MODEL.BACKBONE": "mobilenet_v2", "MODEL.BACKBONE_WIDTH_MULT": 0.25,
            "MODEL.FABRIC.FACTOR": 2, "MODEL.FABRIC.BACKBONE_FACTOR": 2, "MODEL.INPUT_SIZE": [48, 64],
            "MODEL.PARTS.NUM": 3, "SEARCH.STRATEGY": "first_order_gradient"}
    base.update(opts)
    cfg.merge_from_list([x for kv in base.items() for x in kv])
    return cfg


def searched(cfg, seed=0):
    """The supernet of `cfg` with random weights and random (non-uniform) arch values, in eval mode."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.arch_parameters():
            p.normal_(0, 1.5)
    return model.eval()


def image():
    torch.manual_seed(1)
    return torch.randn(2, 3, 64, 48)


def quiet(_msg):
    pass


def prune(model, cfg, **settings):
    """Prune with the run fields and search strategy of `cfg`, as src/engine/search_outputs.derive does."""
    return Prune(model, run_fields(cfg), cfg.SEARCH.STRATEGY, **settings)


VARIANTS = {
    "one_shot": {},
    "fabric_backbone_own_alpha_two_nodes": {"MODEL.BACKBONE": "fabric", "MODEL.FABRIC.ONE_SHOT_SEARCH": False,
                                            "MODEL.FABRIC.INPUT_NODES_NUM": 2, "MODEL.FABRIC.HIDDEN_STATES_NUM": 2},
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_keep_everything_prune_is_lossless(variant):
    cfg = tiny_cfg(**VARIANTS[variant])
    model = searched(cfg)
    derived, g = prune(model, cfg, **KEEP_ALL, log_fn=quiet)
    assert derived.arch_parameters() == [] and model.arch_parameters()
    assert set(derived.state_dict()) <= set(model.state_dict())  # derived names are supernet names
    assert [len(p.fabric.cells) for p in derived.parts] == [6, 6, 6]
    with torch.no_grad():
        x = image()
        torch.testing.assert_close(derived.eval()(x), model(x), atol=1e-6, rtol=0)
    assert g.to_dict()["format"] == "fabricnas.genotype/1" and g.search.prune.params["derived"] == count_params(derived)


def test_prune_removes_cells_and_ops_and_saves_params_and_flops():
    cfg = tiny_cfg()
    model = searched(cfg)
    fabric = model.parts[0].fabric
    with torch.no_grad():
        fabric.alpha.copy_(torch.tensor([[3.0, 0.0, 1.0, 0.5]]))  # zero ranks first: never kept -> sep_conv_3x3
        fabric.cells["L5_S0"].beta.copy_(torch.tensor([-4.0, 4.0]))  # same (L4_S0) off, coarser (L4_S1) on
        fabric.cells["L4_S1"].beta.copy_(torch.tensor([4.0, 3.0, -4.0]))  # same .73, finer .27, coarser (L3_S2) off
    derived, g = prune(model, cfg, ops_topk=1, beta_threshold=0.2, beta_topk=1, log_fn=quiet)
    part0 = derived.parts[0].fabric
    assert list(part0.cells) == ["L3_S0", "L3_S1", "L4_S1", "L5_S0"]  # L3_S2 and L4_S0 removed
    assert part0.cells["L5_S0"].spec.inputs == ["coarser"] and part0.cells["L4_S1"].spec.inputs == ["same", "finer"]
    a = torch.softmax(torch.tensor([3.0, 0.0, 1.0, 0.5]), 0)
    for cell in part0.cells.values():
        assert cell.spec.edges == {0: ["sep_conv_3x3"]}
        # the kept op's weight renormalised over the kept op and `zero` (whose share stays)
        assert cell.spec.op_weights[0] == pytest.approx([a[2].item() / (a[2] + a[0]).item()])
    assert part0.cells["L5_S0"].spec.input_weights == [1.0]
    b = torch.softmax(torch.tensor([4.0, 3.0, -4.0]), 0)[:2]  # kept inputs' beta, renormalised over them
    assert part0.cells["L4_S1"].spec.input_weights == pytest.approx((b / b.sum()).tolist())
    shape = (1, 3, 64, 48)
    p_sup, p_der = count_params(model), count_params(derived)
    f_sup, f_der = count_flops(model, shape), count_flops(derived, shape)
    assert p_der < p_sup and f_der < f_sup
    assert g.search.prune.params == {"supernet": p_sup, "derived": p_der}
    assert g.search.prune.flops == {"supernet": f_sup, "derived": f_der}
    assert derived(image()).shape == (2, 17, 16, 12)
    report = prune_report(g)
    assert "part 0 head: cells 6 -> 4, removed L3_S2, L4_S0" in report
    assert "L4_S1.coarser" in report and f"{p_sup / 1e6:.4f}M -> {p_der / 1e6:.4f}M" in report
    strides = ", ".join(map(str, g.arch.fabrics()[0][2].input_strides("L5_S0")))
    assert report.splitlines()[1].endswith(f"; ops e0 sep_conv_3x3 (all cells); L5_S0 reads input strides {strides}")
    # kept modules keep the supernet's weights
    sup_state = model.state_dict()
    assert all(torch.equal(v, sup_state[k]) for k, v in derived.state_dict().items())


def test_derive_uses_the_derive_settings_and_logs_the_report():
    cfg = tiny_cfg(**{"DERIVE.OPS_TOPK": 2, "DERIVE.BETA_THRESHOLD": 0.0, "DERIVE.BETA_TOPK": 3})
    lines = []
    derived, g = derive(cfg, searched(cfg), lines.append)
    assert all(len(ops) == 2 and "zero" not in ops for p in derived.parts for c in p.fabric.cells.values()
               for ops in c.spec.edges.values())
    assert g.search.prune.ops_topk == 2 and lines and lines[0].startswith("prune (ops_topk 2")


@pytest.mark.parametrize("variant", VARIANTS)
def test_genotype_round_trip_and_rebuilt_model_equals_the_derived_one(variant, tmp_path):
    cfg = tiny_cfg(**VARIANTS[variant])
    model = searched(cfg)
    derived, g = prune(model, cfg, log_fn=quiet)
    path = save_genotype(g, str(tmp_path / "genotype.json"))
    loaded = load_genotype(path)
    assert loaded == g
    torch.save({"model": model.state_dict(), "epoch": 3}, tmp_path / "last.pth")  # a trainer checkpoint
    rebuilt = build_from_genotype_file(cfg, path)
    counts = inherit_weights(rebuilt, str(tmp_path / "last.pth"))
    assert counts["loaded"] == counts["total"] == len(rebuilt.state_dict()) and counts["missing"] == 0
    assert counts["unused"] == len(model.state_dict()) - counts["loaded"] > 0  # pruned modules + arch params
    with torch.no_grad():
        x = image()
        torch.testing.assert_close(rebuilt.eval()(x), derived.eval()(x), atol=1e-6, rtol=0)
    # model -> JSON -> model -> JSON: the same JSON
    again = genotype_of(run_fields(cfg), rebuilt, search=g.search)
    assert json.dumps(again.to_dict(), sort_keys=True) == json.dumps(g.to_dict(), sort_keys=True)
    assert genotype_of(run_fields(cfg), derived) == dataclasses.replace(g, search=None)


@pytest.fixture(scope="module")
def genotype_once():
    cfg = tiny_cfg()
    return prune(searched(cfg), cfg, **KEEP_ALL, log_fn=quiet)[1]


@pytest.fixture
def fresh(genotype_once):
    """A factory of fresh copies of one keep-everything genotype (JSON form)."""
    return lambda: copy.deepcopy(genotype_once.to_dict())


def _cell(g, part, layer, scale):
    return next(c for c in g["parts"][part]["fabric"]["cells"] if (c["layer"], c["scale"]) == (layer, scale))


BAD = [
    (lambda g: g.pop("format"), "genotype field 'format'"),
    (lambda g: g.update(format="fabricnas.genotype/0"), "genotype field 'format': 'fabricnas.genotype/0'"),
    (lambda g: g.update(num_joints="17"), "genotype field 'num_joints': must be int"),
    (lambda g: g["parts"][1]["fabric"]["cells"][2].update(inputs=["diagonal"]),
     "genotype field 'parts[1].fabric.cells[2].inputs'"),
    (lambda g: g["parts"][0]["fabric"]["ops"].append("conv_9x9"), "genotype field 'parts[0].fabric.ops': unknown"),
    (lambda g: g["parts"][2].update(joints=[11, 99]), "genotype field 'parts[2].joints'"),
    (lambda g: g["parts"][1]["fabric"]["cells"][0].update(input_weights=[0.5]),
     "genotype field 'parts[1].fabric.cells[0].input_weights'"),
    (lambda g: g["parts"][0]["fabric"]["cells"][3]["op_weights"].update({"0": [0.1, -0.2, 0.3]}),
     "genotype field 'parts[0].fabric.cells[3].op_weights.0'"),
    (lambda g: g["parts"][0]["fabric"]["cells"].pop(2),  # L3_S2 is read by L4_S1 (now cells[3])
     "genotype field 'parts[0].fabric.cells[3]': fabric: cell L4_S1 reads L3_S2, which is not in the fabric"),
    (lambda g: g["head"].update(mode="4D"), "genotype field 'head.mode'"),
    (lambda g: g["backbone"].pop("name"), "genotype field 'backbone.name': missing"),
    (lambda g: g["search"]["fabrics"]["parts.1.fabric"]["beta"].pop("L4_S0"),
     "genotype field 'search.fabrics.parts.1.fabric.beta.L4_S0'"),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_malformed_genotypes_are_refused_naming_the_field(case, fresh):
    g = fresh()
    mutate, message = BAD[case]
    mutate(g)
    with pytest.raises(ValueError) as err:
        parse_genotype(g)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_genotype_files_and_builds_refuse_bad_input(tmp_path, fresh):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_genotype(str(tmp_path / "missing.json"))
    (tmp_path / "broken.json").write_text('{"format": ')
    with pytest.raises(ValueError, match="broken.json is not valid JSON"):
        load_genotype(str(tmp_path / "broken.json"))
    g = fresh()
    g["format"] = "fabricnas.genotype/2"
    (tmp_path / "old.json").write_text(json.dumps(g))
    with pytest.raises(ValueError, match="old.json: genotype field 'format'"):
        build_from_genotype_file(tiny_cfg(), str(tmp_path / "old.json"))
    with pytest.raises(ValueError, match="genotype field 'num_joints': 17 but MODEL.NUM_JOINTS is 16"):
        build_from_genotype(tiny_cfg(**{"MODEL.NUM_JOINTS": 16}), fresh())
    g = fresh()
    g["backbone"]["width_mult"] = 0.5
    with pytest.raises(ValueError, match="'backbone.out_channels'"):
        build_from_genotype(tiny_cfg(), g)
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="list.pth is not a state dict"):
        inherit_weights(build_from_genotype(tiny_cfg(), fresh()), str(tmp_path / "list.pth"))
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        inherit_weights(build_from_genotype(tiny_cfg(), fresh()), str(tmp_path / "nope.pth"))


def test_save_genotype_is_atomic_and_refuses_invalid_genotypes(tmp_path, fresh):
    path = tmp_path / "genotype.json"
    save_genotype(parse_genotype(fresh()), str(path))
    before = path.read_text()
    bad = fresh()
    bad["parts"][0]["joints"] = []
    with pytest.raises(ValueError, match="parts\\[0\\].joints"):  # an invalid genotype never exists to be saved
        save_genotype(parse_genotype(bad), str(path))
    assert path.read_text() == before and [p.name for p in tmp_path.iterdir()] == ["genotype.json"]


def test_plain_fabric_model_prunes_and_rebuilds():
    cfg = tiny_cfg(**{"MODEL.NAME": "fabric", "MODEL.FABRIC.DEPTH": 4})
    model = searched(cfg)
    derived, g = prune(model, cfg, log_fn=quiet)
    assert g.arch.backbone.name == "stem" and len(g.arch.parts) == 1
    rebuilt = build_from_genotype(cfg, g)
    rebuilt.load_state_dict(derived.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(image()), derived.eval()(image()))


HR = {"MODEL.HR.STAGE_BLOCKS": [[1], [1, 1], [1, 1, 1], [1, 1, 1, 1]], "MODEL.HR.WIDTHS": [8, 16, 24, 32],
      "MODEL.HR.STEM_CHANNELS": 8, "MODEL.HR.LAST_CHANNEL": 16, "MODEL.BACKBONE_WIDTH_MULT": 1.0}


@pytest.mark.parametrize("opts, hr_format", [({"MODEL.BACKBONE": "hr_supernet"}, "fabricnas.hr_supernet/1"),
                                             ({"MODEL.NAME": "hr_dense"}, "fabricnas.hr_dense/1")])
def test_hr_section_rebuilds_hr_backbones_and_models(opts, hr_format):
    cfg = tiny_cfg(**HR, **opts)
    derived, g = prune(searched(cfg), cfg, log_fn=quiet)
    assert g.arch.hr.FORMAT == hr_format
    rebuilt = build_from_genotype(cfg, parse_genotype(json.loads(json.dumps(g.to_dict()))))
    rebuilt.load_state_dict(derived.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(image()), derived.eval()(image()))


def test_export_genotype_tool_writes_the_prune_genotype(tmp_path):
    from tools.export_genotype import main
    cfg = tiny_cfg(**{"DERIVE.BETA_THRESHOLD": 0.3})
    model = searched(cfg, seed=3)
    torch.save({"model": model.state_dict()}, tmp_path / "last.pth")
    save_config(cfg, str(tmp_path / "config.yaml"))
    out = tmp_path / "g.json"
    assert main(["--cfg", str(tmp_path / "config.yaml"), "--ckpt", str(tmp_path / "last.pth"), "--out", str(out)]) == 0
    expected = derive(cfg, copy.deepcopy(model), quiet)[1]
    assert load_genotype(str(out)) == expected


def test_a_float64_model_counts_flops_and_prunes_in_its_own_dtype():
    from src.engine.model_report import compare_models
    cfg = tiny_cfg()
    model = searched(cfg)
    shape = (1, 3, 64, 48)
    flops32 = count_flops(model, shape)
    model = model.double()
    assert count_flops(model, shape) == flops32
    derived, g = prune(model, cfg, **KEEP_ALL, log_fn=quiet)
    assert {p.dtype for p in derived.parameters()} == {torch.float64}
    assert g.search.prune.flops["supernet"] == flops32
    with torch.no_grad():
        x = image().double()
        torch.testing.assert_close(derived.eval()(x), model(x))
    assert "derived" in compare_models(model, derived, [48, 64], runs=1)


def test_input_strides_follow_the_kept_inputs_back_to_the_input_maps():
    def cell(layer, scale, inputs):
        return CellSpec(layer, scale, inputs, [0], {0: ["sep_conv_3x3"]})

    coarse = [cell(3, 2, ["same", "coarser"]), cell(4, 1, ["coarser"]), cell(5, 0, ["coarser"])]
    fine = [cell(3, 0, ["same"]), cell(3, 1, ["finer"]), cell(4, 0, ["same", "coarser"]), cell(5, 0, ["same"])]
    for cells, strides in ((coarse, [16, 32]), (fine, [4])):
        spec = FabricSpec([4, 8, 16, 32], 4, ["zero", "sep_conv_3x3"], 1, 1, 2, [0, 1, 2, 3], cells, ["L5_S0"])
        spec.validate()
        assert spec.input_strides("L5_S0") == strides
    assert spec.input_strides("L3_S1") == [4]  # L3_S1 reads the finer input map (row 0)
