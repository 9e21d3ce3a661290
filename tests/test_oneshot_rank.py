"""Kendall tau between one-shot and fine-tuned metrics, the table, and the choice of subnets over the front."""
import json

import pytest

from src.search.evolution_state import Record
from src.search.oneshot_rank import kendall, rank_table, spread_over_front, write_rank_report


def test_kendall_by_hand():
    assert kendall(range(8), range(8))["tau"] == pytest.approx(1.0)
    assert kendall(range(8), range(8)[::-1])["tau"] == pytest.approx(-1.0)
    # one swapped neighbour pair among 8: (28 - 2 * 1) / 28 concordant minus discordant over pairs
    k = kendall([1, 2, 3, 4, 5, 6, 7, 8], [2, 1, 3, 4, 5, 6, 7, 8])
    assert k["tau"] == pytest.approx(26 / 28) and k["n"] == 8 and 0 < k["p_value"] < 0.01
    with pytest.raises(ValueError, match="at least 8 subnets, got 7"):
        kendall(range(7), range(7))
    with pytest.raises(ValueError, match="8 one-shot metrics but 9"):
        kendall(range(8), range(9))
    with pytest.raises(ValueError, match="not finite"):
        kendall([float("nan")] + list(range(7)), range(8))


def _rows():
    one = [0.30, 0.35, 0.40, 0.42, 0.50, 0.55, 0.60, 0.61]
    fine = [0.50, 0.48, 0.55, 0.58, 0.60, 0.66, 0.65, 0.70]
    return [{"key": f"s{i}", "flops": (i + 1) * 1e8, "oneshot": a, "finetuned": b}
            for i, (a, b) in enumerate(zip(one, fine))]


def test_table_and_report(tmp_path):
    table = rank_table(_rows(), "AP")
    lines = table.splitlines()
    assert lines[0] == "| subnet | GFLOPs | one-shot AP | rank | fine-tuned AP | rank |"
    assert lines[2] == "| s0 | 0.1000 | 0.3000 | 8 | 0.5000 | 7 |"
    assert lines[9] == "| s7 | 0.8000 | 0.6100 | 1 | 0.7000 | 1 |"
    assert lines[-1].startswith("Kendall tau-b 0.857 ")  # 2 discordant pairs of 28: (26 - 2) / 28
    paths = write_rank_report(str(tmp_path), _rows(), {"finetune_epochs": 2}, "AP")
    saved = json.load(open(paths["json"]))
    assert saved["finetune_epochs"] == 2 and saved["kendall"]["tau"] == pytest.approx(24 / 28)
    assert [r["key"] for r in saved["subnets"]] == [f"s{i}" for i in range(8)]
    assert open(paths["table"]).read() == table


def test_spread_over_front():
    front = [Record(f"f{i}", 0, float(i), 0.1 * i, {}) for i in range(1, 11)]  # 10 points on one front
    behind = [Record(f"b{i}", 1, float(i) + 0.5, 0.1 * i - 0.05, {}) for i in range(1, 6)]  # each dominated
    picked = spread_over_front(front + behind, 4)
    assert [r.key for r in picked] == ["f1", "f4", "f7", "f10"]  # both ends, evenly between
    # with f1..f3 only, b4 and b5 join the front (5 points); the 6th is the cheapest of the next (b1..b3)
    picked = spread_over_front(front[:3] + behind, 6)
    assert [r.key for r in picked] == ["f1", "b1", "f2", "f3", "b4", "b5"]  # in FLOPs order
    with pytest.raises(ValueError, match="8 subnets wanted, only 3 evaluated"):
        spread_over_front(front[:3], 8)
