"""HRFormer (High-Resolution Transformer): HRNet skeleton with HRT blocks, a classification head and a pose head.

Stem (two 3x3 s2 convs) -> stage 1 (bottlenecks) -> HRNet transitions -> stages 2/3/4 with 2/3/4 branches at
1/4..1/32, each module = NUM_BLOCKS HRT blocks per branch + fusion (low->high: 1x1 conv+BN, upsample;
high->low: depthwise-separable stride-2 convs). T/S/B settings live in `configs/cls/hrformer_*.yaml`.
"""
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from src.architecture.hr.hrt_block import HRTBlock
from src.architecture.layers import Stem, conv_bn, dw_sep_down
from src.architecture.model_interface import ModelInterface
from src.network_factory.registry import register_model


class Bottleneck(nn.Module):
    """ResNet bottleneck (expansion 4); `depthwise=True` makes the 3x3 depthwise (HRFormer's BottleneckDWP)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, depthwise: bool = False):
        super().__init__()
        cout = planes * self.expansion
        self.body = nn.Sequential(
            *conv_bn(cin, planes, 1, relu=True),
            *conv_bn(planes, planes, 3, groups=planes if depthwise else 1, relu=True),
            *conv_bn(planes, cout, 1))
        self.down = conv_bn(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        identity = x if self.down is None else self.down(x)
        return F.relu(self.body(x) + identity)


def bottleneck_layer(cin: int, planes: int, blocks: int, depthwise: bool = False) -> nn.Sequential:
    layers = [Bottleneck(cin, planes, depthwise)]
    layers += [Bottleneck(planes * Bottleneck.expansion, planes, depthwise) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class HRTModule(nn.Module):
    """Parallel branches (>= 2) of HRT blocks followed by HRFormer's multi-resolution fusion."""

    def __init__(self, channels: Sequence[int], heads: Sequence[int], num_blocks: int, window_size: int,
                 mlp_ratio: float, drop_paths: Sequence[float], multi_scale_output: bool = True):
        super().__init__()
        nb = len(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*[HRTBlock(c, h, window_size, mlp_ratio, drop_paths[k]) for k in range(num_blocks)])
            for c, h in zip(channels, heads))
        self.fuse = nn.ModuleList()
        for i in range(nb if multi_scale_output else 1):
            row = nn.ModuleList()
            for j in range(nb):
                if j > i:  # lower resolution source: 1x1 conv + BN, upsampled in forward
                    row.append(conv_bn(channels[j], channels[i], 1))
                elif j == i:
                    row.append(nn.Identity())
                else:  # higher resolution source: (i - j) depthwise-separable stride-2 steps
                    steps = [dw_sep_down(channels[j], channels[j], relu=True) for _ in range(i - j - 1)]
                    steps.append(dw_sep_down(channels[j], channels[i], relu=False))
                    row.append(nn.Sequential(*steps))
            self.fuse.append(row)

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse):
            y = xs[i]
            for j, layer in enumerate(row):
                if j == i:
                    continue
                z = layer(xs[j])
                if j > i:  # nearest x2^(j-i), then bilinear to the exact size when the sides were odd
                    z = F.interpolate(z, scale_factor=2 ** (j - i), mode="nearest")
                    if z.shape[-2:] != xs[i].shape[-2:]:
                        z = F.interpolate(z, size=xs[i].shape[-2:], mode="bilinear", align_corners=True)
                y = y + z
            out.append(F.relu(y))
        return out


def transition(pre: Sequence[int], cur: Sequence[int]) -> nn.ModuleList:
    """HRNet transition: 3x3 conv where widths change; new branches from the last one by 3x3 s2 convs."""
    layers = nn.ModuleList()
    for i, c in enumerate(cur):
        if i < len(pre):
            layers.append(nn.Identity() if pre[i] == c else conv_bn(pre[i], c, 3, relu=True))
        else:
            steps = []
            for k in range(i + 1 - len(pre)):
                out = c if k == i - len(pre) else pre[-1]
                steps.extend(conv_bn(pre[-1], out, 3, 2, relu=True))
            layers.append(nn.Sequential(*steps))
    return layers


