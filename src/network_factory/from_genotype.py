"""Build the derived network of a genotype, and start it from a supernet checkpoint's weights.

`build_from_genotype(cfg, g)` takes the whole architecture from the parsed genotype (see
src/architecture/genotype/genotype.py); the config only supplies run settings (and MODEL.PRETRAINED for a fixed
backbone). `run_fields(cfg)` are the genotype's run-level fields a config implies: what a run writes into the
genotypes it describes, and what a genotype must agree with. Before anything is allocated: those fields are
checked (`check_config`), the registry picks the model class (`g.model`), and the network is built on the meta device
(no memory) to check what needs its modules (a fixed backbone's channels) and its size against
limits.MAX_PARAMS. Derived parameter names are a subset of the supernet's, so
`inherit_weights(model, supernet_ckpt)` carries the searched weights over.
"""
from typing import Dict, List, Tuple, Union

import torch
from torch import nn

from src.architecture.fields import FieldError
from src.architecture.genotype.genotype import Dataset, Genotype, RunFields, joint_set, load_genotype, parse_genotype
from src.architecture.limits import MAX_PARAMS
from src.network_factory.registry import genotype_model
from src.search.tickets.masks import folded_state
from src.utils.distributed import is_main
from src.utils.flops import count_params
from src.utils.state_dict import load_matching, read_checkpoint, tensor_state


def run_fields(cfg) -> RunFields:
    """The run-level fields of the genotypes a run of `cfg` describes (a segmentation run: no joints, no stride)."""
    size = tuple(int(v) for v in cfg.MODEL.INPUT_SIZE)
    if cfg.TASK == "segmentation":
        return RunFields(cfg.MODEL.NAME, cfg.TASK, None, size, None, Dataset(cfg.DATASET.NAME, None))
    k = int(cfg.MODEL.NUM_JOINTS)
    return RunFields(cfg.MODEL.NAME, cfg.TASK, k, size, int(cfg.MODEL.HEATMAP_STRIDE),
                     Dataset(cfg.DATASET.NAME, joint_set(k)))


def _classes(g: Genotype) -> Tuple[str, int]:
    """(field, value) of a segmentation genotype's class count: a seg model's head, a scalenet's scale head."""
    if g.arch.scale is not None:
        return "scale.head.outputs", g.arch.scale.head.outputs
    return "head.num_classes", g.arch.head.num_classes


def config_opts(g: Genotype) -> List[str]:
    """KEY VALUE overrides that make a config describe the genotype's run (what `check_config` compares)."""
    w, h = g.input_size
    opts = ["MODEL.NAME", g.model, "TASK", g.task, "MODEL.INPUT_SIZE", f"[{w}, {h}]"]
    if g.task == "segmentation":
        return opts + ["DATASET.NUM_CLASSES", str(_classes(g)[1])]
    return opts + ["MODEL.NUM_JOINTS", str(g.num_joints), "MODEL.HEATMAP_STRIDE", str(g.heatmap_stride)]


def check_config(g: Genotype, cfg) -> None:
    """The genotype's fields that must agree with the run's config."""
    run = run_fields(cfg)
    for field, key in (("task", "TASK"), ("num_joints", "MODEL.NUM_JOINTS"),
                       ("heatmap_stride", "MODEL.HEATMAP_STRIDE"), ("input_size", "MODEL.INPUT_SIZE")):
        value, want = getattr(g, field), getattr(run, field)
        if value != want:
            shown = [list(v) if isinstance(v, tuple) else v for v in (value, want)]
            raise FieldError(field, f"{shown[0]} but {key} is {shown[1]}")
    if g.task == "segmentation":
        field, classes = _classes(g)
        if classes != cfg.DATASET.NUM_CLASSES:
            raise FieldError(field, f"{classes} but DATASET.NUM_CLASSES is {cfg.DATASET.NUM_CLASSES}")


def check_size(model: nn.Module) -> None:
    """Refuse a network above limits.MAX_PARAMS, naming its largest genotype section."""
    total = count_params(model)
    if total > MAX_PARAMS:
        field, n = max(((f, count_params(m)) for f, m in model.genotype_sections().items()), key=lambda fn: fn[1])
        raise FieldError(field, f"builds {n:,} parameters (network {total:,}), above the limit of {MAX_PARAMS:,} "
                         "(limits.MAX_PARAMS)")


def build_from_genotype(cfg, g: Union[Genotype, dict]) -> nn.Module:
    """The derived model of a parsed genotype (a dict, the JSON form a checkpoint holds, is parsed first)."""
    g = g if isinstance(g, Genotype) else parse_genotype(g)
    check_config(g, cfg)
    cls = genotype_model(g.model)
    with torch.device("meta"):
        check_size(cls.from_genotype(g))
    return cls.from_genotype(g, pretrained=cfg.MODEL.PRETRAINED)


def backbone_of(g: Union[Genotype, dict]) -> nn.Module:
    """The backbone of the network a genotype describes (a dict is parsed first), whatever its task: the
    shape a ticket shrunk by slimming carries to another task's model (src/engine/entry.py)."""
    g = g if isinstance(g, Genotype) else parse_genotype(g)
    cls = genotype_model(g.model)
    with torch.device("meta"):
        net = cls.from_genotype(g)
        check_size(net)
    if not isinstance(getattr(net, "backbone", None), nn.Module):
        raise FieldError("model", f"'{g.model}' has no backbone")
    return cls.from_genotype(g).backbone


def build_from_genotype_file(cfg, path: str) -> nn.Module:
    """`build_from_genotype` of a JSON file (errors name the file and field)."""
    g = load_genotype(path)
    try:
        return build_from_genotype(cfg, g)
    except ValueError as exc:
        raise ValueError(f"genotype {path}: {exc}") from None


def inherit_weights(model: nn.Module, ckpt_path: str) -> Dict[str, int]:
    """Load every tensor of a (supernet) checkpoint whose name and shape match the model; log and return
    the counts {loaded, total, missing, shape_mismatch, unused} (printed on the main process). A ticket's masks
    are folded in first (weight = weight_orig * weight_mask): the inheriting network is dense."""
    label = "supernet checkpoint"
    state, folded = folded_state(tensor_state(read_checkpoint(ckpt_path, label), ckpt_path, label))
    counts = load_matching(model, state)
    if is_main():
        print(f"inherited {counts['loaded']}/{counts['total']} tensors from {ckpt_path} ({counts['missing']} not in "
              f"it, {counts['shape_mismatch']} with other shapes, {counts['unused']} of its tensors unused: pruned "
              "modules and arch parameters)" + (f"; {folded} ticket masks folded into their weights (the "
                                                "inheriting network is dense)" if folded else ""), flush=True)
    return counts
