"""The genotype section "scale": a ScaleNAS subnet with its supernet space and its dense head.

    "scale": {"format": "fabricnas.scale/1", "space": <ScaleSpaceSpec dict, space.py>,
              "subnet": <ScaleSubnet dict, subnet.py>, "head": {"channels": 64, "outputs": 17}}

The head (src/network_factory/scale.py) upsamples every branch to 1/4, concatenates, 1x1 conv of `channels`
+ BN + ReLU, 1x1 to `outputs` (heatmaps for pose, class logits for segmentation).
"""
from dataclasses import dataclass
from typing import ClassVar

from src.architecture.fields import Obj, check_format
from src.architecture.limits import MAX_CHANNELS
from src.architecture.scale.space import ScaleSpaceSpec, parse_space
from src.architecture.scale.subnet import ScaleSubnet, parse_subnet

SCALE_FORMAT = "fabricnas.scale/1"


@dataclass(frozen=True)
class ScaleHead:
    channels: int
    outputs: int

    def to_dict(self) -> dict:
        return {"channels": self.channels, "outputs": self.outputs}


@dataclass(frozen=True)
class ScaleGenotype:
    FORMAT: ClassVar[str] = SCALE_FORMAT
    space: ScaleSpaceSpec
    subnet: ScaleSubnet
    head: ScaleHead

    def to_dict(self) -> dict:
        return {"format": self.FORMAT, "space": self.space.to_dict(), "subnet": self.subnet.to_dict(),
                "head": self.head.to_dict()}


def parse_scale(value, path: str = "scale") -> ScaleGenotype:
    check_format(value, path, SCALE_FORMAT)
    o = Obj(value, path, ("format", "space", "subnet", "head"))
    space = parse_space(o.raw("space"), o.field("space"))
    subnet = parse_subnet(o.raw("subnet"), o.field("subnet"), space)
    h = Obj(o.raw("head"), o.field("head"), ("channels", "outputs"))
    return ScaleGenotype(space, subnet, ScaleHead(h.integer("channels", 1, MAX_CHANNELS),
                                                  h.integer("outputs", 1, MAX_CHANNELS)))
