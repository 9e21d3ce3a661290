from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# Test tensors are tiny: one intra-op thread is faster than two and immune to a busy machine.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory):
    """A tiny synthetic COCO-format set (generated once per test session)."""
    from src.data.synthetic import ensure_synthetic_coco
    root = tmp_path_factory.mktemp("synthetic") / "set"
    ensure_synthetic_coco(str(root), 8, 4, 0)
    return root


def tiny_train_opts(root, out_dir, **extra):
    """Config overrides for a seconds-long training run on the tiny synthetic set."""
    opts = {"OUTPUT_DIR": str(out_dir), "DATASET.ROOT": str(root), "DATASET.SYNTHETIC_TRAIN": 8,
            "DATASET.SYNTHETIC_VAL": 4, "MODEL.INPUT_SIZE": "[48, 64]", "TRAIN.BATCH_SIZE": 4,
            "TRAIN.MAX_ITERS_PER_EPOCH": 2, "TRAIN.EPOCHS": 2, "TRAIN.EVAL_INTERVAL": 1, "TEST.BATCH_SIZE": 8,
            "TRAIN.TIME_BUDGET_MIN": 0.0, "PRINT_FREQ": 1, "MODEL.WIDTH": 16}
    opts.update(extra)
    return [str(x) for kv in opts.items() for x in kv]


def kill_half_of_the_gates(slimmer, kinds=("channel",)) -> None:
    """Zero the first half of every slimming gate of the given kinds, so that the next shrink has work to do."""
    with torch.no_grad():
        for g in slimmer.groups:
            if kinds is None or g.kind in kinds:
                g.gate.data[: g.gate.numel() // 2] = 0.0


def fit_until_interrupted(trainer, call: int) -> None:
    """Runs `trainer.fit()` until its strategy's `call`-th step (1-based) raises KeyboardInterrupt, as a killed
    run would; the checkpoints written before it stay."""
    real_step, calls = trainer.strategy.step, {"n": 0}

    def failing_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    trainer.strategy.step = failing_step
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()


def assert_same_state(a: dict, b: dict) -> None:
    """Two state dicts with the same keys and bit-identical tensors."""
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def train_on_two_gloo_ranks(worker, tmp_path, root):
    """`worker(rank, world, store, root, out)` on 2 gloo ranks (torch.multiprocessing); returns `out`, the
    folder the ranks write their results to."""
    import torch.multiprocessing as mp
    out = tmp_path / "ddp"
    out.mkdir()
    mp.spawn(worker, args=(2, str(tmp_path / "store"), str(root), str(out)), nprocs=2, join=True)
    return out

