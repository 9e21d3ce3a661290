"""The registry of fabric edge operations, by name: `OPS[name](C, stride) -> nn.Module` maps C channels to C
channels (spatial size kept at stride 1, (h - 1) // 2 + 1 at stride 2).

It imports no search space, so registration runs one way, into it: the fabric's own operations register in
operators.py, the HR space's `hrt_window_attention` when `src.architecture.hr` is imported (src/architecture/hr/
__init__.py), which every model build and every genotype parse does. New ops register with `@register_op(name)`.
"""
from torch import nn

from src.utils.registry import Registry

OPS = Registry("operation")  # name -> factory(C, stride) -> nn.Module
register_op = OPS.register


def build_op(name: str, channels: int, stride: int = 1) -> nn.Module:
    return OPS.get_builder(name)(channels, stride)
