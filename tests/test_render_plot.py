"""Fabric renders (graphviz), arch-value plots, search outputs and model reports."""
import csv
import dataclasses
import os
import shutil
import xml.etree.ElementTree as ET

import matplotlib.image as mpimg
import pytest
import torch
import yaml

from src.architecture.genotype.genotype import load_genotype
from src.architecture.visual.arch_plot import averaged_span, plot_arch_csv, read_arch_csv
from src.architecture.visual.render import render_genotype
from src.config.loader import save_config
from src.engine.model_report import compare_models, print_param_flop
from src.engine.run_log import CsvLog, flatten_arch_state
from src.engine.search_outputs import export_search_results
from src.utils.flops import count_params
from tests.conftest import ROOT, tiny_train_opts
from tests.test_prune_genotype import prune, searched, tiny_cfg

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def pruned():
    """(supernet, derived, genotype) of a tiny searched model whose prune removes cells."""
    cfg = tiny_cfg()
    model = searched(cfg)
    derived, g = prune(model, cfg, log_fn=lambda _: None)
    return model, derived, g


def cell_nodes(path):
    """{svg id: class} of the cell nodes of a rendered SVG."""
    root = ET.parse(path).getroot()
    return {el.get("id"): el.get("class") for el in root.iter(f"{SVG}g") if (el.get("id") or "").startswith("cell-")}


