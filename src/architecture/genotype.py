"""Genotype JSON: the versioned, self-sufficient description of a derived (searched) architecture.

```
{"format": "fabricnas.genotype/1", "model": "part_cnf" | "fabric" | "hr_dense", "task": "pose",
 "num_joints": 17, "input_size": [w, h], "heatmap_stride": 4,
 "dataset": {"name": "coco", "joint_set": "coco"},
 "backbone": {"name": "mobilenet_v2", "width_mult": 1.0, "out_channels": [..],
              "fabric": <FabricSpec dict, only for the searchable "fabric" backbone>},
 "head": {"vector_in_pixel": true, "vector_dim": 8, "mode": "2D"},
 "parts": [{"name": "head", "joints": [0, 1, 2, 3, 4], "fabric": <FabricSpec dict>}, ...],
 "hr": <HR genotype: backbone "hr_supernet" (src/architecture/hr_supernet.py) or model "hr_dense">,
 "search": {"strategy": .., "prune": {settings, params, flops},
            "fabrics": {"parts.0.fabric": {"fabric": <supernet spec>, "beta": {cell: [softmax per input]},
                                           "alpha": {cell: {edge: [softmax per op]}}}, ...}}}
```
A part's fabric spec lists its kept cells, their kept inputs with `input_weights` and kept ops per edge with
`op_weights` (the softmax values that chose them, renormalised; see src/architecture/prune.py), plus the op
list, FACTOR, SIZE_TYPES, node counts. "search" (optional) is provenance: the supernet each fabric was
pruned from with its softmaxed alpha/beta, and the prune settings and savings; the build ignores it.
`validate_genotype` raises ValueError naming the field, e.g. "genotype field 'parts[1].fabric.cells[2].inputs': ...".
"""
import json
import os
import re
from typing import Dict, List, Optional, Tuple

from torch import nn

from src.architecture.arch_params import unwrap
from src.architecture.cell import INPUT_KINDS
from src.architecture.fabric import Fabric, FabricSpec
from src.architecture.hr_supernet import check_hr_genotype, hr_genotype
from src.architecture.operators import OPS
from src.utils.atomic import write_json_atomic

GENOTYPE_FORMAT = "fabricnas.genotype/1"
MODELS = ("part_cnf", "fabric", "hr_dense")
JOINT_SETS = {17: "coco", 16: "mpii"}
HR_DENSE_FORMAT = "fabricnas.hr_dense/1"


def _fail(field: str, msg: str):
    raise ValueError(f"genotype field '{field}': {msg}")


def _get(obj: dict, key: str, kind, path: str):
    field = f"{path}.{key}" if path else key
    if key not in obj:
        _fail(field, "missing")
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = "/".join(k.__name__ for k in kinds)
        _fail(field, f"must be {names}, got {type(value).__name__} {json.dumps(value)[:60]}")
    return value


def _int_list(obj: dict, key: str, path: str) -> List[int]:
    values = _get(obj, key, list, path)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        _fail(f"{path}.{key}" if path else key, f"must be a list of integers, got {values}")
    return values


# ------------------------------------------------------------------ describe a model
def genotype_of(cfg, model: nn.Module, search: Optional[dict] = None) -> dict:
    """The genotype of `model` (a derived part model, or an HR model with `genotype()`); run-level fields
    (model name, backbone name/width, input size, dataset, head settings) come from `cfg`."""
    core = unwrap(model)
    k = int(cfg.MODEL.NUM_JOINTS)
    g = {"format": GENOTYPE_FORMAT, "model": cfg.MODEL.NAME, "task": cfg.TASK, "num_joints": k,
         "input_size": [int(v) for v in cfg.MODEL.INPUT_SIZE], "heatmap_stride": int(cfg.MODEL.HEATMAP_STRIDE),
         "dataset": {"name": cfg.DATASET.NAME, "joint_set": JOINT_SETS.get(k, f"{k} joints")}}
    if hasattr(core, "parts"):
        backbone = core.backbone
        g["backbone"] = {"name": "stem" if cfg.MODEL.NAME == "fabric" else cfg.MODEL.BACKBONE,
                         "width_mult": float(cfg.MODEL.BACKBONE_WIDTH_MULT),
                         "out_channels": [int(c) for c in backbone.out_channels]}
        if isinstance(getattr(backbone, "fabric", None), Fabric):
            g["backbone"]["fabric"] = backbone.fabric.spec.to_dict()
        p = cfg.MODEL.PARTS
        g["head"] = {"vector_in_pixel": bool(p.VECTOR_IN_PIXEL), "vector_dim": int(p.VECTOR_DIM),
                     "mode": p.CONVOLUTION_MODE}
        g["parts"] = [{"name": name, "joints": list(joints), "fabric": part.fabric.spec.to_dict()}
                      for name, joints, part in zip(core.part_names, core.part_joints, core.parts)]
        if hasattr(backbone, "genotype"):
            g["hr"] = hr_genotype(backbone)
    elif hasattr(core, "genotype"):
        g["parts"] = []
        g["hr"] = core.genotype()
    else:
        raise ValueError(f"{type(core).__name__} has neither part fabrics nor an HR genotype")
    if search is not None:
        g["search"] = search
    validate_genotype(g)
    return g


