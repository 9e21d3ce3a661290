"""tools/ticket_controls.py: the controls have the ticket's layer-wise densities, the re-init control starts from
another init than the ticket, runs on one --out (one per sparsity) keep each other's results, and sparsity 0 runs
the ticket's two runs without controls."""
import json

import torch

from src.config.loader import load_config
from src.engine.trainer import seed_all
from src.network_factory.registry import build_model
from src.search.tickets.masks import masks_of, prunable_modules, weight_param
from src.search.tickets.pruner import layer_densities
from tests.conftest import ROOT, tiny_train_opts
from tools.ticket_controls import loader, main

BASE = str(ROOT / "configs/synthetic_baseline.yaml")


def _model(opts, ckpt=None):
    cfg = load_config(BASE, opts)
    seed_all(cfg.SEED)
    model = build_model(cfg)
    if ckpt is not None:
        loader(ckpt)(model, cfg)
    return model


def test_controls_keep_densities_and_reinit_from_another_init(tiny_synthetic, tmp_path):
    opts = tiny_train_opts(tiny_synthetic, tmp_path / "unused", **{"TRAIN.MAX_ITERS_PER_EPOCH": 1})
    out = tmp_path / "controls"
    args = ["--cfg", BASE, "--out", str(out), "--pretrain-epochs", "1", "--prune-epochs", "1",
            "--retrain-epochs", "1", *opts]
    assert main([*args, "--sparsity", "0.5"]) == 0
    pretrain_ckpt = json.loads((out / "results.json").read_text())["pretrain"]["ckpt"]
    assert main([*args, "--sparsity", "0.9"]) == 0  # a second run on the same --out
    results = json.loads((out / "results.json").read_text())
    assert {"pretrain", "dense", "s0.5/ticket", "s0.5/reinit", "s0.9/random_mask"} <= set(results)
    assert results["pretrain"]["ckpt"] == pretrain_ckpt
    table = (out / "table.md").read_text()
    assert "| 90% |" in table
    assert main([*args, "--sparsity", "0"]) == 0  # the dense pipeline row: no mask, no controls
    zero = json.loads((out / "results.json").read_text())
    assert {k for k in zero if k.startswith("s0/")} == {"s0/ticket_search", "s0/ticket"}
    assert "| 0% |" in (out / "table.md").read_text()
    assert main([*args, "--sparsity", "0.5", "--method", "lamp"]) == 0  # beside magnitude's, same dense run
    lamp = json.loads((out / "results.json").read_text())
    assert {"lamp/s0.5/ticket", "lamp/s0.5/random_mask", "s0.5/ticket"} <= set(lamp)
    assert lamp["dense"] == results["dense"] and "| 50% (lamp) |" in (out / "table.md").read_text()

    ticket, rand, reinit = (_model(opts, results[f"s0.9/{k}"]["ckpt"]) for k in ("ticket", "random_mask", "reinit"))
    dens = layer_densities(prunable_modules(ticket))
    assert dens == layer_densities(prunable_modules(rand)) == layer_densities(prunable_modules(reinit))
    assert all(torch.equal(a, b) for a, b in zip(masks_of(ticket).values(), masks_of(reinit).values()))
    assert any(not torch.equal(a, b) for a, b in zip(masks_of(ticket).values(), masks_of(rand).values()))
    # one retrain step away from its init: the re-init control is nearer a fresh init than the ticket's own init
    pre_init = _model(opts)
    cfg = load_config(BASE, opts)
    seed_all(cfg.SEED + 1)
    other_init = build_model(cfg)

    def dist(a, b):
        return sum(float((weight_param(m) - weight_param(n)).detach().norm()) for (_, m), (_, n)
                   in zip(prunable_modules(a), prunable_modules(b)))
    assert dist(reinit, other_init) < 0.5 * dist(reinit, pre_init)
