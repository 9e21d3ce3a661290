"""Where the searchable blocks of the HR-NAS supernet sit, and their shapes: the one description of its
structure, used to build it (supernet.py) and to check a genotype against it before building
(spec.py), without allocating anything.

Stage s of `stage_blocks` (branches = len(stage_blocks[s])) starts with a fuse module: output i sums blocks on
inputs i-1 (stride 2), i (stride 1, identity skip when the widths match) and i+1 (stride 1, upsampled);
cross-scale edges (i-1 -> i, i+1 -> i) may be removed by shrinking. A stage with one more branch creates it
from the last fused output by one stride-2 block. Then `stage_blocks[s][b]` stride-1 identity-skip blocks
("parallel") on each branch b. Branches >= `num_branches` (removed by shrinking) have no blocks.
"""
from dataclasses import dataclass
from typing import List, Sequence, Tuple


@dataclass(frozen=True)
class BlockSlot:
    """A block of the supernet: its name (module path, the genotype key), shapes, and whether it may be absent."""
    name: str
    inp: int
    oup: int
    stride: int
    skip: str  # "identity" or "none" (see inverted_residual.SKIPS)
    optional: bool  # a cross-scale fuse edge, removed when inert

    @property
    def parallel(self) -> bool:
        return ".parallel." in self.name


@dataclass(frozen=True)
class StageLayout:
    n_in: int  # branches entering the fuse module
    n_out: int  # branches leaving it
    fuse: Tuple[Tuple[str, BlockSlot], ...]  # ("j_i", slot) per fuse edge, j -> i
    parallel: Tuple[Tuple[BlockSlot, ...], ...]  # per branch, its stride-1 blocks in order

    def slots(self) -> List[BlockSlot]:
        return [slot for _, slot in self.fuse] + [slot for branch in self.parallel for slot in branch]


def check_stage_blocks(stage_blocks: Sequence[Sequence[int]], widths: Sequence[int]) -> None:
    counts = [len(s) for s in stage_blocks]
    if not counts or counts[0] != 1:
        raise ValueError(f"HR supernet: the first stage must have one branch (stage_blocks {stage_blocks})")
    if any(b - a not in (0, 1) for a, b in zip(counts, counts[1:])):
        raise ValueError(f"HR supernet: each stage keeps or adds one branch (stage_blocks {stage_blocks})")
    if counts[-1] > len(widths):
        raise ValueError(f"HR supernet: {counts[-1]} branches need {counts[-1]} widths, got {list(widths)}")
    if any(not isinstance(n, int) or n < 0 for s in stage_blocks for n in s) or min(widths) < 1:
        raise ValueError("HR supernet: block counts must be ints >= 0 and widths >= 1")


def hr_layout(stem_channels: int, widths: Sequence[int], stage_blocks: Sequence[Sequence[int]],
              num_branches: int) -> List[StageLayout]:
    """The stages of a supernet whose last stage has len(widths) branches, `num_branches` of them alive."""
    prev = [stem_channels]
    stages = []
    for s, counts in enumerate(stage_blocks):
        n_in, n_out = min(len(prev), num_branches), min(len(counts), num_branches)
        fuse = []
        for i in range(min(n_in, n_out)):
            for j in (i - 1, i, i + 1):
                if 0 <= j < n_in:
                    skip = "identity" if j == i and prev[j] == widths[i] else "none"
                    fuse.append((f"{j}_{i}", BlockSlot(f"stages.{s}.fuse.edges.{j}_{i}", prev[j], widths[i],
                                                       2 if j < i else 1, skip, j != i)))
        for i in range(n_in, n_out):
            fuse.append((f"{i - 1}_{i}", BlockSlot(f"stages.{s}.fuse.edges.{i - 1}_{i}", widths[i - 1], widths[i], 2,
                                                   "none", False)))
        parallel = tuple(tuple(BlockSlot(f"stages.{s}.parallel.{b}.{k}", widths[b], widths[b], 1, "identity", False)
                               for k in range(counts[b])) for b in range(n_out))
        stages.append(StageLayout(n_in, n_out, tuple(fuse), parallel))
        prev = list(widths[:len(counts)])
    return stages
