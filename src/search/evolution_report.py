"""What an evolutionary search leaves behind: the chosen subnet, a CSV of every evaluation, the Pareto plot.

`choose_subnet` picks by a FLOPs limit (the best metric at or under it) or by a metric target (the fewest
FLOPs reaching it); with neither, the best metric overall. `write_outputs` writes into a directory:
`evaluated.csv` (generation, key, flops, metric, front rank over all evaluated subnets), `pareto.png` (every
evaluated subnet coloured by generation, the front as a staircase, the chosen one starred) and
`chosen.json` (the rule, the chosen subnet's numbers and its dict), all atomically.
"""
import csv
import os
from typing import Dict, List, Optional, Sequence, Tuple

from src.search.evolution_state import EvolutionState, Record
from src.search.pareto import front_ranks
from src.utils.atomic import atomic_write, write_json_atomic

CSV_COLUMNS = ("generation", "key", "flops", "metric", "front_rank")


def choose_subnet(records: Sequence[Record], max_flops: Optional[float] = None,
                  min_metric: Optional[float] = None) -> Record:
    """The best metric with flops <= max_flops, or the fewest FLOPs with metric >= min_metric (ties: the
    other objective, then the key); ValueError when no subnet qualifies."""
    if max_flops is not None and min_metric is not None:
        raise ValueError("give a FLOPs limit or a metric target, not both")
    if not records:
        raise ValueError("no subnet has been evaluated")
    if min_metric is not None:
        ok = [r for r in records if r.metric >= min_metric]
        if not ok:
            best = max(r.metric for r in records)
            raise ValueError(f"no evaluated subnet reaches metric {min_metric} (best: {best:.6g})")
        return min(ok, key=lambda r: (r.flops, -r.metric, r.key))
    ok = [r for r in records if max_flops is None or r.flops <= max_flops]
    if not ok:
        least = min(r.flops for r in records)
        raise ValueError(f"no evaluated subnet has FLOPs <= {max_flops:.6g} (fewest: {least:.6g})")
    return min(ok, key=lambda r: (-r.metric, r.flops, r.key))


def csv_rows(records: Sequence[Record]) -> List[dict]:
    """One row per evaluated subnet, in evaluation order, with its front rank over all of them."""
    ranks = front_ranks([(r.flops, r.metric) for r in records])
    return [{"generation": r.generation, "key": r.key, "flops": r.flops, "metric": r.metric, "front_rank": k}
            for r, k in zip(records, ranks)]


def write_csv(path: str, rows: Sequence[dict]) -> str:
    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            w.writeheader()
            w.writerows(rows)
    return atomic_write(path, write)


def plot_front(path: str, rows: Sequence[dict], chosen: Optional[Record] = None, metric_name: str = "metric") -> str:
    """Every evaluated subnet (colour = generation), the front (rank 0) as a staircase, the chosen one starred."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gflops = [r["flops"] / 1e9 for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    sc = ax.scatter(gflops, [r["metric"] for r in rows], c=[r["generation"] for r in rows], cmap="viridis",
                    s=18, alpha=0.8, label="evaluated")
    fig.colorbar(sc, ax=ax, label="generation", ticks=sorted({r["generation"] for r in rows}))
    front = sorted((r["flops"] / 1e9, r["metric"]) for r in rows if r["front_rank"] == 0)
    if front:
        ax.step([f for f, _ in front], [m for _, m in front], where="post", color="tab:red", lw=1.5,
                marker="o", ms=4, label="Pareto front")
    if chosen is not None:
        ax.scatter([chosen.flops / 1e9], [chosen.metric], marker="*", s=260, color="gold", edgecolors="black",
                   zorder=5, label="chosen")
    ax.set_xlabel("GFLOPs")
    ax.set_ylabel(metric_name)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120), suffix=".png")
    finally:
        plt.close(fig)


def write_outputs(state: EvolutionState, out_dir: str, max_flops: Optional[float] = None,
                  min_metric: Optional[float] = None, metric_name: str = "metric") -> Tuple[Record, Dict[str, str]]:
    """evaluated.csv, pareto.png and chosen.json in `out_dir`; returns the chosen record and {name: path}."""
    records = list(state.evaluated.values())
    chosen = choose_subnet(records, max_flops, min_metric)
    rows = csv_rows(records)
    rule = ({"max_flops": max_flops} if max_flops is not None else
            {"min_metric": min_metric} if min_metric is not None else {"best_metric": True})
    paths = {"csv": write_csv(os.path.join(out_dir, "evaluated.csv"), rows),
             "png": plot_front(os.path.join(out_dir, "pareto.png"), rows, chosen, metric_name),
             "chosen": write_json_atomic(os.path.join(out_dir, "chosen.json"),
                                         {"rule": rule, **chosen.to_dict()}, indent=1)}
    return chosen, paths
