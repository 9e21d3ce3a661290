"""The fixed baseline: a compact ResNet encoder (1/4..1/32) with a top-down feature pyramid and a heatmap head."""
import torch
import torch.nn.functional as F
from torch import nn

from src.architecture.arch_params import ArchMixin
from src.network_factory.registry import register_model


def conv_bn_relu(cin, cout, k=3, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = conv_bn_relu(cin, cout, 3, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.down is None else self.down(x)
        return F.relu(self.conv2(self.conv1(x)) + identity)


class BaselinePose(ArchMixin, nn.Module):
    """Stem to 1/4, four stages of two basic blocks (1/4..1/32), FPN back to 1/4, 1x1 to joints."""

    def __init__(self, num_joints: int, widths=(32, 64, 128, 192), neck: int = 64):
        super().__init__()
        self.stem = nn.Sequential(conv_bn_relu(3, 32, 3, 2), conv_bn_relu(32, widths[0], 3, 2))
        stages, cin = [], widths[0]
        for i, w in enumerate(widths):
            stages.append(nn.Sequential(BasicBlock(cin, w, 1 if i == 0 else 2), BasicBlock(w, w)))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.lateral = nn.ModuleList(nn.Conv2d(w, neck, 1) for w in widths)
        self.smooth = conv_bn_relu(neck, neck, 3)
        self.head = nn.Conv2d(neck, num_joints, 1)

    def forward(self, x):
        feats, x = [], self.stem(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        y = self.lateral[-1](feats[-1])
        for lat, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            y = lat(f) + F.interpolate(y, size=f.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.smooth(y))


@register_model("baseline")
def build_baseline(cfg) -> nn.Module:
    return BaselinePose(cfg.MODEL.NUM_JOINTS, neck=cfg.MODEL.WIDTH)
