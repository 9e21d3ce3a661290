"""HR-NAS dense pose model ("hr_dense") and the "hr_supernet" backbone.

hr_dense: HR supernet -> every branch upsampled to 1/4 and concatenated -> one searchable inverted-residual
block (-> MODEL.HR.LAST_CHANNEL, grouped 1x1 skip) -> ReLU -> 1x1 conv to joints (init N(0, 0.001)),
as HR-NAS's segmentation/keypoint head. The alternative to the part-specific CNFs.
"""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.architecture.arch_params import ArchMixin
from src.architecture.hr_supernet import HRSupernet, fill_gates
from src.architecture.inverted_residual import InvertedResidual, check_spec
from src.network_factory.backbones import register_backbone
from src.network_factory.registry import register_model

DENSE_FORMAT = "fabricnas.hr_dense/1"


def hr_supernet_kwargs(cfg) -> dict:
    """HRSupernet keyword arguments from MODEL.HR (widths and stem scaled by MODEL.BACKBONE_WIDTH_MULT) and,
    for HRT parts, MODEL.HRT.WINDOW_SIZE and MLP_RATIO."""
    hr, mult = cfg.MODEL.HR, cfg.MODEL.BACKBONE_WIDTH_MULT
    return {"stem_channels": max(1, int(round(hr.STEM_CHANNELS * mult))),
            "widths": [max(1, int(round(w * mult))) for w in hr.WIDTHS], "stage_blocks": hr.STAGE_BLOCKS,
            "kernel_sizes": hr.KERNEL_SIZES, "expand_ratio": hr.EXPAND_RATIO,
            "transformer_blocks": hr.TRANSFORMER_BLOCKS, "tokens": hr.TRANSFORMER_TOKENS, "grid": hr.TRANSFORMER_GRID,
            "gate_init": hr.GATE_INIT, "hrt_blocks": hr.HRT_BLOCKS, "hrt_window": cfg.MODEL.HRT.WINDOW_SIZE,
            "hrt_mlp_ratio": cfg.MODEL.HRT.MLP_RATIO}


@register_backbone("hr_supernet")
def build_hr_supernet_backbone(cfg) -> HRSupernet:
    net = HRSupernet(**hr_supernet_kwargs(cfg))
    if len(net.out_channels) != 4:
        raise ValueError(f"MODEL.BACKBONE hr_supernet must end with 4 branches (MODEL.HR.STAGE_BLOCKS "
                         f"{cfg.MODEL.HR.STAGE_BLOCKS})")
    return net


class HRDensePose(ArchMixin, nn.Module):
    """Image -> heatmaps [N, K, H/4, W/4] through the HR supernet and one searchable fusion block."""

    def __init__(self, backbone: HRSupernet, num_joints: int, head: InvertedResidual):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.final = nn.Conv2d(head.oup, num_joints, 1)
        nn.init.normal_(self.final.weight, std=0.001)
        nn.init.zeros_(self.final.bias)

    @classmethod
    def build(cls, backbone: HRSupernet, num_joints: int, last_channel: int, kernel_sizes, expand_ratio: float,
              gate_init: float = 1.0):
        inp = sum(backbone.out_channels)
        hidden = max(1, int(round(expand_ratio * inp)))
        head = InvertedResidual(inp, last_channel, 1, kernel_sizes, [hidden] * len(kernel_sizes), "conv")
        fill_gates(head, gate_init)
        return cls(backbone, num_joints, head)

    def forward(self, x: Tensor) -> Tensor:
        feats = self.backbone(x)
        size = feats[0].shape[-2:]
        y = [feats[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]]
        return self.final(F.relu(self.head(torch.cat(y, 1))))

    def genotype(self) -> dict:
        return {"format": DENSE_FORMAT, "backbone": self.backbone.genotype(), "head": self.head.spec(),
                "num_joints": self.final.out_channels}

    @classmethod
    def from_genotype(cls, g: dict) -> "HRDensePose":
        if not isinstance(g, dict) or g.get("format") != DENSE_FORMAT:
            raise ValueError(f"hr_dense genotype field 'format' must be '{DENSE_FORMAT}'")
        joints = g.get("num_joints")
        if not isinstance(joints, int) or joints < 1:
            raise ValueError(f"hr_dense genotype field 'num_joints' must be a positive int, got {joints!r}")
        backbone = HRSupernet.from_genotype(g.get("backbone"))
        check_spec(g.get("head"), "head", {"in": sum(backbone.out_channels), "stride": 1, "skip": "conv"})
        return cls(backbone, joints, InvertedResidual.from_spec(g["head"], backbone.grid, "head"))


@register_model("hr_dense")
def build_hr_dense(cfg) -> HRDensePose:
    hr = cfg.MODEL.HR
    backbone = HRSupernet(**hr_supernet_kwargs(cfg))
    return HRDensePose.build(backbone, cfg.MODEL.NUM_JOINTS, hr.LAST_CHANNEL, hr.KERNEL_SIZES, hr.HEAD_EXPAND_RATIO,
                             hr.GATE_INIT)
