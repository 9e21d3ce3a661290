"""`FabricSpec`: the explicit description of a fabric (see fabric.py), its structural rules and its JSON form.

`FabricSpec.from_dict(d, where)` is the one parser of a fabric section of a genotype: every field is
type-checked and bounded (src/architecture/limits.py) before the spec is built, then the structural rules
(`validate`) are checked; errors are `FieldError`s naming the field, e.g.
"genotype field 'parts[1].fabric.cells[2].inputs': ...". A parsed spec is valid: `Fabric` trusts it.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional

from src.architecture.fabric.cell import INPUT_KINDS, CellSpec, cell_name
from src.architecture.fabric.op_registry import OPS
from src.architecture.fields import FieldError, Obj, SpecError, as_nums, as_obj, as_strs, join
from src.architecture.limits import (MAX_CHANNELS, MAX_FABRIC_CELLS, MAX_FABRIC_LAYERS, MAX_FABRIC_ROWS, MAX_FACTOR,
                                     MAX_HIDDEN_STATES, MAX_INPUT_NODES, MAX_SIZE_TYPE)

SPEC_KEYS = ("size_types", "factor", "ops", "hidden_states_num", "input_nodes_num", "input_layer", "input_scales",
             "cells", "outputs")
CELL_KEYS = ("layer", "scale", "inputs", "input_nodes", "edges")
CELL_WEIGHTS = ("input_weights", "op_weights")
_MAX_EDGES = MAX_HIDDEN_STATES * MAX_INPUT_NODES + MAX_HIDDEN_STATES * (MAX_HIDDEN_STATES - 1) // 2


@dataclass
class FabricSpec:
    size_types: List[int]  # stride of each row; channels of row s = size_types[s] * factor
    factor: int
    ops: List[str]  # candidate ops (alpha columns, in order)
    hidden_states_num: int
    input_nodes_num: int
    input_layer: int  # layer the input maps stand for
    input_scales: List[int]  # rows that get an input map
    cells: List[CellSpec]
    outputs: List[str]  # names of the cells returned by the forward, in order

    def channels(self, scale: int) -> int:
        return self.size_types[scale] * self.factor

    def cell(self, name: str) -> Optional[CellSpec]:
        return next((c for c in self.cells if c.name == name), None)

    def input_strides(self, name: str) -> List[int]:
        """Strides of the input maps that reach cell `name` through the kept cells, in increasing order."""
        cells = {c.name: c for c in self.cells}
        rows, todo, seen = set(), [name], {name}
        while todo:
            for layer, scale in cells[todo.pop()].sources():
                source = cell_name(layer, scale)
                if layer == self.input_layer:
                    rows.add(scale)
                elif source not in seen:
                    seen.add(source)
                    todo.append(source)
        return sorted(self.size_types[s] for s in rows)

    def validate(self) -> None:
        """Raise SpecError (field relative to the spec, e.g. "cells[3].inputs") when a rule is broken."""
        n = len(self.size_types)
        if n < 1 or self.factor < 1 or min(self.size_types) < 1:
            raise SpecError("size_types", "fabric: size_types must be positive and factor >= 1")
        if self.hidden_states_num < 1 or self.input_nodes_num < 1:
            raise SpecError("hidden_states_num", "fabric: hidden_states_num and input_nodes_num must be >= 1")
        if not self.ops or len(set(self.ops)) != len(self.ops):
            raise SpecError("ops", f"fabric: ops {self.ops} must be a non-empty list of distinct names")
        if not self.input_scales or not set(self.input_scales) <= set(range(n)):
            raise SpecError("input_scales", f"fabric: input_scales {self.input_scales} outside rows 0..{n - 1}")
        kept = {(c.layer, c.scale) for c in self.cells}
        consumed, seen = set(), set()
        for j, c in enumerate(self.cells):
            where = f"cells[{j}]"
            if c.name in seen:
                raise SpecError(where, f"fabric: duplicate cell {c.name}")
            seen.add(c.name)
            if not 0 <= c.scale < n or c.layer <= self.input_layer:
                raise SpecError(where, f"fabric: cell {c.name} outside rows 0..{n - 1} / layers > {self.input_layer}")
            try:
                c.validate(self.input_nodes_num, self.hidden_states_num)
            except SpecError as exc:
                raise SpecError(f"{where}.{exc.field}", str(exc)) from None
            for layer, scale in c.sources():
                ok = scale in self.input_scales if layer == self.input_layer else (layer, scale) in kept
                if not ok:
                    raise SpecError(where, f"fabric: cell {c.name} reads {cell_name(layer, scale)}, "
                                    "which is not in the fabric")
                consumed.add(cell_name(layer, scale))
        if not self.outputs:
            raise SpecError("outputs", "fabric: needs at least one output cell")
        for name in self.outputs:
            if name not in seen:
                raise SpecError("outputs", f"fabric: output {name} is not a kept cell")
        dead = [c.name for c in self.cells if c.name not in consumed and c.name not in self.outputs]
        if dead:
            raise SpecError("cells", f"fabric: cells {dead} feed no kept cell and are no output "
                            "(see prune_unreachable)")

    def to_dict(self) -> dict:
        d = {k: list(getattr(self, k)) if isinstance(getattr(self, k), list) else getattr(self, k)
             for k in SPEC_KEYS if k != "cells"}
        d["cells"] = []
        for c in self.cells:
            cd = {"layer": c.layer, "scale": c.scale, "inputs": list(c.inputs), "input_nodes": list(c.input_nodes),
                  "edges": {str(e): list(ops) for e, ops in sorted(c.edges.items())}}
            if c.input_weights is not None:
                cd["input_weights"] = [float(w) for w in c.input_weights]
            if c.op_weights is not None:
                cd["op_weights"] = {str(e): [float(w) for w in ws] for e, ws in sorted(c.op_weights.items())}
            d["cells"].append(cd)
        return d

    @classmethod
    def from_dict(cls, value, where: str = "fabric") -> "FabricSpec":
        """Parse and validate a JSON-able spec; errors are FieldErrors naming the field under `where`."""
        o = Obj(value, where, SPEC_KEYS)
        size_types = o.integers("size_types", 1, MAX_SIZE_TYPE, MAX_FABRIC_ROWS, min_len=1)
        factor = o.integer("factor", 1, MAX_FACTOR)
        if max(size_types) * factor > MAX_CHANNELS:
            raise FieldError(o.field("factor"), f"{factor} x size type {max(size_types)} = {max(size_types) * factor} "
                             f"channels, above {MAX_CHANNELS} (limits.MAX_CHANNELS)")
        ops = o.strings("ops", len(OPS), min_len=1, distinct=True)
        unknown = [op for op in ops if op not in OPS]
        if unknown:
            raise FieldError(o.field("ops"), f"unknown operations {unknown} (known: {', '.join(sorted(OPS))})")
        spec = cls(size_types, factor, ops, o.integer("hidden_states_num", 1, MAX_HIDDEN_STATES),
                   o.integer("input_nodes_num", 1, MAX_INPUT_NODES), o.integer("input_layer", -1, MAX_FABRIC_LAYERS),
                   o.integers("input_scales", 0, MAX_FABRIC_ROWS - 1, MAX_FABRIC_ROWS, min_len=1, distinct=True),
                   [_parse_cell(c, join(o.field("cells"), j), ops)
                    for j, c in enumerate(o.array("cells", MAX_FABRIC_CELLS, min_len=1))],
                   o.strings("outputs", MAX_FABRIC_ROWS, min_len=1, distinct=True))
        try:
            spec.validate()
        except SpecError as exc:
            raise FieldError(join(where, exc.field), str(exc)) from None
        return spec


def _edge_key(key: str, field: str) -> int:
    if not (isinstance(key, str) and key.isdigit() and len(key) <= 3):
        raise FieldError(field, f"keys must be edge indices (digits), got {key!r}"[:120])
    return int(key)


def _parse_cell(value, path: str, ops: List[str]) -> CellSpec:
    o = Obj(value, path, CELL_KEYS, CELL_WEIGHTS)
    edges: Dict[int, List[str]] = {}
    field = o.field("edges")
    raw = o.mapping("edges")
    if len(raw) > _MAX_EDGES:
        raise FieldError(field, f"has {len(raw)} edges, more than any cell can have ({_MAX_EDGES})")
    for key, names in raw.items():
        names = as_strs(names, join(field, key), len(ops), min_len=1, distinct=True)
        bad = [name for name in names if name not in ops]
        if bad:
            raise FieldError(join(field, key), f"operations {bad} are not in the fabric's ops {ops}")
        edges[_edge_key(key, field)] = names
    weights = {}
    if o.has("input_weights"):
        weights["input_weights"] = o.numbers("input_weights", 0.0, len(INPUT_KINDS))
    if o.has("op_weights"):
        field = o.field("op_weights")
        raw = as_obj(o.raw("op_weights"), field)
        if len(raw) > _MAX_EDGES:
            raise FieldError(field, f"has {len(raw)} edges, more than any cell can have ({_MAX_EDGES})")
        weights["op_weights"] = {_edge_key(e, field): as_nums(ws, join(field, e), 0.0, len(ops))
                                 for e, ws in raw.items()}
    return CellSpec(o.integer("layer", -1, MAX_FABRIC_LAYERS), o.integer("scale", 0, MAX_FABRIC_ROWS - 1),
                    o.strings("inputs", len(INPUT_KINDS), choices=INPUT_KINDS),
                    o.integers("input_nodes", 0, MAX_INPUT_NODES - 1, MAX_INPUT_NODES), edges, **weights)
