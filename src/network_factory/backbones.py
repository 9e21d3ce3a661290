"""Backbones: `build_backbone(cfg)` -> module mapping an image to 4 maps at strides 4, 8, 16, 32, with
`.out_channels` (list of 4).

Builders live in `BACKBONES` (name -> builder(cfg)); add one with `@register_backbone("name")` in a module
imported by `src/network_factory/models.py` (e.g. "hr_supernet"). A backbone without search space registers
`fn(width_mult)` with `fixed=True`: a genotype names it and its width, `backbone_from_genotype` rebuilds it
(searchable backbones are rebuilt from their own genotype section). Nothing unused is kept: torchvision
classifiers lose their pooling/classifier (and MobileNet-V2 its features[17:]). Parameter names follow
torchvision / the official HRNet, so their checkpoints load through `MODEL.PRETRAINED` (a local state dict,
loaded non-strictly with a one-line report; nothing is downloaded).
"""
import dataclasses
import logging
from typing import List, Optional, Tuple

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from src.architecture.fabric.fabric import Fabric, FabricSearch, FabricSpec, rising_spec
from src.architecture.fields import FieldError
from src.architecture.genotype.part import FABRIC_BACKBONE, HR_BACKBONE, STEM, Backbone
from src.architecture.hr.fuse_edge import hrnet_fuse_edge, resize_to
from src.architecture.hr.spec import HRSupernetGenotype
from src.architecture.hr.supernet import HRSupernet
from src.architecture.layers import Stem, conv_bn
from src.utils.registry import Registry
from src.utils.state_dict import load_matching, read_checkpoint, tensor_state

logger = logging.getLogger(__name__)

BACKBONES = Registry("MODEL.BACKBONE")  # name -> builder(cfg)
FIXED_BACKBONES = Registry("backbone")  # name -> builder(width_mult), for the backbones without search space


def register_backbone(name: str, fixed: bool = False):
    """`@register_backbone(name)` on `fn(cfg)`; `fixed=True` on `fn(width_mult)` (MODEL.BACKBONE_WIDTH_MULT)."""
    def deco(fn):
        if fixed:
            FIXED_BACKBONES.register(name)(fn)
            BACKBONES.register(name)(lambda cfg: fn(cfg.MODEL.BACKBONE_WIDTH_MULT))
        else:
            BACKBONES.register(name)(fn)
        return fn
    return deco


def build_backbone(cfg) -> nn.Module:
    import src.network_factory.models  # noqa: F401  (registers backbones defined beside model builders)
    backbone = BACKBONES.get_builder(cfg.MODEL.BACKBONE)(cfg)
    if cfg.MODEL.PRETRAINED:
        load_pretrained(backbone, cfg.MODEL.PRETRAINED)
    return backbone


def backbone_from_genotype(b: Backbone, hr: Optional[HRSupernetGenotype], pretrained: str = "") -> nn.Module:
    """The backbone of a parsed part-model genotype (`hr`: its HR supernet section); `pretrained` (a local
    state dict) is loaded into a fixed backbone."""
    if b.name == STEM:
        return StemBackbone(b.out_channels[0])
    if b.name == FABRIC_BACKBONE:
        return FabricBackbone.from_genotype(b.fabric)
    if b.name == HR_BACKBONE:
        return HRSupernet.from_genotype(hr)
    import src.network_factory.models  # noqa: F401  (registers backbones defined beside model builders)
    if b.name not in FIXED_BACKBONES:
        known = sorted(FIXED_BACKBONES) + [STEM, FABRIC_BACKBONE, HR_BACKBONE]
        raise FieldError("backbone.name", f"unknown backbone '{b.name}' (known: {', '.join(known)})")
    try:
        backbone = FIXED_BACKBONES[b.name](b.width_mult)
    except ValueError as exc:
        raise FieldError("backbone.width_mult", str(exc)) from None
    if tuple(backbone.out_channels) != b.out_channels:
        raise FieldError("backbone.out_channels", f"{list(b.out_channels)} but {b.name} x{b.width_mult} has "
                         f"{list(backbone.out_channels)}")
    if pretrained:
        load_pretrained(backbone, pretrained)
    return backbone


