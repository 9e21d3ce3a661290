"""Bilevel data split: seeded random weight/arch halves of the training set, and their sampler.

    weight_idx, arch_idx = bilevel_split(groups, cfg.SEARCH.SPLIT_RATIO, cfg.SEED)  # groups[i]: image of sample i
    weight_sampler = SplitSampler(weight_idx, seed=cfg.SEED)   # shards by rank under torch.distributed
    loader = DataLoader(train_set, batch_size=..., sampler=weight_sampler)
    weight_sampler.set_epoch(epoch)                             # every epoch, on every rank

The split is made by group (for top-down pose: by image), so all persons of one image fall on one side and
the arch batches never see an image the weights were trained on. It depends only on (groups, ratio, seed),
so every rank computes the same one.
"""
import math
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Sampler

from src.utils.distributed import get_rank, get_world_size


def bilevel_split(groups: Sequence[int], ratio: float, seed: int) -> Tuple[List[int], List[int]]:
    """(weight indices, arch indices): a seeded random partition of the groups (the image of every sample);
    groups are drawn in random order onto the weight side until it holds round(ratio * n) samples."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"SEARCH.SPLIT_RATIO must be in (0, 1), got {ratio}")
    members: dict = {}
    for i, grp in enumerate(groups):
        members.setdefault(grp, []).append(i)
    keys = sorted(members)
    order = torch.randperm(len(keys), generator=torch.Generator().manual_seed(seed)).tolist()
    target, weight = int(round(len(groups) * ratio)), []
    for k in order:
        if len(weight) >= target:
            break
        weight += members[keys[k]]
    taken = set(weight)
    arch = [i for i in range(len(groups)) if i not in taken]
    if not weight or not arch:
        raise ValueError(f"SEARCH.SPLIT_RATIO {ratio} leaves an empty split of {len(keys)} training images")
    return sorted(weight), arch


class SplitSampler(Sampler[int]):
    """Samples from `indices`, reshuffled each epoch (`set_epoch`), sharded by rank like DistributedSampler.

    Under `world_size` ranks every rank gets ceil(n / world_size) samples (the shuffled list is padded by
    wrapping around), or floor(n / world_size) with `drop_last`.
    """

    def __init__(self, indices: List[int], seed: int = 0, shuffle: bool = True, drop_last: bool = False,
                 rank: Optional[int] = None, world_size: Optional[int] = None):
        self.indices = list(indices)
        self.seed = seed
        self.shuffle = shuffle
        self.rank = get_rank() if rank is None else rank
        self.world_size = get_world_size() if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside world size {self.world_size}")
        n = len(self.indices)
        self.num_per_rank = n // self.world_size if drop_last else math.ceil(n / self.world_size)
        if self.num_per_rank == 0:
            raise ValueError(f"a split of {n} samples is too small for {self.world_size} ranks")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        n = len(self.indices)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        else:
            order = list(range(n))
        total = self.num_per_rank * self.world_size
        order = (order * math.ceil(total / n))[:total]
        return iter([self.indices[i] for i in order[self.rank:total:self.world_size]])

    def __len__(self) -> int:
        return self.num_per_rank
