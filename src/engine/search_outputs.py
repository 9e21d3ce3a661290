"""What a search run leaves behind: the derived architecture and pictures of how it was chosen.

`export_search_results(cfg, model, out_dir)` prunes the searched model with the DERIVE.* settings (ranking
by DERIVE.SELECTION: magnitude, or perturbation on batches of the arch split) and writes
`genotype.json` (first, so nothing else can lose it), `fabric.svg` / `fabric.png` (derived view),
`fabric_supernet.svg`, `arch_values.png` (from the run's `arch_values.csv`, when there is one) and logs
the prune report and a supernet-versus-derived comparison (params, FLOPs, CPU latency).
"""
import copy
import os
from typing import Callable, List, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from src.architecture.arch_params import unwrap
from src.architecture.genotype.genotype import genotype_fabrics, save_genotype
from src.architecture.genotype.prune import Prune
from src.architecture.visual.arch_plot import plot_arch_values
from src.architecture.visual.render import render_genotype
from src.engine.checkpoint import load_model_weights
from src.engine.model_report import compare_models
from src.engine.pose_task import build_task
from src.network_factory.from_genotype import run_fields
from src.network_factory.registry import build_model
from src.search.arch_average import recorded_average
from src.search.selection import perturbation_scores
from src.search.split import bilevel_split
from src.search.tickets.masks import finalize, masks_of


def arch_split_batches(cfg, task, count: int, device) -> List[dict]:
    """`count` batches (TRAIN.BATCH_SIZE persons) of the search's arch split, the same for a given SEED."""
    train_set = task.build_dataset("train")
    _, arch_idx = bilevel_split(train_set.split_groups(), cfg.SEARCH.SPLIT_RATIO, cfg.SEED)
    order = torch.randperm(len(arch_idx), generator=torch.Generator().manual_seed(cfg.SEED)).tolist()
    picked = [arch_idx[i] for i in order[:count * cfg.TRAIN.BATCH_SIZE]]
    torch.manual_seed(cfg.SEED)  # the augmentation draws
    loader = DataLoader(Subset(train_set, picked), batch_size=cfg.TRAIN.BATCH_SIZE, shuffle=False)
    return [{k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()} for b in loader]


def selection_scores(cfg, model: nn.Module, log_fn: Callable[[str], None] = print) -> Optional[dict]:
    """None for DERIVE.SELECTION magnitude; perturbation: the scores of src/search/selection.py."""
    method = cfg.DERIVE.SELECTION
    if method == "magnitude":
        return None
    if method != "perturbation":
        raise ValueError(f"unknown DERIVE.SELECTION '{method}' (magnitude, perturbation)")
    core = unwrap(model)
    task = build_task(cfg)
    ref = next(core.parameters())
    batches = arch_split_batches(cfg, task, cfg.DERIVE.PERTURB_BATCHES, ref.device)
    log_fn(f"perturbation selection on {len(batches)} arch-split batches")
    return perturbation_scores(core, task.criterion, batches)


def derive(cfg, model: nn.Module, log_fn: Callable[[str], None] = print):
    """(derived model, genotype): Prune with the DERIVE.* settings and DERIVE.SELECTION. A supernet pruned by
    TICKET.* is derived from a copy with its masks folded into the weights (what the pruned supernet computes)."""
    if masks_of(model):
        model = finalize(copy.deepcopy(unwrap(model)))
    d = cfg.DERIVE
    return Prune(model, run_fields(cfg), cfg.SEARCH.STRATEGY, ops_topk=d.OPS_TOPK, beta_threshold=d.BETA_THRESHOLD,
                 beta_topk=d.BETA_TOPK, scores=selection_scores(cfg, model, log_fn), edges_topk=d.EDGES_TOPK,
                 log_fn=log_fn)


def genotype_from_checkpoint(cfg, ckpt_path: str, log_fn: Callable[[str], None] = print, average_steps: int = 0):
    """(derived model, genotype) of the supernet of `cfg` with the weights and arch values of a checkpoint; with
    `average_steps` N >= 1, its arch values are the mean of the last N arch steps the checkpoint recorded
    (DERIVE.AVERAGE_ARCH_STEPS; N = 1: the last arch step's values)."""
    model = build_model(cfg)
    state = load_model_weights(model, ckpt_path)
    if average_steps:
        n = recorded_average(state, average_steps, ckpt_path, model).apply(model)
        log_fn(f"arch values: the mean of the last {n} arch steps recorded in {ckpt_path}")
    return derive(cfg, model, log_fn)


def export_search_results(cfg, model: nn.Module, out_dir: str, log_fn: Callable[[str], None] = print) -> dict:
    """Prune -> genotype.json, fabric renders, arch-value plot, comparison. Returns {name: path or text}."""
    core = unwrap(model)
    derived, genotype = derive(cfg, core, log_fn)
    out = {"genotype": save_genotype(genotype, os.path.join(out_dir, "genotype.json"))}
    log_fn(f"derived architecture written to {out['genotype']} (retrain: train.py --cfg CFG --genotype "
           f"{out['genotype']} --inherit {os.path.join(out_dir, 'last.pth')})")
    if genotype_fabrics(genotype):
        for key, name, view in (("fabric_svg", "fabric.svg", "derived"), ("fabric_png", "fabric.png", "derived"),
                                ("fabric_supernet_svg", "fabric_supernet.svg", "supernet")):
            out[key] = render_genotype(genotype, os.path.join(out_dir, name), view, log_fn)
    if os.path.isfile(os.path.join(out_dir, "arch_values.csv")):
        out["arch_values_png"] = plot_arch_values(out_dir)
    out["comparison"] = compare_models(core, derived, cfg.MODEL.INPUT_SIZE)
    log_fn(out["comparison"])
    return out
