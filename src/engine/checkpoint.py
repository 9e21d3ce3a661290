"""Checkpoints: state dicts written atomically, read with `weights_only=True`, checked before use."""
import os

import torch
from torch import nn

from src.utils.atomic import atomic_write


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


def save_checkpoint(state: dict, path: str) -> None:
    """Write `state` to `path` atomically (temp file in the same folder, then `os.replace`)."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str) -> dict:
    """Load a dict saved by `save_checkpoint` (or a plain state dict); one-line error otherwise."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and weights-only errors all mean "not a usable state dict"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is not a loadable state dict: {first[:200]}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} is not a state dict (got {type(state).__name__})")
    return state


def model_state_of(state: dict, path: str) -> dict:
    """The model state dict inside a training checkpoint, or the checkpoint itself if it is one."""
    sd = state.get("model", state)
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"checkpoint {path} holds no model state dict of tensors")
    return sd


def load_model_weights(model: nn.Module, path: str) -> None:
    """Strictly load the model weights of a checkpoint; mismatches are reported in one line."""
    load_state_checked(model, model_state_of(load_checkpoint(path), path), path)


def load_state_checked(model: nn.Module, sd: dict, path: str) -> None:
    """`model.load_state_dict(sd)` with a one-line CheckpointError naming `path` when they do not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k in sd if k in own and sd[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {keys[0]})")
        raise CheckpointError(f"checkpoint {path} does not fit the model: " + ", ".join(parts))
    model.load_state_dict(sd)
