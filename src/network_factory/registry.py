"""Model registry: `@register_model("name")` on a builder `fn(cfg) -> nn.Module`; `build_model(cfg)`."""
from typing import Callable, Dict

from torch import nn

_MODELS: Dict[str, Callable] = {}


def register_model(name: str):
    def deco(fn):
        if name in _MODELS:
            raise ValueError(f"model '{name}' registered twice")
        _MODELS[name] = fn
        return fn
    return deco


def build_model(cfg) -> nn.Module:
    """Build `cfg.MODEL.NAME` (all builder modules are imported by src.network_factory.models)."""
    import src.network_factory.models  # noqa: F401  (registers every builder)
    name = cfg.MODEL.NAME
    if name not in _MODELS:
        raise ValueError(f"unknown MODEL.NAME '{name}' (known: {', '.join(sorted(_MODELS))})")
    return _MODELS[name](cfg)
