"""DERIVE.AVERAGE_ARCH_STEPS: the search ends on the mean of its last N softmaxed arch values, resumably."""
import csv
import json

import pytest
import torch

from src.config.loader import load_config
from src.engine.run_log import flatten_arch_state
from src.engine.search_outputs import genotype_from_checkpoint
from src.engine.trainer import Trainer, seed_all
from src.network_factory.registry import build_model
from src.search.arch_average import ArchAverage, recorded_average
from tests.conftest import ROOT, fit_until_interrupted, tiny_train_opts

CFG = str(ROOT / "configs/synthetic_search_demo.yaml")


def search_cfg(root, out, steps=2):
    return load_config(CFG, tiny_train_opts(root, out, **{
        "TRAIN.EPOCHS": 3, "MODEL.FABRIC.FACTOR": 2, "SEARCH.WARMUP_EPOCHS": 0, "SEARCH.EIGEN_EVERY": 0,
        "SEARCH.ARCH_LR": 1.0, "DERIVE.AVERAGE_ARCH_STEPS": steps}))


def random_arch_steps(model, steps, window):
    """An ArchAverage(window) fed `steps` random arch states of `model`, and every step's softmaxed values."""
    average, seen = ArchAverage(window), []
    for _ in range(steps):
        with torch.no_grad():
            for p in model.arch_parameters():
                p.normal_()
        seen.append({n: torch.softmax(p.detach().double(), -1) for n, p in model.named_arch_parameters()})
        average.add(model.arch_state())
    return average, seen


def test_apply_sets_logits_whose_softmax_is_the_mean_of_the_last_n_steps(tiny_synthetic, tmp_path):
    model = build_model(search_cfg(tiny_synthetic, tmp_path))
    average, seen = random_arch_steps(model, 3, window=2)
    restored = ArchAverage(2)
    restored.load_state_dict(average.state_dict())
    assert restored.apply(model) == 2  # the first step fell out of the window
    for name, p in model.named_arch_parameters():
        expected = (seen[1][name] + seen[2][name]) / 2
        assert torch.allclose(torch.softmax(p.detach().double(), -1), expected, atol=1e-6), name
    with pytest.raises(ValueError, match="DERIVE.AVERAGE_ARCH_STEPS must be >= 1"):
        ArchAverage(-1)


def test_recorded_average_rederives_over_a_shorter_window_of_the_checkpoint(tiny_synthetic, tmp_path):
    model = build_model(search_cfg(tiny_synthetic, tmp_path))
    average, seen = random_arch_steps(model, 3, window=3)
    ckpt = {"arch_monitor": {"average": average.state_dict()}}
    for steps in (1, 2):
        assert recorded_average(ckpt, steps, "s.pth", model).apply(model) == steps
        for name, p in model.named_arch_parameters():
            expected = sum(step[name] for step in seen[-steps:]) / steps
            assert torch.allclose(torch.softmax(p.detach().double(), -1), expected, atol=1e-6), (steps, name)
    with pytest.raises(ValueError, match="s.pth records 3 arch steps .* cannot average the last 4"):
        recorded_average(ckpt, 4, "s.pth", model)
    with pytest.raises(ValueError, match="s.pth records 0 arch steps"):
        recorded_average({"model": {}}, 1, "s.pth", model)
    first = next(iter(seen[0]))
    for broken in (lambda v: None, lambda v: "abc", lambda v: (torch.tensor(v) * float("nan")).tolist(),
                   lambda v: (-torch.tensor(v)).tolist()):
        steps = [{**step, first: broken(step[first])} for step in average.state_dict()["recent"]]
        with pytest.raises(ValueError, match="s.pth: its recorded arch steps are not softmaxed values"):
            recorded_average({"arch_monitor": {"average": {"recent": steps}}}, 1, "s.pth", model)


@pytest.mark.slow
def test_search_derives_from_the_average_and_a_resume_gives_the_same_average(tiny_synthetic, tmp_path):
    cfg = search_cfg(tiny_synthetic, tmp_path / "full")
    seed_all(cfg.SEED)
    full = Trainer(cfg, build_model(cfg))
    full.fit()
    out = tmp_path / "full"
    rows = list(csv.DictReader(open(out / "arch_values.csv")))
    assert len(rows) == 3  # one arch step per epoch: the window (2) is shorter than the search
    averaged = flatten_arch_state(full.core.arch_state())  # the CSV's column names
    for key, value in averaged.items():
        assert value == pytest.approx(sum(float(r[key]) for r in rows[-2:]) / 2, abs=1e-6), key
    saved = torch.load(out / "last.pth", map_location="cpu", weights_only=True)
    assert len(saved["arch_monitor"]["average"]["recent"]) == 2
    _, from_ckpt = genotype_from_checkpoint(cfg, str(out / "last.pth"), log_fn=lambda s: None)
    assert from_ckpt.to_dict() == json.loads((out / "genotype.json").read_text())
    _, rederived = genotype_from_checkpoint(cfg, str(out / "last.pth"), log_fn=lambda s: None, average_steps=2)
    assert rederived.to_dict() == from_ckpt.to_dict()  # the recorded window, averaged again

    cut_cfg = search_cfg(tiny_synthetic, tmp_path / "cut")
    seed_all(cut_cfg.SEED)
    # dies in the third epoch: the resumed window holds the first two arch steps
    fit_until_interrupted(Trainer(cut_cfg, build_model(cut_cfg)), 3)
    seed_all(cut_cfg.SEED)
    resumed = Trainer(cut_cfg, build_model(cut_cfg), resume=True)
    assert resumed.start_epoch == 2
    resumed.fit()
    for (name, a), (_, b) in zip(full.core.named_arch_parameters(), resumed.core.named_arch_parameters()):
        assert torch.equal(a, b), name
    assert (tmp_path / "cut" / "genotype.json").read_text() == (out / "genotype.json").read_text()
