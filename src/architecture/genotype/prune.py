"""Derive the searched architecture: keep the chosen cells, inputs and ops of every searchable fabric.

Rule (`ops_topk`, `beta_threshold`, `beta_topk`: the config's DERIVE.*, read by src/engine/search_outputs.py):
- ops: each edge keeps its `ops_topk` ops of largest softmaxed alpha; `zero` is never kept (it adds nothing).
- cells: walking back from each fabric's output cells, a kept cell keeps an input when its softmaxed beta
  is above `beta_threshold` or among its `beta_topk` largest (at least the largest); the cells read through
  kept inputs (and through same-scale input nodes k >= 1) are kept, every other cell is removed.
- edges (`edges_topk` > 0, DERIVE.EDGES_TOPK; 0 keeps every edge): each hidden state keeps its `edges_topk`
  incoming edges of largest score = edge weight x the largest weight of the edge's kept ops (PC-DARTS; the
  edge weight is the softmaxed edge normalisation `gamma` when the fabric has it, else 1, which is DARTS' rule).
  Input nodes that no longer feed a kept edge are dropped (node 0 with the cell's inputs).
- weights: a derived cell mixes its kept inputs by their beta renormalised over the kept inputs, and its kept
  ops by their alpha renormalised over the kept ops plus `zero` (whose share stays: dropping it changes
  nothing), times the edge's normalisation weight (renormalised over the state's kept edges) when the fabric
  has one. Keeping everything therefore computes exactly the supernet's function (with partial channels,
  PC-DARTS, the derived ops are full-width: they cannot take the supernet's 1/K-channel weights and start
  from a fresh initialisation, logged by Prune).
(PoseNFS pruned only weights that are exactly 0 after softmax, which never removes anything in practice.)
The derived model is a copy whose searchable fabrics are replaced by derived ones (`searchable=False`)
holding the supernet's weights of the kept modules (loaded by name).
"""
import copy
import logging
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from src.architecture.arch_params import unwrap
from src.architecture.fabric.cell import CellSpec, edge_layout
from src.architecture.fabric.fabric import Fabric, FabricSpec, prune_unreachable
from src.architecture.genotype.genotype import Genotype, RunFields, genotype_of, search_records
from src.architecture.genotype.search_record import FabricRecord, PruneStats, SearchRecord
from src.utils.flops import count_flops, count_params

logger = logging.getLogger(__name__)


def is_searchable(fabric: Fabric) -> bool:
    return any(cell.arch != "none" for cell in fabric.cells.values())


@torch.no_grad()
def fabric_weights(fabric: Fabric) -> Tuple[Dict[str, List[float]], Dict[str, Dict[int, List[float]]]]:
    """Softmaxed beta per cell (over its inputs) and alpha per cell and edge (over the edge's ops), exactly
    as the forward mixes them (fixed weights or plain averages for a derived cell)."""
    alpha = getattr(fabric, "alpha", None)
    betas, alphas = {}, {}
    for name, cell in fabric.cells.items():
        n = len(cell.spec.inputs)
        w = cell.input_weights()
        betas[name] = [1.0 / n] * n if w is None else [float(v) for v in w]
        alphas[name] = {}
        for e, w in zip(sorted(cell.spec.edges), cell.op_weights(alpha)):
            op = cell.edges[str(e)]
            w = w if w is not None else getattr(op, "fixed_weights", None)
            alphas[name][e] = [1.0 / len(op.ops)] * len(op.ops) if w is None else [float(v) for v in w]
    return betas, alphas


@torch.no_grad()
def edge_weights(fabric: Fabric) -> Optional[Dict[str, Dict[int, float]]]:
    """The edge-normalisation weight of every cell's kept edges (1 for a state's only kept edge), as the forward
    applies them; None when the fabric has no edge normalisation."""
    shared = getattr(fabric, "edge_norm", None)
    if shared is None and not any(hasattr(cell, "edge_norm") for cell in fabric.cells.values()):
        return None
    return {name: {e: 1.0 if w is None else float(w)
                   for e, w in zip(sorted(cell.spec.edges), cell.edge_weights(shared))}
            for name, cell in fabric.cells.items()}


