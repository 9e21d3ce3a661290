"""A subnet of the ScaleNAS supernet: per module, the depth of every branch and its fusion bits.

`ModuleChoice.fusion[i][d][k]` (0/1) says whether branch i receives branch k after its block d; only
d < depths[i] is stored (len(fusion[i]) == depths[i]) and the self bit k == i is always 1. JSON form
(`ScaleSubnet.to_dict()`, read back by `parse_subnet`):
    {"modules": [{"depths": [2, 3], "fusion": [[[1, 0], [1, 1]], [[0, 1], [1, 1], [1, 1]]]}, ...]}
Subnets are frozen (tuples all the way down): the sampling operations of space.py return new ones.
"""
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Tuple

from src.architecture.fields import FieldError, Obj, as_ints, as_list, join
from src.architecture.limits import MAX_SCALE_DEPTH, MAX_SCALE_MODULES

if TYPE_CHECKING:
    from src.architecture.scale.space import ScaleSpaceSpec

Bits = Tuple[int, ...]


@dataclass(frozen=True)
class ModuleChoice:
    depths: Tuple[int, ...]  # one per branch
    fusion: Tuple[Tuple[Bits, ...], ...]  # fusion[i][d][k], d < depths[i]

    def to_dict(self) -> dict:
        return {"depths": list(self.depths), "fusion": [[list(bits) for bits in row] for row in self.fusion]}

    def cross_bits(self) -> Tuple[int, int]:
        """(cross-branch bits set, cross-branch bits in all) over the stored rows."""
        on = sum(b for i, row in enumerate(self.fusion) for bits in row for k, b in enumerate(bits) if k != i)
        total = sum(len(bits) - 1 for row in self.fusion for bits in row)
        return on, total


@dataclass(frozen=True)
class ScaleSubnet:
    modules: Tuple[ModuleChoice, ...]

    def to_dict(self) -> dict:
        return {"modules": [m.to_dict() for m in self.modules]}

    def key(self) -> str:
        """Canonical text (compact JSON): equal subnets, equal keys."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def fusion_fraction(self) -> float:
        """Share of the stored cross-branch fusion bits that are on (0 when there are none)."""
        on, total = map(sum, zip(*(m.cross_bits() for m in self.modules)))
        return on / total if total else 0.0

    def mean_depth(self) -> float:
        depths = [d for m in self.modules for d in m.depths]
        return sum(depths) / len(depths)


def _parse_module(value, path: str, branches: int, depth_list: Tuple[int, ...]) -> ModuleChoice:
    o = Obj(value, path, ("depths", "fusion"))
    depths = tuple(o.integers("depths", 1, MAX_SCALE_DEPTH, branches, min_len=branches))
    for i, d in enumerate(depths):
        if d not in depth_list:
            raise FieldError(join(o.field("depths"), i), f"depth {d} is not in the supernet's depth list "
                             f"{list(depth_list)}")
    rows_field = o.field("fusion")
    rows = o.array("fusion", branches, min_len=branches)
    if len(rows) != branches:
        raise FieldError(rows_field, f"needs one row per branch ({branches}), got {len(rows)}")
    fusion = []
    for i, row in enumerate(rows):
        row_field = join(rows_field, i)
        row = as_list(row, row_field, depths[i], min_len=depths[i])
        bits_rows = []
        for d, bits in enumerate(row):
            field = join(row_field, d)
            bits = tuple(as_ints(bits, field, 0, 1, branches, min_len=branches))
            if bits[i] != 1:
                raise FieldError(field, f"the self bit (item {i}) must be 1, got {list(bits)}")
            bits_rows.append(bits)
        fusion.append(tuple(bits_rows))
    return ModuleChoice(depths, tuple(fusion))


def parse_subnet(value, path: str, space: "ScaleSpaceSpec") -> ScaleSubnet:
    """The typed subnet of a JSON value that must fit `space` (number of modules, branches per module, depths
    from its depth list, 0/1 bits, one bit row per block); one-line FieldError naming the field otherwise."""
    o = Obj(value, path, ("modules",))
    branches = space.module_branches()
    mods = o.array("modules", MAX_SCALE_MODULES)
    if len(mods) != len(branches):
        raise FieldError(o.field("modules"), f"the supernet has {len(branches)} modules, got {len(mods)}")
    return ScaleSubnet(tuple(_parse_module(m, join(o.field("modules"), j), n, space.depth_list)
                             for j, (m, n) in enumerate(zip(mods, branches))))


def check_subnet(subnet: ScaleSubnet, space: "ScaleSpaceSpec") -> ScaleSubnet:
    """`subnet` if it fits `space` (the same checks as a parsed one), else a one-line ValueError."""
    if not isinstance(subnet, ScaleSubnet):
        raise ValueError(f"expected a ScaleSubnet, got {type(subnet).__name__}")
    return parse_subnet(subnet.to_dict(), "subnet", space)

