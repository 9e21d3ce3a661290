"""The typed head section of a segmentation genotype (model "seg": a backbone + the HRNet-seg head) and its
parser.

    "head": {"channels": 64, "num_classes": 6}

`channels`: width of the 1x1 conv after the concatenated backbone maps; `num_classes`: the classifier's
outputs (bounded by limits.MAX_CLASSES; a run's DATASET.NUM_CLASSES must agree, see
src/network_factory/from_genotype.check_config). The backbone section is a part model's (part.py), with the
"hr" section for the HR supernet backbone.
"""
from dataclasses import dataclass

from src.architecture.fields import Obj
from src.architecture.limits import MAX_CHANNELS, MAX_CLASSES


@dataclass(frozen=True)
class SegHead:
    channels: int
    num_classes: int

    def to_dict(self) -> dict:
        return {"channels": self.channels, "num_classes": self.num_classes}


def parse_seg_head(value, path: str = "head") -> SegHead:
    o = Obj(value, path, ("channels", "num_classes"))
    return SegHead(o.integer("channels", 1, MAX_CHANNELS), o.integer("num_classes", 1, MAX_CLASSES))
