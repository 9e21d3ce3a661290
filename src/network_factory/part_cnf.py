"""Part-specific cell-based neural fabrics (PoseNFS): one CNF + head per body part on a shared backbone.

Each part's CNF reads the backbone's maps (as fabric layer cut-1), ends in its 1/4-scale cell and predicts
the part's joints; the part outputs are gathered into [N, K, H/4, W/4] and joints predicted by more than
one part (two with P = 8) are averaged. Models: "part_cnf" (MODEL.BACKBONE + MODEL.FABRIC + MODEL.PARTS)
and "fabric" (a PoseNFS Meta_Arch: a small stem, one full triangular fabric from layer 0 (CUT_LAYERS_NUM is
ignored) and a head). The model owns its genotype: `genotype()` describes backbone, head and parts (typed,
see src/architecture/genotype/part.py) and `PartCNF.from_genotype(g)` rebuilds the derived network;
`build_part_cnf(cfg, parts, specs, searchable=False)` builds one from explicit per-part fabric specs.
"""
import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from src.architecture.fabric.fabric import Fabric, FabricSearch, FabricSpec, triangle_spec
from src.architecture.fields import FieldError
from src.architecture.genotype.genotype import Architecture, Genotype
from src.architecture.genotype.part import STEM, Head, Part
from src.architecture.model_interface import ModelInterface
from src.network_factory.backbones import (FabricBackbone, StemBackbone, backbone_from_genotype, backbone_genotype,
                                           build_backbone, fabric_search)
from src.network_factory.body_parts import body_parts
from src.network_factory.heads import build_head
from src.network_factory.registry import register_model


class PartSubnet(nn.Module):
    """One part: its CNF and its head."""

    def __init__(self, spec: FabricSpec, in_channels: Sequence[int], num_joints: int, searchable: bool,
                 search: FabricSearch, head: Head):
        super().__init__()
        if len(spec.outputs) != 1:
            raise ValueError(f"a part CNF returns one map, its spec has outputs {spec.outputs}")
        self.fabric = Fabric(spec, in_channels, searchable, **dataclasses.asdict(search))
        self.head = build_head(self.fabric.out_channels[0], num_joints, head.vector_in_pixel, head.vector_dim,
                               head.mode)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        return self.head(self.fabric(feats)[0])


class PartCNF(ModelInterface, nn.Module):
    """Backbone -> one `PartSubnet` per (name, joints) part -> heatmaps [N, num_joints, H/4, W/4].
    `backbone_name` / `width_mult` name the backbone in the genotype (MODEL.BACKBONE, or "stem")."""

    def __init__(self, backbone: nn.Module, parts: Sequence[Tuple[str, Sequence[int]]], specs: Sequence[FabricSpec],
                 num_joints: int, head: Head, backbone_name: str, width_mult: float, searchable: bool = True,
                 search: FabricSearch = FabricSearch()):
        super().__init__()
        if len(specs) != len(parts):
            raise ValueError(f"{len(parts)} parts need {len(parts)} fabric specs, got {len(specs)}")
        self.backbone, self.backbone_name, self.width_mult = backbone, backbone_name, width_mult
        self.head_settings = head
        self.part_names = [name for name, _ in parts]
        self.part_joints = [list(joints) for _, joints in parts]
        self.parts = nn.ModuleList(
            PartSubnet(spec, backbone.out_channels, len(joints), searchable, search, head)
            for spec, joints in zip(specs, self.part_joints))
        index = [j for joints in self.part_joints for j in joints]  # plain ints: builds on the meta device too
        if any(not 0 <= j < num_joints for j in index):
            raise ValueError(f"part joints must lie in 0..{num_joints - 1}")
        count = [index.count(j) for j in range(num_joints)]
        if 0 in count:
            raise ValueError(f"joints {[j for j, c in enumerate(count) if c == 0]} are in no body part")
        self.num_joints = num_joints
        # slots[s][j]: the s-th part channel predicting joint j, or the zero channel len(index) past its last one;
        # gathers and adds in channel order (what an index_add does), so that exporters see no duplicate indices
        slots = [[c for c, k in enumerate(index) if k == j] for j in range(num_joints)]
        slots = [[cs[s] if s < len(cs) else len(index) for cs in slots] for s in range(max(count))]
        self.register_buffer("joint_slots", torch.tensor(slots, dtype=torch.long), persistent=False)
        self.register_buffer("joint_count", torch.tensor(count, dtype=torch.float), persistent=False)
        self._average = max(count) > 1

    def forward(self, x: Tensor) -> Tensor:
        feats = self.backbone(x)
        outs = torch.cat([part(feats) for part in self.parts], 1)
        if not self._average:  # every joint from one part
            return outs.index_select(1, self.joint_slots[0])
        n, _, h, w = outs.shape
        outs = torch.cat([outs, outs.new_zeros(n, 1, h, w)], 1)
        heat = outs.index_select(1, self.joint_slots[0])
        for slot in self.joint_slots[1:]:
            heat = heat + outs.index_select(1, slot)
        return heat / self.joint_count.view(1, -1, 1, 1)

    def arch_table(self) -> str:
        """Per part (and for a searchable backbone): softmaxed alpha per op and beta per cell, as text."""
        blocks = []
        if isinstance(self.backbone, FabricBackbone):
            blocks.append("backbone\n" + self.backbone.arch_table())
        for i, (name, joints, part) in enumerate(zip(self.part_names, self.part_joints, self.parts)):
            blocks.append(f"part {i} {name} (joints {joints})\n" + part.fabric.arch_table())
        return "\n\n".join(blocks)

    def complexity_groups(self) -> Dict[str, str]:
        """Label -> submodule name, for src.utils.flops.model_complexity (backbone, then each part)."""
        groups = {"backbone": "backbone"}
        groups.update({f"part {i} {name}": f"parts.{i}" for i, name in enumerate(self.part_names)})
        return groups

    def genotype_sections(self) -> Dict[str, nn.Module]:
        return {"backbone": self.backbone, **{f"parts[{i}]": part for i, part in enumerate(self.parts)}}

    def genotype(self) -> Architecture:
        backbone, hr = backbone_genotype(self.backbone, self.backbone_name, self.width_mult)
        parts = tuple(Part(name, tuple(joints), part.fabric.spec)
                      for name, joints, part in zip(self.part_names, self.part_joints, self.parts))
        return Architecture(backbone, self.head_settings, parts, hr)

    @classmethod
    def from_genotype(cls, g: Genotype, pretrained: str = "") -> "PartCNF":
        arch = g.arch
        if not arch.parts:
            raise FieldError("parts", f"model '{g.model}' needs parts (a backbone, a head and part fabrics)")
        b = arch.backbone
        return cls(backbone_from_genotype(b, arch.hr, pretrained), [(p.name, p.joints) for p in arch.parts],
                   [p.fabric for p in arch.parts], g.num_joints, arch.head, b.name, b.width_mult, searchable=False)


