"""The fixed baseline: a compact ResNet encoder (1/4..1/32, also the `compact_resnet` backbone) with a top-down
feature pyramid and a heatmap head."""
import torch
import torch.nn.functional as F
from torch import nn

from src.architecture.layers import Stem, conv_bn
from src.architecture.model_interface import ModelInterface
from src.network_factory.backbones import load_pretrained, register_backbone
from src.network_factory.registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 3, stride, relu=True)
        self.conv2 = conv_bn(cout, cout, 3)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = conv_bn(cin, cout, 1, stride)

    def forward(self, x):
        identity = x if self.down is None else self.down(x)
        return F.relu(self.conv2(self.conv1(x)) + identity)


class CompactResNet(nn.Module):
    """Stem to 1/4, four stages of two basic blocks: maps at strides 4, 8, 16, 32 (`.out_channels`)."""

    def __init__(self, widths=(32, 64, 128, 192)):
        super().__init__()
        self.out_channels = list(widths)
        self.stem = Stem(widths[0], mid=32)
        stages, cin = [], widths[0]
        for i, w in enumerate(widths):
            stages.append(nn.Sequential(BasicBlock(cin, w, 1 if i == 0 else 2), BasicBlock(w, w)))
            cin = w
        self.stages = nn.ModuleList(stages)

    def forward(self, x):
        feats, x = [], self.stem(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class BaselinePose(ModelInterface, nn.Module):
    """CompactResNet, FPN back to 1/4, 1x1 to joints."""

    def __init__(self, num_joints: int, widths=(32, 64, 128, 192), neck: int = 64):
        super().__init__()
        self.encoder = CompactResNet(widths)
        self.lateral = nn.ModuleList(nn.Conv2d(w, neck, 1) for w in widths)
        self.smooth = conv_bn(neck, neck, 3, relu=True)
        self.head = nn.Conv2d(neck, num_joints, 1)

    def forward(self, x):
        feats = self.encoder(x)
        y = self.lateral[-1](feats[-1])
        for lat, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            y = lat(f) + F.interpolate(y, size=f.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.smooth(y))


def _widths(width_mult: float):
    return [max(8, int(round(w * width_mult))) for w in (32, 64, 128, 192)]


@register_backbone("compact_resnet", fixed=True)
def build_compact_resnet(width_mult: float) -> nn.Module:
    return CompactResNet(_widths(width_mult))


@register_model("baseline")
def build_baseline(cfg) -> nn.Module:
    model = BaselinePose(cfg.MODEL.NUM_JOINTS, _widths(cfg.MODEL.BACKBONE_WIDTH_MULT), neck=cfg.MODEL.WIDTH)
    if cfg.MODEL.PRETRAINED:  # a local state dict of the encoder (nothing is downloaded)
        load_pretrained(model.encoder, cfg.MODEL.PRETRAINED)
    return model
