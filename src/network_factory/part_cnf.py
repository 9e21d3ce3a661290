"""Part-specific cell-based neural fabrics (PoseNFS): one CNF + head per body part on a shared backbone.

Each part's CNF reads the backbone's maps (as fabric layer cut-1), ends in its 1/4-scale cell and predicts
the part's joints; the part outputs are scattered into [N, K, H/4, W/4] and joints predicted by two parts
(P = 8) are averaged. Models: "part_cnf" (MODEL.BACKBONE + MODEL.FABRIC + MODEL.PARTS) and "fabric" (a
PoseNFS Meta_Arch: a small stem, one full triangular fabric from layer 0 (CUT_LAYERS_NUM is ignored) and a
head). `build_part_cnf(cfg, parts, specs, searchable=False)` rebuilds a derived network from explicit
per-part fabric specs (the genotype path).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from src.architecture.arch_params import ArchMixin
from src.architecture.fabric import Fabric, FabricSpec, triangle_spec
from src.network_factory.backbones import Stem, build_backbone
from src.network_factory.body_parts import body_parts
from src.network_factory.heads import build_head
from src.network_factory.registry import register_model


class PartSubnet(nn.Module):
    """One part: its CNF and its head."""

    def __init__(self, spec: FabricSpec, in_channels: Sequence[int], num_joints: int, searchable: bool,
                 one_shot: bool, head: dict):
        super().__init__()
        if len(spec.outputs) != 1:
            raise ValueError(f"a part CNF returns one map, its spec has outputs {spec.outputs}")
        self.fabric = Fabric(spec, in_channels, searchable, one_shot)
        self.head = build_head(self.fabric.out_channels[0], num_joints, **head)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        return self.head(self.fabric(feats)[0])


class PartCNF(ArchMixin, nn.Module):
    """Backbone -> one `PartSubnet` per (name, joints) part -> heatmaps [N, num_joints, H/4, W/4]."""

    def __init__(self, backbone: nn.Module, parts: Sequence[Tuple[str, Sequence[int]]], specs: Sequence[FabricSpec],
                 num_joints: int, searchable: bool = True, one_shot: bool = True, head: Optional[dict] = None):
        super().__init__()
        if len(specs) != len(parts):
            raise ValueError(f"{len(parts)} parts need {len(parts)} fabric specs, got {len(specs)}")
        self.backbone = backbone
        self.part_names = [name for name, _ in parts]
        self.part_joints = [list(joints) for _, joints in parts]
        self.parts = nn.ModuleList(
            PartSubnet(spec, backbone.out_channels, len(joints), searchable, one_shot, head or {})
            for spec, joints in zip(specs, self.part_joints))
        index = torch.tensor([j for joints in self.part_joints for j in joints], dtype=torch.long)
        if len(index) and (index.min() < 0 or index.max() >= num_joints):
            raise ValueError(f"part joints must lie in 0..{num_joints - 1}")
        count = torch.bincount(index, minlength=num_joints)
        if (count == 0).any():
            raise ValueError(f"joints {torch.nonzero(count == 0).flatten().tolist()} are in no body part")
        self.num_joints = num_joints
        self.register_buffer("joint_index", index, persistent=False)
        self.register_buffer("joint_count", count.float(), persistent=False)
        self._average = bool(count.max() > 1)

    def forward(self, x: Tensor) -> Tensor:
        feats = self.backbone(x)
        outs = torch.cat([part(feats) for part in self.parts], 1)
        n, _, h, w = outs.shape
        heat = outs.new_zeros(n, self.num_joints, h, w).index_add(1, self.joint_index, outs)
        return heat / self.joint_count.view(1, -1, 1, 1) if self._average else heat

    def arch_table(self) -> str:
        """Per part (and for a searchable backbone): softmaxed alpha per op and beta per cell, as text."""
        blocks = []
        if hasattr(self.backbone, "arch_table"):
            blocks.append("backbone\n" + self.backbone.arch_table())
        for i, (name, joints, part) in enumerate(zip(self.part_names, self.part_joints, self.parts)):
            blocks.append(f"part {i} {name} (joints {joints})\n" + part.fabric.arch_table())
        return "\n\n".join(blocks)

    def complexity_groups(self) -> Dict[str, str]:
        """Label -> submodule name, for src.utils.flops.model_complexity (backbone, then each part)."""
        groups = {"backbone": "backbone"}
        groups.update({f"part {i} {name}": f"parts.{i}" for i, name in enumerate(self.part_names)})
        return groups


def _head_kwargs(cfg) -> dict:
    p = cfg.MODEL.PARTS
    return {"vector_in_pixel": p.VECTOR_IN_PIXEL, "vector_dim": p.VECTOR_DIM, "mode": p.CONVOLUTION_MODE}


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
    return PartCNF(backbone, parts, specs, cfg.MODEL.NUM_JOINTS, searchable, cfg.MODEL.FABRIC.ONE_SHOT_SEARCH,
                   _head_kwargs(cfg))


@register_model("part_cnf")
def _build_part_cnf(cfg) -> nn.Module:
    return build_part_cnf(cfg)


@register_model("fabric")
def _build_fabric(cfg) -> nn.Module:
    _check_stride(cfg)
    f = cfg.MODEL.FABRIC
    stem = Stem(f.SIZE_TYPES[0] * f.FACTOR)
    spec = triangle_spec(list(f.SIZE_TYPES), f.FACTOR, list(f.OPERATIONS), f.DEPTH, 0, (0,), f.HIDDEN_STATES_NUM,
                         f.INPUT_NODES_NUM)
    k = cfg.MODEL.NUM_JOINTS
    return PartCNF(stem, [("all", list(range(k)))], [spec], k, True, f.ONE_SHOT_SEARCH, _head_kwargs(cfg))