def genotype_fabrics(g: dict) -> List[Tuple[str, str, dict]]:
    """(module path, label, derived spec dict) of every fabric of a genotype: the backbone's, then each part's."""
    out = []
    if "fabric" in g.get("backbone", {}):
        out.append(("backbone.fabric", "backbone", g["backbone"]["fabric"]))
    out += [(f"parts.{i}.fabric", f"part {i} {p['name']}", p["fabric"]) for i, p in enumerate(g["parts"])]
    return out


# ------------------------------------------------------------------ validation
def _spec(d, path: str) -> FabricSpec:
    """Type-check a FabricSpec dict field by field, then parse and validate it."""
    if not isinstance(d, dict):
        _fail(path, f"must be an object, got {type(d).__name__}")
    for key in ("size_types", "input_scales"):
        _int_list(d, key, path)
    for key in ("factor", "hidden_states_num", "input_nodes_num", "input_layer"):
        _get(d, key, int, path)
    ops = _get(d, "ops", list, path)
    unknown = [o for o in ops if o not in OPS]
    if unknown:
        _fail(f"{path}.ops", f"unknown operations {unknown} (known: {', '.join(sorted(OPS))})")
    _get(d, "outputs", list, path)
    for j, c in enumerate(_get(d, "cells", list, path)):
        cp = f"{path}.cells[{j}]"
        if not isinstance(c, dict):
            _fail(cp, "must be an object")
        _get(c, "layer", int, cp)
        _get(c, "scale", int, cp)
        inputs = _get(c, "inputs", list, cp)
        if list(inputs) != [k for k in INPUT_KINDS if k in inputs]:
            _fail(f"{cp}.inputs", f"{inputs} must be distinct names from {list(INPUT_KINDS)}, in that order")
        _int_list(c, "input_nodes", cp)
        edges = _get(c, "edges", dict, cp)
        for e, names in edges.items():
            if not e.isdigit() or not isinstance(names, list) or not names:
                _fail(f"{cp}.edges", f"must map edge indices to non-empty op lists, got {e!r}: {names!r}")
            bad = [o for o in names if o not in ops]
            if bad:
                _fail(f"{cp}.edges.{e}", f"operations {bad} are not in the fabric's ops {ops}")
        if "input_weights" in c:
            ws = _get(c, "input_weights", list, cp)
            if len(ws) != len(inputs) or not all(isinstance(w, (int, float)) and w >= 0 for w in ws):
                _fail(f"{cp}.input_weights", f"{ws} must be one weight >= 0 per input {inputs}")
        if "op_weights" in c:
            ow = _get(c, "op_weights", dict, cp)
            if set(ow) != set(edges):
                _fail(f"{cp}.op_weights", f"edges {sorted(ow)} differ from the kept edges {sorted(edges)}")
            for e, ws in ow.items():
                if not isinstance(ws, list) or len(ws) != len(edges[e]) or \
                        not all(isinstance(w, (int, float)) and w >= 0 for w in ws):
                    _fail(f"{cp}.op_weights.{e}", f"{ws} must be one weight >= 0 per op {edges[e]}")
    try:
        return FabricSpec.from_dict(d, where=path)
    except ValueError as exc:  # a semantic error: name the cell it is about when there is one
        msg = str(exc)
        msg = msg[len(path) + 2:] if msg.startswith(path + ": ") else msg
        m = re.match(r"(?:fabric: )?cell (L-?\d+_S\d+)", msg)
        names = [f"L{c['layer']}_S{c['scale']}" for c in d["cells"]]
        _fail(f"{path}.cells[{names.index(m.group(1))}]" if m and m.group(1) in names else path, msg)


def _check_record(rec, derived: FabricSpec, path: str) -> None:
    """A search record: the supernet spec the fabric was pruned from, with its softmaxed beta and alpha."""
    if not isinstance(rec, dict):
        _fail(path, "must be an object")
    sup = _spec(_get(rec, "fabric", dict, path), f"{path}.fabric")
    cells = {c.name: c for c in sup.cells}
    beta, alpha = _get(rec, "beta", dict, path), _get(rec, "alpha", dict, path)
    for name, c in cells.items():
        b = beta.get(name)
        if not isinstance(b, list) or len(b) != len(c.inputs):
            _fail(f"{path}.beta.{name}", f"must list one weight per supernet input {c.inputs}, got {b!r}")
        a = alpha.get(name)
        if not isinstance(a, dict) or set(a) != {str(e) for e in c.edges} or \
                any(not isinstance(a[str(e)], list) or len(a[str(e)]) != len(ops) for e, ops in c.edges.items()):
            _fail(f"{path}.alpha.{name}", f"must list one weight per op of each edge {c.edges}")
    for j, c in enumerate(derived.cells):
        s = cells.get(c.name)
        if s is None:
            _fail(f"{path}.fabric.cells", f"derived cell {c.name} is not a supernet cell")
        if not set(c.inputs) <= set(s.inputs) or \
                any(not set(ops) <= set(s.edges.get(e, ())) for e, ops in c.edges.items()):
            _fail(f"{path}.fabric.cells", f"derived cell {c.name} keeps inputs or ops its supernet cell lacks")


