"""The ScaleNAS supernet and its standalone subnets (one class: `ScaleSupernet(spec, only=None)`).

Image -> the shared `Stem` (1/4) -> stage s: a transition (stage 0: 3x3 conv + BN + ReLU from the stem to
widths[0]; later stages: a new branch from the coarsest one by a 3x3 stride-2 conv + BN + ReLU), then
`spec.modules[s]` `ScaleModule`s -> one map per branch (strides 4, 8, ...; `.out_channels` = widths).

In a module, for every block depth d < max(depths): branch i with depth > d runs its block d, then adds every
branch k whose fusion bit fusion[i][d][k] is on (k's map after its block d, or its final map if it is
shallower) through HRNet's fusion edge (src/architecture/hr/fuse_edge.py), then ReLU; a branch with
depth <= d passes unchanged. Blocks are HRNet's BasicBlock or HR-NAS's InvertedResidual (stride 1, identity
skip; `spec.block`).

The supernet holds `max_depth` blocks per branch and every fusion edge after every block, and runs its
`active` subnet (default: the largest). With `only=subnet` the network holds just that subnet's blocks and
edges, under the same module names, so the supernet's weights load into it by name (`inherit_weights`) and,
in eval mode, it computes exactly what the supernet computes with that subnet active.
"""
from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

from src.architecture.hr.fuse_edge import hrnet_fuse_edge, resize_to
from src.architecture.hr.inverted_residual import InvertedResidual
from src.architecture.layers import Stem, conv_bn
from src.architecture.scale.space import ScaleSpaceSpec, largest
from src.architecture.scale.subnet import ModuleChoice, ScaleSubnet, check_subnet
from src.utils.flops import count_flops


def make_block(spec: ScaleSpaceSpec, width: int) -> nn.Module:
    """One stride-1 block of `width` channels of the kind `spec.block`."""
    if spec.block == "basic":
        return BasicBlock(width, width)
    hidden = max(1, int(round(spec.expand_ratio * width)))
    return InvertedResidual(width, width, 1, spec.kernel_sizes, [hidden] * len(spec.kernel_sizes), "identity")


def edge_name(d: int, src: int, dst: int) -> str:
    """Key of the fusion edge src -> dst after block d."""
    return f"{d}_{src}_{dst}"


class ScaleModule(nn.Module):
    """`n` branches of up to `spec.max_depth` blocks and their fusion edges (only `keep`'s, when given)."""

    def __init__(self, spec: ScaleSpaceSpec, n: int, keep: Optional[ModuleChoice] = None):
        super().__init__()
        widths = spec.widths[:n]
        depths = keep.depths if keep is not None else (spec.max_depth,) * n
        self.blocks = nn.ModuleList(nn.ModuleList(make_block(spec, widths[i]) for _ in range(depths[i]))
                                    for i in range(n))
        self.fuse = nn.ModuleDict({
            edge_name(d, k, i): hrnet_fuse_edge(widths[k], widths[i], k, i)
            for i in range(n) for d in range(depths[i]) for k in range(n)
            if k != i and (keep is None or keep.fusion[i][d][k])})

    def forward(self, xs: List[Tensor], choice: ModuleChoice) -> List[Tensor]:
        for d in range(max(choice.depths)):
            ys = [self.blocks[i][d](x) if d < choice.depths[i] else x for i, x in enumerate(xs)]
            xs = []
            for i, y in enumerate(ys):
                if d >= choice.depths[i]:
                    xs.append(y)
                    continue
                total = y
                for k, on in enumerate(choice.fusion[i][d]):
                    if on and k != i:
                        total = total + resize_to(self.fuse[edge_name(d, k, i)](ys[k]), y)
                xs.append(torch.relu(total))
        return xs


class ScaleSupernet(nn.Module):
    """The supernet of `spec` (or, with `only`, the standalone network of that subnet); see the module doc."""

    def __init__(self, spec: ScaleSpaceSpec, only: Optional[ScaleSubnet] = None):
        super().__init__()
        self.spec = spec
        self.only = None if only is None else check_subnet(only, spec)
        self._active = self.only if only is not None else largest(spec)
        self.out_channels = list(spec.widths)
        self.stem = Stem(spec.stem_channels)
        w = spec.widths
        self.transitions = nn.ModuleList(
            conv_bn(spec.stem_channels, w[0], 3, 1, relu=True) if s == 0 else conv_bn(w[s - 1], w[s], 3, 2, relu=True)
            for s in range(len(w)))
        keeps: Sequence[Optional[ModuleChoice]] = self._active.modules if only is not None else \
            [None] * len(spec.module_branches())
        self.cells = nn.ModuleList(ScaleModule(spec, n, keep) for n, keep in zip(spec.module_branches(), keeps))

    @property
    def active(self) -> ScaleSubnet:
        return self._active

    def set_active(self, subnet: ScaleSubnet) -> None:
        """Run `subnet` from now on (checked against the spec; a standalone network runs only its own)."""
        subnet = check_subnet(subnet, self.spec)
        if self.only is not None and subnet != self.only:
            raise ValueError("a standalone subnet network runs only its own subnet")
        self._active = subnet

    def forward(self, x: Tensor) -> List[Tensor]:
        xs = [self.transitions[0](self.stem(x))]
        m = 0
        for s, count in enumerate(self.spec.modules):
            if s > 0:
                xs.append(self.transitions[s](xs[-1]))
            for _ in range(count):
                xs = self.cells[m](xs, self._active.modules[m])
                m += 1
        return xs

    def genotype(self) -> ScaleSpaceSpec:
        """The supernet spec (the subnet is `active`)."""
        return self.spec

    def subnet_flops(self, subnet: ScaleSubnet, input_size: Sequence[int]) -> int:
        """FLOPs (FlopCounterMode) of this network with `subnet` active, on one image of
        `input_size` = [width, height] (MODEL.INPUT_SIZE order)."""
        return active_flops(self, self, subnet, input_size)


def find_scale_supernet(model: nn.Module) -> ScaleSupernet:
    """The ScaleSupernet inside `model` (a DDP wrapper, a ScaleNet, a seg model with that backbone)."""
    for m in model.modules():
        if isinstance(m, ScaleSupernet):
            return m
    raise ValueError(f"{type(model).__name__} holds no ScaleNAS supernet (MODEL.NAME scalenet or MODEL.BACKBONE "
                     "scale_supernet)")


def active_flops(model: nn.Module, supernet: ScaleSupernet, subnet: ScaleSubnet, input_size: Sequence[int]) -> int:
    """FLOPs of `model` (which holds `supernet`) on one [width, height] image with `subnet` active; the
    previously active subnet is restored."""
    previous = supernet.active
    supernet.set_active(subnet)
    try:
        return count_flops(model, (1, 3, int(input_size[1]), int(input_size[0])))
    finally:
        supernet.set_active(previous)