def backbone_genotype(backbone: nn.Module, name: str, width_mult: float
                      ) -> Tuple[Backbone, Optional[HRSupernetGenotype]]:
    """The genotype sections of a model's backbone (MODEL.BACKBONE `name`, or "stem"): its "backbone" section
    (with the fabric of a fabric backbone) and, for the HR supernet, its "hr" section (else None)."""
    section = Backbone(name, float(width_mult), tuple(int(c) for c in backbone.out_channels),
                       backbone.genotype() if isinstance(backbone, FabricBackbone) else None)
    return section, backbone.genotype() if isinstance(backbone, HRSupernet) else None


def load_pretrained(module: nn.Module, path: str) -> str:
    """Load the tensors of a local state dict whose names and shapes match; return (and log) a report."""
    label = "MODEL.PRETRAINED checkpoint"
    state = tensor_state(read_checkpoint(path, label), path, label, strip=("module.", "backbone."))
    c = load_matching(module, state)
    report = (f"MODEL.PRETRAINED {path}: loaded {c['loaded']}/{c['total']} backbone tensors "
              f"({c['missing']} missing, {c['unused']} unexpected, {c['shape_mismatch']} with other shapes)")
    logger.info(report)
    return report


def _scaled(channels: int, mult: float) -> int:
    return max(1, int(round(channels * mult)))


