"""Genotype: the versioned, self-sufficient, typed description of a derived (searched) architecture.

JSON form (`Genotype.to_dict()`, parsed by `parse_genotype`):
```
{"format": "fabricnas.genotype/1", "model": "part_cnf" | "fabric" | "hr_dense" | "scalenet",
 "task": "pose" | "segmentation" (segmentation: model scalenet only),
 "num_joints": 17, "input_size": [w, h], "heatmap_stride": 4,
 "dataset": {"name": "coco", "joint_set": "coco"},
 "backbone": {"name": "mobilenet_v2", "width_mult": 1.0, "out_channels": [..],
              "fabric": <FabricSpec dict, only for the searchable "fabric" backbone>},
 "head": {"vector_in_pixel": true, "vector_dim": 8, "mode": "2D"},
 "parts": [{"name": "head", "joints": [0, 1, 2, 3, 4], "fabric": <FabricSpec dict>}, ...],
 "hr": <HR supernet section (backbone "hr_supernet") or hr_dense section (model "hr_dense"),
        src/architecture/hr/spec.py>,
 "scale": <ScaleNAS subnet section (model "scalenet"): space, subnet, head; src/architecture/scale/section.py>,
 "search": {"strategy": .., "prune": {settings, params, flops},
            "fabrics": {"parts.0.fabric": {"fabric": <supernet spec>, "beta": {cell: [softmax per input]},
                                           "alpha": {cell: {edge: [softmax per op]}}}, ...}}}
```
A part model has backbone, head and parts (part.py); an hr_dense model has no parts and its "hr"
section; a scalenet model only its "scale" section (pose or segmentation). A part's fabric spec lists its
kept cells, their kept inputs with `input_weights` and kept ops per edge with `op_weights` (the softmax
values that chose them, renormalised; see prune.py).
A segmentation genotype (task "segmentation") has no num_joints, heatmap_stride, joint set or parts: its
dataset is {"name": ..}; a "seg" model's backbone section is a part model's (+ "hr" for the HR supernet
backbone) and its head is {"channels": .., "num_classes": ..} (seg_head.py); a scalenet's is its "scale".
"search" (optional) is provenance (search_record.py); the build ignores it.

Parsed once, at load (`load_genotype`, `parse_genotype`), section by section, each field type-checked and
bounded (src/architecture/limits.py) and the sections checked against each other; errors are one-line
`FieldError`s naming the field, e.g. "genotype field 'parts[1].fabric.cells[2].inputs': ...". Consumers (build,
render, prune report, export) take the typed `Genotype` and trust it. `genotype_of(run, model)` describes a model:
the run-level fields (`RunFields`, read from the config by the caller), the architecture from the model's own
`genotype()`.
"""
import json
import os
from dataclasses import dataclass, fields
from typing import Dict, List, Optional, Tuple, Union

from torch import nn

from src.architecture.arch_params import unwrap
from src.architecture.fabric.spec import FabricSpec
from src.architecture.fields import FieldError, Obj, check_format
from src.architecture.genotype.part import (Backbone, Head, Part, check_backbone, check_part_model, parse_backbone,
                                            parse_head, parse_part)
from src.architecture.genotype.seg_head import SegHead, parse_seg_head
from src.architecture.genotype.search_record import FabricRecord, SearchRecord, parse_search
from src.architecture.hr.spec import DENSE_STRIDE, HRDenseGenotype, HRGenotype, parse_hr
from src.architecture.limits import (MAX_FABRIC_OPS, MAX_GENOTYPE_BYTES, MAX_HEATMAP_STRIDE, MAX_INPUT_SIDE, MAX_JOINTS,
                                     MAX_PARTS)
from src.architecture.scale.section import ScaleGenotype, parse_scale
from src.utils.atomic import write_json_atomic

GENOTYPE_FORMAT = "fabricnas.genotype/1"
TASKS = ("pose", "segmentation")
JOINT_SETS = {17: "coco", 16: "mpii"}
RUN_KEYS = ("format", "model", "task", "input_size", "dataset")
POSE_KEYS = ("num_joints", "heatmap_stride", "parts")  # a pose genotype's only (a segmentation one has none)
ARCH_KEYS = ("backbone", "head", "hr", "scale")


@dataclass(frozen=True)
class Dataset:
    name: str
    joint_set: Optional[str]  # pose only

    def to_dict(self) -> dict:
        return {"name": self.name} if self.joint_set is None else {"name": self.name, "joint_set": self.joint_set}


