"""torch.distributed helpers that are no-ops in a single process (a leaf: imports nothing from src).

`init_distributed()` reads the torchrun variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT);
gloo on CPU, nccl on GPU. Collectives on lists of tensors are coalesced into one flat buffer per dtype.
"""
import os
from typing import List, Sequence

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def get_local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    """True on rank 0 (the only rank that writes files)."""
    return get_rank() == 0


def init_distributed(backend: str = "auto") -> bool:
    """Join the process group described by the torchrun env vars; False when WORLD_SIZE is unset or 1."""
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return False
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"unknown DIST.BACKEND '{backend}' (auto, gloo, nccl)")
    if backend == "nccl":
        torch.cuda.set_device(get_local_rank())
    dist.init_process_group(backend=backend, init_method="env://")
    return True


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def _coalesced_(tensors: Sequence[torch.Tensor], collective) -> List[torch.Tensor]:
    """Run `collective(flat)` on one flat buffer per (dtype, device) and copy the result back."""
    tensors = list(tensors)
    if get_world_size() == 1 or not tensors:
        return tensors
    groups = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    for group in groups.values():
        flat = torch.cat([t.detach().reshape(-1) for t in group])
        collective(flat)
        offset = 0
        for t in group:
            t.detach().copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()
    return tensors


def all_reduce_mean_(tensors: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """Average floating `tensors` in place over all ranks (one all-reduce per dtype); returns them."""
    def mean(flat):
        dist.all_reduce(flat)
        flat.div_(get_world_size())
    return _coalesced_(tensors, mean)


def broadcast_(tensors: Sequence[torch.Tensor], src: int = 0) -> List[torch.Tensor]:
    """Overwrite `tensors` in place with rank `src`'s values (one broadcast per dtype); returns them."""
    return _coalesced_(tensors, lambda flat: dist.broadcast(flat, src=src))


def all_gather_object(obj) -> list:
    """`obj` of every rank (picklable), in rank order; `[obj]` in a single process."""
    if get_world_size() == 1:
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out
