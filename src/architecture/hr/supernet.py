"""HR-NAS multi-branch supernet: stem to 1/4, then stages that each start with a fuse module and continue
with parallel modules; branch b runs at stride 4 * 2^b with the fixed width `widths[b]`.

- Fuse module of a stage: fused output i sums searchable blocks on inputs i-1 (stride 2), i (stride 1)
  and i+1 (stride 1, then bilinear upsampling), then ReLU; a stage with one more branch than the previous
  one creates it from the last fused output by one stride-2 block (+ ReLU). The i->i edge has an identity
  skip when the widths match; cross-scale edges have no skip, so a dead one is removed exactly.
- Parallel module: `stage_blocks[s][b]` stride-1 blocks (identity skip) on branch b.
Every block is an `InvertedResidual`; its name is its module path (e.g. `stages.2.fuse.edges.1_2`,
`stages.3.parallel.0.1`), the key of the genotype and of `MODEL.HR.TRANSFORMER_BLOCKS` patterns. Parallel
blocks matching a `MODEL.HR.HRT_BLOCKS` pattern end with an HRFormer block (window attention + ConvFFN).

Shrinking (`src/architecture/hr/shrink.py`) may remove the top branches: a removed branch b returns its
constant value (buffer `dead_branch_{b}`) at its usual size, so the output is always one map per branch.
"""
import fnmatch
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.architecture.hr.hrt_block import default_num_heads
from src.architecture.hr.inverted_residual import InvertedResidual
from src.architecture.hr.layout import BlockSlot, check_stage_blocks, hr_layout
from src.architecture.hr.spec import BlockSpec, HRSupernetGenotype
from src.architecture.layers import Stem

DEFAULT_STAGE_BLOCKS = ((1,), (2, 2), (2, 2, 3), (2, 2, 3, 4), (2, 2, 3, 4))


@torch.no_grad()
def fill_gates(module: nn.Module, value: float) -> None:
    """Set every gate of the blocks in `module` to `value`. The block's shared BN (resp. the transformer's
    output BN and attention normalisation) make the function nearly invariant to a common gate scale, while
    an optimizer like Adam moves a gate by about lr per step: a small value reaches the threshold sooner."""
    for m in module.modules():
        if isinstance(m, InvertedResidual):
            for _, gate in m.gate_groups():
                gate.fill_(value)


def block_from_spec(spec: BlockSpec, grid: int) -> InvertedResidual:
    """The block a parsed genotype entry describes (`grid`: the supernet's token grid)."""
    return InvertedResidual(spec.inp, spec.out, spec.stride, spec.kernels, spec.channels, spec.skip, spec.tokens,
                            grid, None if spec.hrt is None else spec.hrt.to_dict())


class FuseModule(nn.Module):
    """n_in maps -> n_out maps (n_out <= n_in + 1); `edges["j_i"]` maps input j to output i."""

    def __init__(self, n_in: int, n_out: int, edges: Dict[str, InvertedResidual]):
        super().__init__()
        self.n_in, self.n_out = n_in, n_out
        self.edges = nn.ModuleDict(edges)

    def forward(self, xs: List[Tensor]) -> List[Tensor]:
        outs = []
        for i in range(min(self.n_in, self.n_out)):
            total = 0
            for j in (i - 1, i, i + 1):
                if f"{j}_{i}" in self.edges:
                    y = self.edges[f"{j}_{i}"](xs[j])
                    if j > i:
                        y = F.interpolate(y, size=xs[i].shape[-2:], mode="bilinear", align_corners=False)
                    total = total + y
            outs.append(torch.relu(total))
        for i in range(self.n_in, self.n_out):
            outs.append(torch.relu(self.edges[f"{i - 1}_{i}"](outs[i - 1])))
        return outs


class HRStage(nn.Module):
    """A fuse module, then `parallel[b]` (a sequence of stride-1 blocks) on each branch b."""

    def __init__(self, fuse: FuseModule, parallel: List[List[InvertedResidual]]):
        super().__init__()
        self.fuse = fuse
        self.parallel = nn.ModuleList(nn.Sequential(*blocks) for blocks in parallel)

    def forward(self, xs: List[Tensor]) -> List[Tensor]:
        return [branch(x) for branch, x in zip(self.parallel, self.fuse(xs))]


