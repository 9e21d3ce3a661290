"""ScaleNAS models: the "scale_supernet" backbone and the "scalenet" model (pose and segmentation).

scalenet: `ScaleSupernet` (src/architecture/scale/supernet.py) -> the HRNet-seg dense head (every branch
upsampled to 1/4, concatenated, 1x1 conv of MODEL.SCALE.HEAD_CHANNELS + BN + ReLU, 1x1) -> heatmaps
(TASK pose, MODEL.NUM_JOINTS; the last 1x1 initialised N(0, 0.001) with zero bias, as HRNet's pose head) or
class logits (TASK segmentation, DATASET.NUM_CLASSES) at 1/4. Built from a
config it is the supernet (active subnet: the largest; one-shot training samples others, see
src/search/oneshot.py); its genotype is the "scale" section with the active subnet, and `from_genotype`
builds the standalone subnet network (same module names: `--inherit` loads the supernet's weights into it).
The backbone "scale_supernet" serves any model with MODEL.BACKBONE (e.g. MODEL.NAME seg).
"""
from typing import Dict

from torch import Tensor, nn

from src.architecture.fields import FieldError
from src.architecture.genotype.genotype import Architecture, Genotype
from src.architecture.model_interface import ModelInterface
from src.architecture.scale.section import ScaleGenotype, ScaleHead
from src.architecture.scale.space import ScaleSpaceSpec
from src.architecture.scale.supernet import ScaleSupernet
from src.network_factory.backbones import register_backbone
from src.network_factory.heads import init_heatmap_layer
from src.network_factory.registry import register_model
from src.network_factory.seg import DenseSegHead

SCALE_BACKBONE = "scale_supernet"


def scale_space(cfg) -> ScaleSpaceSpec:
    """The space of MODEL.SCALE; a broken rule names its key."""
    try:
        return ScaleSpaceSpec.from_config(cfg.MODEL.SCALE)
    except ValueError as exc:
        field = getattr(exc, "field", "")
        raise ValueError(f"MODEL.SCALE.{field.upper()}: {exc}" if field else f"MODEL.SCALE: {exc}") from None


class ScaleNet(ModelInterface, nn.Module):
    """Image -> [N, outputs, H/4, W/4] through a ScaleNAS supernet (or standalone subnet) and the dense head."""

    def __init__(self, backbone: ScaleSupernet, head_channels: int, outputs: int, heatmaps: bool):
        super().__init__()
        self.backbone = backbone
        self.head = DenseSegHead(backbone.out_channels, head_channels, outputs)
        if heatmaps:
            init_heatmap_layer(self.head.classifier)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    def complexity_groups(self) -> Dict[str, str]:
        return {"backbone": "backbone", "head": "head"}

    def genotype_sections(self) -> Dict[str, nn.Module]:
        return {"scale.subnet": self.backbone, "scale.head": self.head}

    def genotype(self) -> Architecture:
        s = self.head.settings
        head = ScaleHead(s.channels, s.num_classes)  # the same dense head, as the "scale" section names it
        return Architecture(scale=ScaleGenotype(self.backbone.spec, self.backbone.active, head))

    @classmethod
    def from_genotype(cls, g: Genotype, pretrained: str = "") -> "ScaleNet":
        s = g.arch.scale
        if s is None:
            raise FieldError("scale", f"model '{g.model}' needs a '{ScaleGenotype.FORMAT}' section")
        return cls(ScaleSupernet(s.space, only=s.subnet), s.head.channels, s.head.outputs, g.task == "pose")


@register_backbone(SCALE_BACKBONE)
def build_scale_backbone(cfg) -> ScaleSupernet:
    return ScaleSupernet(scale_space(cfg))


@register_model("scalenet", searchable=ScaleNet)
def build_scalenet(cfg) -> ScaleNet:
    backbone = ScaleSupernet(scale_space(cfg))
    outputs = cfg.DATASET.NUM_CLASSES if cfg.TASK == "segmentation" else cfg.MODEL.NUM_JOINTS
    return ScaleNet(backbone, cfg.MODEL.SCALE.HEAD_CHANNELS or sum(backbone.out_channels), outputs,
                    cfg.TASK == "pose")
