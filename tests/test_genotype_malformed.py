"""Malformed genotypes, table-driven: each is refused with a one-line ValueError naming the field, fast and
before any real tensor is allocated (huge, negative, wrong type, unhashable, missing, unknown, inconsistent
with the model or the config); a few of them through the CLIs (exit code 1, one stderr line)."""
import copy
import json
import math
import subprocess
import sys
import time

import pytest
from torch import nn

import src.network_factory.models  # noqa: F401  (the one-time registration imports stay out of the timed calls)
from src.architecture.fabric.fabric import prune_unreachable, triangle_spec
from src.architecture.fabric.spec import FabricSpec
from src.network_factory.from_genotype import build_from_genotype, build_from_genotype_file
from tests.conftest import ROOT
from tests.test_genotype_fixtures import FIXTURES, fixture_cfg

BASES = {"P": "part_cnf_mobilenet_v2", "F": "part_cnf_fabric_backbone", "H": "part_cnf_hr_supernet",
         "D": "hr_dense", "S": "fabric_stem"}
_LOADED = {key: json.loads((FIXTURES / f"{name}.json").read_text()) for key, name in BASES.items()}
BLOCK = "stages.2.parallel.0.0"  # a parallel block of the hr_dense fixture
HRT_BLOCK = "stages.3.parallel.2.0"  # its block with an HRT part


def base(key: str) -> dict:
    return copy.deepcopy(_LOADED[key])


def part(g, i=0):
    return g["parts"][i]["fabric"]


def blocks(g):
    return g["hr"]["backbone"]["blocks"] if g["hr"]["format"] == "fabricnas.hr_dense/1" else g["hr"]["blocks"]


def rerooted(g):
    """Part 0 re-rooted at its 1/8 cell L4_S1: a valid fabric that returns the wrong scale."""
    spec = FabricSpec.from_dict(part(g))
    spec.outputs = ["L4_S1"]
    g["parts"][0]["fabric"] = prune_unreachable(spec).to_dict()


def many_ops(g):
    """Part 0 becomes a valid CNF of 3672 ops (every size within its bound): above limits.MAX_FABRIC_OPS."""
    ops = ["skip_connect", "sep_conv_3x3", "atr_conv_3x3", "max_pool_3x3"]
    g["parts"][0]["fabric"] = triangle_spec([4, 8, 16, 32], 1, ops, 16, 3, (0, 1, 2, 3), 4, 3).to_dict()


def setter(path, value):
    """g[path[0]][path[1]]... = value (callables of g allowed as path items)."""
    def edit(g):
        obj = g
        for key in path[:-1]:
            obj = key(obj) if callable(key) else obj[key]
        obj[path[-1]] = value
    return edit


def popper(*path):
    def edit(g):
        obj = g
        for key in path[:-1]:
            obj = key(obj) if callable(key) else obj[key]
        obj.pop(path[-1])
    return edit


