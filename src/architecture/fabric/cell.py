"""A fabric cell at (layer, scale), described by an explicit `CellSpec` of what it keeps.

Input nodes (`input_nodes_num` = I):
- node 0 = relu(sum_i softmax(beta)_i * connect_i(x_i)) over the kept scale inputs of the previous layer:
  "same" (cell (layer-1, scale)), "finer" (layer-1, scale-1) and "coarser" (layer-1, scale+1). A missing
  neighbour is simply not an input (no aliasing); beta has one logit per kept input, none if only one.
- node k >= 1 = relu(same-scale output k+1 layers back), e.g. node 1 = the previous-previous cell at this
  scale (DARTS' second input). Where that source does not exist the node is absent and so are its edges.
Hidden states (`hidden_states_num` = N): state i = sum over its kept edges of a mixed op applied to an input
node or an earlier state. Edges are numbered by `edge_layout(I, N)`; alpha rows follow that numbering when
alpha is shared (one-shot), or the cell's kept edges in order when the cell owns alpha. The output is a
1x1 conv + BN over the concatenated states (N*C -> C). Without arch parameters (a derived cell) kept inputs
and kept ops are mixed by the spec's fixed weights (`input_weights`, `op_weights`: the pruned supernet's
softmax values, see src/architecture/genotype/prune.py), or averaged when the spec has none (the function of
zero logits).
Cheaper search (searchable cells only): `partial_channels` K > 1 builds partial-channel mixed ops (mixed_op.py),
`edge_norm` multiplies each edge by its PC-DARTS edge weight (edge_norm.py; owned by the cell when it owns
alpha, else passed in by the fabric), and a `sample` (Gumbel noise shaped like alpha, temperature) runs one
sampled op per edge (sampling.py).
"""
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from src.architecture.arch_params import new_arch_parameter
from src.architecture.fabric.edge_norm import EdgeNorm
from src.architecture.fabric.mixed_op import MixedOp
from src.architecture.fabric.operators import CONNECTIONS, SameConnect
from src.architecture.fabric.sampling import straight_through
from src.architecture.fields import SpecError
from src.architecture.layers import conv_bn

INPUT_KINDS = ("same", "finer", "coarser")
SCALE_OFFSET = {"same": 0, "finer": -1, "coarser": 1}


def edge_layout(input_nodes_num: int, hidden_states_num: int) -> List[Tuple[int, int]]:
    """(state, source) per edge; source < I is an input node, source = I + j is state j."""
    return [(i, src) for i in range(hidden_states_num) for src in range(input_nodes_num + i)]


def cell_name(layer: int, scale: int) -> str:
    return f"L{layer}_S{scale}"


