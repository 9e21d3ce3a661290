"""Image classification on any registered backbone ("cls"; MODEL.BACKBONE, e.g. the HR-NAS supernet
`hr_supernet`): every branch upsampled to the first one and concatenated -> 1x1 conv -> BN -> ReLU -> global
average pool -> linear to DATASET.NUM_CLASSES. Its `backbone` is the one the pose (`hr_dense`) and
segmentation (`seg`) models build from the same MODEL.* keys, so a ticket's backbone transfers between them."""
from typing import Dict, List, Sequence

import torch
from torch import Tensor, nn

from src.architecture.layers import conv_bn
from src.architecture.model_interface import ModelInterface
from src.network_factory.backbones import build_backbone
from src.network_factory.heads import upsample_concat
from src.network_factory.registry import register_model


class PooledClsHead(nn.Module):
    def __init__(self, in_channels: Sequence[int], channels: int, num_classes: int):
        super().__init__()
        self.fuse = conv_bn(sum(in_channels), channels, 1, relu=True)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, feats: List[Tensor]) -> Tensor:
        return self.classifier(torch.flatten(self.fuse(upsample_concat(feats)).mean(dim=(2, 3)), 1))


class BackboneClassifier(ModelInterface, nn.Module):
    def __init__(self, backbone: nn.Module, head: PooledClsHead):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    def complexity_groups(self) -> Dict[str, str]:
        return {"backbone": "backbone", "head": "head"}


@register_model("cls")
def build_cls(cfg) -> BackboneClassifier:
    backbone = build_backbone(cfg)
    channels = cfg.MODEL.SEG_HEAD_CHANNELS or sum(backbone.out_channels)
    return BackboneClassifier(backbone, PooledClsHead(backbone.out_channels, channels, cfg.DATASET.NUM_CLASSES))
