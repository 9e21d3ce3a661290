"""Model registry: `@register_model("name")` on a builder `fn(cfg) -> nn.Module`; `build_model(cfg)`.
A builder of a searchable model on a backbone (seg, hr_dense) also takes `backbone=`, a module that replaces the one
the config describes (a ticket's backbone shrunk by slimming, src/engine/entry.py).

A searchable model kind (one a genotype describes) registers its class in the same line,
`@register_model("name", searchable=ModelClass)`: `genotype_model(name)` returns that class, whose
`from_genotype` rebuilds the derived network (src/network_factory/from_genotype.py dispatches through it).
"""
import inspect
from typing import Optional, Type

from torch import nn

from src.architecture.fields import FieldError
from src.architecture.model_interface import ModelInterface
from src.utils.registry import Registry

MODELS = Registry("MODEL.NAME")  # name -> builder(cfg)
SEARCHABLE = Registry("searchable model")  # name -> model class with from_genotype


def register_model(name: str, searchable: Optional[Type[ModelInterface]] = None):
    def deco(fn):
        MODELS.register(name)(fn)
        if searchable is not None:
            SEARCHABLE.register(name)(searchable)
        return fn
    return deco


def _register_all() -> None:
    import src.network_factory.models  # noqa: F401  (registers every builder)


def build_model(cfg, backbone: Optional[nn.Module] = None) -> nn.Module:
    """Build `cfg.MODEL.NAME` (all builder modules are imported by src.network_factory.models), on `backbone`
    instead of the config's when given."""
    _register_all()
    builder = MODELS.get_builder(cfg.MODEL.NAME)
    if backbone is None:
        return builder(cfg)
    if "backbone" not in inspect.signature(builder).parameters:
        raise ValueError(f"model '{cfg.MODEL.NAME}' is not built on a backbone that can be given")
    return builder(cfg, backbone=backbone)


def is_searchable(name: str) -> bool:
    """Whether the model kind `name` is a search space (its config builds a supernet; a genotype, the derived net)."""
    _register_all()
    return name in SEARCHABLE


def genotype_model(name: str) -> Type[ModelInterface]:
    """The class of the searchable model kind `name` (a genotype's "model")."""
    if not is_searchable(name):
        raise FieldError("model", f"'{name}' is not a searchable model (known: {', '.join(sorted(SEARCHABLE))})")
    return SEARCHABLE[name]
