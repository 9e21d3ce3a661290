"""The typed sections of a part model's genotype (PartCNF: backbone -> one fabric + head per body part) and
their parsers.

- `Backbone`: name, width multiplier, output channels, and the fabric of the searchable "fabric" backbone
  (the HR supernet backbone's description is the genotype's "hr" section, see src/architecture/hr/spec.py).
- `Head`: the part heads' settings.  `Part`: name, joints, derived fabric.
`check_part_model` checks what the sections must agree on: every backbone maps an image to maps at
`BACKBONE_STRIDES` (a stem: the first only), so a part fabric's rows must be at those strides, read only
maps the backbone has, and return one map at the heatmap stride; the backbone's channels must be those its
section describes; every joint belongs to a part.
"""
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from src.architecture.fabric.spec import FabricSpec
from src.architecture.fields import FieldError, Obj, join
from src.architecture.hr.spec import HRGenotype, HRSupernetGenotype
from src.architecture.limits import MAX_CHANNELS, MAX_JOINTS, MAX_VECTOR_DIM, MAX_WIDTH_MULT

STEM, FABRIC_BACKBONE, HR_BACKBONE = "stem", "fabric", "hr_supernet"  # backbones with their own description
BACKBONE_STRIDES = (4, 8, 16, 32)  # strides of a backbone's maps
HEAD_MODES = ("2D", "3D")  # vector-in-pixel head kinds (src/network_factory/heads.py builds one per mode)


@dataclass(frozen=True)
class Backbone:
    name: str  # a MODEL.BACKBONE name, or "stem" (model "fabric")
    width_mult: float
    out_channels: Tuple[int, ...]
    fabric: Optional[FabricSpec] = None  # the derived fabric of the "fabric" backbone

    def to_dict(self) -> dict:
        d = {"name": self.name, "width_mult": self.width_mult, "out_channels": list(self.out_channels)}
        if self.fabric is not None:
            d["fabric"] = self.fabric.to_dict()
        return d


@dataclass(frozen=True)
class Head:
    vector_in_pixel: bool
    vector_dim: int
    mode: str

    def to_dict(self) -> dict:
        return {"vector_in_pixel": self.vector_in_pixel, "vector_dim": self.vector_dim, "mode": self.mode}


@dataclass(frozen=True)
class Part:
    name: str
    joints: Tuple[int, ...]
    fabric: FabricSpec

    def to_dict(self) -> dict:
        return {"name": self.name, "joints": list(self.joints), "fabric": self.fabric.to_dict()}


def parse_backbone(value, path: str = "backbone") -> Backbone:
    o = Obj(value, path, ("name", "width_mult", "out_channels"), ("fabric",))
    name = o.string("name")
    mult = o.number("width_mult", 0.0, MAX_WIDTH_MULT)
    if mult <= 0:
        raise FieldError(o.field("width_mult"), f"must be > 0, got {mult}")
    maps = 1 if name == STEM else len(BACKBONE_STRIDES)
    out_channels = tuple(o.integers("out_channels", 1, MAX_CHANNELS, maps, min_len=maps))
    if o.has("fabric") != (name == FABRIC_BACKBONE):
        raise FieldError(o.field("fabric"), f"the '{FABRIC_BACKBONE}' backbone has a fabric and no other one does "
                         f"(backbone '{name}')")
    fabric = FabricSpec.from_dict(o.raw("fabric"), o.field("fabric")) if o.has("fabric") else None
    return Backbone(name, mult, out_channels, fabric)


def parse_head(value, path: str = "head") -> Head:
    o = Obj(value, path, ("vector_in_pixel", "vector_dim", "mode"))
    return Head(o.boolean("vector_in_pixel"), o.integer("vector_dim", 1, MAX_VECTOR_DIM), o.string("mode", HEAD_MODES))


