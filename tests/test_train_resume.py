import torch

from src.config.loader import load_config
from src.engine.trainer import Trainer, seed_all
from src.network_factory.registry import build_model
from tests.conftest import ROOT, fit_until_interrupted, tiny_train_opts

CFG = str(ROOT / "configs/synthetic_baseline.yaml")


def make_trainer(root, out, resume=False):
    cfg = load_config(CFG, tiny_train_opts(root, out))
    seed_all(cfg.SEED)
    return Trainer(cfg, build_model(cfg), resume=resume)


def test_resume_after_interruption_matches_uninterrupted(tiny_synthetic, tmp_path):
    full = make_trainer(tiny_synthetic, tmp_path / "full")
    full.fit()
    reference = {k: v.clone() for k, v in full.core.state_dict().items()}

    fit_until_interrupted(make_trainer(tiny_synthetic, tmp_path / "cut"), 3)  # dies in the middle of the second epoch
    resumed = make_trainer(tiny_synthetic, tmp_path / "cut", resume=True)
    assert resumed.start_epoch == 1
    resumed.fit()
    state = resumed.core.state_dict()
    for k, v in reference.items():
        assert torch.equal(v, state[k]), k
    opt_a = full.strategy.weight_optimizer.state_dict()["state"]
    opt_b = resumed.strategy.weight_optimizer.state_dict()["state"]
    for i in opt_a:
        assert torch.equal(opt_a[i]["exp_avg"], opt_b[i]["exp_avg"])


def test_run_writes_its_records(tiny_synthetic, tmp_path):
    out = tmp_path / "run"
    make_trainer(tiny_synthetic, out).fit()
    for name in ("config.yaml", "train.log", "metrics.csv", "last.pth", "best.pth"):
        assert (out / name).is_file(), name
    assert any((out / "tb").iterdir())
    saved = load_config(str(out / "config.yaml"))
    assert saved.OUTPUT_DIR == str(out)