class HRSupernet(nn.Module):
    """Image -> one map per branch of the last stage (strides 4, 8, 16, 32); `.out_channels`.

    Without `arch` every block has all `kernel_sizes`, each path round(expand_ratio * block input) hidden
    channels, and `tokens` transformer tokens when its name matches a `transformer_blocks` pattern; a
    parallel block matching an `hrt_blocks` pattern ends with an HRT block (default_num_heads(width) heads,
    `hrt_window` windows, FFN of round(hrt_mlp_ratio * width) channels). With `arch` (a parsed genotype
    section, see spec.py) the blocks, edges and branches are exactly those it lists. Gates start at `gate_init`
    (see `fill_gates`).
    """

    def __init__(self, stem_channels: int = 24, widths: Sequence[int] = (18, 36, 72, 144),
                 stage_blocks: Sequence[Sequence[int]] = DEFAULT_STAGE_BLOCKS, kernel_sizes: Sequence[int] = (3, 5, 7),
                 expand_ratio: float = 4.0, transformer_blocks: Sequence[str] = (), tokens: int = 16, grid: int = 8,
                 gate_init: float = 1.0, arch: Optional[HRSupernetGenotype] = None, hrt_blocks: Sequence[str] = (),
                 hrt_window: int = 7, hrt_mlp_ratio: float = 4.0):
        super().__init__()
        check_stage_blocks(stage_blocks, widths)
        if hrt_window < 1 or hrt_mlp_ratio <= 0:
            raise ValueError(f"HR supernet: HRT window must be >= 1 and mlp ratio > 0 (got {hrt_window}, "
                             f"{hrt_mlp_ratio})")
        self.stem_channels, self.grid = stem_channels, grid
        self.widths = [int(w) for w in widths[:len(stage_blocks[-1])]]
        self.stage_blocks = [[int(n) for n in s] for s in stage_blocks]
        self.out_channels = list(self.widths)
        self.num_branches = len(self.widths) if arch is None else arch.num_branches
        self.stem = Stem(stem_channels)
        built: List[str] = []

        def block(slot: BlockSlot) -> Optional[InvertedResidual]:
            if arch is None:
                hidden = max(1, int(round(expand_ratio * slot.inp)))
                use = any(fnmatch.fnmatchcase(slot.name, p) for p in transformer_blocks)
                hrt = None
                if any(fnmatch.fnmatchcase(slot.name, p) for p in hrt_blocks):
                    if not slot.parallel:
                        pattern = next(p for p in hrt_blocks if fnmatch.fnmatchcase(slot.name, p))
                        raise ValueError(f"HRT block pattern '{pattern}' matches fusion block '{slot.name}': HRT "
                                         "blocks go on parallel (stride-1, in == out) blocks only")
                    hrt = {"heads": default_num_heads(slot.oup), "window": hrt_window,
                           "ffn": max(1, int(round(hrt_mlp_ratio * slot.oup)))}
                built.append(slot.name)
                return InvertedResidual(slot.inp, slot.oup, slot.stride, kernel_sizes, [hidden] * len(kernel_sizes),
                                        slot.skip, tokens if use else 0, grid, hrt)
            spec = arch.blocks.get(slot.name)  # a parsed genotype: absent = a removed fuse edge
            return None if spec is None else block_from_spec(spec, grid)

        stages = []
        for layout in hr_layout(stem_channels, self.widths, self.stage_blocks, self.num_branches):
            edges = {key: e for key, e in ((key, block(slot)) for key, slot in layout.fuse) if e is not None}
            parallel = [[block(slot) for slot in branch] for branch in layout.parallel]
            stages.append(HRStage(FuseModule(layout.n_in, layout.n_out, edges), parallel))
        self.stages = nn.ModuleList(stages)
        for b in range(self.num_branches, len(self.widths)):
            self.register_buffer(f"dead_branch_{b}", torch.zeros(self.widths[b]))
        for kind, patterns in (("transformer", transformer_blocks), ("HRT", hrt_blocks)):
            for pattern in patterns if arch is None else ():
                if not any(fnmatch.fnmatchcase(n, pattern) for n in built):
                    raise ValueError(f"{kind} block pattern '{pattern}' matches no block (e.g. '{built[-1]}')")
        fill_gates(self, gate_init)

    def forward(self, x: Tensor) -> List[Tensor]:
        xs = [self.stem(x)]
        for stage in self.stages:
            xs = stage(xs)
        for b in range(self.num_branches, len(self.widths)):
            h, w = xs[-1].shape[-2:]
            const = getattr(self, f"dead_branch_{b}").view(1, -1, 1, 1)
            xs.append(const.expand(x.shape[0], -1, -(-h // 2), -(-w // 2)).contiguous())
        return xs

    def named_blocks(self) -> Iterator[Tuple[str, InvertedResidual]]:
        for name, m in self.named_modules():
            if isinstance(m, InvertedResidual):
                yield name, m

    def named_gates(self) -> Iterator[Tuple[str, nn.Parameter]]:
        for name, m in self.named_blocks():
            for gname, g in m.named_gates():
                yield f"{name}.{gname}", g

    def genotype(self) -> HRSupernetGenotype:
        return HRSupernetGenotype(self.stem_channels, tuple(self.widths), tuple(tuple(s) for s in self.stage_blocks),
                                  self.grid, tuple(b < self.num_branches for b in range(len(self.widths))),
                                  {name: BlockSpec.of(m.spec()) for name, m in self.named_blocks()})

    @classmethod
    def from_genotype(cls, g: HRSupernetGenotype) -> "HRSupernet":
        """The supernet a parsed section describes (see spec.parse_hr)."""
        return cls(g.stem_channels, g.widths, g.stage_blocks, grid=g.grid, arch=g)
