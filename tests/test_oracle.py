"""The oracles: GT targets through the real inference / flip test / decoding / COCOeval path score AP ~ 1;
GT label maps through the segmentation evaluation (transforms, flip test, inverse, confusion matrix) mIoU 1."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COCO_DIR = ROOT.parent / "shared" / "data" / "coco_mini"
ANN = str(COCO_DIR / "test_coco.json")


@pytest.fixture(scope="module")
def oracle():
    spec = importlib.util.spec_from_file_location("eval_oracle", ROOT / "tools" / "eval_oracle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("flip_test", [False, True])
def test_oracle_ap_on_coco_mini(oracle, flip_test):
    metrics = oracle.run_oracle(ANN, str(COCO_DIR), flip_test=flip_test, input_size=(96, 128))
    assert metrics["AP"] >= 0.95 and metrics["AR"] >= 0.95


def test_oracle_detects_a_one_pixel_flip_shift(oracle, monkeypatch):
    # the oracle is not vacuous: SimpleBaseline's one-heatmap-pixel flip shift is visible in its AP
    import src.evaluation.flip as flip
    exact = flip.flip_back
    monkeypatch.setattr(flip, "flip_back", lambda h, pairs: exact(h, pairs).roll(1, dims=3))
    assert oracle.run_oracle(ANN, str(COCO_DIR), flip_test=True, input_size=(96, 128))["AP"] < 0.9


def test_oracle_cli_prints_ap_last(tmp_path):
    cmd = [sys.executable, str(ROOT / "tools" / "eval_oracle.py"), "--ann", ANN, "--images", str(COCO_DIR),
           "--flip-test", "--input-size", "96", "128", "--stride", "4", "--sigma", "2", "--out", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip().splitlines()
    name, value = out[-1].split()
    assert name == "AP" and float(value) >= 0.95 and out[0].startswith("| AP |")
    assert (tmp_path / "keypoints_results.json").is_file()


# ---------------------------------------------------------------- segmentation oracle (tools/eval_oracle.py --task seg)
@pytest.mark.parametrize("flip_test", [False, True])
def test_seg_oracle_miou_is_1_on_coco_mini(oracle, flip_test):
    metrics = oracle.run_seg_oracle(ANN, str(COCO_DIR), flip_test=flip_test)
    assert metrics["mIoU"] == 1.0 and metrics["pixel_acc"] == 1.0 and metrics["num_images"] == 4
    assert [c["IoU"] for c in metrics["per_class"]] == [1.0, 1.0]


def test_seg_oracle_is_not_vacuous(oracle):
    # one pixel of misalignment, or a mirrored view answered unmirrored under flip test, lowers the mIoU
    assert oracle.run_seg_oracle(ANN, str(COCO_DIR), shift=1)["mIoU"] < 1.0
    assert oracle.run_seg_oracle(ANN, str(COCO_DIR), flip_test=True, mirror_aware=False)["mIoU"] < 1.0
    assert oracle.run_seg_oracle(ANN, str(COCO_DIR), mirror_aware=False)["mIoU"] == 1.0  # no mirrored view asked


@pytest.mark.slow
def test_seg_oracle_cli_prints_miou_last(tmp_path):
    cmd = [sys.executable, str(ROOT / "tools" / "eval_oracle.py"), "--task", "seg", "--ann", ANN, "--images",
           str(COCO_DIR), "--flip-test"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip().splitlines()
    assert out[-1] == "mIoU 1.0000" and out[0].startswith("| id | class |")
