"""Bilevel search under DDP (2 gloo processes, different data per rank): identical arch and weights on
every rank (tiny part_cnf fabric), and a 2-rank run equal to the single-process run on the concatenated
batches (BN-free net, where that equality is exact)."""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from src.search.strategies import build_strategy
from tests.test_search import make_batch, make_cfg, make_model, pose_mse

BILEVEL = ("first_order_gradient", "second_order_gradient")
STEPS = 3


def _cat(a, b):
    return {k: torch.cat([a[k], b[k]]) for k in a}


def _batches(rank, step):
    """(weight batch, arch batch) of `rank` at `step`: different data on every rank."""
    seed = 100 * rank + 2 * step
    return make_batch(seed, dtype=torch.float64), make_batch(seed + 1, dtype=torch.float64)


def _flat_params(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _run(name, model, world_batches):
    strategy = build_strategy(make_cfg(name, "sgd"), model, pose_mse)
    for step in range(STEPS):
        strategy.step(*world_batches(step))
    return strategy


def assert_same_on_every_rank(mine, msg):
    gathered = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, mine)
    assert all(torch.equal(gathered[0], g) for g in gathered), msg


def _gloo(rank, world, store, body):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        body(rank)
    finally:
        dist.destroy_process_group()


def run_on_two_ranks(body, tmp_path):
    """`body(rank)` (a module-level function) in 2 gloo processes."""
    mp.spawn(_gloo, args=(2, str(tmp_path / "store"), body), nprocs=2, join=True)


def _worker(rank):
    # single-process references on the whole (both ranks') batch, BN-free so the batch split is exact
    reference = {}
    for name in BILEVEL:
        model = make_model(seed=1, dtype=torch.float64, kind="tiny", bn=False)
        _run(name, model, lambda s: tuple(_cat(a, b) for a, b in zip(_batches(0, s), _batches(1, s))))
        reference[name] = _flat_params(model)
    for name in BILEVEL:
        for kind in ("fabric", "tiny"):  # the real part_cnf (with BN), and the BN-free reference net
            core = make_model(seed=1, dtype=torch.float64, kind=kind, **({"bn": False} if kind == "tiny" else {}))
            _run(name, DistributedDataParallel(core), lambda s: _batches(rank, s))
            mine = _flat_params(core)
            assert_same_on_every_rank(mine, f"{name} {kind}: ranks diverged")
            if kind == "tiny":
                torch.testing.assert_close(mine, reference[name], rtol=1e-9, atol=1e-11,
                                           msg=f"{name}: 2-rank step differs from the large-batch step")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_bilevel_search_keeps_ranks_identical_and_equals_large_batch(tmp_path):
    run_on_two_ranks(_worker, tmp_path)
