"""Semantic segmentation model ("seg"): any registered backbone (MODEL.BACKBONE: the HR-NAS supernet
`hr_supernet`, `compact_resnet`, `hrnet_w32`, ResNets, MobileNet-V2, the searchable `fabric`) with the
HRNet-seg head: every branch upsampled to 1/4 and concatenated -> 1x1 conv -> BN -> ReLU -> 1x1 classifier.
Logits come out at 1/4 of the input; the loss and the evaluation upsample them to the label map.

The backbone is the only part with a search space: HR-NAS slimming finds the supernet's gates in it, and a
fabric backbone's alpha/beta are the model's arch parameters (its table is shown by --show_arch_value).
"""
from typing import Dict, List, Sequence

from torch import Tensor, nn

from src.architecture.layers import conv_bn
from src.architecture.model_interface import ModelInterface
from src.network_factory.backbones import build_backbone
from src.network_factory.heads import upsample_concat
from src.network_factory.registry import register_model


class DenseSegHead(nn.Module):
    """Branch maps (strides 4, 8, ...) -> class logits at stride 4."""

    def __init__(self, in_channels: Sequence[int], channels: int, num_classes: int):
        super().__init__()
        self.fuse = conv_bn(sum(in_channels), channels, 1, relu=True)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: List[Tensor]) -> Tensor:
        return self.classifier(self.fuse(upsample_concat(feats)))


class SegmentationNet(ModelInterface, nn.Module):
    def __init__(self, backbone: nn.Module, head: DenseSegHead):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    def arch_table(self) -> str:
        return self.backbone.arch_table() if hasattr(self.backbone, "arch_table") else ""

    def complexity_groups(self) -> Dict[str, str]:
        return {"backbone": "backbone", "head": "head"}


@register_model("seg")
def build_seg(cfg) -> SegmentationNet:
    backbone = build_backbone(cfg)
    channels = cfg.MODEL.SEG_HEAD_CHANNELS or sum(backbone.out_channels)
    return SegmentationNet(backbone, DenseSegHead(backbone.out_channels, channels, cfg.DATASET.NUM_CLASSES))