@dataclass(frozen=True)
class Architecture:
    """What a model owns and describes (`model.genotype()`): a part model's backbone, head and parts (+ "hr"
    for the HR supernet backbone), an hr_dense model's "hr" section alone, or a scalenet's "scale" section."""
    backbone: Optional[Backbone] = None
    head: Optional[Union[Head, SegHead]] = None
    parts: Tuple[Part, ...] = ()
    hr: Optional[HRGenotype] = None
    scale: Optional[ScaleGenotype] = None

    def fabrics(self) -> List[Tuple[str, str, FabricSpec]]:
        """(module path, label, derived spec) of every fabric: the backbone's, then each part's."""
        out = [("backbone.fabric", "backbone", self.backbone.fabric)] if self.backbone and self.backbone.fabric else []
        return out + [(f"parts.{i}.fabric", f"part {i} {p.name}", p.fabric) for i, p in enumerate(self.parts)]

    def to_dict(self) -> dict:
        d = {"parts": [p.to_dict() for p in self.parts]}
        for key in ARCH_KEYS:
            if getattr(self, key) is not None:
                d[key] = getattr(self, key).to_dict()
        return d


@dataclass(frozen=True)
class RunFields:
    """The run-level fields of a genotype: what the run says (its config), not the model."""
    model: str  # registered model name (src/network_factory/registry.py dispatches on it)
    task: str
    num_joints: Optional[int]  # pose only (None for segmentation)
    input_size: Tuple[int, int]  # [width, height]
    heatmap_stride: Optional[int]  # pose only
    dataset: Dataset


@dataclass(frozen=True)
class Genotype(RunFields):
    arch: Architecture
    search: Optional[SearchRecord] = None

    def to_dict(self) -> dict:
        d = {"format": GENOTYPE_FORMAT, "model": self.model, "task": self.task, "num_joints": self.num_joints,
             "input_size": list(self.input_size), "heatmap_stride": self.heatmap_stride,
             "dataset": self.dataset.to_dict(), **self.arch.to_dict()}
        if self.task != "pose":  # a segmentation genotype has no joints, no stride, no parts
            d = {k: v for k, v in d.items() if k not in POSE_KEYS}
        if self.search is not None:
            d["search"] = self.search.to_dict()
        return d


# ------------------------------------------------------------------ parse
def _parse_scale_arch(o: Obj, num_joints: Optional[int], heatmap_stride: Optional[int]) -> Architecture:
    """A scalenet genotype: the "scale" section alone (num_joints / heatmap_stride: None for segmentation)."""
    for key in ("backbone", "head", "hr"):
        if o.has(key):
            raise FieldError(key, "a scalenet genotype has none (its network and head are in 'scale')")
    if o.has("parts") and o.array("parts", MAX_PARTS):
        raise FieldError("parts", "a scalenet genotype has no parts")
    scale = parse_scale(o.raw("scale"), o.field("scale"))
    if heatmap_stride not in (None, DENSE_STRIDE):
        raise FieldError("heatmap_stride", f"must be {DENSE_STRIDE}: a scalenet predicts at 1/{DENSE_STRIDE}, "
                         f"got {heatmap_stride}")
    if num_joints is not None and scale.head.outputs != num_joints:
        raise FieldError("scale.head.outputs", f"{scale.head.outputs} but the genotype's num_joints is {num_joints}")
    return Architecture(scale=scale)


def _parse_arch(o: Obj, num_joints: int, heatmap_stride: int) -> Architecture:
    hr = parse_hr(o.raw("hr"), o.field("hr")) if o.has("hr") else None
    parts_in = o.array("parts", MAX_PARTS)
    if isinstance(hr, HRDenseGenotype):
        if parts_in:
            raise FieldError("parts", "an hr_dense genotype has no parts")
        for key in ("backbone", "head"):
            if o.has(key):
                raise FieldError(key, "an hr_dense genotype has none (its backbone and head are in 'hr')")
        if hr.num_joints != num_joints:
            raise FieldError("hr.num_joints", f"{hr.num_joints} but the genotype's num_joints is {num_joints}")
        if heatmap_stride != DENSE_STRIDE:
            raise FieldError("heatmap_stride", f"must be {DENSE_STRIDE}: hr_dense predicts at its first branch, "
                             f"got {heatmap_stride}")
        return Architecture(hr=hr)
    if not parts_in:
        raise FieldError("parts", "needs at least one part (or an hr_dense 'hr' section)")
    for key in ("backbone", "head"):
        if not o.has(key):
            raise FieldError(key, "missing")
    arch = Architecture(parse_backbone(o.raw("backbone"), "backbone"), parse_head(o.raw("head"), "head"),
                        tuple(parse_part(p, f"parts[{i}]", num_joints) for i, p in enumerate(parts_in)), hr)
    check_part_model(arch.backbone, arch.parts, hr, num_joints, heatmap_stride)
    _check_op_count(arch)
    return arch