@dataclass
class CellSpec:
    layer: int
    scale: int  # row of the fabric (index into size_types)
    inputs: List[str]  # kept scale inputs mixed into node 0, in INPUT_KINDS order
    input_nodes: List[int]  # kept input nodes (0 needs `inputs`; k >= 1 = same scale, k+1 layers back)
    edges: Dict[int, List[str]] = field(default_factory=dict)  # kept edge index -> kept op names
    input_weights: Optional[List[float]] = None  # derived cell: fixed mixing weight of each kept input
    op_weights: Optional[Dict[int, List[float]]] = None  # derived cell: fixed mixing weights of each edge's ops

    @property
    def name(self) -> str:
        return cell_name(self.layer, self.scale)

    def sources(self) -> List[Tuple[int, int]]:
        """(layer, scale) of every map the cell reads: its kept inputs, then its kept nodes k >= 1."""
        return ([(self.layer - 1, self.scale + SCALE_OFFSET[k]) for k in self.inputs]
                + [(self.layer - 1 - k, self.scale) for k in self.input_nodes if k > 0])

    def validate(self, input_nodes_num: int, hidden_states_num: int) -> None:
        """Raise SpecError (field relative to the cell: "inputs", "edges.3", ...) when a rule is broken."""
        where = f"cell {self.name}"
        if any(k not in INPUT_KINDS for k in self.inputs) or len(set(self.inputs)) != len(self.inputs):
            raise SpecError("inputs", f"{where}: inputs {self.inputs} must be distinct names from {INPUT_KINDS}")
        if list(self.inputs) != [k for k in INPUT_KINDS if k in self.inputs]:
            raise SpecError("inputs", f"{where}: inputs {self.inputs} must be in the order {INPUT_KINDS}")
        nodes = set(self.input_nodes)
        if len(nodes) != len(self.input_nodes) or not nodes <= set(range(input_nodes_num)):
            raise SpecError("input_nodes", f"{where}: input_nodes {self.input_nodes} must be distinct in "
                            f"0..{input_nodes_num - 1}")
        if (0 in nodes) != bool(self.inputs):
            raise SpecError("input_nodes", f"{where}: input node 0 is kept exactly when the cell has inputs")
        layout = edge_layout(input_nodes_num, hidden_states_num)
        used, fed = set(), set()
        for e, ops in self.edges.items():
            if not 0 <= e < len(layout):
                raise SpecError(f"edges.{e}", f"{where}: edge {e} out of range 0..{len(layout) - 1}")
            state, src = layout[e]
            if src < input_nodes_num and src not in nodes:
                raise SpecError(f"edges.{e}", f"{where}: edge {e} reads input node {src}, which the cell does not keep")
            if not ops:
                raise SpecError(f"edges.{e}", f"{where}: edge {e} keeps no operation")
            used.add(src)
            fed.add(state)
        if fed != set(range(hidden_states_num)):
            raise SpecError("edges", f"{where}: states {sorted(set(range(hidden_states_num)) - fed)} have no kept edge")
        if nodes - used:
            raise SpecError("input_nodes", f"{where}: input nodes {sorted(nodes - used)} feed no kept edge")

        def check_weights(ws, n, field, what):
            if len(ws) != n or not all(math.isfinite(w) and w >= 0 for w in ws):
                raise SpecError(field, f"{where}: {what} {list(ws)} must be {n} finite weights >= 0")
        if self.input_weights is not None:
            check_weights(self.input_weights, len(self.inputs), "input_weights", "input_weights")
        if self.op_weights is not None:
            if set(self.op_weights) != set(self.edges):
                raise SpecError("op_weights", f"{where}: op_weights edges {sorted(self.op_weights)} differ from the "
                                f"kept edges {sorted(self.edges)}")
            for e, ws in self.op_weights.items():
                check_weights(ws, len(self.edges[e]), f"op_weights.{e}", f"op_weights of edge {e}")