def validate_genotype(g) -> None:
    """Raise ValueError naming the first malformed field."""
    if not isinstance(g, dict):
        raise ValueError(f"genotype must be a JSON object, got {type(g).__name__}")
    fmt = g.get("format")
    if fmt != GENOTYPE_FORMAT:
        _fail("format", f"{fmt!r} is not '{GENOTYPE_FORMAT}'")
    model = _get(g, "model", str, "")
    if model not in MODELS:
        _fail("model", f"'{model}' is not one of {list(MODELS)}")
    _get(g, "task", str, "")
    k = _get(g, "num_joints", int, "")
    if k < 1:
        _fail("num_joints", f"must be >= 1, got {k}")
    size = _int_list(g, "input_size", "")
    if len(size) != 2 or min(size) < 1:
        _fail("input_size", f"must be [width, height], got {size}")
    _get(g, "heatmap_stride", int, "")
    _get(_get(g, "dataset", dict, ""), "name", str, "dataset")
    parts = _get(g, "parts", list, "")
    if model == "hr_dense":
        hr = _get(g, "hr", dict, "")
        if hr.get("format") != HR_DENSE_FORMAT:
            _fail("hr.format", f"{hr.get('format')!r} is not '{HR_DENSE_FORMAT}'")
        if parts:
            _fail("parts", "an hr_dense genotype has no parts")
        return
    backbone = _get(g, "backbone", dict, "")
    name = _get(backbone, "name", str, "backbone")
    mult = _get(backbone, "width_mult", (int, float), "backbone")
    if mult <= 0:
        _fail("backbone.width_mult", f"must be > 0, got {mult}")
    _int_list(backbone, "out_channels", "backbone")
    if name == "fabric":
        _spec(_get(backbone, "fabric", dict, "backbone"), "backbone.fabric")
    if name == "hr_supernet":
        try:
            check_hr_genotype(_get(g, "hr", dict, ""))
        except ValueError as exc:
            _fail("hr", str(exc))
    head = _get(g, "head", dict, "")
    _get(head, "vector_in_pixel", bool, "head")
    _get(head, "vector_dim", int, "head")
    if _get(head, "mode", str, "head") not in ("2D", "3D"):
        _fail("head.mode", f"must be '2D' or '3D', got {head['mode']!r}")
    if not parts:
        _fail("parts", "needs at least one part")
    covered = set()
    for i, part in enumerate(parts):
        path = f"parts[{i}]"
        if not isinstance(part, dict):
            _fail(path, "must be an object")
        _get(part, "name", str, path)
        joints = _int_list(part, "joints", path)
        if not joints or not all(0 <= j < k for j in joints):
            _fail(f"{path}.joints", f"{joints} must be non-empty and lie in 0..{k - 1}")
        covered.update(joints)
        spec = _spec(_get(part, "fabric", dict, path), f"{path}.fabric")
        if len(spec.outputs) != 1:
            _fail(f"{path}.fabric.outputs", f"a part fabric returns one map, got {spec.outputs}")
    if covered != set(range(k)):
        _fail("parts", f"joints {sorted(set(range(k)) - covered)} are in no part")
    if "search" in g:
        fabrics = _get(_get(g, "search", dict, ""), "fabrics", dict, "search")
        derived = {path: spec for path, _, spec in genotype_fabrics(g)}
        for path, rec in fabrics.items():
            if path not in derived:
                _fail(f"search.fabrics.{path}", "names no fabric of the genotype")
            _check_record(rec, FabricSpec.from_dict(derived[path]), f"search.fabrics.{path}")


# ------------------------------------------------------------------ files
def save_genotype(g: dict, path: str) -> str:
    """Validate, then write atomically (temp file + os.replace)."""
    validate_genotype(g)
    return write_json_atomic(path, g, indent=1)


def load_genotype(path: str) -> dict:
    """Read and validate a genotype JSON; errors are one line naming the file (and the field)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"genotype file not found: {path}")
    try:
        with open(path) as f:
            g = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"genotype {path} is not valid JSON: {exc}") from None
    try:
        validate_genotype(g)
    except ValueError as exc:
        raise ValueError(f"genotype {path}: {exc}") from None
    return g


def part_specs(g: dict) -> List[FabricSpec]:
    return [FabricSpec.from_dict(p["fabric"], f"parts[{i}].fabric") for i, p in enumerate(g["parts"])]


def search_records(g: dict) -> Dict[str, dict]:
    return g.get("search", {}).get("fabrics", {})
