"""tools/search_vs_random.py end to end on the tiny synthetic set: candidates, JSON, table, plot, rerun."""
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, tiny_train_opts


@pytest.mark.slow
def test_protocol_writes_results_and_a_rerun_skips_finished_candidates(tiny_synthetic, tmp_path):
    out = tmp_path / "svr"
    opts = tiny_train_opts(tiny_synthetic, tmp_path / "unused", **{
        "TRAIN.EPOCHS": 1, "MODEL.FABRIC.FACTOR": 2, "SEARCH.EIGEN_EVERY": 0, "TRAIN.EVAL_INTERVAL": 1, "SEARCH.WARMUP_EPOCHS": 0})
    opts = [x for i in range(0, len(opts), 2) if opts[i] != "OUTPUT_DIR" for x in opts[i:i + 2]]
    cmd = [sys.executable, "tools/search_vs_random.py", "--cfg", "configs/synthetic_search_demo.yaml", "--seeds", "0",
           "--random", "1", "--retrain-epochs", "1", "--jobs", "2", "--flops-tol", "1.0", "--max-draws", "5",
           "--out", str(out), *opts]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())["results"]
    assert sorted(r["kind"] for r in results) == ["none", "random", "searched"]
    assert all(0.0 <= r["ap"] <= 1.0 and r["flops"] > 0 for r in results)
    table = (out / "table.md").read_text()
    assert "searched" in table and (out / "ap_vs_flops.png").stat().st_size > 0
    assert "| 0 | searched | searched | " in table and "input strides reaching each output" in table
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "results.json").read_text())["results"] == results  # nothing retrained twice
