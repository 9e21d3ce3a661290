import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from src.config.loader import load_config
from tests.conftest import ROOT, assert_same_state, tiny_train_opts, train_on_two_gloo_ranks

CFG = str(ROOT / "configs/synthetic_baseline.yaml")


def _worker(rank, world, store, root, out):
    from src.engine.trainer import Trainer, seed_all
    from src.network_factory.registry import build_model
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        cfg = load_config(CFG, tiny_train_opts(root, out, **{"TRAIN.EPOCHS": 1}))
        seed_all(cfg.SEED + rank)  # different init per rank: DDP must broadcast rank 0's weights
        trainer = Trainer(cfg, build_model(cfg))
        trainer.fit()
        params = {k: v.detach() for k, v in trainer.core.named_parameters()}  # BN stats sync at the next forward
        torch.save(params, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_gloo_ranks_train_two_steps_with_identical_weights(tiny_synthetic, tmp_path):
    out = train_on_two_gloo_ranks(_worker, tmp_path, tiny_synthetic)
    a = torch.load(out / "rank0.pt", weights_only=True)
    b = torch.load(out / "rank1.pt", weights_only=True)
    assert_same_state(a, b)
    assert (out / "last.pth").is_file() and not (out / "rank1").exists()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_distributed_sh_runs_under_torchrun(tiny_synthetic, tmp_path):
    env = dict(os.environ, NPROC_PER_NODE="2", PYTHON=sys.executable)
    proc = subprocess.run(["bash", "distributed.sh", "--cfg", CFG,
                           *tiny_train_opts(tiny_synthetic, tmp_path / "run", **{"TRAIN.EPOCHS": 1})],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "run" / "last.pth").is_file()