def parse_part(value, path: str, num_joints: int) -> Part:
    o = Obj(value, path, ("name", "joints", "fabric"))
    return Part(o.string("name"), tuple(o.integers("joints", 0, num_joints - 1, MAX_JOINTS, min_len=1, distinct=True)),
                FabricSpec.from_dict(o.raw("fabric"), o.field("fabric")))


def _check_rows(spec: FabricSpec, path: str) -> None:
    """Row s of a fabric fed by a backbone (or stem) runs at stride BACKBONE_STRIDES[0] * 2^s."""
    strides = [BACKBONE_STRIDES[0] * 2 ** s for s in range(len(spec.size_types))]
    if spec.size_types != strides:
        raise FieldError(join(path, "size_types"), f"rows run at strides {strides} (the backbone's maps), "
                         f"got {spec.size_types}")


def check_backbone(b: Backbone, hr: Optional[HRGenotype]) -> None:
    """The backbone section agrees with its "hr" section (HR supernet) or its fabric (rows, outputs, channels)."""
    if b.name == HR_BACKBONE:
        if hr is None:
            raise FieldError("hr", f"missing (it describes the '{HR_BACKBONE}' backbone)")
        if not isinstance(hr, HRSupernetGenotype):
            raise FieldError("hr.format", f"the '{HR_BACKBONE}' backbone needs '{HRSupernetGenotype.FORMAT}', "
                             f"got '{hr.FORMAT}'")
        if hr.widths != b.out_channels:
            raise FieldError("backbone.out_channels", f"{list(b.out_channels)} but the 'hr' supernet has branch widths "
                             f"{list(hr.widths)}")
    elif hr is not None:
        raise FieldError("hr", f"only the '{HR_BACKBONE}' backbone has an HR section (backbone '{b.name}')")
    if b.fabric is not None:
        spec, path = b.fabric, "backbone.fabric"
        _check_rows(spec, path)
        if spec.input_scales != [0] or spec.input_layer != -1:
            raise FieldError(join(path, "input_scales"), "a fabric backbone reads its stem's one map (input_scales "
                             f"[0], input_layer -1), got {spec.input_scales}, {spec.input_layer}")
        scales = [spec.cell(o).scale for o in spec.outputs]
        if scales != list(range(len(BACKBONE_STRIDES))):
            raise FieldError(join(path, "outputs"), f"a backbone returns one map per stride {list(BACKBONE_STRIDES)}, "
                             f"got cells {spec.outputs}")
        channels = tuple(spec.channels(s) for s in scales)
        if channels != b.out_channels:
            raise FieldError("backbone.out_channels", f"{list(b.out_channels)} but its fabric returns {list(channels)}")


def check_part_model(backbone: Backbone, parts: Sequence[Part], hr: Optional[HRGenotype], num_joints: int,
                     heatmap_stride: int) -> None:
    """What the sections of a part model must agree on (see the module docstring)."""
    check_backbone(backbone, hr)
    if heatmap_stride != BACKBONE_STRIDES[0]:
        raise FieldError("heatmap_stride", f"must be {BACKBONE_STRIDES[0]}: the parts return their row-0 maps at "
                         f"1/{BACKBONE_STRIDES[0]}, got {heatmap_stride}")
    covered = set()
    for i, part in enumerate(parts):
        spec, path = part.fabric, f"parts[{i}].fabric"
        _check_rows(spec, path)
        if max(spec.input_scales) >= len(backbone.out_channels):
            raise FieldError(join(path, "input_scales"), f"{spec.input_scales} but the backbone has "
                             f"{len(backbone.out_channels)} map(s)")
        out = [spec.cell(o) for o in spec.outputs]
        if len(out) != 1 or out[0].scale != 0:
            got = ", ".join(f"{c.name} at 1/{spec.size_types[c.scale]}" for c in out)
            raise FieldError(join(path, "outputs"), f"a part returns one map at 1/{heatmap_stride} (a row-0 cell, "
                             f"what its head expects), got {got}")
        covered.update(part.joints)
    missing = sorted(set(range(num_joints)) - covered)
    if missing:
        raise FieldError("parts", f"joints {missing} are in no part")