def test_derived_and_supernet_views_draw_kept_and_pruned_cells(pruned, tmp_path):
    model, derived, g = pruned
    kept = sum(len(p.fabric.cells) for p in derived.parts)
    total = sum(len(p.fabric.cells) for p in model.parts)
    assert kept < total  # the prune removed cells
    nodes = cell_nodes(render_genotype(g, str(tmp_path / "fabric.svg"), "derived"))
    assert len(nodes) == kept and set(nodes.values()) == {"node cell kept"}
    assert "cell-0-L5_S0" in nodes  # every part ends in its 1/4 cell
    nodes = cell_nodes(render_genotype(g, str(tmp_path / "fabric_supernet.svg"), "supernet"))
    assert len(nodes) == total
    assert sum(c == "node cell pruned" for c in nodes.values()) == total - kept
    pruned_ids = {i for i, c in nodes.items() if c.endswith("pruned")}
    expected = {f"cell-{i}-{name}" for i, (sup, der) in enumerate(zip(model.parts, derived.parts))
                for name in sup.fabric.cells if name not in der.fabric.cells}
    assert pruned_ids == expected
    text = (tmp_path / "fabric_supernet.svg").read_text()
    assert 'stroke-dasharray' in text and "legend" in text
    png = render_genotype(g, str(tmp_path / "fabric.png"))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_render_without_dot_writes_the_dot_source(pruned, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    said = []
    path = render_genotype(pruned[2], str(tmp_path / "fabric.svg"), log_fn=said.append)
    assert path == str(tmp_path / "fabric.dot") and not (tmp_path / "fabric.svg").exists()
    assert open(path).read().startswith("digraph fabricnas")
    assert f"dot -Tsvg {path} -o {tmp_path / 'fabric.svg'}" in said[0]


def test_render_refuses_bad_requests(pruned, tmp_path):
    g = pruned[2]
    with pytest.raises(ValueError, match="must end in one of .svg, .png, .pdf"):
        render_genotype(g, str(tmp_path / "fabric.jpg"))
    with pytest.raises(ValueError, match="view must be one of"):
        render_genotype(g, str(tmp_path / "fabric.svg"), view="side")
    g = dataclasses.replace(g, search=None)
    with pytest.raises(ValueError, match="supernet view needs the genotype's search record"):
        render_genotype(g, str(tmp_path / "fabric.svg"), view="supernet")
    assert len(cell_nodes(render_genotype(g, str(tmp_path / "fabric.svg")))) == \
        sum(len(p.fabric.cells) for p in g.arch.parts)


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_plot_tool_writes_a_png_from_a_small_csv(tmp_path):
    from tools.plot_arch_values import main
    header = ["step", "epoch"] + [f"parts.0.fabric.alpha[0,{j}]" for j in range(4)] + \
        [f"parts.0.fabric.cells.L3_S0.beta[{i}]" for i in range(2)] + \
        [f"parts.1.fabric.cells.L3_S0.alpha[0,{j}]" for j in range(4)] + ["parts.1.fabric.cells.L4_S0.beta[0]"]
    rows = [header] + [[s, s // 3] + [0.25 + 0.01 * s * (j - 1.5) for j in range(4)] + [0.5 + 0.02 * s, 0.5 - 0.02 * s]
                       + [0.25] * 4 + [1.0] for s in range(1, 7)]
    _write_csv(tmp_path / "arch_values.csv", rows)
    cfg = tiny_cfg()
    save_config(cfg, str(tmp_path / "config.yaml"))
    assert main(["--run", str(tmp_path)]) == 0
    image = mpimg.imread(tmp_path / "arch_values.png")
    assert image.shape[:2] == (round(3.4 * 2 * 110), 14 * 110)  # one row of panels per part
    steps, cols = read_arch_csv(str(tmp_path / "arch_values.csv"))
    assert steps == [1, 2, 3, 4, 5, 6] and len(cols) == 11
    _write_csv(tmp_path / "empty.csv", [["step", "epoch", "loss"], [1, 0, 0.5]])
    with pytest.raises(ValueError, match="no alpha/beta columns"):
        plot_arch_csv(str(tmp_path / "empty.csv"), str(tmp_path / "x.png"))
    with pytest.raises(FileNotFoundError, match="nope"):
        plot_arch_csv(str(tmp_path / "nope.csv"), str(tmp_path / "x.png"))


def test_plot_shades_the_arch_steps_averaged_for_prune(tmp_path):
    assert averaged_span([1, 2, 3, 4, 5, 6], 3) == (4, 6)
    assert averaged_span([1, 2, 3], 31) == (1, 3)  # a run shorter than the window averages every step
    assert averaged_span([1, 2, 3], 0) is None and averaged_span([], 3) is None
    header = ["step", "epoch"] + [f"parts.0.fabric.alpha[0,{j}]" for j in range(2)]
    _write_csv(tmp_path / "arch_values.csv", [header] + [[s, 0, 0.5, 0.5] for s in range(1, 7)])
    plain = mpimg.imread(plot_arch_csv(str(tmp_path / "arch_values.csv"), str(tmp_path / "plain.png")))
    cfg = tiny_cfg()
    cfg.DERIVE.AVERAGE_ARCH_STEPS = 3
    save_config(cfg, str(tmp_path / "config.yaml"))
    from tools.plot_arch_values import main as plot_main
    assert plot_main(["--run", str(tmp_path)]) == 0
    shaded = mpimg.imread(tmp_path / "arch_values.png")
    assert shaded.shape == plain.shape and (shaded != plain).any()


def test_export_search_results_writes_every_output(tmp_path):
    cfg = tiny_cfg()
    model = searched(cfg, seed=2)
    log = CsvLog(str(tmp_path / "arch_values.csv"))
    for step in range(1, 4):
        log.write({"step": step, "epoch": 0, **flatten_arch_state(model.arch_state())})
    lines = []
    out = export_search_results(cfg, model, str(tmp_path), log_fn=lines.append)
    names = {"genotype.json", "fabric.svg", "fabric.png", "fabric_supernet.svg", "arch_values.png"}
    assert names <= set(os.listdir(tmp_path))
    assert load_genotype(out["genotype"]).search.strategy == "first_order_gradient"
    assert lines[0].startswith("prune (ops_topk 1") and out["comparison"] in lines
    assert "supernet" in out["comparison"] and "latency (ms)" in out["comparison"]


def test_param_flop_and_comparison_reports(pruned):
    model, derived, _ = pruned
    printed = []
    text = print_param_flop(tiny_cfg(), model, printed.append)
    assert printed == [text] and "at input 48x64" in text
    assert [line.split()[0] for line in text.splitlines()[2:]] == ["model", "backbone", "part", "part", "part"]
    table = compare_models(model, derived, [48, 64], runs=2)
    sup, der = (line.split() for line in table.splitlines()[2:4])
    assert float(sup[1]) == pytest.approx(count_params(model) / 1e6, abs=1e-4)
    assert float(der[1]) == pytest.approx(count_params(derived) / 1e6, abs=1e-4)
    assert float(der[2]) < float(sup[2]) and float(der[4]) > 0


def test_a_search_run_exports_its_architecture_and_retrains_from_it(tiny_synthetic, tmp_path):
    from src.engine.entry import train_main
    cfg = str(ROOT / "configs" / "synthetic_baseline.yaml")
    arch = ["MODEL.NAME", "part_cnf", "MODEL.BACKBONE", "mobilenet_v2", "MODEL.BACKBONE_WIDTH_MULT", "0.25",
            "MODEL.FABRIC.FACTOR", "2", "TRAIN.EPOCHS", "1"]
    search = tmp_path / "search"
    assert train_main(["--cfg", cfg, "--search", "first_order_gradient", *tiny_train_opts(tiny_synthetic, search),
                       *arch]) == 0
    for name in ("genotype.json", "fabric.svg", "fabric.png", "fabric_supernet.svg", "arch_values.png"):
        assert (search / name).is_file(), name
    retrain = tmp_path / "retrain"  # the search config's strategy: a derived network retrains with `none`
    assert train_main(["--cfg", cfg, "--genotype", str(search / "genotype.json"), "--inherit",
                       str(search / "last.pth"), *tiny_train_opts(tiny_synthetic, retrain), *arch,
                       "SEARCH.STRATEGY", "first_order_gradient"]) == 0
    assert (retrain / "best.pth").is_file() and not (retrain / "genotype.json").exists()
    assert yaml.safe_load((retrain / "config.yaml").read_text())["SEARCH"]["STRATEGY"] == "none"


def test_render_draws_hr_branches_with_their_surviving_widths():
    from src.architecture.genotype.genotype import genotype_of
    from src.architecture.visual.render import fabric_graph
    from src.network_factory.from_genotype import run_fields
    from src.network_factory.registry import build_model
    from tests.test_hr_supernet import tiny_cfg as hr_cfg
    cfg = hr_cfg()
    cfg.MODEL.NAME = "hr_dense"
    g = genotype_of(run_fields(cfg), build_model(cfg))
    hr = dataclasses.replace(g.arch.hr.backbone, branches=(True, True, True, False))  # as after a dead-branch removal
    g = dataclasses.replace(g, arch=dataclasses.replace(g.arch, hr=dataclasses.replace(g.arch.hr, backbone=hr)))
    source = fabric_graph(g).source
    assert [f"hr_{i}" in source for i in range(4)] == [True] * 4
    assert "branch 1/4  width 4" in source and "branch 1/32 removed" in source