def _parse_seg_arch(o: Obj) -> Architecture:
    """A segmentation model: backbone (+ "hr" for the HR supernet backbone) and the dense head."""
    for key in ("backbone", "head"):
        if not o.has(key):
            raise FieldError(key, "missing")
    hr = parse_hr(o.raw("hr"), o.field("hr")) if o.has("hr") else None
    arch = Architecture(parse_backbone(o.raw("backbone"), "backbone"), parse_seg_head(o.raw("head"), "head"), (), hr)
    check_backbone(arch.backbone, hr)
    _check_op_count(arch)
    return arch


def _check_op_count(arch: Architecture) -> None:
    """Every kept op of a fabric is a module: their number over all fabrics is bounded (limits.MAX_FABRIC_OPS)."""
    total = 0
    for path, _, spec in arch.fabrics():
        total += sum(len(ops) for c in spec.cells for ops in c.edges.values())
        if total > MAX_FABRIC_OPS:
            field = "backbone.fabric" if path == "backbone.fabric" else f"parts[{path.split('.')[1]}].fabric"
            raise FieldError(field, f"the fabrics up to here keep {total} ops, above {MAX_FABRIC_OPS} "
                             "(limits.MAX_FABRIC_OPS)")


def parse_genotype(value) -> Genotype:
    """The typed genotype of a JSON value; ValueError naming the first malformed field."""
    if not isinstance(value, dict):
        raise ValueError(f"genotype must be a JSON object, got {type(value).__name__}")
    check_format(value, "", GENOTYPE_FORMAT)
    task = Obj(value, "", ("task",), RUN_KEYS + POSE_KEYS + ARCH_KEYS + ("search",)).string("task", TASKS)
    pose = task == "pose"
    o = Obj(value, "", RUN_KEYS + (POSE_KEYS if pose else ()), ARCH_KEYS + ("search",))
    model = o.string("model")
    size = tuple(o.integers("input_size", 1, MAX_INPUT_SIDE, 2, min_len=2))
    ds = Obj(o.raw("dataset"), "dataset", ("name", "joint_set") if pose else ("name",))
    dataset = Dataset(ds.string("name"), ds.string("joint_set") if pose else None)
    k = stride = None
    if pose:
        k, stride = o.integer("num_joints", 1, MAX_JOINTS), o.integer("heatmap_stride", 1, MAX_HEATMAP_STRIDE)
    if o.has("scale"):
        arch = _parse_scale_arch(o, k, stride)
    else:
        arch = _parse_arch(o, k, stride) if pose else _parse_seg_arch(o)
    search = None
    if o.has("search"):
        search = parse_search(o.raw("search"), "search", {path: spec for path, _, spec in arch.fabrics()})
    return Genotype(model, task, k, size, stride, dataset, arch, search)


# ------------------------------------------------------------------ describe a model
def joint_set(num_joints: int) -> str:
    """The name of the joint set of `num_joints` keypoints ("coco", "mpii", else "<k> joints")."""
    return JOINT_SETS.get(num_joints, f"{num_joints} joints")


def genotype_of(run: RunFields, model: nn.Module, search: Optional[SearchRecord] = None) -> Genotype:
    """The genotype of `model` (its own `genotype()`: a derived part model, an HR model) with the run-level
    fields of `run` (a genotype's do too). Checked like a loaded one, so that what is described can be loaded."""
    g = Genotype(**{f.name: getattr(run, f.name) for f in fields(RunFields)}, arch=unwrap(model).genotype(),
                 search=search)
    return parse_genotype(g.to_dict())


def genotype_fabrics(g: Genotype) -> List[Tuple[str, str, FabricSpec]]:
    """(module path, label, derived spec) of every fabric of a genotype: the backbone's, then each part's."""
    return g.arch.fabrics()


def search_records(g: Genotype) -> Dict[str, FabricRecord]:
    return g.search.fabrics if g.search is not None else {}


# ------------------------------------------------------------------ files
def save_genotype(g: Genotype, path: str) -> str:
    """Write atomically (temp file + os.replace)."""
    return write_json_atomic(path, g.to_dict(), indent=1)


def load_genotype(path: str) -> Genotype:
    """Read and parse a genotype JSON; errors are one line naming the file (and the field)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"genotype file not found: {path}")
    size = os.path.getsize(path)
    if size > MAX_GENOTYPE_BYTES:
        raise ValueError(f"genotype {path} has {size} bytes, above {MAX_GENOTYPE_BYTES} (limits.MAX_GENOTYPE_BYTES)")
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, too many digits, bad bytes
        raise ValueError(f"genotype {path} is not valid JSON: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise ValueError(f"genotype {path} is not valid JSON: nested too deeply") from None
    try:
        return parse_genotype(value)
    except ValueError as exc:
        raise ValueError(f"genotype {path}: {exc}") from None
