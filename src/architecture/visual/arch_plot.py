"""Plot alpha and beta trajectories of a search run from its `arch_values.csv`.

The CSV (src/engine/run_log.py) has `step`, `epoch`, then one column per softmaxed arch scalar named
`<module>.alpha[edge,op]` or `<module>.beta[input]` (e.g. `parts.0.fabric.alpha[0,2]`,
`parts.0.fabric.cells.L3_S0.beta[1]`). One row of panels per part (and for a searchable backbone), alpha
left and beta right. Op names come from the run's `config.yaml` (MODEL.FABRIC.OPERATIONS /
BACKBONE_OPERATIONS) and part names / input kinds from its `genotype.json`, when present. With
DERIVE.AVERAGE_ARCH_STEPS N in the run's config, the last N arch steps (the values Prune derives from, averaged)
are shaded in every panel.
"""
import csv
import json
import os
import re
from typing import Dict, List, Optional, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from src.utils.atomic import atomic_write  # noqa: E402

_COLUMN = re.compile(r"^(?P<owner>.+)\.(?P<kind>alpha|beta)\[(?P<index>\d+(?:,\d+)*)\]$")
_STYLES = ("-", "--", ":", "-.")


def read_arch_csv(path: str) -> Tuple[List[float], Dict[str, List[float]]]:
    """(steps, {column: values}) of the arch columns; empty cells become NaN."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"arch values CSV not found: {path}")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "step" not in rows[0]:
        raise ValueError(f"arch values CSV {path} has no rows or no 'step' column")
    cols = [c for c in rows[0] if _COLUMN.match(c)]
    if not cols:
        raise ValueError(f"arch values CSV {path} has no alpha/beta columns")

    def num(v):
        try:
            return float(v)
        except (TypeError, ValueError):
            return float("nan")
    return [num(r["step"]) for r in rows], {c: [num(r[c]) for r in rows] for c in cols}


def _group(owner: str) -> str:
    m = re.match(r"parts\.(\d+)\.", owner)
    return f"parts.{m.group(1)}" if m else owner.split(".", 1)[0]


def averaged_span(steps: List[float], averaged: int) -> Optional[Tuple[float, float]]:
    """(first, last) step of the last `averaged` arch steps, or None without averaging."""
    if averaged <= 0 or not steps:
        return None
    return steps[-min(averaged, len(steps))], steps[-1]


def _run_info(run_dir: str) -> Tuple[Dict[str, List[str]], Dict[str, str], Dict[str, List[str]], int]:
    """Op names per group, group titles and input kinds per cell owner, and DERIVE.AVERAGE_ARCH_STEPS, from
    config.yaml / genotype.json."""
    ops, titles, kinds, averaged = {}, {}, {}, 0
    cfg_path = os.path.join(run_dir, "config.yaml")
    if os.path.isfile(cfg_path):
        import yaml
        with open(cfg_path) as f:
            cfg = yaml.safe_load(f) or {}
        fabric = (cfg.get("MODEL") or {}).get("FABRIC") or {}
        averaged = int((cfg.get("DERIVE") or {}).get("AVERAGE_ARCH_STEPS") or 0)
        if fabric.get("OPERATIONS"):
            ops["parts"] = list(fabric["OPERATIONS"])
        if fabric.get("BACKBONE_OPERATIONS"):
            ops["backbone"] = list(fabric["BACKBONE_OPERATIONS"])
    g_path = os.path.join(run_dir, "genotype.json")
    if os.path.isfile(g_path):
        with open(g_path) as f:
            g = json.load(f)
        for i, part in enumerate(g.get("parts", [])):
            titles[f"parts.{i}"] = f"part {i} {part.get('name', '')}".strip()
        for path, rec in g.get("search", {}).get("fabrics", {}).items():
            for c in rec.get("fabric", {}).get("cells", []):
                kinds[f"{path}.cells.L{c['layer']}_S{c['scale']}"] = list(c["inputs"])
    return ops, titles, kinds, averaged


def plot_arch_csv(csv_path: str, out_path: str, ops: Optional[Dict[str, List[str]]] = None,
                  titles: Optional[Dict[str, str]] = None, kinds: Optional[Dict[str, List[str]]] = None,
                  averaged: int = 0) -> str:
    """Write the PNG of an arch-values CSV; `ops`: op names per group prefix ("parts", "backbone");
    `averaged`: shade the last that many arch steps."""
    ops, titles, kinds = ops or {}, titles or {}, kinds or {}
    steps, cols = read_arch_csv(csv_path)
    span = averaged_span(steps, averaged)
    shaded = f"; shaded: the {min(averaged, len(steps))} steps averaged for Prune" if span else ""
    groups: Dict[str, Dict[str, List[str]]] = {}
    for c in cols:
        m = _COLUMN.match(c)
        groups.setdefault(_group(m["owner"]), {"alpha": [], "beta": []})[m["kind"]].append(c)
    order = sorted(groups, key=lambda k: (not k.startswith("backbone"),
                                          int(k.split(".")[1]) if k.startswith("parts.") else 0, k))
    fig, axes = plt.subplots(len(order), 2, figsize=(14, 3.4 * len(order)), squeeze=False)
    colours = plt.get_cmap("tab10").colors
    for row, key in zip(axes, order):
        names = ops.get(key.split(".")[0], [])
        title = titles.get(key, key.replace("parts.", "part "))
        for ax, kind in zip(row, ("alpha", "beta")):
            owners: List[str] = []
            for c in groups[key][kind]:
                m = _COLUMN.match(c)
                owner, index = m["owner"], [int(i) for i in m["index"].split(",")]
                if owner not in owners:
                    owners.append(owner)
                cell = owner.rsplit(".cells.", 1)[1] + " " if ".cells." in owner else ""
                if kind == "alpha":
                    op = index[-1]
                    label = f"{cell}e{index[0]} " * (len(index) > 1) + (names[op] if op < len(names) else f"op{op}")
                    style = dict(color=colours[op % 10], linestyle=_STYLES[(owners.index(owner) * 3 + index[0]) % 4])
                else:
                    i = index[0]
                    kinds_of = kinds.get(owner, [])
                    label = f"{cell}{kinds_of[i] if i < len(kinds_of) else f'input {i}'}"
                    style = dict(color=colours[owners.index(owner) % 10], linestyle=_STYLES[i % 4])
                ax.plot(steps, cols[c], label=label.strip(), linewidth=1.2, **style)
            if span:
                ax.axvspan(*span, color="0.85", zorder=0)
            ax.set_title(f"{title}: {kind} (softmax{shaded})", fontsize=10)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            if groups[key][kind]:
                ax.legend(fontsize=6, ncol=2 if len(groups[key][kind]) > 8 else 1, loc="upper left",
                          bbox_to_anchor=(1.0, 1.0))
            else:
                ax.text(0.5, 0.5, f"no {kind}", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    try:
        return atomic_write(out_path, lambda tmp: fig.savefig(tmp, dpi=110), suffix=".png")
    finally:
        plt.close(fig)


def plot_arch_values(run_dir: str, out_path: Optional[str] = None) -> str:
    """`<run_dir>/arch_values.csv` -> `<run_dir>/arch_values.png` (or `out_path`)."""
    ops, titles, kinds, averaged = _run_info(run_dir)
    return plot_arch_csv(os.path.join(run_dir, "arch_values.csv"), out_path or os.path.join(run_dir, "arch_values.png"),
                         ops, titles, kinds, averaged)
