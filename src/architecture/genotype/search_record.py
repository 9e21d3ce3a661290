"""The typed search record of a genotype ("search"): provenance, ignored by the build.

For every pruned fabric (by module path, e.g. "parts.1.fabric") the supernet spec it was pruned from with
its softmaxed beta per cell (over the cell's inputs) and alpha per cell and edge (over the edge's ops), and,
for a fabric searched with edge normalisation (PC-DARTS), "edge": its weight per cell and edge; plus the
prune settings and what they saved (src/architecture/genotype/prune.py). "edge" and the setting "edges_topk"
are absent from records written before they existed (and "edge" from fabrics without edge normalisation).
`parse_search` checks the record against the derived fabrics: every derived cell, input and op must exist in
its supernet.
"""
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

from src.architecture.fabric.spec import FabricSpec
from src.architecture.fields import FieldError, Obj, as_num, as_nums, as_obj, join
from src.architecture.limits import MAX_COUNT, MAX_FABRIC_CELLS, MAX_TOPK

PRUNE_KEYS = ("prune_cells", "prune_operations", "ops_topk", "beta_threshold", "beta_topk", "params", "flops")
PRUNE_OPTIONAL = ("edges_topk",)


@dataclass(frozen=True)
class FabricRecord:
    fabric: FabricSpec  # the supernet spec
    beta: Dict[str, Tuple[float, ...]]  # cell -> softmaxed beta per input
    alpha: Dict[str, Dict[int, Tuple[float, ...]]]  # cell -> edge -> softmaxed alpha per op
    edge: Optional[Dict[str, Dict[int, float]]] = None  # cell -> edge -> edge-normalisation weight (PC-DARTS)

    def to_dict(self) -> dict:
        d = {"fabric": self.fabric.to_dict(), "beta": {c: list(b) for c, b in self.beta.items()},
             "alpha": {c: {str(e): list(w) for e, w in a.items()} for c, a in self.alpha.items()}}
        if self.edge is not None:
            d["edge"] = {c: {str(e): w for e, w in ws.items()} for c, ws in self.edge.items()}
        return d


@dataclass(frozen=True)
class PruneStats:
    prune_cells: bool
    prune_operations: bool
    ops_topk: int
    beta_threshold: float
    beta_topk: int
    params: Dict[str, int]  # {"supernet": n, "derived": n}
    flops: Dict[str, int]  # idem, one image at the genotype's input size
    edges_topk: Optional[int] = None  # edges kept per hidden state (0 = all); None: not recorded (older files)

    def to_dict(self) -> dict:
        keys = PRUNE_KEYS + (PRUNE_OPTIONAL if self.edges_topk is not None else ())
        return {k: dict(getattr(self, k)) if isinstance(getattr(self, k), dict) else getattr(self, k) for k in keys}


@dataclass(frozen=True)
class SearchRecord:
    strategy: str
    prune: PruneStats
    fabrics: Dict[str, FabricRecord]  # module path of the derived fabric -> its record

    def to_dict(self) -> dict:
        return {"strategy": self.strategy, "prune": self.prune.to_dict(),
                "fabrics": {path: r.to_dict() for path, r in self.fabrics.items()}}


def _counts(o: Obj, key: str) -> Dict[str, int]:
    c = Obj(o.raw(key), o.field(key), ("supernet", "derived"))
    return {k: c.integer(k, 0, MAX_COUNT) for k in ("supernet", "derived")}


def _parse_prune(value, path: str) -> PruneStats:
    o = Obj(value, path, PRUNE_KEYS, PRUNE_OPTIONAL)
    return PruneStats(o.boolean("prune_cells"), o.boolean("prune_operations"), o.integer("ops_topk", 1, MAX_TOPK),
                      o.number("beta_threshold", 0.0, 1.0), o.integer("beta_topk", 0, MAX_TOPK), _counts(o, "params"),
                      _counts(o, "flops"), o.integer("edges_topk", 0, MAX_TOPK) if o.has("edges_topk") else None)


def _parse_record(value, path: str, derived: FabricSpec) -> FabricRecord:
    o = Obj(value, path, ("fabric", "beta", "alpha"), ("edge",))
    sup = FabricSpec.from_dict(o.raw("fabric"), o.field("fabric"))
    beta_in, alpha_in = o.mapping("beta"), o.mapping("alpha")
    edge_in = o.mapping("edge") if o.has("edge") else None
    beta, alpha, edge = {}, {}, ({} if edge_in is not None else None)
    for name, c in ((c.name, c) for c in sup.cells):
        field = join(o.field("beta"), name)
        if name not in beta_in:
            raise FieldError(field, f"missing (one weight per supernet input {c.inputs})")
        beta[name] = tuple(as_nums(beta_in[name], field, 0.0, len(c.inputs), len(c.inputs)))
        field = join(o.field("alpha"), name)
        edges = as_obj(alpha_in.get(name), field)
        if set(edges) != {str(e) for e in c.edges}:
            raise FieldError(field, f"must list the edges {sorted(c.edges)}, got {sorted(edges)[:MAX_FABRIC_CELLS]}")
        alpha[name] = {e: tuple(as_nums(edges[str(e)], join(field, e), 0.0, len(ops), len(ops)))
                       for e, ops in c.edges.items()}
        if edge_in is not None:
            field = join(o.field("edge"), name)
            weights = as_obj(edge_in.get(name), field)
            if set(weights) != {str(e) for e in c.edges}:
                raise FieldError(field, f"must list the edges {sorted(c.edges)}, got "
                                 f"{sorted(weights)[:MAX_FABRIC_CELLS]}")
            edge[name] = {e: as_num(weights[str(e)], join(field, e), 0.0, 1.0) for e in c.edges}
    for key, given in (("beta", beta_in), ("alpha", alpha_in), ("edge", edge_in or {})):
        extra = [name for name in given if name not in beta]
        if extra:
            raise FieldError(join(o.field(key), extra[0]), "is not a cell of the supernet")
    for c in derived.cells:
        s = sup.cell(c.name)
        if s is None:
            raise FieldError(o.field("fabric.cells"), f"derived cell {c.name} is not a supernet cell")
        if not set(c.inputs) <= set(s.inputs) or \
                any(not set(ops) <= set(s.edges.get(e, ())) for e, ops in c.edges.items()):
            raise FieldError(o.field("fabric.cells"), f"derived cell {c.name} keeps inputs or ops its supernet cell "
                             "lacks")
    return FabricRecord(sup, beta, alpha, edge)


def parse_search(value, path: str, derived: Mapping[str, FabricSpec]) -> SearchRecord:
    """`derived`: module path -> derived spec of every fabric of the genotype."""
    o = Obj(value, path, ("strategy", "prune", "fabrics"))
    fabrics = {}
    for key, rec in o.mapping("fabrics").items():
        field = join(o.field("fabrics"), key)
        if key not in derived:
            raise FieldError(field, f"names no fabric of the genotype (fabrics: {', '.join(derived)})")
        fabrics[key] = _parse_record(rec, field, derived[key])
    return SearchRecord(o.string("strategy"), _parse_prune(o.raw("prune"), o.field("prune")), fabrics)
