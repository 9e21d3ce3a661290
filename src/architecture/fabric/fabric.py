"""Cell-based neural fabric: cells on a grid of layers x scales, built from an explicit `FabricSpec`.

A spec lists the kept cells (each with its kept inputs, input nodes and ops per edge, see `cell.py`), the
layer its input maps stand for (`input_layer`: -1 for a fabric fed by a stem at scale 0, cut-1 for a CNF fed
by a backbone's four maps) and the cells it returns. The forward runs the kept cells in layer order, each
reading exactly its kept sources, so a pruned fabric is just a fabric built from a smaller spec (with the
fixed mixing weights that chose its inputs and ops, see `CellSpec`); a derived network is rebuilt from JSON
with `Fabric(FabricSpec.from_dict(d), in_channels, searchable=False)` (the spec, its rules and its JSON form
live in spec.py; every builder here and the parser validate it, `Fabric` trusts it).
Cells live in `fabric.cells["L{layer}_S{scale}"]`; channels of row s are `size_types[s] * factor`.

Default shapes (PoseNFS): `triangle_spec` (layer j has min(j+2, rows, depth-j) cells, ending in the
1/4-scale cell; the first `cut_layers_num` layers are the backbone's), `rising_spec` (min(j+2, rows) cells,
returning every row of the last layer: the searchable fabric backbone). A spec is refused when a cell reads
a map that does not exist or when a cell feeds nothing (no dead modules; see `prune_unreachable`).
Arch parameters: `alpha` [edges, ops] on the fabric when one-shot (shared by its cells), else on each cell;
`beta` on each cell with more than one input (over its kept inputs); with `edge_norm`, `gamma` (PC-DARTS edge
normalisation, edge_norm.py) beside alpha, per state with several edges.
Cheaper search (searchable fabrics; a derived fabric is always plain): `partial_channels` K (PC-DARTS, 1/K
of every edge's channels through its ops, mixed_op.py), `edge_norm`, and sampled single-path forwards (GDAS,
sampling.py) inside `sampled_forwards(model, sampler)`: the Gumbel noise is drawn once per forward for the
shared alpha (every cell then runs the same sampled ops, as GDAS shares one sample per cell type), or per
cell for alpha per cell.
"""
import copy
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from src.architecture.arch_params import new_arch_parameter
from src.architecture.fabric.cell import INPUT_KINDS, SCALE_OFFSET, Cell, CellSpec, cell_name, edge_layout
from src.architecture.fabric.edge_norm import EdgeNorm
from src.architecture.fabric.sampling import GumbelSampler
from src.architecture.fabric.spec import FabricSpec

__all__ = ["Fabric", "FabricSearch", "FabricSpec", "prune_unreachable", "rising_spec", "sampled_forwards",
           "scale_sizes", "triangle_spec"]


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


@dataclass(frozen=True)
class FabricSearch:
    """How a searchable fabric is searched: the keyword arguments of `Fabric` a model passes on."""
    one_shot: bool = True  # MODEL.FABRIC.ONE_SHOT_SEARCH: one alpha shared by the cells, else one per cell
    partial_channels: int = 1  # SEARCH.PARTIAL_CHANNELS (PC-DARTS K)
    edge_norm: bool = False  # SEARCH.EDGE_NORM (PC-DARTS edge normalisation)


