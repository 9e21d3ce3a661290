"""LR schedules (src/engine/trainer.lr_factor): poly per iteration; constant / cosine / multistep per epoch,
with the scheduler stepping every iteration."""
import math

import pytest

from src.config.loader import load_config
from src.engine.trainer import Trainer, lr_factor, seed_all
from src.network_factory.registry import build_model
from tests.conftest import ROOT, tiny_train_opts


def cfg_of(*opts):
    return load_config("", ["TRAIN.EPOCHS", "4", *opts])


def test_poly_is_per_iteration_and_reaches_zero():
    cfg = cfg_of("TRAIN.LR_SCHEDULE", "poly", "TRAIN.POLY_POWER", "0.9")
    assert lr_factor(cfg, 0.0) == 1.0
    assert lr_factor(cfg, 1.5) == pytest.approx((1 - 1.5 / 4) ** 0.9)
    assert lr_factor(cfg, 1.25) > lr_factor(cfg, 1.5) > lr_factor(cfg, 1.75)  # changes inside an epoch
    assert lr_factor(cfg, 4.0) == 0.0
    assert lr_factor(cfg_of("TRAIN.LR_SCHEDULE", "poly", "TRAIN.POLY_POWER", "1.0"), 1.0) == pytest.approx(0.75)


def test_epoch_schedules_change_at_epoch_boundaries_only():
    cos = cfg_of("TRAIN.LR_SCHEDULE", "cosine")
    assert lr_factor(cos, 1.0) == lr_factor(cos, 1.99) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(cos, 3 * (1 / 3) * 3) == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 4)))  # float division
    step = cfg_of("TRAIN.LR_SCHEDULE", "multistep", "TRAIN.LR_STEPS", "[2]", "TRAIN.LR_FACTOR", "0.1")
    assert lr_factor(step, 1.999) == 1.0 and lr_factor(step, 2.0) == pytest.approx(0.1)
    assert lr_factor(cfg_of(), 3.5) == 1.0


def test_bad_schedule_settings_are_refused():
    with pytest.raises(ValueError, match="unknown TRAIN.LR_SCHEDULE 'linear'"):
        lr_factor(cfg_of("TRAIN.LR_SCHEDULE", "linear"), 0.0)
    with pytest.raises(ValueError, match="TRAIN.POLY_POWER must be > 0"):
        lr_factor(cfg_of("TRAIN.LR_SCHEDULE", "poly", "TRAIN.POLY_POWER", "0.0"), 0.0)


def test_trainer_steps_poly_every_iteration(tiny_synthetic, tmp_path):
    cfg = load_config(str(ROOT / "configs/synthetic_baseline.yaml"),
                      tiny_train_opts(tiny_synthetic, tmp_path / "run", **{"TRAIN.LR_SCHEDULE": "poly",
                                                                          "TRAIN.EVAL_INTERVAL": 2}))
    seed_all(cfg.SEED)
    trainer = Trainer(cfg, build_model(cfg))
    opt, seen = trainer.strategy.weight_optimizer, []
    real_step = trainer.strategy.step

    def step(*args, **kwargs):
        seen.append(opt.param_groups[0]["lr"])
        return real_step(*args, **kwargs)

    trainer.strategy.step = step
    trainer.fit()
    n, lr = 2, cfg.TRAIN.LR  # 2 epochs x 2 iterations
    assert seen == pytest.approx([lr * (1 - s / (n * 2)) ** 0.9 for s in range(4)])
