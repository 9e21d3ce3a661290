"""Semantic segmentation model ("seg"): any registered backbone (MODEL.BACKBONE: the HR-NAS supernet
`hr_supernet`, `compact_resnet`, `hrnet_w32`, ResNets, MobileNet-V2, the searchable `fabric`) with the
HRNet-seg head: every branch upsampled to 1/4 and concatenated -> 1x1 conv -> BN -> ReLU -> 1x1 classifier.
Logits come out at 1/4 of the input; the loss and the evaluation upsample them to the label map.

The backbone is the only part with a search space: HR-NAS slimming finds the supernet's gates in it, and a
fabric backbone's alpha/beta are the model's arch parameters (its table is shown by --show_arch_value).
The model owns its genotype (task "segmentation"): `genotype()` describes the backbone (the shrunk HR supernet's
"hr" section, a fabric backbone's derived fabric, or a fixed backbone's name and width) and the head
(src/architecture/genotype/seg_head.py); `SegmentationNet.from_genotype(g)` rebuilds the network.
"""
from typing import Dict, List, Optional, Sequence

from torch import Tensor, nn

from src.architecture.fields import FieldError
from src.architecture.genotype.genotype import Architecture, Genotype
from src.architecture.genotype.seg_head import SegHead
from src.architecture.layers import conv_bn
from src.architecture.model_interface import ModelInterface
from src.network_factory.backbones import FabricBackbone, backbone_from_genotype, backbone_genotype, build_backbone
from src.network_factory.heads import upsample_concat
from src.network_factory.registry import register_model


class DenseSegHead(nn.Module):
    """Branch maps (strides 4, 8, ...) -> class logits at stride 4."""

    def __init__(self, in_channels: Sequence[int], channels: int, num_classes: int):
        super().__init__()
        self.fuse = conv_bn(sum(in_channels), channels, 1, relu=True)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    @property
    def settings(self) -> SegHead:
        """The head's genotype section, read from its layers (so it follows any change of their widths)."""
        return SegHead(int(self.classifier.in_channels), int(self.classifier.out_channels))

    def forward(self, feats: List[Tensor]) -> Tensor:
        return self.classifier(self.fuse(upsample_concat(feats)))


class SegmentationNet(ModelInterface, nn.Module):
    """`backbone_name` / `width_mult` name the backbone in the genotype (MODEL.BACKBONE, its width multiplier)."""

    def __init__(self, backbone: nn.Module, head: DenseSegHead, backbone_name: str, width_mult: float = 1.0):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.backbone_name, self.width_mult = backbone_name, width_mult

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    def arch_table(self) -> str:
        return self.backbone.arch_table() if isinstance(self.backbone, FabricBackbone) else ""

    def complexity_groups(self) -> Dict[str, str]:
        return {"backbone": "backbone", "head": "head"}

    def genotype_sections(self) -> Dict[str, nn.Module]:
        return {"backbone": self.backbone, "head": self.head}

    def genotype(self) -> Architecture:
        backbone, hr = backbone_genotype(self.backbone, self.backbone_name, self.width_mult)
        return Architecture(backbone, self.head.settings, (), hr)

    @classmethod
    def from_genotype(cls, g: Genotype, pretrained: str = "") -> "SegmentationNet":
        head = g.arch.head
        if not isinstance(head, SegHead):
            raise FieldError("head", f"model '{g.model}' needs a segmentation head (task 'segmentation', head "
                             "{channels, num_classes})")
        b = g.arch.backbone
        backbone = backbone_from_genotype(b, g.arch.hr, pretrained)
        return cls(backbone, DenseSegHead(backbone.out_channels, head.channels, head.num_classes), b.name,
                   b.width_mult)


@register_model("seg", searchable=SegmentationNet)
def build_seg(cfg, backbone: Optional[nn.Module] = None) -> SegmentationNet:
    backbone = build_backbone(cfg) if backbone is None else backbone
    channels = cfg.MODEL.SEG_HEAD_CHANNELS or sum(backbone.out_channels)
    return SegmentationNet(backbone, DenseSegHead(backbone.out_channels, channels, cfg.DATASET.NUM_CLASSES),
                           cfg.MODEL.BACKBONE, cfg.MODEL.BACKBONE_WIDTH_MULT)
