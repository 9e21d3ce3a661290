"""Cell-based neural fabric: cells on a grid of layers x scales, built from an explicit `FabricSpec`.

A spec lists the kept cells (each with its kept inputs, input nodes and ops per edge, see `cell.py`), the
layer its input maps stand for (`input_layer`: -1 for a fabric fed by a stem at scale 0, cut-1 for a CNF fed
by a backbone's four maps) and the cells it returns. The forward runs the kept cells in layer order, each
reading exactly its kept sources, so a pruned fabric is just a fabric built from a smaller spec (with the
fixed mixing weights that chose its inputs and ops, see `CellSpec`); a derived network is rebuilt from JSON
with `Fabric(FabricSpec.from_dict(d), in_channels, searchable=False)`.
Cells live in `fabric.cells["L{layer}_S{scale}"]`; channels of row s are `size_types[s] * factor`.

Default shapes (PoseNFS): `triangle_spec` (layer j has min(j+2, rows, depth-j) cells, ending in the
1/4-scale cell; the first `cut_layers_num` layers are the backbone's), `rising_spec` (min(j+2, rows) cells,
returning every row of the last layer: the searchable fabric backbone). A spec is refused when a cell reads
a map that does not exist or when a cell feeds nothing (no dead modules; see `prune_unreachable`).
Arch parameters: `alpha` [edges, ops] on the fabric when one-shot (shared by its cells), else on each cell;
`beta` on each cell with more than one input (over its kept inputs).
"""
import copy
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn

from src.architecture.arch_params import new_arch_parameter
from src.architecture.cell import INPUT_KINDS, SCALE_OFFSET, Cell, CellSpec, cell_name, edge_layout


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

    def validate(self) -> None:
        n = len(self.size_types)
        if n < 1 or self.factor < 1 or min(self.size_types) < 1:
            raise ValueError("fabric: size_types must be positive and factor >= 1")
        if self.hidden_states_num < 1 or self.input_nodes_num < 1:
            raise ValueError("fabric: hidden_states_num and input_nodes_num must be >= 1")
        if not self.ops or len(set(self.ops)) != len(self.ops):
            raise ValueError(f"fabric: ops {self.ops} must be a non-empty list of distinct names")
        if not set(self.input_scales) <= set(range(n)):
            raise ValueError(f"fabric: input_scales {self.input_scales} outside rows 0..{n - 1}")
        names = [c.name for c in self.cells]
        if len(set(names)) != len(names):
            raise ValueError("fabric: duplicate cells")
        kept = {(c.layer, c.scale) for c in self.cells}
        consumed = set()
        for c in self.cells:
            if not 0 <= c.scale < n or c.layer <= self.input_layer:
                raise ValueError(f"fabric: cell {c.name} outside rows 0..{n - 1} / layers > {self.input_layer}")
            c.validate(self.input_nodes_num, self.hidden_states_num)
            for layer, scale in c.sources():
                ok = (scale in self.input_scales if layer == self.input_layer
                      else (layer, scale) in kept)
                if not ok:
                    raise ValueError(f"fabric: cell {c.name} reads {cell_name(layer, scale)}, "
                                     "which is not in the fabric")
                consumed.add(cell_name(layer, scale))
        for name in self.outputs:
            if name not in names:
                raise ValueError(f"fabric: output {name} is not a kept cell")
        dead = [name for name in names if name not in consumed and name not in self.outputs]
        if dead:
            raise ValueError(f"fabric: cells {dead} feed no kept cell and are no output (see prune_unreachable)")

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("size_types", "factor", "ops", "hidden_states_num", "input_nodes_num",
                                            "input_layer", "input_scales", "outputs")}
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
    def from_dict(cls, d: dict, where: str = "fabric") -> "FabricSpec":
        """Parse (and validate) a JSON-able spec; errors name the field."""
        def get(obj, key, types, ctx):
            if not isinstance(obj, dict) or key not in obj:
                raise ValueError(f"{ctx}: missing field '{key}'")
            if not isinstance(obj[key], types) or isinstance(obj[key], bool):
                raise ValueError(f"{ctx}: field '{key}' has the wrong type ({type(obj[key]).__name__})")
            return obj[key]
        cells = []
        for i, c in enumerate(get(d, "cells", list, where)):
            ctx = f"{where}.cells[{i}]"
            edges = get(c, "edges", dict, ctx)
            try:
                edges = {int(e): [str(o) for o in ops] for e, ops in edges.items()}
            except (TypeError, ValueError):
                raise ValueError(f"{ctx}: field 'edges' must map edge indices to op lists") from None
            weights = {}
            if "input_weights" in c:
                weights["input_weights"] = _numbers(get(c, "input_weights", list, ctx), f"{ctx}: field 'input_weights'")
            if "op_weights" in c:
                op_weights = get(c, "op_weights", dict, ctx)
                if not all(isinstance(e, str) and e.isdigit() for e in op_weights):
                    raise ValueError(f"{ctx}: field 'op_weights' must map edge indices to weight lists")
                weights["op_weights"] = {int(e): _numbers(ws, f"{ctx}: field 'op_weights' edge {e}")
                                         for e, ws in op_weights.items()}
            cells.append(CellSpec(get(c, "layer", int, ctx), get(c, "scale", int, ctx),
                                  [str(k) for k in get(c, "inputs", list, ctx)],
                                  [int(k) for k in get(c, "input_nodes", list, ctx)], edges, **weights))
        spec = cls([int(s) for s in get(d, "size_types", list, where)], get(d, "factor", int, where),
                   [str(o) for o in get(d, "ops", list, where)], get(d, "hidden_states_num", int, where),
                   get(d, "input_nodes_num", int, where), get(d, "input_layer", int, where),
                   [int(s) for s in get(d, "input_scales", list, where)], cells,
                   [str(o) for o in get(d, "outputs", list, where)])
        try:
            spec.validate()
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        return spec


