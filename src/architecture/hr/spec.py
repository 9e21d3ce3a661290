"""The typed HR sections of a genotype and their parsers.

- `HRSupernetGenotype` ("format": "fabricnas.hr_supernet/1"): stem and branch widths, blocks per stage and
  branch, token grid, which branches are alive, and a `BlockSpec` per surviving block, keyed by its module
  path (see layout.py). Written by `HRSupernet.genotype()`, the section "hr" of a part model on the HR
  supernet backbone, and the backbone of:
- `HRDenseGenotype` ("format": "fabricnas.hr_dense/1"): the supernet, the dense head block, the joints.

`parse_hr(d, path)` checks every field's type and bound (src/architecture/limits.py) and every block against
the slot of the supernet layout it sits in (shapes, stride, skip, HRT only on parallel blocks, none missing,
none unknown), so `HRSupernet.from_genotype` builds exactly what the section lists without re-checking it.
"""
from dataclasses import dataclass
from typing import ClassVar, Dict, Optional, Tuple, Union

from src.architecture.fields import FieldError, Obj, as_ints, check_format, join, shown
from src.architecture.hr.inverted_residual import SKIPS
from src.architecture.hr.layout import BlockSlot, check_stage_blocks, hr_layout
from src.architecture.limits import (MAX_CHANNELS, MAX_HIDDEN_CHANNELS, MAX_HR_BLOCKS, MAX_HR_BRANCHES,
                                     MAX_HR_STAGES, MAX_HRT_WINDOW, MAX_JOINTS, MAX_KERNEL, MAX_KERNEL_PATHS,
                                     MAX_TOKEN_GRID, MAX_TOKENS)

HR_FORMAT = "fabricnas.hr_supernet/1"
DENSE_FORMAT = "fabricnas.hr_dense/1"
DENSE_STRIDE = 4  # hr_dense predicts at the supernet's first branch, 1/4 (its stem's stride)
BLOCK_KEYS = ("in", "out", "stride", "skip", "kernels", "channels", "tokens")


@dataclass(frozen=True)
class HRTSpec:
    heads: int
    window: int
    ffn: int  # hidden channels of the ConvFFN (0: attention only)

    def to_dict(self) -> dict:
        return {"heads": self.heads, "window": self.window, "ffn": self.ffn}


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block: kernel size and hidden width of each surviving path, tokens, HRT part."""
    inp: int
    out: int
    stride: int
    skip: str
    kernels: Tuple[int, ...]
    channels: Tuple[int, ...]
    tokens: int
    hrt: Optional[HRTSpec] = None

    def to_dict(self) -> dict:
        d = {"in": self.inp, "out": self.out, "stride": self.stride, "skip": self.skip, "kernels": list(self.kernels),
             "channels": list(self.channels), "tokens": self.tokens}
        if self.hrt is not None:
            d["hrt"] = self.hrt.to_dict()
        return d

    @classmethod
    def of(cls, d: dict) -> "BlockSpec":
        """From a live block's description (`InvertedResidual.spec()`); parsed again by `genotype_of`."""
        hrt = d.get("hrt")
        return cls(d["in"], d["out"], d["stride"], d["skip"], tuple(d["kernels"]), tuple(d["channels"]), d["tokens"],
                   None if hrt is None else HRTSpec(hrt["heads"], hrt["window"], hrt["ffn"]))


@dataclass(frozen=True)
class HRSupernetGenotype:
    FORMAT: ClassVar[str] = HR_FORMAT
    stem_channels: int
    widths: Tuple[int, ...]
    stage_blocks: Tuple[Tuple[int, ...], ...]
    grid: int
    branches: Tuple[bool, ...]  # alive, per last-stage branch (alive ones first)
    blocks: Dict[str, BlockSpec]

    @property
    def num_branches(self) -> int:
        return sum(self.branches)

    def to_dict(self) -> dict:
        return {"format": self.FORMAT, "stem_channels": self.stem_channels, "widths": list(self.widths),
                "stage_blocks": [list(s) for s in self.stage_blocks], "grid": self.grid,
                "branches": list(self.branches), "blocks": {n: b.to_dict() for n, b in self.blocks.items()}}


@dataclass(frozen=True)
class HRDenseGenotype:
    FORMAT: ClassVar[str] = DENSE_FORMAT
    backbone: HRSupernetGenotype
    head: BlockSpec
    num_joints: int

    def to_dict(self) -> dict:
        return {"format": self.FORMAT, "backbone": self.backbone.to_dict(), "head": self.head.to_dict(),
                "num_joints": self.num_joints}


HRGenotype = Union[HRSupernetGenotype, HRDenseGenotype]


def _parse_hrt(value, path: str, inp: int, out: int, stride: int) -> HRTSpec:
    o = Obj(value, path, ("heads", "window", "ffn"))
    hrt = HRTSpec(o.integer("heads", 1, MAX_CHANNELS), o.integer("window", 1, MAX_HRT_WINDOW),
                  o.integer("ffn", 0, MAX_HIDDEN_CHANNELS))
    if stride != 1 or inp != out or out % hrt.heads:
        raise FieldError(path, f"needs stride 1, in == out and out divisible by its heads (got {inp}->{out}, "
                         f"stride {stride}, {hrt.heads} heads)")
    return hrt


