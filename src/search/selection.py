"""Perturbation-based architecture selection (DERIVE.SELECTION perturbation).

Wang et al. (ICLR 2021, "Rethinking architecture selection in differentiable NAS") show that the magnitude
of alpha need not reflect an operation's strength in the supernet, and select instead by how much the
supernet's validation performance drops when an operation is removed. Their procedure removes, edge by
edge in random order, every op in turn, keeps the one whose removal hurts most, discretises that edge and
fine-tunes the supernet before the next edge.

FabricNAS implements a documented simplification, one-shot and without fine-tuning: at the end of the
search, on DERIVE.PERTURB_BATCHES batches of the arch split (data the weights were not trained on), the
score of an op (of an edge's alpha row) or of a cell input (of a beta) is the increase of the supernet's
loss when that candidate alone is removed from its softmax (its logit set to -inf, the others
renormalised), everything else unchanged. The loss (the heatmap MSE) stands in for the validation metric:
it is what the arch steps minimise and needs no decoding. Scores are turned into shares
max(score, 0) / sum (uniform when no removal hurts), so Prune's BETA_THRESHOLD / BETA_TOPK / OPS_TOPK
rules apply to them as to softmaxed values. Forwards run in train mode (batch statistics, as the arch
steps) and leave weights, arch values and buffers unchanged.
"""
from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

from src.architecture.fabric.fabric import Fabric
from src.architecture.genotype.prune import fabric_weights, is_searchable
from src.search.base import preserved_buffers

MASKED = -1e9  # logit of a removed candidate: softmax weight exactly 0 in float32


def _loss(core, criterion, batches) -> float:
    return sum(float(criterion(core(b["image"]), b)) for b in batches) / len(batches)


def _shares(scores: List[float]) -> List[float]:
    pos = [max(s, 0.0) for s in scores]
    total = sum(pos)
    return [p / total for p in pos] if total > 0 else [1.0 / len(scores)] * len(scores)


def _masked_loss(core, criterion, batches, param: nn.Parameter, index: Tuple[int, ...], base: float) -> float:
    saved = param.data[index].clone()
    param.data[index] = MASKED
    try:
        return _loss(core, criterion, batches) - base
    finally:
        param.data[index] = saved


def _fabric_scores(core, criterion, batches, fabric: Fabric, base: float) -> Tuple[dict, dict]:
    """(beta shares per cell, alpha shares per cell and edge), shaped like `fabric_weights(fabric)`.
    Arch tensors are found by name: `alpha` [edges, ops] (shared by the cells), `cells.<cell>.alpha`
    [kept edges, ops] and `cells.<cell>.beta` [inputs]."""
    params = dict(fabric.named_parameters())
    betas, _ = fabric_weights(fabric)
    rows: Dict[Tuple[str, int], List[float]] = {}  # (alpha tensor name, row) -> shares per op

    def row_shares(name: str, row: int, mixed) -> List[float]:
        if (name, row) not in rows:
            alpha = params[name]
            rows[name, row] = _shares([0.0 if getattr(mixed.ops[fabric.spec.ops[o]], "is_zero", False) else
                                       _masked_loss(core, criterion, batches, alpha, (row, o), base)
                                       for o in range(alpha.shape[-1])])
        return rows[name, row]

    out_b, out_a = {}, {}
    for key, cell in fabric.cells.items():
        name = cell.name
        beta = params.get(f"cells.{key}.beta")
        out_b[name] = (betas[name] if beta is None else
                       _shares([_masked_loss(core, criterion, batches, beta, (i,), base) for i in range(beta.numel())]))
        own = f"cells.{key}.alpha"
        out_a[name] = {e: row_shares(own, j, cell.edges[str(e)]) if own in params else
                       row_shares("alpha", e, cell.edges[str(e)]) for j, e in enumerate(sorted(cell.spec.edges))}
    return out_b, out_a


@torch.no_grad()
def perturbation_scores(model: nn.Module, criterion, batches: Sequence[dict]) -> Dict[str, Tuple[dict, dict]]:
    """{fabric path: (beta shares, alpha shares)} for every searchable fabric of `model`."""
    if not batches:
        raise ValueError("perturbation selection needs at least one batch (DERIVE.PERTURB_BATCHES >= 1)")
    was_training = model.training
    model.train()
    try:
        with preserved_buffers(model):
            base = _loss(model, criterion, batches)
            return {path: _fabric_scores(model, criterion, batches, m, base)
                    for path, m in model.named_modules() if isinstance(m, Fabric) and is_searchable(m)}
    finally:
        model.train(was_training)