class Fabric(nn.Module):
    """The cells of a spec. `in_channels[s]` = channels of input map s (for s in spec.input_scales).

    searchable=False builds a derived fabric (no alpha/beta; kept inputs and ops are mixed by the spec's fixed
    weights, or averaged when it has none); `partial_channels` (K) and `edge_norm` shape a searchable one.
    forward(inputs) takes the list of input maps indexed by row and returns the output cells' maps.
    """

    def __init__(self, spec: FabricSpec, in_channels: Sequence[int], searchable: bool = True, one_shot: bool = True,
                 partial_channels: int = 1, edge_norm: bool = False):
        super().__init__()
        spec = copy.deepcopy(spec)  # the fabric owns its description (a validated spec: it is trusted)
        if max(spec.input_scales) >= len(in_channels):
            raise ValueError(f"fabric: input rows {spec.input_scales} but only {len(in_channels)} input channels given")
        if not searchable:
            partial_channels, edge_norm = 1, False
        rows = [spec.channels(s) for s in range(len(spec.size_types))]
        if partial_channels < 1 or any(c % partial_channels for c in rows):
            raise ValueError(f"fabric: partial channels K={partial_channels} (SEARCH.PARTIAL_CHANNELS) must be >= 1 "
                             f"and divide the channels {rows} of every row")
        self.spec, self.partial_channels = spec, partial_channels
        self.in_channels = list(in_channels)
        self.sampler: Optional[GumbelSampler] = None  # set inside `sampled_forwards`
        channels = {(spec.input_layer, s): in_channels[s] for s in spec.input_scales}
        channels.update({(c.layer, c.scale): spec.channels(c.scale) for c in spec.cells})
        arch = "none" if not searchable else ("shared" if one_shot else "own")
        self.cells = nn.ModuleDict()
        self._sources: Dict[str, List[Tuple[int, int]]] = {}
        for c in sorted(spec.cells, key=lambda c: (c.layer, c.scale)):
            self.cells[c.name] = Cell(c, spec.channels(c.scale), [channels[s] for s in c.sources()],
                                      spec.input_nodes_num, spec.hidden_states_num, spec.ops, arch, partial_channels,
                                      edge_norm)
            self._sources[c.name] = c.sources()
        if arch == "shared":
            layout = edge_layout(spec.input_nodes_num, spec.hidden_states_num)
            self.alpha = new_arch_parameter(len(layout), len(spec.ops))
            if edge_norm:
                self.edge_norm = EdgeNorm([(e, state) for e, (state, _) in enumerate(layout)])
        self.out_channels = [spec.channels(self.cells[o].spec.scale) for o in spec.outputs]

    def forward(self, inputs: Sequence[Tensor]) -> List[Tensor]:
        spec = self.spec
        sizes = scale_sizes(inputs, spec.input_scales, len(spec.size_types))
        maps = {(spec.input_layer, s): inputs[s] for s in spec.input_scales}
        alpha, edge_norm, sampler = getattr(self, "alpha", None), getattr(self, "edge_norm", None), self.sampler
        shared_noise = sampler.noise(alpha) if sampler is not None and alpha is not None else None
        for name, cell in self.cells.items():
            sample = None
            if sampler is not None and cell.arch != "none":
                sample = (shared_noise if cell.arch == "shared" else sampler.noise(cell.alpha), sampler.tau)
            maps[(cell.spec.layer, cell.spec.scale)] = cell([maps[s] for s in self._sources[name]],
                                                             sizes[cell.spec.scale], alpha, edge_norm, sample)
        return [maps[(self.cells[o].spec.layer, self.cells[o].spec.scale)] for o in spec.outputs]

    def arch_table(self) -> str:
        """Softmaxed alpha (per op; shared or per cell and edge), beta (same / finer / coarser) per cell and the
        edge-normalisation weights (per state; shared or per cell)."""
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
        norms = [("shared", self.edge_norm)] if hasattr(self, "edge_norm") else []
        norms += [(name, cell.edge_norm) for name, cell in self.cells.items() if hasattr(cell, "edge_norm")]
        for owner, norm in norms:
            lines += [f"edge norm {owner} s{state}: " + "  ".join(f"{label(e)} {p:.3f}" for e, p in zip(edges, ps))
                      for state, edges, ps in norm.rows()]
        return "\n".join(lines)


@contextmanager
def sampled_forwards(model: nn.Module, sampler: GumbelSampler):
    """Inside the block, every searchable fabric of `model` runs one sampled op per edge (GDAS, sampling.py)."""
    fabrics = [m for m in model.modules() if isinstance(m, Fabric)]
    for f in fabrics:
        f.sampler = sampler
    try:
        yield
    finally:
        for f in fabrics:
            f.sampler = None
