"""Ticket files in use: the network a ticket checkpoint describes, and a ticket's backbone moved to another
task's model (a new head, dense; the backbone's masks travel with it and stay fixed)."""
from typing import Dict

import torch
from torch import nn

from src.architecture.arch_params import unwrap
from src.search.tickets.masks import MASK_SUFFIX, attach_masks_from_state

BACKBONE = "backbone."
ORIG_SUFFIX = ".weight_orig"


def has_masks(state: Dict[str, torch.Tensor]) -> bool:
    return any(k.endswith(MASK_SUFFIX) for k in state)


def transfer_backbone(model: nn.Module, state: Dict[str, torch.Tensor], path: str) -> int:
    """Load the `backbone.*` tensors (masks included) of a ticket's model state into `model.backbone`;
    every other tensor of `model` (its head) keeps its fresh initialisation. Returns the tensors loaded.
    A backbone that differs in any tensor name or shape is a one-line error."""
    core = unwrap(model)
    if not isinstance(getattr(core, "backbone", None), nn.Module):
        raise ValueError(f"--transfer: {type(core).__name__} has no backbone to take the ticket's")
    source = {k[len(BACKBONE):]: v for k, v in state.items() if k.startswith(BACKBONE)}
    if not source:
        raise ValueError(f"--transfer: ticket {path} holds no backbone tensors (backbone.*)")
    if not has_masks(source):
        raise ValueError(f"--transfer: ticket {path} holds no masks in its backbone")
    dense = {k.replace(ORIG_SUFFIX, ".weight"): v for k, v in source.items() if not k.endswith(MASK_SUFFIX)}
    own = {k.replace(ORIG_SUFFIX, ".weight"): v for k, v in core.backbone.state_dict().items()
           if not k.endswith(MASK_SUFFIX)}
    missing = sorted(set(own) - set(dense))
    extra = sorted(set(dense) - set(own))
    wrong = [k for k in dense if k in own and own[k].shape != dense[k].shape]
    if missing or extra or wrong:
        key = (missing or extra or wrong)[0]
        raise ValueError(f"--transfer: incompatible backbones: ticket {path} and the {type(core).__name__} of "
                         f"this config differ in {len(missing)} missing, {len(extra)} unexpected, {len(wrong)} "
                         f"wrong-shape tensors (e.g. backbone.{key})")
    attach_masks_from_state(core.backbone, source, path)
    core.backbone.load_state_dict(source)
    return len(source)