class StemBackbone(nn.Module):
    """The "stem" backbone: image -> [one map at 1/4] through the shared `Stem` (src/architecture/layers.py)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = Stem(channels)
        self.out_channels = [channels]

    def forward(self, x: Tensor) -> List[Tensor]:
        return [self.body(x)]


class ResNetBackbone(nn.Module):
    """torchvision ResNet (weights=None): layer1..layer4 outputs."""

    def __init__(self, depth: int):
        super().__init__()
        net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels = [w * type(net.layer1[0]).expansion for w in (64, 128, 256, 512)]

    def forward(self, x: Tensor) -> List[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        return outs


class MobileNetV2Backbone(nn.Module):
    """torchvision MobileNet-V2 features[0..16] (weights=None), tapped after blocks 3, 6, 13 and 16."""
    TAPS = (3, 6, 13, 16)

    def __init__(self, width_mult: float = 1.0):
        super().__init__()
        self.features = torchvision.models.mobilenet_v2(weights=None, width_mult=width_mult).features[:17]
        self.out_channels = [self.features[i].out_channels for i in self.TAPS]

    def forward(self, x: Tensor) -> List[Tensor]:
        outs = []
        for i, block in enumerate(self.features):
            x = block(x)
            if i in self.TAPS:
                outs.append(x)
        return outs


class HRModule(nn.Module):
    """HRNet module: BasicBlock branches, then every branch sums all others (upsampled / strided) + ReLU."""

    def __init__(self, channels: List[int], blocks: int = 4):
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(*[BasicBlock(c, c) for _ in range(blocks)]) for c in channels)
        self.fuse_layers = nn.ModuleList(
            nn.ModuleDict({str(j): hrnet_fuse_edge(cj, ci, j, i) for j, cj in enumerate(channels) if j != i})
            for i, ci in enumerate(channels))

    def forward(self, xs: List[Tensor]) -> List[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        outs = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[i]
            for j, fuse in row.items():
                y = y + resize_to(fuse(xs[int(j)]), y)
            outs.append(torch.relu(y))
        return outs


class HRNetW32Backbone(nn.Module):
    """HRNet-W32 from the stem to stage 3, plus the stage-4 transition to 1/32 (channels 32/64/128/256 x mult)."""

    def __init__(self, width_mult: float = 1.0):
        super().__init__()
        s = _scaled(64, width_mult)
        c = [_scaled(w, width_mult) for w in (32, 64, 128, 256)]
        self.conv1, self.bn1 = nn.Conv2d(3, s, 3, 2, 1, bias=False), nn.BatchNorm2d(s)
        self.conv2, self.bn2 = nn.Conv2d(s, s, 3, 2, 1, bias=False), nn.BatchNorm2d(s)
        down = nn.Sequential(nn.Conv2d(s, 4 * s, 1, bias=False), nn.BatchNorm2d(4 * s))
        self.layer1 = nn.Sequential(Bottleneck(s, s, downsample=down), *[Bottleneck(4 * s, s) for _ in range(3)])
        self.transition1 = nn.ModuleDict({"0": conv_bn(4 * s, c[0], 3, 1, relu=True),
                                          "1": nn.Sequential(conv_bn(4 * s, c[1], 3, 2, relu=True))})
        self.stage2 = nn.Sequential(HRModule(c[:2]))
        self.transition2 = nn.ModuleDict({"2": nn.Sequential(conv_bn(c[1], c[2], 3, 2, relu=True))})
        self.stage3 = nn.Sequential(*[HRModule(c[:3]) for _ in range(4)])
        self.transition3 = nn.ModuleDict({"3": nn.Sequential(conv_bn(c[2], c[3], 3, 2, relu=True))})
        self.out_channels = c

    def forward(self, x: Tensor) -> List[Tensor]:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer1(torch.relu(self.bn2(self.conv2(x))))
        xs = self.stage2([self.transition1["0"](x), self.transition1["1"](x)])
        xs = self.stage3(xs + [self.transition2["2"](xs[-1])])
        return xs + [self.transition3["3"](xs[-1])]


class FabricBackbone(nn.Module):
    """Searchable fabric backbone: a stem, then a rising fabric returning all four rows of its last layer.
    Its alpha/beta are arch parameters of the model that holds it. `spec` (with searchable=False) rebuilds a
    derived backbone from a genotype instead of the full rising fabric."""

    def __init__(self, factor: int, ops, layers: int, hidden_states_num: int = 1, input_nodes_num: int = 1,
                 search: FabricSearch = FabricSearch(), size_types=(4, 8, 16, 32), spec: Optional[FabricSpec] = None,
                 searchable: bool = True):
        super().__init__()
        self.stem = StemBackbone(size_types[0] * factor)
        if spec is None:
            spec = rising_spec(list(size_types), factor, list(ops), layers, (0,), hidden_states_num, input_nodes_num)
        self.fabric = Fabric(spec, self.stem.out_channels, searchable, **dataclasses.asdict(search))
        self.out_channels = self.fabric.out_channels

    def forward(self, x: Tensor) -> List[Tensor]:
        return self.fabric(self.stem(x))

    def arch_table(self) -> str:
        return self.fabric.arch_table()

    def genotype(self) -> FabricSpec:
        """Its section of a genotype: the spec of its fabric (derived once pruned)."""
        return self.fabric.spec

    @classmethod
    def from_genotype(cls, spec: FabricSpec) -> "FabricBackbone":
        """The derived backbone of a parsed "backbone.fabric" section."""
        return cls(spec.factor, spec.ops, 0, spec.hidden_states_num, spec.input_nodes_num,
                   size_types=spec.size_types, spec=spec, searchable=False)


def _resnet(depth: int):
    def build(width_mult: float) -> nn.Module:
        if width_mult != 1.0:
            raise ValueError(f"MODEL.BACKBONE_WIDTH_MULT is not supported by resnet{depth} (use 1.0)")
        return ResNetBackbone(depth)
    return build


for _depth in (18, 34, 50, 101):
    register_backbone(f"resnet{_depth}", fixed=True)(_resnet(_depth))
register_backbone("mobilenet_v2", fixed=True)(MobileNetV2Backbone)
register_backbone("hrnet_w32", fixed=True)(HRNetW32Backbone)


@register_backbone(FABRIC_BACKBONE)
def _fabric(cfg) -> nn.Module:
    f = cfg.MODEL.FABRIC
    return FabricBackbone(_scaled(f.BACKBONE_FACTOR, cfg.MODEL.BACKBONE_WIDTH_MULT), f.BACKBONE_OPERATIONS,
                          f.BACKBONE_LAYERS, f.HIDDEN_STATES_NUM, f.INPUT_NODES_NUM, fabric_search(cfg))


def fabric_search(cfg) -> FabricSearch:
    """How the model's searchable fabrics are searched (MODEL.FABRIC.ONE_SHOT_SEARCH, SEARCH.PARTIAL_CHANNELS,
    SEARCH.EDGE_NORM)."""
    return FabricSearch(bool(cfg.MODEL.FABRIC.ONE_SHOT_SEARCH), int(cfg.SEARCH.PARTIAL_CHANNELS),
                        bool(cfg.SEARCH.EDGE_NORM))
