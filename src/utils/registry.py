"""Name -> builder registries (operations, backbones, models): one way to register and look up."""
from typing import Callable, Dict


class Registry(Dict[str, Callable]):
    """`@REG.register("name")` on a builder; `REG.get_builder(name)` raises a one-line error for unknown names."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what

    def register(self, name: str):
        def deco(fn):
            if name in self:
                raise ValueError(f"{self.what} '{name}' registered twice")
            self[name] = fn
            return fn
        return deco

    def get_builder(self, name: str) -> Callable:
        if name not in self:
            raise ValueError(f"unknown {self.what} '{name}' (known: {', '.join(sorted(self))})")
        return self[name]