def _select_edges(edges: Dict[int, List[str]], op_weights: Dict[int, List[float]], score: Dict[int, float],
                  weight: Optional[Dict[int, float]], topk: int, layout: List[Tuple[int, int]]):
    """(edges, op weights) of a cell keeping the `topk` best-scored edges of each state (every edge when
    topk = 0); with edge normalisation (`weight`), each edge's op weights are multiplied by its weight
    renormalised over the state's kept edges."""
    by_state: Dict[int, List[int]] = {}
    for e in edges:
        by_state.setdefault(layout[e][0], []).append(e)
    kept = sorted(e for es in by_state.values() for e in (_top(score, es, topk) if topk else es))
    if weight is not None:
        total: Dict[int, float] = {}
        for e in kept:
            total[layout[e][0]] = total.get(layout[e][0], 0.0) + weight[e]
        op_weights = {e: [weight[e] / total[layout[e][0]] * w for w in op_weights[e]] for e in kept}
    return {e: edges[e] for e in kept}, {e: op_weights[e] for e in kept}


def _top(weights: List[float], candidates: List[int], k: int) -> List[int]:
    """The k candidates of largest weight (ties: the earlier one), in their original order."""
    best = sorted(candidates, key=lambda i: -weights[i])[:k]
    return sorted(best)


def derive_spec(fabric: Fabric, prune_cells: bool = True, prune_operations: bool = True, ops_topk: int = 1,
                beta_threshold: float = 0.2, beta_topk: int = 1, scores: Optional[Tuple[dict, dict]] = None, *,
                edges_topk: int = 0) -> Tuple[FabricSpec, FabricRecord]:
    """The derived spec of a fabric (with its fixed mixing weights) and the search record it came from.
    `scores` (betas, alphas shaped like `fabric_weights`) rank the inputs and ops instead of the softmaxed
    values (DERIVE.SELECTION perturbation, src/search/selection.py); the mixing weights stay the softmax."""
    spec = fabric.spec
    betas, alphas = fabric_weights(fabric)
    norms = edge_weights(fabric)
    rank_b, rank_a = scores if scores is not None else (betas, alphas)
    layout = edge_layout(spec.input_nodes_num, spec.hidden_states_num)
    cells = []
    for c in spec.cells:
        w, idx = betas[c.name], list(range(len(c.inputs)))
        keep = idx
        if prune_cells:
            r = rank_b[c.name]
            keep = sorted({i for i in idx if r[i] > beta_threshold} | set(_top(r, idx, max(1, beta_topk))))
        g = norms[c.name] if norms is not None else None
        edges, op_weights, score = {}, {}, {}
        for e, ops in c.edges.items():
            a = alphas[c.name][e]
            mixed = fabric.cells[c.name].edges[str(e)]
            zero = [i for i, o in enumerate(ops) if getattr(mixed.ops[o], "is_zero", False)]
            real = [i for i in range(len(ops)) if i not in zero]
            chosen = (_top(rank_a[c.name][e], real, min(ops_topk, len(real)) if prune_operations else len(real))
                      if real else zero)
            denom = sum(a[i] for i in chosen) + sum(a[i] for i in zero if i not in chosen)  # zero's share stays
            edges[e] = [ops[i] for i in chosen]
            op_weights[e] = [a[i] / denom for i in chosen]
            score[e] = (1.0 if g is None else g[e]) * max([rank_a[c.name][e][i] for i in chosen if i in real] or [0.0])
        edges, op_weights = _select_edges(edges, op_weights, score, g, edges_topk, layout)
        nodes = [k for k in c.input_nodes if any(layout[e][1] == k for e in edges)]
        keep = keep if 0 in nodes else []
        total = sum(w[i] for i in keep)
        cells.append(CellSpec(c.layer, c.scale, [c.inputs[i] for i in keep], nodes, edges,
                              input_weights=[w[i] / total for i in keep], op_weights=op_weights))
    # walk back from the outputs through the kept inputs (and same-scale input nodes): the rest is removed
    derived = prune_unreachable(FabricSpec(spec.size_types, spec.factor, spec.ops, spec.hidden_states_num,
                                           spec.input_nodes_num, spec.input_layer, spec.input_scales, cells,
                                           spec.outputs))
    derived.validate()
    record = FabricRecord(copy.deepcopy(spec), {name: tuple(b) for name, b in betas.items()},
                          {name: {e: tuple(w) for e, w in a.items()} for name, a in alphas.items()}, norms)
    return derived, record


