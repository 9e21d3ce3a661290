"""Weight masks with `torch.nn.utils.prune`: which tensors are prunable, attaching and reading masks.

Prunable tensors: the `weight` of every `nn.Conv2d` / `nn.Linear` (blocks, stems, heads, fusion edges,
transformer projections) whose module name matches a TICKET.INCLUDE pattern and no TICKET.EXCLUDE pattern
(fnmatch). Biases, BN/LayerNorm parameters, gates and arch parameters (alpha/beta/gamma) are never pruned.

A pruned module holds `weight_orig` (the parameter, the same object the optimizer holds) and the buffer
`weight_mask`; its `weight` is `weight_orig * weight_mask`, recomputed before every forward. So a checkpoint
(`state_dict()`) holds the masks, and `attach_masks_from_state` prepares a fresh model to load one.
"""
from fnmatch import fnmatch
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from src.architecture.arch_params import is_arch_name, unwrap

PRUNABLE_TYPES = (nn.Conv2d, nn.Linear)
MASK_SUFFIX = ".weight_mask"


def prunable_modules(model: nn.Module, include: Sequence[str] = ("*",),
                     exclude: Sequence[str] = ()) -> List[Tuple[str, nn.Module]]:
    """(name, module) of every Conv2d / Linear whose name matches `include` and not `exclude`."""
    out = []
    for name, m in unwrap(model).named_modules():
        if not isinstance(m, PRUNABLE_TYPES) or is_arch_name(f"{name}.weight"):
            continue
        if any(fnmatch(name, p) for p in include) and not any(fnmatch(name, p) for p in exclude):
            out.append((name, m))
    return out


def is_pruned(module: nn.Module) -> bool:
    return prune.is_pruned(module) and hasattr(module, "weight_mask")


def weight_param(module: nn.Module) -> nn.Parameter:
    """The trained tensor of a prunable module (`weight_orig` when pruned, else `weight`)."""
    return module.weight_orig if is_pruned(module) else module.weight


def mask_of(module: nn.Module) -> Tensor:
    """The module's mask (all ones when unpruned), bool."""
    return module.weight_mask.bool() if is_pruned(module) else torch.ones_like(module.weight, dtype=torch.bool)


def set_mask(module: nn.Module, mask: Tensor) -> None:
    """Make `mask` the module's only mask (replacing an earlier one; the parameter object is kept)."""
    unmask(module)
    prune.custom_from_mask(module, "weight", mask.to(module.weight.device, module.weight.dtype))
    module._buffers["weight_mask"] = module.weight_mask.contiguous()  # global_unstructured flattens with view(-1)


def unmask(module: nn.Module) -> None:
    """Remove the pruning of `module` keeping `weight_orig`'s values (pruned entries included): the
    parameter object becomes `weight` again."""
    if not prune.is_pruned(module):
        return
    for k, hook in list(module._forward_pre_hooks.items()):
        if isinstance(hook, prune.BasePruningMethod):
            del module._forward_pre_hooks[k]
    orig = module._parameters.pop("weight_orig")
    del module._buffers["weight_mask"]
    if "weight" in module.__dict__:
        del module.__dict__["weight"]
    module.register_parameter("weight", orig)


def masks_of(model: nn.Module) -> Dict[str, Tensor]:
    """Module name -> bool mask of every pruned module."""
    return {name: m.weight_mask.bool() for name, m in unwrap(model).named_modules()
            if isinstance(m, nn.Module) and is_pruned(m)}


def finalize(model: nn.Module) -> nn.Module:
    """Fold every mask into its weights (`prune.remove`): a plain network, the same outputs."""
    for m in unwrap(model).modules():
        if is_pruned(m):
            prune.remove(m, "weight")
    return model


def folded_state(state: Dict[str, Tensor]) -> Tuple[Dict[str, Tensor], int]:
    """A state dict with every mask folded in: `X.weight_orig` and `X.weight_mask` become `X.weight` =
    orig * mask (what the masked module computes with); returns it and how many masks were folded."""
    out, count = {}, 0
    for key, value in state.items():
        if key.endswith(MASK_SUFFIX) and key[: -len(MASK_SUFFIX)] + ".weight_orig" in state:
            continue
        if key.endswith(".weight_orig") and key[: -len("_orig")] + "_mask" in state:
            out[key[: -len("_orig")]] = value * state[key[: -len("_orig")] + "_mask"].to(value.dtype)
            count += 1
            continue
        out[key] = value
    return out, count


def attach_masks_from_state(model: nn.Module, state: Dict[str, Tensor], path: str) -> int:
    """Prune the modules of `model` whose masks `state` (a state dict) holds, so that it loads strictly;
    returns how many. A mask for a module the model lacks, or of another shape, is a one-line error."""
    core = unwrap(model)
    modules = dict(core.named_modules())
    count = 0
    for key, mask in state.items():
        if not key.endswith(MASK_SUFFIX):
            continue
        name = key[: -len(MASK_SUFFIX)]
        m = modules.get(name)
        if not isinstance(m, PRUNABLE_TYPES):
            raise ValueError(f"ticket {path}: mask '{key}' does not fit the model (no Conv2d/Linear '{name}')")
        if tuple(mask.shape) != tuple(weight_param(m).shape):
            raise ValueError(f"ticket {path}: mask '{key}' has shape {list(mask.shape)} but the model's weight "
                             f"is {list(weight_param(m).shape)}")
        set_mask(m, mask)
        count += 1
    return count
