"""HR-NAS dense pose model ("hr_dense") and the "hr_supernet" backbone.

hr_dense: HR supernet -> every branch upsampled to 1/4 and concatenated -> one searchable inverted-residual
block (-> MODEL.HR.LAST_CHANNEL, grouped 1x1 skip) -> ReLU -> 1x1 conv to joints (init N(0, 0.001)),
as HR-NAS's segmentation/keypoint head. The alternative to the part-specific CNFs.
"""
from typing import Dict, Optional

import torch.nn.functional as F
from torch import Tensor, nn

from src.architecture.fields import FieldError
from src.architecture.genotype.genotype import Architecture, Genotype
from src.architecture.genotype.part import HR_BACKBONE
from src.architecture.hr.inverted_residual import InvertedResidual
from src.architecture.hr.spec import BlockSpec, HRDenseGenotype
from src.architecture.hr.supernet import HRSupernet, block_from_spec, fill_gates
from src.architecture.model_interface import ModelInterface
from src.network_factory.backbones import register_backbone
from src.network_factory.heads import init_heatmap_layer, upsample_concat
from src.network_factory.registry import register_model


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


@register_backbone(HR_BACKBONE)
def build_hr_supernet_backbone(cfg) -> HRSupernet:
    net = HRSupernet(**hr_supernet_kwargs(cfg))
    if len(net.out_channels) != 4:
        raise ValueError(f"MODEL.BACKBONE hr_supernet must end with 4 branches (MODEL.HR.STAGE_BLOCKS "
                         f"{cfg.MODEL.HR.STAGE_BLOCKS})")
    return net


class HRDensePose(ModelInterface, nn.Module):
    """Image -> heatmaps [N, K, H/4, W/4] through the HR supernet and one searchable fusion block."""

    def __init__(self, backbone: HRSupernet, num_joints: int, head: InvertedResidual):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.final = init_heatmap_layer(nn.Conv2d(head.oup, num_joints, 1))

    @classmethod
    def build(cls, backbone: HRSupernet, num_joints: int, last_channel: int, kernel_sizes, expand_ratio: float,
              gate_init: float = 1.0):
        inp = sum(backbone.out_channels)
        hidden = max(1, int(round(expand_ratio * inp)))
        head = InvertedResidual(inp, last_channel, 1, kernel_sizes, [hidden] * len(kernel_sizes), "conv")
        fill_gates(head, gate_init)
        return cls(backbone, num_joints, head)

    def forward(self, x: Tensor) -> Tensor:
        return self.final(F.relu(self.head(upsample_concat(self.backbone(x)))))

    def genotype(self) -> Architecture:
        return Architecture(hr=HRDenseGenotype(self.backbone.genotype(), BlockSpec.of(self.head.spec()),
                                               self.final.out_channels))

    @classmethod
    def from_genotype(cls, g: Genotype, pretrained: str = "") -> "HRDensePose":
        hr = g.arch.hr
        if not isinstance(hr, HRDenseGenotype):
            raise FieldError("hr", f"model '{g.model}' needs a '{HRDenseGenotype.FORMAT}' section")
        backbone = HRSupernet.from_genotype(hr.backbone)
        return cls(backbone, hr.num_joints, block_from_spec(hr.head, backbone.grid))

    def genotype_sections(self) -> Dict[str, nn.Module]:
        return {"hr.backbone": self.backbone, "hr.head": self.head}


@register_model("hr_dense", searchable=HRDensePose)
def build_hr_dense(cfg, backbone: Optional[HRSupernet] = None) -> HRDensePose:
    hr = cfg.MODEL.HR
    backbone = HRSupernet(**hr_supernet_kwargs(cfg)) if backbone is None else backbone
    return HRDensePose.build(backbone, cfg.MODEL.NUM_JOINTS, hr.LAST_CHANNEL, hr.KERNEL_SIZES, hr.HEAD_EXPAND_RATIO,
                             hr.GATE_INIT)