def _replace(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


def Prune(model: nn.Module, run: RunFields, strategy: str, prune_cells: bool = True,  # noqa: N802
          prune_operations: bool = True, ops_topk: int = 1, beta_threshold: float = 0.2, beta_topk: int = 1, *,
          scores: Optional[Dict[str, tuple]] = None, edges_topk: int = 0,
          log_fn: Optional[Callable[[str], None]] = None) -> Tuple[nn.Module, Genotype]:
    """(derived model, genotype) of a model searched by `strategy`. `run` gives the genotype's run-level fields
    and the input size at which the savings in FLOPs are measured; the report goes to `log_fn` (default:
    logging). `scores` {fabric path: (betas, alphas)} rank inputs and ops instead of the softmaxed values."""
    if ops_topk < 1 or edges_topk < 0:
        raise ValueError(f"ops_topk (DERIVE.OPS_TOPK) must be >= 1 and edges_topk (DERIVE.EDGES_TOPK) >= 0, got "
                         f"{ops_topk} and {edges_topk}")
    log = log_fn or logger.info
    core = unwrap(model)
    derived = copy.deepcopy(core)
    records = {}
    for path, fabric in list(core.named_modules()):
        if not isinstance(fabric, Fabric) or not is_searchable(fabric):
            continue
        spec, records[path] = derive_spec(fabric, prune_cells, prune_operations, ops_topk, beta_threshold, beta_topk,
                                          (scores or {}).get(path), edges_topk=edges_topk)
        ref = next(fabric.parameters(), None)  # the derived fabric takes the supernet's device and dtype
        new = Fabric(spec, fabric.in_channels, searchable=False)
        new = new.to(device=ref.device, dtype=ref.dtype) if ref is not None else new
        own, sup = new.state_dict(), fabric.state_dict()
        missing = [k for k in own if k not in sup]
        if missing:
            raise RuntimeError(f"derived fabric {path} has weights the supernet lacks: {missing[:3]}")
        fresh = [k for k in own if own[k].shape != sup[k].shape]  # full-width ops of a partial-channel supernet
        if fresh and fabric.partial_channels == 1:
            raise RuntimeError(f"derived fabric {path}: tensors {fresh[:3]} differ in shape from the supernet's")
        new.load_state_dict({k: sup[k] for k in own if k not in fresh}, strict=False)
        if fresh:
            log(f"{path}: {len(fresh)} op tensors of the derived (full-width) ops start fresh: the supernet's ops "
                f"had 1/{fabric.partial_channels} of the channels (partial channels)")
        _replace(derived, path, new.train(fabric.training))
    w, h = run.input_size
    shape = (1, 3, h, w)
    stats = PruneStats(prune_cells, prune_operations, ops_topk, float(beta_threshold), beta_topk,
                       {"supernet": count_params(core), "derived": count_params(derived)},
                       {"supernet": count_flops(core, shape), "derived": count_flops(derived, shape)}, edges_topk)
    genotype = genotype_of(run, derived, search=SearchRecord(strategy, stats, records))
    log(prune_report(genotype))
    return derived, genotype


def _pct(before: int, after: int) -> str:
    return f"{(after - before) / before * 100:+.1f}%" if before else "n/a"


def prune_report(g: Genotype) -> str:
    """What the prune of a genotype removed and what it saves (from its search record)."""
    if g.search is None:
        return "genotype has no search record (nothing to report)"
    s = g.search.prune
    lines = [f"prune (ops_topk {s.ops_topk}, beta_threshold {s.beta_threshold}, beta_topk {s.beta_topk}"
             + (f", edges_topk {s.edges_topk}" if s.edges_topk else "") + "):"]
    records = search_records(g)
    for path, label, spec in g.arch.fabrics():
        if path not in records:
            continue
        sup = records[path].fabric
        kept = {c.name: c for c in spec.cells}
        removed = [c.name for c in sup.cells if c.name not in kept]
        dropped, ops = [], {}
        for c in sup.cells:
            k = kept.get(c.name)
            if k is None:
                continue
            dropped += [f"{c.name}.{kind}" for kind in c.inputs if kind not in k.inputs]
            for e, names in sorted(k.edges.items()):
                ops.setdefault(f"e{e} {'+'.join(names)}", []).append(c.name)
        op_text = "; ".join(f"{key} ({'all cells' if len(v) == len(kept) else ', '.join(v)})" for key, v in ops.items())
        lines.append(f"  {label}: cells {len(sup.cells)} -> {len(kept)}"
                     + (f", removed {', '.join(removed)}" if removed else "")
                     + (f"; inputs dropped {', '.join(dropped)}" if dropped else "") + f"; ops {op_text}"
                     + "".join(f"; {o} reads input strides {', '.join(map(str, spec.input_strides(o)))}"
                               for o in spec.outputs))
    p, f = s.params, s.flops
    w, h = g.input_size
    lines.append(f"  params {p['supernet'] / 1e6:.4f}M -> {p['derived'] / 1e6:.4f}M "
                 f"({_pct(p['supernet'], p['derived'])}), FLOPs {f['supernet'] / 1e9:.4f}G -> "
                 f"{f['derived'] / 1e9:.4f}G ({_pct(f['supernet'], f['derived'])}) at {w}x{h}")
    return "\n".join(lines)
