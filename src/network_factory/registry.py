"""Model registry: `@register_model("name")` on a builder `fn(cfg) -> nn.Module`; `build_model(cfg)`."""
from torch import nn

from src.utils.registry import Registry

MODELS = Registry("MODEL.NAME")
register_model = MODELS.register


def build_model(cfg) -> nn.Module:
    """Build `cfg.MODEL.NAME` (all builder modules are imported by src.network_factory.models)."""
    import src.network_factory.models  # noqa: F401  (registers every builder)
    return MODELS.get_builder(cfg.MODEL.NAME)(cfg)
