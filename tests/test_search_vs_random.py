"""tools/search_vs_random.py end to end on the tiny synthetic set: candidates, JSON, table, plot, rerun."""
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, tiny_train_opts
from tools.search_vs_random import chance_random_matches, main, per_candidate, retrain_noise


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
    assert " of 1 draws |" in table and "(exact over 1 combinations)" in table
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "results.json").read_text())["results"] == results  # nothing retrained twice
    repeated = subprocess.run(cmd[:-len(opts)] + ["--retrain-seeds", "2"] + opts, cwd=ROOT, capture_output=True, text=True)
    assert repeated.returncode == 0, repeated.stderr[-3000:]
    rows = json.loads((out / "results.json").read_text())["results"]
    assert [r for r in rows if r["repeat"] == 0] == results  # only the second repeats were added
    assert sorted(r["name"] for r in rows if r["repeat"] == 1) == sorted(r["name"] for r in results)
    assert (out / "seed0" / "retrain_searched_rep1" / "last.pth").is_file()
    assert "retrain noise (pooled std of one candidate's repeats, 3 candidates)" in (out / "table.md").read_text()
    last = subprocess.run(cmd[:-len(opts)] + ["--last-step"] + opts, cwd=ROOT, capture_output=True, text=True)
    assert last.returncode == 0, last.stderr[-3000:]
    with_last = json.loads((out / "results.json").read_text())["results"]
    assert [r for r in with_last if r["kind"] != "laststep"] == rows  # only the last-step fabric was added
    assert [(r["name"], r["repeat"], r["genotype"]) for r in with_last if r["kind"] == "laststep"] == [
        ("laststep", 0, str(out / "seed0" / "laststep.json"))]
    assert "last-step fabrics - random, averaged over 1 seeds" in (out / "table.md").read_text()


def test_last_step_is_refused_when_the_search_does_not_average(tmp_path):
    with pytest.raises(ValueError, match="--last-step needs .*AVERAGE_ARCH_STEPS >= 2, got 0"):
        main(["--cfg", str(ROOT / "configs" / "synthetic_search_demo.yaml"), "--last-step", "--out", str(tmp_path / "svr"),
              "DERIVE.AVERAGE_ARCH_STEPS", "0"])
    assert not (tmp_path / "svr").exists()


def test_repeats_are_averaged_per_candidate_and_their_spread_is_the_retrain_noise():
    rows = [{"seed": 0, "kind": "searched", "name": "searched", "ap": 0.5},  # written before repeats existed
            {"seed": 0, "kind": "searched", "name": "searched", "repeat": 1, "ap": 0.7},
            {"seed": 0, "kind": "random", "name": "random_0001", "repeat": 0, "ap": 0.4},
            {"seed": 0, "kind": "random", "name": "random_0001", "repeat": 1, "ap": 0.5},
            {"seed": 0, "kind": "random", "name": "random_0001", "repeat": 2, "ap": 0.6},
            {"seed": 1, "kind": "none", "name": "none", "repeat": 0, "ap": 0.3}]
    merged = per_candidate(rows)
    assert [(c["seed"], c["name"], c["aps"]) for c in merged] == [
        (0, "searched", [0.5, 0.7]), (0, "random_0001", [0.4, 0.5, 0.6]), (1, "none", [0.3])]
    assert [c["ap"] for c in merged] == pytest.approx([0.6, 0.5, 0.3])
    std, n = retrain_noise(merged)
    assert n == 2 and std == pytest.approx(((0.02 + 0.02) / 3) ** 0.5)  # squares 0.01+0.01 and 0.01+0+0.01 over 1 + 2 dof
    assert retrain_noise(merged[2:]) is None


def test_chance_that_random_matches_the_search_counts_every_combination_of_draws():
    # one draw per seed: sums 0.9, 1.1, 1.1, 1.3 against the searched sum 1.1; ties count for random
    assert chance_random_matches([0.6, 0.5], [[0.5, 0.7], [0.4, 0.6]]) == (0.75, 4, True)
    assert chance_random_matches([0.8, 0.7], [[0.5, 0.7], [0.4, 0.6]])[0] == 0.0
    randoms = [[0.1, 0.4, 0.5], [0.2, 0.3], [0.6, 0.65, 0.7, 0.9]]
    exact, combos, _ = chance_random_matches([0.4, 0.3, 0.7], randoms)
    sampled = chance_random_matches([0.4, 0.3, 0.7], randoms, max_exact=10)
    assert combos == 24 and exact == pytest.approx(9 / 24)  # checked by itertools.product
    assert sampled[1:] == (24, False) and sampled[0] == pytest.approx(exact, abs=0.01)
