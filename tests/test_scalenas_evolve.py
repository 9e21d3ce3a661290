"""ScaleNAS evolution end to end (issue 12, point 7): one-shot training of a tiny pose supernet, tools/evolve.py
on it (CSV, PNG, chosen genotype), the chosen genotype fine-tuned and tested; the tool's mutation over the
whole depth list; the search under 2 torchrun ranks equal to 1 process; the search record refusing another
supernet."""
import csv
import importlib.util
import json
import os
import random
import subprocess
import sys

import pytest
import torch

from src.architecture.genotype.genotype import load_genotype
from src.architecture.scale.space import ScaleSpaceSpec, smallest
from src.architecture.scale.supernet import find_scale_supernet
from src.config.loader import load_config
from src.engine.cli import run_cli
from src.engine.oneshot_search import check_search_recipe
from src.engine import entry
from src.engine.checkpoint import load_model_weights
from src.engine.oneshot_eval import calibrate
from src.engine.pose_task import build_task
from src.network_factory.from_genotype import build_from_genotype
from src.network_factory.registry import build_model
from src.search.scale_ops import ScaleSpaceOps
from tests.conftest import ROOT, tiny_train_opts
from tests.test_scalenas import CFG, TINY_SCALE

EVOLVE = ROOT / "tools" / "evolve.py"
SEARCH = ["--generations", "2", "--population", "4", "--calib-batches", "1"]