def _head(cfg) -> Head:
    p = cfg.MODEL.PARTS
    return Head(bool(p.VECTOR_IN_PIXEL), int(p.VECTOR_DIM), p.CONVOLUTION_MODE)


def _check_stride(cfg) -> None:
    if cfg.MODEL.HEATMAP_STRIDE != 4:
        raise ValueError(f"MODEL.HEATMAP_STRIDE must be 4 for fabric models, got {cfg.MODEL.HEATMAP_STRIDE}")


def default_part_spec(cfg, rows: int) -> FabricSpec:
    """The searchable triangular CNF of MODEL.FABRIC over `rows` backbone maps."""
    f = cfg.MODEL.FABRIC
    return triangle_spec(list(f.SIZE_TYPES), f.FACTOR, list(f.OPERATIONS), f.DEPTH, f.CUT_LAYERS_NUM,
                         tuple(range(min(rows, len(f.SIZE_TYPES)))), f.HIDDEN_STATES_NUM, f.INPUT_NODES_NUM)


def build_part_cnf(cfg, parts: Optional[List[Tuple[str, List[int]]]] = None,
                   specs: Optional[List[FabricSpec]] = None, searchable: bool = True) -> PartCNF:
    """PartCNF from cfg; `parts`/`specs` default to body_parts(NUM_JOINTS, PARTS.NUM) and the full CNF."""
    _check_stride(cfg)
    backbone = build_backbone(cfg)
    parts = parts if parts is not None else body_parts(cfg.MODEL.NUM_JOINTS, cfg.MODEL.PARTS.NUM)
    if specs is None:
        specs = [default_part_spec(cfg, len(backbone.out_channels))] * len(parts)
    return PartCNF(backbone, parts, specs, cfg.MODEL.NUM_JOINTS, _head(cfg), cfg.MODEL.BACKBONE,
                   cfg.MODEL.BACKBONE_WIDTH_MULT, searchable, fabric_search(cfg))


@register_model("part_cnf", searchable=PartCNF)
def _build_part_cnf(cfg) -> nn.Module:
    return build_part_cnf(cfg)


@register_model("fabric", searchable=PartCNF)
def _build_fabric(cfg) -> nn.Module:
    _check_stride(cfg)
    f = cfg.MODEL.FABRIC
    stem = StemBackbone(f.SIZE_TYPES[0] * f.FACTOR)
    spec = triangle_spec(list(f.SIZE_TYPES), f.FACTOR, list(f.OPERATIONS), f.DEPTH, 0, (0,), f.HIDDEN_STATES_NUM,
                         f.INPUT_NODES_NUM)
    k = cfg.MODEL.NUM_JOINTS
    return PartCNF(stem, [("all", list(range(k)))], [spec], k, _head(cfg), STEM, cfg.MODEL.BACKBONE_WIDTH_MULT, True,
                   fabric_search(cfg))