def parse_block(value, path: str, slot: BlockSlot) -> BlockSpec:
    """A block sitting in `slot` (for the dense head: oup 0 = any width)."""
    o = Obj(value, path, BLOCK_KEYS, ("hrt",))
    spec = BlockSpec(o.integer("in", 1, MAX_CHANNELS), o.integer("out", 1, MAX_CHANNELS), o.integer("stride", 1, 2),
                     o.string("skip", SKIPS), tuple(o.integers("kernels", 1, MAX_KERNEL, MAX_KERNEL_PATHS)),
                     tuple(o.integers("channels", 1, MAX_HIDDEN_CHANNELS, MAX_KERNEL_PATHS)),
                     o.integer("tokens", 0, MAX_TOKENS))
    if any(k % 2 == 0 for k in spec.kernels):
        raise FieldError(o.field("kernels"), f"must hold odd sizes, got {list(spec.kernels)}")
    if len(spec.kernels) != len(spec.channels):
        raise FieldError(o.field("channels"), f"one width per kernel path {list(spec.kernels)}, got "
                         f"{list(spec.channels)}")
    for key, got, want in (("in", spec.inp, slot.inp), ("out", spec.out, slot.oup),
                           ("stride", spec.stride, slot.stride), ("skip", spec.skip, slot.skip)):
        if want and got != want:
            raise FieldError(o.field(key), f"must be {want!r} (the network's), got {got!r}")
    if o.has("hrt") and o.raw("hrt") is not None:
        spec = BlockSpec(*[getattr(spec, k) for k in ("inp", "out", "stride", "skip", "kernels", "channels", "tokens")],
                         _parse_hrt(o.raw("hrt"), o.field("hrt"), spec.inp, spec.out, spec.stride))
        if not slot.parallel:
            raise FieldError(o.field("hrt"), "only allowed on parallel blocks (stages.S.parallel.B.K)")
    return spec


def parse_hr_supernet(value, path: str = "") -> HRSupernetGenotype:
    check_format(value, path, HR_FORMAT)
    o = Obj(value, path, ("format", "stem_channels", "widths", "stage_blocks", "grid", "branches", "blocks"))
    stem = o.integer("stem_channels", 1, MAX_CHANNELS)
    widths = tuple(o.integers("widths", 1, MAX_CHANNELS, MAX_HR_BRANCHES, min_len=1))
    field = o.field("stage_blocks")
    stages = tuple(tuple(as_ints(s, join(field, i), 0, MAX_HR_BLOCKS, MAX_HR_BRANCHES, min_len=1))
                   for i, s in enumerate(o.array("stage_blocks", MAX_HR_STAGES, min_len=1)))
    try:
        check_stage_blocks(stages, widths)
    except ValueError as exc:
        raise FieldError(field, str(exc)) from None
    branches = tuple(o.booleans("branches", MAX_HR_BRANCHES))
    n = sum(branches)
    if len(branches) != len(widths) or len(branches) != len(stages[-1]) or not n or \
            branches != (True,) * n + (False,) * (len(branches) - n):
        raise FieldError(o.field("branches"), f"must be one bool per last-stage branch and width, alive ones first "
                         f"(at least one), got {list(branches)}")
    grid = o.integer("grid", 1, MAX_TOKEN_GRID)
    raw, field = o.mapping("blocks"), o.field("blocks")
    slots = {slot.name: slot for stage in hr_layout(stem, widths, stages, n) for slot in stage.slots()}
    unknown = [name for name in raw if name not in slots]
    if unknown:
        raise FieldError(join(field, unknown[0]),
                         "is not a block of this network (see src/architecture/hr/layout.py)")
    blocks = {}
    for name, slot in slots.items():
        if name in raw:
            blocks[name] = parse_block(raw[name], join(field, name), slot)
        elif not slot.optional:
            raise FieldError(join(field, name), "missing")
    return HRSupernetGenotype(stem, widths, stages, grid, branches, blocks)


def parse_hr_dense(value, path: str = "") -> HRDenseGenotype:
    check_format(value, path, DENSE_FORMAT)
    o = Obj(value, path, ("format", "backbone", "head", "num_joints"))
    backbone = parse_hr_supernet(o.raw("backbone"), o.field("backbone"))
    head = parse_block(o.raw("head"), o.field("head"), BlockSlot("head", sum(backbone.widths), 0, 1, "conv", False))
    return HRDenseGenotype(backbone, head, o.integer("num_joints", 1, MAX_JOINTS))


def parse_hr(value, path: str = "hr") -> HRGenotype:
    """The "hr" section of a genotype: an HR supernet (backbone of part models) or an hr_dense model."""
    fmt = value.get("format") if isinstance(value, dict) else None
    if fmt == DENSE_FORMAT:
        return parse_hr_dense(value, path)
    if fmt == HR_FORMAT or not isinstance(fmt, str):
        return parse_hr_supernet(value, path)
    raise FieldError(join(path, "format"), f"{shown(fmt)} is not '{HR_FORMAT}' or '{DENSE_FORMAT}'")
