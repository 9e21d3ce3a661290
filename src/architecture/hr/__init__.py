"""The HR-NAS space: inverted-residual blocks, token transformer, HRT block, the HR supernet, its layout,
its genotype sections (spec.py) and shrinking.

Importing it registers the HRT block as the fabric operation `hrt_window_attention`: registration runs from
this space into the fabric's op registry, never back. Every model build and every genotype parse imports this
space, so the op name is known wherever a fabric is built from a config or a genotype.
"""
from src.architecture.fabric.op_registry import register_op
from src.architecture.hr.hrt_block import hrt_op

register_op("hrt_window_attention")(hrt_op)