# (class, base, edit, field named in the message, config overrides)
CASES = [
    # huge
    ("huge", "P", setter([part, "factor"], 10**9), "parts[0].fabric.factor", {}),
    ("huge", "P", setter([part, "factor"], 200), "parts[0].fabric.factor", {}),  # 32 x 200 channels
    ("huge", "P", setter([part, "hidden_states_num"], 10**6), "parts[0].fabric.hidden_states_num", {}),
    ("huge", "P", setter([part, "input_nodes_num"], 1000), "parts[0].fabric.input_nodes_num", {}),
    ("huge", "P", setter(["head", "vector_dim"], 10**7), "head.vector_dim", {}),
    ("huge", "P", setter(["backbone", "width_mult"], 1e6), "backbone.width_mult", {}),
    ("huge", "H", setter(["hr", "stem_channels"], 10**7), "hr.stem_channels", {}),
    ("huge", "D", setter(["hr", "backbone", "widths"], [10**6, 8, 12, 16]), "hr.backbone.widths", {}),
    ("huge", "D", setter([blocks, BLOCK, "kernels"], [10001, 5]), f"hr.backbone.blocks.{BLOCK}.kernels", {}),
    ("huge", "D", setter([blocks, BLOCK, "channels"], [10**8, 24]), f"hr.backbone.blocks.{BLOCK}.channels", {}),
    ("huge", "H", setter([blocks, "stages.3.parallel.3.0", "tokens"], 10**7),
     "hr.blocks.stages.3.parallel.3.0.tokens", {}),
    ("huge", "D", setter(["hr", "backbone", "grid"], 10**5), "hr.backbone.grid", {}),
    ("huge", "D", setter([blocks, HRT_BLOCK, "hrt", "window"], 10**4), f"hr.backbone.blocks.{HRT_BLOCK}.hrt.window", {}),
    ("huge", "P", setter(["num_joints"], 10**6), "num_joints", {}),
    ("huge", "P", setter(["input_size"], [10**6, 64]), "input_size", {}),
    ("huge", "P", setter([part, "cells"], [{}] * 100000), "parts[0].fabric.cells", {}),
    ("huge", "D", setter(["hr", "backbone", "stage_blocks", 0], [10**6]), "hr.backbone.stage_blocks[0]", {}),
    ("huge", "F", setter(["backbone", "out_channels"], [10**9, 40, 80, 160]), "backbone.out_channels", {}),
    ("huge", "P", many_ops, "parts[0].fabric", {}),
    # negative
    ("negative", "P", setter([lambda g: part(g, 1), "factor"], -1), "parts[1].fabric.factor", {}),
    ("negative", "P", setter(["head", "vector_dim"], 0), "head.vector_dim", {}),
    ("negative", "H", setter(["hr", "widths"], [-4, 8, 12, 16]), "hr.widths", {}),
    ("negative", "H", setter(["hr", "stem_channels"], -8), "hr.stem_channels", {}),
    ("negative", "P", setter(["parts", 0, "joints"], [-1, 1, 2, 3, 4]), "parts[0].joints", {}),
    ("negative", "P", setter(["input_size"], [-48, 64]), "input_size", {}),
    ("negative", "P", setter(["heatmap_stride"], -4), "heatmap_stride", {}),
    ("negative", "D", setter([blocks, BLOCK, "tokens"], -1), f"hr.backbone.blocks.{BLOCK}.tokens", {}),
    ("negative", "P", setter([lambda g: part(g)["cells"][0]["op_weights"], "0"], [-0.5]),
     "parts[0].fabric.cells[0].op_weights.0", {}),
    ("negative", "P", setter(["backbone", "width_mult"], -0.5), "backbone.width_mult", {}),
    ("negative", "D", setter([blocks, HRT_BLOCK, "hrt", "heads"], 0), f"hr.backbone.blocks.{HRT_BLOCK}.hrt.heads", {}),
    # wrong type (bools are not numbers, numbers are not bools, no NaN / inf)
    ("type", "P", setter(["num_joints"], "17"), "num_joints", {}),
    ("type", "P", setter([part, "factor"], 1.0), "parts[0].fabric.factor", {}),
    ("type", "P", setter([part, "factor"], True), "parts[0].fabric.factor", {}),
    ("type", "P", setter(["head", "vector_in_pixel"], 1), "head.vector_in_pixel", {}),
    ("type", "P", setter(["backbone", "width_mult"], "0.1"), "backbone.width_mult", {}),
    ("type", "P", setter(["input_size"], "48x64"), "input_size", {}),
    ("type", "P", setter([part, "cells"], {}), "parts[0].fabric.cells", {}),
    ("type", "P", setter([lambda g: part(g)["cells"][0], "edges"], ["sep_conv_3x3"]), "parts[0].fabric.cells[0].edges",
     {}),
    ("type", "P", setter(["head"], []), "head", {}),
    ("type", "D", setter(["hr", "backbone", "stage_blocks", 1], [1.0, 1]), "hr.backbone.stage_blocks[1]", {}),
    ("type", "D", setter(["hr", "backbone", "branches"], [1, 1, 1, 0]), "hr.backbone.branches", {}),
    ("type", "P", setter([lambda g: part(g)["cells"][0]["op_weights"], "0"], [math.nan]),
     "parts[0].fabric.cells[0].op_weights.0", {}),
    ("type", "P", setter([lambda g: g["search"]["fabrics"]["parts.0.fabric"]["beta"], "L3_S0"], [math.inf, 0.1]),
     "search.fabrics.parts.0.fabric.beta.L3_S0", {}),
    ("type", "P", setter(["dataset"], "coco"), "dataset", {}),
    # unhashable where a name is looked up
    ("unhashable", "P", setter([part, "ops"], [["sep_conv_3x3"]]), "parts[0].fabric.ops", {}),
    ("unhashable", "P", setter([lambda g: part(g)["cells"][0]["edges"], "0"], [{"op": 1}]),
     "parts[0].fabric.cells[0].edges.0", {}),
    ("unhashable", "P", setter([lambda g: part(g)["cells"][0], "inputs"], [["same"]]), "parts[0].fabric.cells[0].inputs",
     {}),
    ("unhashable", "D", setter([blocks, BLOCK, "skip"], ["identity"]), f"hr.backbone.blocks.{BLOCK}.skip", {}),
    ("unhashable", "P", setter(["model"], ["part_cnf"]), "model", {}),
    ("unhashable", "P", setter(["head", "mode"], {"2D": 1}), "head.mode", {}),
    ("unhashable", "D", setter(["hr", "format"], []), "hr.format", {}),
    ("unhashable", "P", setter(["backbone", "name"], {"a": 1}), "backbone.name", {}),
    # missing
    ("missing", "P", popper("format"), "format", {}),
    ("missing", "P", popper("model"), "model", {}),
    ("missing", "P", popper(lambda g: part(g)["cells"][0], "edges"), "parts[0].fabric.cells[0].edges", {}),
    ("missing", "P", popper("backbone", "name"), "backbone.name", {}),
    ("missing", "P", popper("head", "mode"), "head.mode", {}),
    ("missing", "D", popper(blocks, BLOCK), f"hr.backbone.blocks.{BLOCK}", {}),
    ("missing", "H", popper("hr"), "hr", {}),
    ("missing", "P", popper(lambda g: g["search"]["fabrics"]["parts.1.fabric"]["beta"], "L4_S0"),
     "search.fabrics.parts.1.fabric.beta.L4_S0", {}),
    ("missing", "P", popper("parts", 2, "joints"), "parts[2].joints", {}),
    # unknown
    ("unknown", "P", setter(["model"], "resnet_magic"), "model", {}),
    ("unknown", "P", setter(["backbone", "name"], "vgg"), "backbone.name", {}),
    ("unknown", "P", lambda g: part(g)["ops"].append("conv_9x9"), "parts[0].fabric.ops", {}),
    ("unknown", "P", setter([lambda g: part(g)["cells"][0], "inputs"], ["diagonal"]), "parts[0].fabric.cells[0].inputs",
     {}),
    ("unknown", "D", setter([blocks, BLOCK, "skip"], "weird"), f"hr.backbone.blocks.{BLOCK}.skip", {}),
    ("unknown", "P", setter(["head", "mode"], "4D"), "head.mode", {}),
    ("unknown", "P", setter(["format"], "fabricnas.genotype/2"), "format", {}),
    ("unknown", "D", setter(["hr", "format"], "fabricnas.hr_dense/9"), "hr.format", {}),
    ("unknown", "P", setter([lambda g: part(g)["cells"][0], "input_weight"], [1.0]),
     "parts[0].fabric.cells[0].input_weight", {}),
    ("unknown", "D", lambda g: blocks(g).update({"stages.7.parallel.0.0": blocks(g)[BLOCK]}),
     "hr.backbone.blocks.stages.7.parallel.0.0", {}),
    ("unknown", "P", lambda g: g["search"]["fabrics"].update({"parts.9.fabric": g["search"]["fabrics"]["parts.0.fabric"]}),
     "search.fabrics.parts.9.fabric", {}),
    ("unknown", "P", setter(["task"], "detection"), "task", {}),
    ("unknown", "P", setter(["extra"], 1), "extra", {}),
    # inconsistent with the model or the config
    ("inconsistent", "P", lambda g: None, "num_joints", {"MODEL.NUM_JOINTS": 16}),
    ("inconsistent", "P", lambda g: None, "heatmap_stride", {"MODEL.HEATMAP_STRIDE": 8}),
    ("inconsistent", "P", lambda g: None, "input_size", {"MODEL.INPUT_SIZE": [64, 64]}),
    ("inconsistent", "P", setter(["heatmap_stride"], 8), "heatmap_stride", {"MODEL.HEATMAP_STRIDE": 8}),
    ("inconsistent", "P", rerooted, "parts[0].fabric.outputs", {}),
    ("inconsistent", "P", setter([part, "size_types"], [8, 16, 32, 64]), "parts[0].fabric.size_types", {}),
    ("inconsistent", "S", setter([part, "input_scales"], [0, 1]), "parts[0].fabric.input_scales", {}),
    ("inconsistent", "P", setter(["backbone", "width_mult"], 0.5), "backbone.out_channels", {}),
    ("inconsistent", "H", setter(["backbone", "out_channels"], [4, 8, 12, 17]), "backbone.out_channels", {}),
    ("inconsistent", "F", setter([lambda g: g["backbone"], "out_channels"], [4, 8, 16, 33]), "backbone.out_channels",
     {}),
    ("inconsistent", "D", setter(["hr", "head", "in"], 41), "hr.head.in", {}),
    ("inconsistent", "D", setter(["hr", "num_joints"], 16), "hr.num_joints", {}),
    ("inconsistent", "D", setter([blocks, BLOCK, "out"], 13), f"hr.backbone.blocks.{BLOCK}.out", {}),
    ("inconsistent", "P", setter(["parts", 0, "joints"], [0, 1, 2, 3]), "parts", {}),
    ("inconsistent", "D", lambda g: g["parts"].append(base("P")["parts"][0]), "parts", {}),
    ("inconsistent", "F", setter(["backbone", "name"], "mobilenet_v2"), "backbone.fabric", {}),
    ("inconsistent", "P", setter(["backbone", "name"], "hr_supernet"), "hr", {}),
    ("inconsistent", "P", setter(["model"], "hr_dense"), "hr", {}),
    ("inconsistent", "D", setter(["model"], "part_cnf"), "parts", {}),
    ("inconsistent", "P", setter(["model"], "baseline"), "model", {}),
]