class HRFormerBackbone(nn.Module):
    """Image -> list of branch maps at 1/4, 1/8, 1/16, 1/32 (only 1/4 when `multi_scale_output=False`)."""

    def __init__(self, channels: Sequence[int], heads: Sequence[int], num_modules: Sequence[int], num_blocks: int = 2,
                 window_size: int = 7, mlp_ratio: float = 4.0, drop_path_rate: float = 0.0,
                 stem_channels: int = 64, stage1_blocks: int = 2, multi_scale_output: bool = True):
        super().__init__()
        if len(channels) != 4 or len(heads) != 4 or len(num_modules) != 3:
            raise ValueError("HRFormer needs 4 branch widths, 4 head counts and 3 stage module counts "
                             f"(got {list(channels)}, {list(heads)}, {list(num_modules)})")
        self.stem = Stem(stem_channels)
        self.layer1 = bottleneck_layer(stem_channels, stem_channels, stage1_blocks)
        # stochastic depth: one linear ramp over the block slots of stages 2-4 (shared across branches)
        slots = num_blocks * sum(num_modules)
        rates = torch.linspace(0, drop_path_rate, slots).tolist()
        pre, slot = [stem_channels * Bottleneck.expansion], 0
        self.transitions, self.stages = nn.ModuleList(), nn.ModuleList()
        for s, n_mod in enumerate(num_modules):
            cur = list(channels[:s + 2])
            self.transitions.append(transition(pre, cur))
            modules = []
            for m in range(n_mod):
                last = s == len(num_modules) - 1 and m == n_mod - 1
                modules.append(HRTModule(cur, heads[:s + 2], num_blocks, window_size, mlp_ratio,
                                         rates[slot:slot + num_blocks], multi_scale_output or not last))
                slot += num_blocks
            self.stages.append(nn.Sequential(*modules))
            pre = cur
        self.out_channels = list(channels) if multi_scale_output else [channels[0]]

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        ys = [self.layer1(self.stem(x))]
        for trans, stage in zip(self.transitions, self.stages):
            xs = [trans[i](ys[i] if i < len(ys) else ys[-1]) for i in range(len(trans))]
            ys = stage(xs)
        return ys


class HRFormerClsHead(nn.Module):
    """Per-branch BottleneckDWP to 4*head_channels, high->low merge by dw-separable s2 convs, 1x1, GAP, linear."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, head_channels: Sequence[int] = (32, 64, 128, 256),
                 final_channels: int = 2048):
        super().__init__()
        widths = [c * Bottleneck.expansion for c in head_channels]
        self.incre = nn.ModuleList(bottleneck_layer(cin, planes, 1, depthwise=True)
                                   for cin, planes in zip(in_channels, head_channels))
        self.down = nn.ModuleList(dw_sep_down(widths[i], widths[i + 1], relu=True, bias=True)
                                  for i in range(len(widths) - 1))
        self.final = conv_bn(widths[-1], final_channels, 1, bias=True, relu=True)
        self.classifier = nn.Linear(final_channels, num_classes)

    def forward(self, ys: List[torch.Tensor]) -> torch.Tensor:
        y = self.incre[0](ys[0])
        for i, down in enumerate(self.down):
            y = self.incre[i + 1](ys[i + 1]) + down(y)  # s2 convs round like the transitions: sizes match
        y = self.final(y)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


class HRFormerClassifier(ModelInterface, nn.Module):
    def __init__(self, backbone: HRFormerBackbone, head: HRFormerClsHead):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x):
        return self.head(self.backbone(x))

    def complexity_groups(self) -> Dict[str, str]:
        """Label -> submodule name, for src.utils.flops.model_complexity."""
        return {"backbone": "backbone", "head": "head"}


class HRFormerPose(ModelInterface, nn.Module):
    """HRFormer backbone whose last module fuses into the 1/4 branch only, then a 1x1 conv to heatmaps."""

    def __init__(self, backbone: HRFormerBackbone, num_joints: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Conv2d(backbone.out_channels[0], num_joints, 1)

    def forward(self, x):
        return self.head(self.backbone(x)[0])

    complexity_groups = HRFormerClassifier.complexity_groups


def build_backbone(cfg, multi_scale_output: bool = True) -> HRFormerBackbone:
    h = cfg.MODEL.HRT
    return HRFormerBackbone(h.NUM_CHANNELS, h.NUM_HEADS, h.NUM_MODULES, h.NUM_BLOCKS, h.WINDOW_SIZE, h.MLP_RATIO,
                            h.DROP_PATH_RATE, h.STEM_CHANNELS, h.STAGE1_BLOCKS, multi_scale_output)


@register_model("hrformer_cls")
def build_hrformer_cls(cfg) -> nn.Module:
    backbone = build_backbone(cfg)
    head = HRFormerClsHead(backbone.out_channels, cfg.DATASET.NUM_CLASSES, cfg.MODEL.HRT.HEAD_CHANNELS,
                           cfg.MODEL.HRT.HEAD_FINAL_CHANNELS)
    return HRFormerClassifier(backbone, head)


@register_model("hrformer_pose")
def build_hrformer_pose(cfg) -> nn.Module:
    return HRFormerPose(build_backbone(cfg, multi_scale_output=False), cfg.MODEL.NUM_JOINTS)
