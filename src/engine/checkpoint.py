"""Checkpoints: state dicts written atomically, read with `weights_only=True`, checked before use."""
import torch
from torch import nn

from src.search.tickets.masks import attach_masks_from_state
from src.utils.atomic import atomic_write
from src.utils.state_dict import read_checkpoint, tensor_state


def save_checkpoint(state: dict, path: str) -> None:
    """Write `state` to `path` atomically (temp file in the same folder, then `os.replace`)."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_model_weights(model: nn.Module, path: str) -> dict:
    """Strictly load the model weights of a checkpoint; mismatches are reported in one line. Returns the whole
    checkpoint (its other entries: arch monitor, strategy, ...)."""
    state = read_checkpoint(path)
    load_state_checked(model, tensor_state(state, path), path)
    return state


def load_state_checked(model: nn.Module, sd: dict, path: str) -> None:
    """`model.load_state_dict(sd)` with a one-line ValueError naming `path` when they do not fit. Pruning
    masks in `sd` (a ticket, src/search/tickets/) are attached to the model first."""
    attach_masks_from_state(model, sd, path)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k in sd if k in own and sd[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {keys[0]})")
        raise ValueError(f"checkpoint {path} does not fit the model: " + ", ".join(parts))
    model.load_state_dict(sd)
