"""Reading checkpoints and state dicts: one place for `torch.load(weights_only=True)`, its one-line errors, and
the key map of modules that were renamed, so that checkpoints written before a rename still load."""
import re
import warnings
from typing import Dict, Iterable

import torch
from torch import nn


def _load_error(exc: Exception) -> str:
    """The cause in torch.load's error, as its first sentence on one line: for a weights-only refusal the
    unpickler's own words (torch wraps them in advice to load the file unsafely, which this project never does)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        cause = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
        text = "refused by the weights-only unpickler: " + cause
    text = " ".join(text.split()).split(". ", 1)[0]
    return text[:200] if text else type(exc).__name__


def read_checkpoint(path: str, label: str = "checkpoint") -> dict:
    """The dict saved at `path` (a training checkpoint or a state dict); errors name `label` and the file."""
    try:
        with warnings.catch_warnings():  # its pickle-protocol warning would add lines to the one-line error
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{label} not found: {path}") from None
    except Exception as exc:  # noqa: BLE001  (pickle, zip and weights-only errors: not a usable state dict)
        raise ValueError(f"{label} {path} is not a loadable state dict: {_load_error(exc)}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{label} {path} is not a state dict (got {type(state).__name__})")
    return state


# old state-dict key part -> new, applied to every checkpoint read through `tensor_state` (resume, test, --inherit,
# MODEL.PRETRAINED): the compact ResNet's stem (model "baseline", backbone "compact_resnet") was two nested
# conv_bn blocks and is now the flat shared `Stem` of src/architecture/layers.py (conv, BN, ReLU, conv, BN, ReLU).
RENAMED_KEYS = {"stem.0.0.": "stem.0.", "stem.0.1.": "stem.1.", "stem.1.0.": "stem.3.", "stem.1.1.": "stem.4."}
_RENAMED = re.compile(r"(?:^|(?<=\.))(" + "|".join(map(re.escape, RENAMED_KEYS)) + ")")


def renamed_keys(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """`state` with the old key parts of RENAMED_KEYS replaced by the new ones (other keys unchanged)."""
    return {_RENAMED.sub(lambda m: RENAMED_KEYS[m[1]], k, count=1): v for k, v in state.items()}


def tensor_state(state: dict, path: str, label: str = "checkpoint",
                 strip: Iterable[str] = ("module.",)) -> Dict[str, torch.Tensor]:
    """The model tensors inside a checkpoint (`model` or `state_dict` entry, or the dict itself), prefixes
    such as DDP's `module.` stripped and renamed keys mapped (RENAMED_KEYS)."""
    for key in ("model", "state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{label} {path} holds no model state dict of tensors")
    for prefix in strip:
        state = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
    return renamed_keys(state)


def load_matching(module: nn.Module, state: Dict[str, torch.Tensor]) -> Dict[str, int]:
    """Load the tensors whose name and shape match; counts {loaded, total, missing, shape_mismatch, unused}."""
    own = module.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    mismatch = sum(1 for k, v in state.items() if k in own and own[k].shape != v.shape)
    module.load_state_dict(matched, strict=False)
    return {"loaded": len(matched), "total": len(own), "missing": len(own) - len(matched),
            "shape_mismatch": mismatch, "unused": len(state) - len(matched) - mismatch}
