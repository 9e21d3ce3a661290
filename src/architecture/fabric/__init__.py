"""The cell-based fabric space (PoseNFS): operations, mixed op, cell, fabric and its spec.

Importing it registers the fabric's own operations (operators.py) in the op registry (op_registry.py).
"""
from src.architecture.fabric import operators  # noqa: F401
