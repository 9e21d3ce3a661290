"""Edge normalisation of PC-DARTS (Xu et al., "PC-DARTS: Partial Channel Connections for Memory-Efficient
Architecture Search", ICLR 2020): a learnable weight per edge, softmaxed over the edges entering one hidden
state, multiplies the edge's output. With partial channels the op weights (alpha) see a different share of
the channels at every step; the edge weights steady which edges a state relies on, and at derivation an
edge scores edge weight x op weight (src/architecture/genotype/prune.py, DERIVE.EDGES_TOPK).

`EdgeNorm(edges)` normalises the (edge index, state) pairs `edges`: a fabric's whole edge layout when it is
searched one-shot (shared by its cells, like its alpha), or a cell's kept edges when the cell owns its arch.
Every state with two or more edges gets a child `s{state}` holding `gamma`, one zero-initialised logit per
edge of the state, so the arch registry (src/architecture/arch_params.py) finds it by name, e.g.
`parts.0.fabric.edge_norm.s1.gamma`. A state with one edge has no logit (its weight is 1).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from src.architecture.arch_params import new_arch_parameter


class _StateEdges(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.gamma = new_arch_parameter(n)


class EdgeNorm(nn.ModuleDict):
    def __init__(self, edges: Sequence[Tuple[int, int]]):
        super().__init__()
        self.state_edges: Dict[int, List[int]] = {}  # state -> its edges, in order (the columns of its gamma)
        for e, state in edges:
            self.state_edges.setdefault(state, []).append(e)
        for state, es in self.state_edges.items():
            if len(es) > 1:
                self[f"s{state}"] = _StateEdges(len(es))

    def weights(self, kept: Sequence[Tuple[int, int]]) -> List[Optional[Tensor]]:
        """Per kept (edge, state): its softmax over the kept edges of its state, None when it is the only one."""
        by_state: Dict[int, List[int]] = {}
        for e, state in kept:
            by_state.setdefault(state, []).append(e)
        out: Dict[int, Tensor] = {}
        for state, es in by_state.items():
            if len(es) < 2:
                continue
            gamma = self[f"s{state}"].gamma
            cols = [self.state_edges[state].index(e) for e in es]
            out.update(zip(es, torch.softmax(gamma if len(cols) == gamma.numel() else gamma[cols], 0)))
        return [out.get(e) for e, _ in kept]

    def rows(self) -> List[Tuple[int, List[int], List[float]]]:
        """(state, its edges, their softmaxed weights) of every state with a gamma, for tables."""
        return [(state, self.state_edges[state], torch.softmax(self[f"s{state}"].gamma.detach().float(), 0).tolist())
                for state in self.state_edges if f"s{state}" in self]