def _numbers(values, what: str) -> List[float]:
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{what} must be a list of numbers")
    return [float(v) for v in values]


def _grid_spec(size_types, factor, ops, counts: Dict[int, int], input_layer, input_scales,
               hidden_states_num, input_nodes_num, outputs_last_layer: bool) -> FabricSpec:
    """Every cell of `counts` (layer -> rows 0..count-1) with every existing input, node, edge and op."""
    n = len(size_types)
    kept = set()

    def exists(layer, scale):
        if not 0 <= scale < n:
            return False
        return scale in input_scales if layer == input_layer else (layer, scale) in kept

    layout = edge_layout(input_nodes_num, hidden_states_num)
    cells = []
    for layer in sorted(counts):
        for scale in range(counts[layer]):
            inputs = [k for k in INPUT_KINDS if exists(layer - 1, scale + SCALE_OFFSET[k])]
            nodes = ([0] if inputs else []) + [k for k in range(1, input_nodes_num) if exists(layer - 1 - k, scale)]
            edges = {e: list(ops) for e, (_, src) in enumerate(layout) if src >= input_nodes_num or src in nodes}
            cells.append(CellSpec(layer, scale, inputs, nodes, edges))
        kept.update((layer, s) for s in range(counts[layer]))
    last = max(counts)
    outputs = [cell_name(last, s) for s in range(counts[last])] if outputs_last_layer else [cell_name(last, 0)]
    spec = FabricSpec(list(size_types), factor, list(ops), hidden_states_num, input_nodes_num, input_layer,
                      list(input_scales), cells, outputs)
    spec.validate()
    return spec


def triangle_spec(size_types, factor, ops, depth, cut_layers_num=0, input_scales=(0,), hidden_states_num=1,
                  input_nodes_num=1) -> FabricSpec:
    """PoseNFS fabric: layers cut..depth-1 with min(j+2, rows, depth-j) cells, output = last 1/4 cell.
    The input maps stand for layer cut-1 (the stem at scale 0 when cut = 0, a backbone's maps otherwise)."""
    if not 0 <= cut_layers_num < depth:
        raise ValueError(f"fabric: need 0 <= cut_layers_num ({cut_layers_num}) < depth ({depth})")
    counts = {j: min(j + 2, len(size_types), depth - j) for j in range(cut_layers_num, depth)}
    return _grid_spec(size_types, factor, ops, counts, cut_layers_num - 1, input_scales, hidden_states_num,
                      input_nodes_num, outputs_last_layer=False)


def rising_spec(size_types, factor, ops, layers, input_scales=(0,), hidden_states_num=1,
                input_nodes_num=1) -> FabricSpec:
    """Searchable-backbone fabric: layers 0..layers-1 with min(j+2, rows) cells, output = every row of the
    last layer (needs layers >= rows - 1)."""
    if layers < len(size_types) - 1:
        raise ValueError(f"fabric backbone: {layers} layers cannot reach {len(size_types)} rows "
                         f"(need >= {len(size_types) - 1})")
    counts = {j: min(j + 2, len(size_types)) for j in range(layers)}
    return _grid_spec(size_types, factor, ops, counts, -1, input_scales, hidden_states_num, input_nodes_num,
                      outputs_last_layer=True)


def prune_unreachable(spec: FabricSpec) -> FabricSpec:
    """The spec without the cells that (transitively) feed no output."""
    by_name = {c.name: c for c in spec.cells}
    needed, stack = set(), [o for o in spec.outputs if o in by_name]
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        stack.extend(cell_name(*src) for src in by_name[name].sources() if cell_name(*src) in by_name)
    return FabricSpec(spec.size_types, spec.factor, spec.ops, spec.hidden_states_num, spec.input_nodes_num,
                      spec.input_layer, spec.input_scales, [c for c in spec.cells if c.name in needed], spec.outputs)