def _tool(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _opts(root, out, **extra):
    return tiny_train_opts(root, out, **{**TINY_SCALE, "TRAIN.EPOCHS": 1, "TRAIN.EVAL_INTERVAL": 100,
                                         "WORKERS": 0, **extra})


@pytest.fixture(scope="module")
def supernet(tiny_synthetic, tmp_path_factory):
    """A tiny pose supernet after 2 one-shot steps (1 epoch of 2 iterations)."""
    out = tmp_path_factory.mktemp("supernet")
    assert run_cli(entry.train_main, ["--cfg", CFG, *_opts(tiny_synthetic, out)]) == 0
    return out / "last.pth"


def test_mutation_redraws_depths_from_the_whole_depth_list():
    spec = ScaleSpaceSpec(4, (4, 8), (1, 1), 3, (1, 2, 3))
    ops = ScaleSpaceOps(spec, [(0.0, (1,))])
    parent = ops.sample(random.Random(0), ops.groups()[0])
    assert parent == smallest(spec)
    rng = random.Random(1)
    depths = {d for _ in range(20) for m in ops.mutate(parent, rng, 0.9).modules for d in m.depths}
    assert depths == {1, 2, 3}  # not only the depth 1 the parent uses
    assert ops.from_dict(ops.to_dict(parent), "subnet") == parent


@pytest.mark.parametrize("text,message", [("{", "is not valid JSON"), ("[1]", "expected a JSON object"),
                                          ('{"ckpt": "other.pth"}', "field 'ckpt' is 'other.pth'")])
def test_search_record_that_does_not_match_is_one_line_naming_the_file(tmp_path, text, message):
    (tmp_path / "search.json").write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        check_search_recipe(str(tmp_path), {"ckpt": "supernet.pth"})
    assert str(tmp_path / "search.json") in str(err.value) and "\n" not in str(err.value)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    check_search_recipe(str(fresh), {"ckpt": "supernet.pth"})  # writes the record
    check_search_recipe(str(fresh), {"ckpt": "supernet.pth"})  # which then matches


@pytest.mark.timeout(300)  # ~10 s on 2 busy cores
def test_train_evolve_choose_finetune_and_test(tiny_synthetic, supernet, tmp_path, capsys):
    out = tmp_path / "evo"
    opts = _opts(tiny_synthetic, tmp_path / "unused")
    assert run_cli(_tool(EVOLVE).main, ["--cfg", CFG, "--ckpt", str(supernet), "--out", str(out), *SEARCH,
                                        "--max-flops", "1e12", *opts]) == 0
    for name in ("evaluated.csv", "pareto.png", "chosen.json", "genotype.json", "state.json", "search.json"):
        assert (out / name).is_file(), name
    with open(out / "evaluated.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 3 and sorted({int(r["generation"]) for r in rows}) == [0, 1, 2]
    chosen = json.loads((out / "chosen.json").read_text())
    genotype = load_genotype(str(out / "genotype.json"))
    assert genotype.arch.scale.subnet.key() == chosen["key"]
    # the chosen genotype rebuilds, inherits the supernet's weights, fine-tunes and tests
    tuned, genotype_file = tmp_path / "tuned", str(out / "genotype.json")
    finetune = _opts(tiny_synthetic, tuned, **{"SEARCH.STRATEGY": "none", "TRAIN.MAX_ITERS_PER_EPOCH": 1})
    assert run_cli(entry.train_main, ["--cfg", CFG, "--genotype", genotype_file, "--inherit", str(supernet),
                                      *finetune]) == 0
    capsys.readouterr()
    assert run_cli(entry.test_main, ["--cfg", CFG, "--genotype", genotype_file, "--ckpt", str(tuned / "last.pth"),
                                     *_opts(tiny_synthetic, tuned)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("AP ")
    # another supernet on the same output directory is refused in one line
    assert run_cli(_tool(EVOLVE).main, ["--cfg", CFG, "--ckpt", str(tuned / "last.pth"), "--out", str(out),
                                        *SEARCH, *opts]) != 0
    assert "search.json: field 'ckpt'" in capsys.readouterr().err


@pytest.mark.slow  # ~40 s on 2 busy cores: a one-process search, then 2 torchrun processes importing torch
@pytest.mark.timeout(600)
def test_two_torchrun_ranks_give_the_state_of_one_process(tiny_synthetic, supernet, tmp_path):
    opts = _opts(tiny_synthetic, tmp_path / "unused")
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_cli(_tool(EVOLVE).main, ["--cfg", CFG, "--ckpt", str(supernet), "--out", str(one), *SEARCH,
                                        *opts]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(EVOLVE), "--cfg", CFG, "--ckpt", str(supernet), "--out", str(two), *SEARCH, *opts],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = json.loads((one / "state.json").read_text())
    b = json.loads((two / "state.json").read_text())
    assert a == b and len(a["evaluated"]) == 12
    assert (one / "genotype.json").read_text() == (two / "genotype.json").read_text()



def test_scale_subnet_exports_the_calibrated_standalone_subnet(tiny_synthetic, supernet, tmp_path, capsys):
    out, opts = tmp_path / "subnets", _opts(tiny_synthetic, tmp_path / "s")
    capsys.readouterr()
    assert run_cli(_tool(ROOT / "tools" / "scale_subnet.py").main,
                   ["--cfg", CFG, "--ckpt", str(supernet), "--subnet", "smallest", "--calib-batches", "1",
                    "--genotype-out", str(out), *opts]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["subnet"] for r in rows] == ["smallest"] and "AP" in rows[0]
    genotype = load_genotype(str(out / "smallest.json"))
    assert genotype.arch.scale.subnet == smallest(genotype.arch.scale.space)
    # the exported weights are the supernet's with the subnet active and its BNs calibrated on the same batch
    cfg = load_config(CFG, opts)
    net = build_from_genotype(cfg, genotype)
    load_model_weights(net, str(out / "smallest.pth"))
    model = build_model(cfg)
    load_model_weights(model, str(supernet))
    find_scale_supernet(model).set_active(genotype.arch.scale.subnet)
    calibrate(cfg, model, build_task(cfg).build_dataset("train"), torch.device("cpu"), 1)
    x = torch.randn(2, 3, *cfg.MODEL.INPUT_SIZE[::-1])
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), model.eval()(x), atol=1e-5)
