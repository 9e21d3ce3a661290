"""How far can the one-shot ranking be trusted? Kendall tau between the BN-calibrated one-shot metric of
subnets and their metric after a short standalone fine-tune.

`spread_over_front` picks the subnets (evenly over the Pareto front by FLOPs, then the next fronts when the
front is too small), `kendall` computes tau-b with scipy, `rank_table` and `write_rank_report` give the
table (markdown) and the JSON. The fine-tune itself is tools/oneshot_rank.py.
"""
import math
import os
from typing import Dict, List, Sequence

from scipy.stats import kendalltau, rankdata

from src.search.evolution_state import Record
from src.search.pareto import front_ranks
from src.utils.atomic import write_json_atomic, write_text_atomic

MIN_SUBNETS = 8


def _evenly(items: Sequence, n: int) -> list:
    """`n` of `items` at evenly spaced positions, both ends included (all of them when n >= len)."""
    if n >= len(items):
        return list(items)
    if n == 1:
        return [items[0]]
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def spread_over_front(records: Sequence[Record], n: int) -> List[Record]:
    """`n` evaluated subnets: evenly over the front sorted by FLOPs; when the front has fewer than `n`, all of
    it and then the next fronts the same way. Returned in FLOPs order."""
    if len(records) < n:
        raise ValueError(f"{n} subnets wanted, only {len(records)} evaluated")
    ranks = front_ranks([(r.flops, r.metric) for r in records])
    out = []
    for rank in sorted(set(ranks)):
        front = sorted((r for r, k in zip(records, ranks) if k == rank), key=lambda r: (r.flops, -r.metric, r.key))
        out += _evenly(front, n - len(out))
        if len(out) == n:
            break
    return sorted(out, key=lambda r: (r.flops, r.key))


def kendall(oneshot: Sequence[float], finetuned: Sequence[float], min_count: int = MIN_SUBNETS) -> Dict[str, float]:
    """Kendall's tau-b (ties counted) between the two metrics and its two-sided p-value."""
    if len(oneshot) != len(finetuned):
        raise ValueError(f"{len(oneshot)} one-shot metrics but {len(finetuned)} fine-tuned ones")
    if len(oneshot) < min_count:
        raise ValueError(f"Kendall tau needs at least {min_count} subnets, got {len(oneshot)}")
    if not all(math.isfinite(v) for v in (*oneshot, *finetuned)):
        raise ValueError("a metric is not finite")
    res = kendalltau(oneshot, finetuned)
    return {"tau": float(res.statistic), "p_value": float(res.pvalue), "n": len(oneshot)}


def rank_table(rows: Sequence[dict], metric_name: str = "metric") -> str:
    """Markdown: one line per subnet (key, GFLOPs, one-shot metric and rank, fine-tuned metric and rank;
    rank 1 = best, ties share the mean rank), then the tau line."""
    one = rankdata([-r["oneshot"] for r in rows])
    fine = rankdata([-r["finetuned"] for r in rows])
    lines = [f"| subnet | GFLOPs | one-shot {metric_name} | rank | fine-tuned {metric_name} | rank |",
             "|---|---|---|---|---|---|"]
    for r, a, b in zip(rows, one, fine):
        lines.append(f"| {r['key']} | {r['flops'] / 1e9:.4f} | {r['oneshot']:.4f} | {a:g} | {r['finetuned']:.4f} | {b:g} |")
    k = kendall([r["oneshot"] for r in rows], [r["finetuned"] for r in rows], min_count=2)
    lines.append(f"\nKendall tau-b {k['tau']:.3f} (p = {k['p_value']:.3g}, n = {k['n']})")
    return "\n".join(lines) + "\n"


def write_rank_report(out_dir: str, rows: Sequence[dict], meta: dict, metric_name: str = "metric") -> Dict[str, str]:
    """rank.json ({meta, kendall, subnets}) and rank.md (the table) in `out_dir`; rows need key, flops,
    oneshot, finetuned."""
    result = kendall([r["oneshot"] for r in rows], [r["finetuned"] for r in rows])
    return {"json": write_json_atomic(os.path.join(out_dir, "rank.json"),
                                      {**meta, "kendall": result, "subnets": list(rows)}, indent=1),
            "table": write_text_atomic(os.path.join(out_dir, "rank.md"), rank_table(rows, metric_name))}