def test_the_table_covers_every_class_with_enough_cases():
    classes = {c[0] for c in CASES}
    assert classes == {"huge", "negative", "type", "unhashable", "missing", "unknown", "inconsistent"}
    assert len(CASES) >= 40 and min(sum(c[0] == k for c in CASES) for k in classes) >= 5


@pytest.fixture
def no_allocation(monkeypatch):
    """Any parameter or buffer off the meta device fails the test: nothing real is allocated."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def guard(tensor):
        if tensor is not None and tensor.device.type != "meta":
            raise AssertionError("a tensor was allocated before the genotype was refused")

    def parameter(self, name, param):
        guard(param)
        return register_parameter(self, name, param)

    def buffer(self, name, tensor, persistent=True):
        guard(tensor)
        return register_buffer(self, name, tensor, persistent)
    monkeypatch.setattr(nn.Module, "register_parameter", parameter)
    monkeypatch.setattr(nn.Module, "register_buffer", buffer)


@pytest.mark.parametrize("case", CASES, ids=[f"{i}-{c[0]}-{c[3]}" for i, c in enumerate(CASES)])
def test_malformed_genotype_is_refused_naming_the_field(case, no_allocation):
    _, key, edit, field, opts = case
    g = base(key)
    edit(g)
    cfg = fixture_cfg()
    cfg.merge_from_list([x for kv in opts.items() for x in kv])
    start = time.perf_counter()
    with pytest.raises(ValueError) as err:
        build_from_genotype(cfg, g)
    assert time.perf_counter() - start < 1.0
    msg = str(err.value)
    assert f"genotype field '{field}': " in msg and "\n" not in msg, msg


def test_a_network_above_the_parameter_limit_is_refused_naming_its_largest_section(monkeypatch, no_allocation):
    import src.network_factory.from_genotype as from_genotype
    monkeypatch.setattr(from_genotype, "MAX_PARAMS", 10_000)  # every size within its bound, the sum above it
    with pytest.raises(ValueError, match=r"^genotype field 'hr.backbone': builds [\d,]+ parameters \(network "
                                         r"[\d,]+\), above the limit of 10,000 \(limits.MAX_PARAMS\)$"):
        build_from_genotype(fixture_cfg(), base("D"))


def test_the_bases_themselves_are_accepted(no_allocation):
    for key in BASES:
        with pytest.raises(AssertionError, match="allocated"):  # reaches the real build: valid, and nothing before
            build_from_genotype(fixture_cfg(), base(key))


@pytest.mark.parametrize("text, message", [
    ("[" * 100000 + "]" * 100000, "is not valid JSON"),
    ('{"format": "fabricnas.genotype/1", "num_joints": ' + "9" * 5000 + "}", "is not valid JSON"),
    (json.dumps(base("P")).replace('"op_weights": {"0": [', '"op_weights": {"0": [NaN, ', 1),
     r"genotype field 'parts\[0\].fabric.cells\[0\].op_weights.0': item 0: must be a finite number"),
    ("\xff\xfe", "is not valid JSON"),
])
def test_malformed_files_are_refused_naming_the_file(tmp_path, text, message):
    path = tmp_path / "g.json"
    path.write_bytes(text.encode("latin-1") if text.startswith("\xff") else text.encode())
    with pytest.raises(ValueError, match=message) as err:
        build_from_genotype_file(fixture_cfg(), str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_huge_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import src.architecture.genotype.genotype as genotype
    monkeypatch.setattr(genotype, "MAX_GENOTYPE_BYTES", 1000)
    path = tmp_path / "g.json"
    path.write_text(json.dumps(base("P")))
    with pytest.raises(ValueError, match="bytes, above 1000"):
        build_from_genotype_file(fixture_cfg(), str(path))


@pytest.mark.parametrize("script, edit, field", [
    ("test.py", setter([blocks, "stages.3.parallel.3.0", "tokens"], 10**7), "hr.blocks.stages.3.parallel.3.0.tokens"),
    ("train.py", setter([part, "ops"], [["sep_conv_3x3"]]), "parts[0].fabric.ops"),
    ("test.py", setter(["hr", "stem_channels"], -8), "hr.stem_channels"),
])
def test_the_clis_exit_1_with_one_line(tmp_path, script, edit, field):
    g = base("H")
    edit(g)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(g))
    proc = subprocess.run([sys.executable, script, "--cfg", "configs/synthetic_search_demo.yaml", "--genotype",
                           str(path), "OUTPUT_DIR", str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: genotype {path}: genotype field '{field}': "), lines[0]
    assert not (tmp_path / "run").exists()