def scale_sizes(inputs: Sequence[Tensor], input_scales: Sequence[int], rows: int) -> List[Tuple[int, int]]:
    """(h, w) of every row: from the input maps; missing rows by stride-2 conv arithmetic ((h-1)//2+1)."""
    sizes: Dict[int, Tuple[int, int]] = {s: tuple(inputs[s].shape[-2:]) for s in input_scales}
    first = min(sizes)
    for s in range(first + 1, rows):
        if s not in sizes:
            h, w = sizes[s - 1]
            sizes[s] = ((h - 1) // 2 + 1, (w - 1) // 2 + 1)
    for s in range(first - 1, -1, -1):
        sizes[s] = (2 * sizes[s + 1][0], 2 * sizes[s + 1][1])
    return [sizes[s] for s in range(rows)]


class Fabric(nn.Module):
    """The cells of a spec. `in_channels[s]` = channels of input map s (for s in spec.input_scales).

    searchable=False builds a derived fabric (no alpha/beta; kept inputs and ops are mixed by the spec's fixed
    weights, or averaged when it has none).
    forward(inputs) takes the list of input maps indexed by row and returns the output cells' maps.
    """

    def __init__(self, spec: FabricSpec, in_channels: Sequence[int], searchable: bool = True, one_shot: bool = True):
        super().__init__()
        spec = copy.deepcopy(spec)  # the fabric owns its description
        spec.validate()
        if max(spec.input_scales) >= len(in_channels):
            raise ValueError(f"fabric: input rows {spec.input_scales} but only {len(in_channels)} input channels given")
        self.spec = spec
        self.in_channels = list(in_channels)
        channels = {(spec.input_layer, s): in_channels[s] for s in spec.input_scales}
        channels.update({(c.layer, c.scale): spec.channels(c.scale) for c in spec.cells})
        arch = "none" if not searchable else ("shared" if one_shot else "own")
        self.cells = nn.ModuleDict()
        self._sources: Dict[str, List[Tuple[int, int]]] = {}
        for c in sorted(spec.cells, key=lambda c: (c.layer, c.scale)):
            self.cells[c.name] = Cell(c, spec.channels(c.scale), [channels[s] for s in c.sources()],
                                      spec.input_nodes_num, spec.hidden_states_num, spec.ops, arch)
            self._sources[c.name] = c.sources()
        if arch == "shared":
            edges = len(edge_layout(spec.input_nodes_num, spec.hidden_states_num))
            self.alpha = new_arch_parameter(edges, len(spec.ops))
        self.out_channels = [spec.channels(self.cells[o].spec.scale) for o in spec.outputs]

    def forward(self, inputs: Sequence[Tensor]) -> List[Tensor]:
        spec = self.spec
        sizes = scale_sizes(inputs, spec.input_scales, len(spec.size_types))
        maps = {(spec.input_layer, s): inputs[s] for s in spec.input_scales}
        alpha = getattr(self, "alpha", None)
        for name, cell in self.cells.items():
            maps[(cell.spec.layer, cell.spec.scale)] = cell([maps[s] for s in self._sources[name]],
                                                             sizes[cell.spec.scale], alpha)
        return [maps[(self.cells[o].spec.layer, self.cells[o].spec.scale)] for o in spec.outputs]

    def arch_table(self) -> str:
        """Softmaxed alpha (per op; shared or per cell and edge) and beta (same / finer / coarser) per cell."""
        spec = self.spec
        layout = edge_layout(spec.input_nodes_num, spec.hidden_states_num)
        inn = spec.input_nodes_num

        def label(e):
            state, src = layout[e]
            return f"e{e}:s{state}<-" + (f"in{src}" if src < inn else f"s{src - inn}")

        def probs(row):
            return [f"{p:.3f}" for p in torch.softmax(row.detach().float(), -1).tolist()]

        def line(cols, widths):
            return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cols, widths)))

        ow = [max(5, len(o)) for o in spec.ops]
        lines = []
        if hasattr(self, "alpha"):
            lines.append(line(["alpha (shared)"] + spec.ops, [16] + ow))
            lines += [line([label(e)] + probs(row), [16] + ow) for e, row in enumerate(self.alpha)]
        own = any(hasattr(c, "alpha") for c in self.cells.values())
        head = ["cell", "same", "finer", "coarser"] + (["edge"] + spec.ops if own else [])
        widths = [8, 7, 7, 7] + ([12] + ow if own else [])
        lines.append(line(head, widths))
        for name, cell in self.cells.items():
            kinds = cell.spec.inputs
            b = (torch.softmax(cell.beta.detach().float(), 0).tolist() if hasattr(cell, "beta")
                 else [1.0 / len(kinds)] * len(kinds))
            betas = [f"{b[kinds.index(k)]:.3f}" if k in kinds else "-" for k in INPUT_KINDS]
            rows = ([[label(e)] + probs(cell.alpha[j]) for j, (e, _, _) in enumerate(cell._edges)]
                    if hasattr(cell, "alpha") else [[]])
            for j, extra in enumerate(rows):
                lines.append(line(([name] + betas if j == 0 else [""] * 4) + extra, widths))
        return "\n".join(lines)
