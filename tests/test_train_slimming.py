import pytest

from src.config.loader import load_config
from src.utils.state_dict import read_checkpoint
from src.engine.trainer import Trainer, seed_all
from src.network_factory.registry import build_model
from tests.conftest import ROOT, assert_same_state, kill_half_of_the_gates, tiny_train_opts

CFG = str(ROOT / "configs/synthetic_hrnas_dense.yaml")
TINY_HR = {"MODEL.HR.STEM_CHANNELS": 8, "MODEL.HR.WIDTHS": "[4, 8, 12, 16]", "MODEL.HR.LAST_CHANNEL": 8,
           "MODEL.HR.TRANSFORMER_TOKENS": 4, "SLIM.INTERVAL": 1, "SLIM.WARMUP_EPOCHS": 0.0,
           "SLIM.THRESHOLD": 0.05, "SLIM.TARGET_FLOPS": 0.0, "MODEL.HR.GATE_INIT": 0.1, "TRAIN.EPOCHS": 2}


def make(root, out, resume=False, **extra):
    cfg = load_config(CFG, tiny_train_opts(root, out, **{**TINY_HR, **extra}))
    seed_all(cfg.SEED)
    return Trainer(cfg, build_model(cfg), resume=resume)


def test_slimming_shrinks_during_training_and_resumes_the_shrunk_network(tiny_synthetic, tmp_path):
    out = tmp_path / "slim"
    trainer = make(tiny_synthetic, out)
    params_before = sum(p.numel() for p in trainer.core.parameters())
    kill_half_of_the_gates(trainer.slimmer)
    trainer.fit()
    params_after = sum(p.numel() for p in trainer.core.parameters())
    assert params_after < params_before
    state = read_checkpoint(str(out / "last.pth"))
    assert "genotype" in state and "slimmer" in state
    resumed = make(tiny_synthetic, out, resume=True, **{"TRAIN.EPOCHS": 3})
    assert sum(p.numel() for p in resumed.core.parameters()) == params_after
    resumed.fit()


def test_flops_target_run_on_the_synthetic_set_ends_within_10_percent(tiny_synthetic, tmp_path):
    trainer = make(tiny_synthetic, tmp_path / "target", **{
        "SLIM.TARGET_FLOPS": 0.6, "SLIM.RHO": 1e-3, "SLIM.RHO_GAIN": 0.3, "SLIM.THRESHOLD": 1e-2,
        "SLIM.INTERVAL": 5, "TRAIN.EPOCHS": 10, "TRAIN.MAX_ITERS_PER_EPOCH": 4, "TRAIN.LR": 1e-2,
        "TRAIN.EVAL_INTERVAL": 100})
    trainer.fit()
    slimmer = trainer.slimmer
    assert slimmer.flops < slimmer.supernet_flops
    assert abs(slimmer.flops - slimmer.target) <= 0.1 * slimmer.target


@pytest.mark.slow
def test_resume_across_a_shrink_is_exact_with_a_ticket_and_a_flops_target(tiny_synthetic, tmp_path):
    """The resumed run rebuilds the shrunk network; the slimmer keeps the supernet's penalty normaliser and
    FLOPs target from the checkpoint (re-measuring them on the shrunk network changed the penalty)."""
    extra = {"TRAIN.EVAL_INTERVAL": 100, "SLIM.TARGET_FLOPS": 0.8, "SLIM.INTERVAL": 2, "TICKET.METHOD": "magnitude",
             "TICKET.TARGET_DENSITY": 0.3, "TICKET.STEPS": 3}  # ticket step 1, shrink, step 2 (epoch 1), resume

    def run(out, epochs, resume=False):
        trainer = make(tiny_synthetic, out, resume=resume, **{**extra, "TRAIN.EPOCHS": epochs})
        if not resume:
            kill_half_of_the_gates(trainer.slimmer)  # the second epoch ends with a shrink
        trainer.fit()
        return trainer

    full = run(tmp_path / "full", 4)
    run(tmp_path / "part", 2)
    resumed = run(tmp_path / "part", 4, resume=True)
    assert full.slimmer.flops < full.slimmer.supernet_flops
    assert (resumed.slimmer.supernet_flops, resumed.slimmer.target, resumed.slimmer.norm) == \
        (full.slimmer.supernet_flops, full.slimmer.target, full.slimmer.norm)
    a = full.core.state_dict()
    assert any(k.endswith("weight_mask") for k in a)
    assert_same_state(a, resumed.core.state_dict())
