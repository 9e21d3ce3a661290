"""One global pruning step with `torch.nn.utils.prune.global_unstructured` (L1 of the scores).

    stats = global_prune(modules, scores, density, reactivate)

keeps exactly round(density x N) of the N prunable weights: the ones with the highest scores over all
modules at once (one global threshold, so layer-wise densities are free). With `reactivate` every weight
competes (pruned ones may come back); without, the pruned ones stay pruned and the step removes
(alive - keep) more among the alive ones (torch's PruningContainer combines the masks). Under DDP the
masks of rank 0 are broadcast, so every rank holds the same masks whatever its scores.
"""
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from src.search.tickets.masks import is_pruned, mask_of, set_mask, weight_param
from src.search.tickets.schedule import check_density
from src.utils import distributed as dist_utils


def global_prune(modules: Sequence[Tuple[str, nn.Module]], scores: Sequence[Tensor], density: float,
                 reactivate: bool) -> Dict[str, float]:
    check_density(density, "density")
    mods = [m for _, m in modules]
    total = sum(weight_param(m).numel() for m in mods)
    keep = int(round(density * total))
    for m in mods:  # every module carries a contiguous mask (a channels_last one fails the global step's view)
        keep_mask = is_pruned(m) and not reactivate
        set_mask(m, mask_of(m) if keep_mask else torch.ones_like(weight_param(m), dtype=torch.bool))
    alive = sum(int(mask_of(m).sum()) for m in mods)
    amount = max(0, alive - keep)
    prune.global_unstructured([(m, "weight") for m in mods], pruning_method=prune.L1Unstructured,
                              importance_scores={(m, "weight"): s.contiguous() for m, s in zip(mods, scores)}, amount=amount)
    masks = [m.weight_mask.detach().clone() for m in mods]
    if dist_utils.is_distributed():
        dist_utils.broadcast_(masks, 0)
    for m, mask in zip(mods, masks):  # one flat mask per module (no nested PruningContainer)
        set_mask(m, mask)
    kept = sum(int(mk.sum()) for mk in masks)
    return {"density": kept / total, "kept": kept, "total": total}


def layer_densities(modules: Sequence[Tuple[str, nn.Module]]) -> List[float]:
    return [float(mask_of(m).float().mean()) for _, m in modules]


def random_masks_like(modules: Sequence[Tuple[str, nn.Module]], seed: int) -> None:
    """Replace every module's mask by a random one with the same number of kept weights (same layer-wise
    densities): the random-mask control of a ticket."""
    gen = torch.Generator().manual_seed(int(seed))
    for _, m in modules:
        if not is_pruned(m):
            continue
        mask = mask_of(m)
        order = torch.randperm(mask.numel(), generator=gen)[: int(mask.sum())]
        new = torch.zeros(mask.numel(), dtype=torch.bool)
        new[order] = True
        set_mask(m, new.view(mask.shape))