class Cell(nn.Module):
    """One fabric cell of a validated spec (its fabric's spec passed `FabricSpec.validate`). `in_channels` maps
    each source (see `CellSpec.sources`) to its channels.

    arch: "none" (derived: the spec's fixed weights, else averages), "shared" (alpha passed to forward) or
    "own" (the cell owns alpha). `partial_channels` / `edge_norm`: see the module doc (the fabric passes them
    for searchable cells only).
    """

    def __init__(self, spec: CellSpec, channels: int, in_channels: Sequence[int], input_nodes_num: int,
                 hidden_states_num: int, candidate_ops: Sequence[str], arch: str = "shared", partial_channels: int = 1,
                 edge_norm: bool = False):
        super().__init__()
        if arch not in ("none", "shared", "own"):
            raise ValueError(f"cell arch mode must be none/shared/own, got '{arch}'")
        self.spec, self.arch = spec, arch
        self.input_nodes_num, self.hidden_states_num = input_nodes_num, hidden_states_num
        n_in = len(spec.inputs)
        self.connections = nn.ModuleDict({k: CONNECTIONS[k](c, channels) for k, c in zip(spec.inputs, in_channels)})
        extra = [k for k in spec.input_nodes if k > 0]
        self.node_inputs = nn.ModuleDict({str(k): SameConnect(c, channels) for k, c in zip(extra, in_channels[n_in:])})
        layout = edge_layout(input_nodes_num, hidden_states_num)
        self._edges = [(e, layout[e][0], layout[e][1]) for e in sorted(spec.edges)]  # (edge, state, source)
        fixed_ops = spec.op_weights if arch == "none" and spec.op_weights is not None else {}
        self.edges = nn.ModuleDict({str(e): MixedOp(channels, spec.edges[e], weights=fixed_ops.get(e),
                                                    partial=partial_channels) for e, _, _ in self._edges})
        if arch == "none" and spec.input_weights is not None:
            self.register_buffer("fixed_input_weights", torch.tensor([float(w) for w in spec.input_weights]),
                                 persistent=False)
        self._op_index: List[Optional[List[int]]] = []  # alpha columns of each edge's ops (None = all, in order)
        if arch != "none":
            for e, _, _ in self._edges:
                missing = [o for o in spec.edges[e] if o not in candidate_ops]
                if missing:
                    raise ValueError(f"cell {spec.name}: edge {e} ops {missing} are not candidates "
                                     f"{list(candidate_ops)}")
                idx = [list(candidate_ops).index(o) for o in spec.edges[e]]
                self._op_index.append(None if idx == list(range(len(candidate_ops))) else idx)
            if n_in > 1:
                self.beta = new_arch_parameter(n_in)
            if arch == "own":
                self.alpha = new_arch_parameter(len(self._edges), len(candidate_ops))
                if edge_norm:
                    self.edge_norm = EdgeNorm([(e, state) for e, state, _ in self._edges])
        self.out = conv_bn(hidden_states_num * channels, channels)

    @property
    def name(self) -> str:
        return self.spec.name

    def input_weights(self) -> Optional[Tensor]:
        """Weights of the kept inputs in node 0: softmax(beta), a derived cell's fixed weights, or None (averaged)."""
        if hasattr(self, "beta"):
            return torch.softmax(self.beta, 0)
        return getattr(self, "fixed_input_weights", None)

    def _rows(self, table: Tensor) -> List[Tensor]:
        """Per kept edge, its row of an alpha-shaped table (alpha, or its noise) over the edge's ops."""
        rows = [table[j if self.arch == "own" else e] for j, (e, _, _) in enumerate(self._edges)]
        return [row if idx is None else row[idx] for row, idx in zip(rows, self._op_index)]

    def _alpha(self, alpha: Optional[Tensor]) -> Tensor:
        if self.arch == "own":
            return self.alpha
        if alpha is None:
            raise ValueError(f"cell {self.name} needs the shared alpha")
        return alpha

    def op_weights(self, alpha: Optional[Tensor] = None) -> List[Optional[Tensor]]:
        """Per kept edge, the softmax of its alpha row over the edge's ops (`alpha`: the shared logits);
        None for a derived cell (its mixed ops apply their fixed weights or average)."""
        if self.arch == "none":
            return [None] * len(self._edges)
        return [torch.softmax(row, 0) for row in self._rows(self._alpha(alpha))]

    def edge_weights(self, shared: Optional[EdgeNorm] = None) -> List[Optional[Tensor]]:
        """Per kept edge, its edge-normalisation weight (the cell's own EdgeNorm, else `shared`), None = 1."""
        norm = getattr(self, "edge_norm", None)
        norm = shared if norm is None else norm
        if norm is None:
            return [None] * len(self._edges)
        return norm.weights([(e, state) for e, state, _ in self._edges])

    def forward(self, xs: Sequence[Tensor], size: Sequence[int], alpha: Optional[Tensor] = None,
                edge_norm: Optional[EdgeNorm] = None, sample: Optional[Tuple[Tensor, float]] = None) -> Tensor:
        """xs: the maps of `spec.sources()`, in order; size: (h, w) of this scale; alpha / edge_norm: the
        fabric's shared ones; sample: (Gumbel noise shaped like this cell's alpha, temperature) for a sampled
        single-path forward."""
        n_in = len(self.spec.inputs)
        nodes: Dict[int, Tensor] = {}
        if n_in:
            ys = [conn(x, size) for conn, x in zip(self.connections.values(), xs[:n_in])]
            w = self.input_weights()
            if w is not None:
                mix = sum(w[i] * y for i, y in enumerate(ys))
            else:
                mix = ys[0] if n_in == 1 else sum(ys) / n_in
            nodes[0] = torch.relu(mix)
        for (k, conn), x in zip(self.node_inputs.items(), xs[n_in:]):
            nodes[int(k)] = torch.relu(conn(x, size))
        if sample is None:
            weights, chosen = self.op_weights(alpha), [None] * len(self._edges)
        else:
            noise, tau = sample
            weights, chosen = zip(*[straight_through(row, g, tau)
                                    for row, g in zip(self._rows(self._alpha(alpha)), self._rows(noise))])
        states: List[Optional[Tensor]] = [None] * self.hidden_states_num
        for (e, state, src), op, w, k, g in zip(self._edges, self.edges.values(), weights, chosen,
                                                self.edge_weights(edge_norm)):
            x = nodes[src] if src < self.input_nodes_num else states[src - self.input_nodes_num]
            y = op(x, w, k) if g is None else g * op(x, w, k)
            states[state] = y if states[state] is None else states[state] + y
        return self.out(states[0] if len(states) == 1 else torch.cat(states, 1))
