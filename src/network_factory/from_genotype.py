"""Build the derived network of a genotype JSON, and start it from a supernet checkpoint's weights.

`build_from_genotype(cfg, genotype)` takes the whole architecture from the genotype (backbone, parts and
their joints, derived fabrics with their fixed mixing weights, head, HR section); the config only supplies
run settings (and MODEL.PRETRAINED for a torchvision/HRNet backbone). Derived parameter names are a subset
of the supernet's, so `inherit_weights(model, supernet_ckpt)` carries the searched weights over.
"""
from typing import Dict

from torch import nn

from src.architecture.fabric import FabricSpec
from src.architecture.genotype import load_genotype, part_specs, validate_genotype
from src.architecture.hr_supernet import HRSupernet
from src.network_factory.backbones import FabricBackbone, Stem, build_backbone
from src.network_factory.hr_dense import HRDensePose
from src.network_factory.part_cnf import PartCNF
from src.utils.distributed import is_main
from src.utils.state_dict import load_matching, read_checkpoint, tensor_state


def _backbone(cfg, g: dict) -> nn.Module:
    b = g["backbone"]
    name = b["name"]
    if name == "stem":
        backbone = Stem(b["out_channels"][0])
    elif name == "fabric":
        spec = FabricSpec.from_dict(b["fabric"], "backbone.fabric")
        backbone = FabricBackbone(spec.factor, spec.ops, 0, spec.hidden_states_num, spec.input_nodes_num,
                                  size_types=spec.size_types, spec=spec, searchable=False)
    elif name == "hr_supernet":
        backbone = HRSupernet.from_genotype(g["hr"])
    else:
        local = cfg.clone()
        local.defrost()
        local.MODEL.BACKBONE, local.MODEL.BACKBONE_WIDTH_MULT = name, float(b["width_mult"])
        backbone = build_backbone(local)
    if list(backbone.out_channels) != list(b["out_channels"]):
        raise ValueError(f"genotype field 'backbone.out_channels': {b['out_channels']} but the rebuilt {name} "
                         f"backbone has {list(backbone.out_channels)}")
    return backbone


def build_from_genotype(cfg, genotype: dict) -> nn.Module:
    """The derived model of a (validated) genotype dict."""
    validate_genotype(genotype)
    g = genotype
    if g["num_joints"] != cfg.MODEL.NUM_JOINTS:
        raise ValueError(f"genotype field 'num_joints' is {g['num_joints']} but MODEL.NUM_JOINTS is "
                         f"{cfg.MODEL.NUM_JOINTS}")
    if g["model"] == "hr_dense":
        return HRDensePose.from_genotype(g["hr"])
    parts = [(p["name"], p["joints"]) for p in g["parts"]]
    return PartCNF(_backbone(cfg, g), parts, part_specs(g), g["num_joints"], searchable=False, head=dict(g["head"]))


def build_from_genotype_file(cfg, path: str) -> nn.Module:
    """`build_from_genotype` of a JSON file (errors name the file and field)."""
    g = load_genotype(path)
    try:
        return build_from_genotype(cfg, g)
    except ValueError as exc:
        raise ValueError(f"genotype {path}: {exc}") from None


def inherit_weights(model: nn.Module, ckpt_path: str) -> Dict[str, int]:
    """Load every tensor of a (supernet) checkpoint whose name and shape match the model; log and return
    the counts {loaded, total, missing, shape_mismatch, unused} (printed on the main process)."""
    label = "supernet checkpoint"
    counts = load_matching(model, tensor_state(read_checkpoint(ckpt_path, label), ckpt_path, label))
    if is_main():
        print(f"inherited {counts['loaded']}/{counts['total']} tensors from {ckpt_path} ({counts['missing']} not in "
              f"it, {counts['shape_mismatch']} with other shapes, {counts['unused']} of its tensors unused: pruned "
              "modules and arch parameters)", flush=True)
    return counts
