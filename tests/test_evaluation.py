"""Pose evaluation: decoding, flip test, OKS-NMS, COCOeval wrapper, PCKh, visualisation, evaluate_pose."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from src.data.coco import CocoKeypoints
from src.data.keypoint_info import COCO_SIGMAS
from src.data.mpii import MpiiKeypoints
from src.data.targets import render_targets
from src.evaluation.coco_eval import coco_keypoint_eval, coco_results, instance_scores
from src.utils.atomic import write_json_atomic
from src.evaluation.decode import decode_heatmaps, heatmap_maxima
from src.evaluation.flip import flip_back, infer_heatmaps
from src.evaluation.nms import oks, oks_nms
from src.evaluation.pckh import pckh
from src.evaluation.pose_eval import evaluate_pose, format_metric_table
from src.evaluation.visualize import draw_poses

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
COCO_DIR = DATA / "coco_mini"
COCO_ANN = COCO_DIR / "test_coco.json"
MPII_DIR = DATA / "mpii_mini"
SIZE = (96, 128)


def _oracle_module():
    spec = importlib.util.spec_from_file_location("eval_oracle", ROOT / "tools" / "eval_oracle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def coco():
    return CocoKeypoints(str(COCO_ANN), str(COCO_DIR), input_size=SIZE)


# ---------------------------------------------------------------- decoding
def test_heatmap_maxima_quarter_shift_and_empty_channel():
    hm = np.zeros((1, 3, 8, 8))
    hm[0, 0, 3, 4], hm[0, 0, 3, 5], hm[0, 0, 2, 4], hm[0, 0, 4, 4] = 1.0, 0.5, 0.2, 0.1
    hm[0, 1, 0, 7] = 2.0  # border pixel: no shift along x (no right neighbour) nor y
    coords, maxvals = heatmap_maxima(hm)
    assert coords[0, 0].tolist() == [4.25, 2.75] and maxvals[0, 0] == 1.0
    assert coords[0, 1].tolist() == [7.0, 0.0] and maxvals[0, 1] == 2.0
    assert coords[0, 2].tolist() == [0.0, 0.0] and maxvals[0, 2] == 0.0


def test_decode_recovers_subpixel_keypoints():
    rng = np.random.default_rng(0)
    pts = rng.uniform([4, 4], [SIZE[0] - 5, SIZE[1] - 5], size=(200, 2))
    target, _ = render_targets(pts, np.ones(200, bool), SIZE, 4, 2.0)
    coords, maxvals = heatmap_maxima(target[None])
    err = np.abs(coords[0] - (pts - 1.5) / 4)
    assert err.max() <= 0.25 + 1e-9 and err.mean() < 0.15  # heatmap pixels
    assert (maxvals > 0.9).all()


def test_decode_maps_back_to_image_coordinates(coco):
    for i in (0, 4):
        sample = coco.make_sample(i, rotation=30.0, scale_factor=1.1)
        preds, _ = decode_heatmaps(sample["target"][None], sample["center"][None], sample["scale"][None],
                                   [sample["rotation"]], 4)
        joints = coco.records[i]["joints"]
        vis = sample["target_weight"] > 0
        px_per_hm = 4 * sample["scale"][1] / SIZE[1]
        err = np.linalg.norm(preds[0] - joints[:, :2], axis=1)[vis]
        assert vis.sum() >= 10 and err.max() <= 0.3 * px_per_hm * np.sqrt(2)


# ---------------------------------------------------------------- flip test
def test_flipped_target_flipped_back_equals_target(coco):
    for i, rot in ((0, 0.0), (3, 0.0), (5, 25.0)):
        plain = coco.make_sample(i, rotation=-rot)
        flipped = coco.make_sample(i, rotation=rot, flip=True)
        back = flip_back(torch.from_numpy(flipped["target"])[None], coco.flip_pairs)[0].numpy()
        assert np.abs(back - plain["target"]).max() < 1e-6
        assert plain["target"].max() > 0.8


def test_infer_heatmaps_flip_test_averages_flipped_back():
    pairs = ((1, 2),)

    class Model(torch.nn.Module):
        def forward(self, x):  # heatmaps that depend on the image and are not mirror symmetric
            return torch.stack([x[:, 0], x[:, 1] * 2, x[:, 2] * 3], 1)

    x = torch.randn(2, 3, 8, 6)
    model = Model()
    plain = infer_heatmaps(model, x, pairs, False)
    both = infer_heatmaps(model, x, pairs, True)
    flipped = model(x.flip(3)).flip(3)[:, [0, 2, 1]]
    assert torch.allclose(both, 0.5 * (plain + flipped))


# ---------------------------------------------------------------- OKS-NMS
def _pose(offset, k=17, scale=1.0):
    base = np.stack([np.linspace(0, 100, k), np.linspace(0, 200, k)], 1)
    return base * scale + np.asarray(offset, dtype=np.float64)


def test_oks_identity_and_distance():
    p = _pose((0, 0))
    assert oks(p, p[None], 1e4, np.array([1e4]), COCO_SIGMAS)[0] == pytest.approx(1.0)
    assert oks(p, _pose((300, 0))[None], 1e4, np.array([1e4]), COCO_SIGMAS)[0] < 1e-3


def _index_skip_nms(kpts, threshold):
    """The original's bug, for contrast: after pop(j) the loop still advances j (candidates sorted by score)."""
    order, keep = list(range(len(kpts))), []
    while order:
        best = order.pop(0)
        keep.append(best)
        j = 0
        while j < len(order):
            if oks(kpts[best], kpts[order[j]][None], 1e4, np.array([1e4]), COCO_SIGMAS)[0] > threshold:
                order.pop(j)
            j += 1
    return keep


def test_oks_nms_consecutive_duplicates_are_all_dropped():
    # A, then two near-duplicates of A in a row, then a distinct D: greedy NMS keeps only A and D
    kpts = np.stack([_pose((0, 0)), _pose((0.5, 0)), _pose((0, 0.5)), _pose((400, 0))])
    keep = oks_nms(kpts, [0.9, 0.8, 0.7, 0.6], [1e4] * 4, 0.9, COCO_SIGMAS)
    assert keep == [0, 3]
    assert _index_skip_nms(kpts, 0.9) == [0, 2, 3]  # the bug keeps the second duplicate


def test_oks_nms_suppressed_candidates_do_not_suppress():
    # B overlaps A and C; A does not overlap C: A kept, B dropped, C kept
    step = 14.0
    kpts = np.stack([_pose((0, 0)), _pose((step, 0)), _pose((2 * step, 0))])
    o = lambda a, b: oks(kpts[a], kpts[b][None], 1e4, np.array([1e4]), COCO_SIGMAS)[0]  # noqa: E731
    assert o(0, 1) > 0.5 and o(1, 2) > 0.5 and o(0, 2) < 0.5
    assert oks_nms(kpts, [0.9, 0.8, 0.7], [1e4] * 3, 0.5, COCO_SIGMAS) == [0, 2]
    assert oks_nms(kpts, [0.7, 0.8, 0.9], [1e4] * 3, 0.5, COCO_SIGMAS) == [2, 0]
    assert oks_nms(kpts, [0.9, 0.8, 0.7], [1e4] * 3, 0.99, COCO_SIGMAS) == [0, 1, 2]


# ---------------------------------------------------------------- COCO results and COCOeval
def test_instance_scores():
    maxvals = np.array([[0.9, 0.5, 0.1], [0.1, 0.1, 0.0]])
    assert instance_scores(maxvals, [0.5, 1.0], 0.2).tolist() == pytest.approx([0.5 * 0.7, 0.0])


def _gt_as_results(coco_gt):
    preds, maxvals, ids, areas = [], [], [], []
    for ann in coco_gt.dataset["annotations"]:
        if ann["num_keypoints"] > 0:
            k = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
            preds.append(k[:, :2])
            maxvals.append(np.where(k[:, 2] > 0, 0.9, 0.0))
            ids.append(ann["image_id"])
            areas.append(ann["area"])
    return np.stack(preds), np.stack(maxvals), np.array(ids), np.array(areas)


def test_coco_eval_of_ground_truth_and_empty_results(coco, tmp_path):
    preds, maxvals, ids, areas = _gt_as_results(coco.coco)
    results = coco_results(preds, maxvals, np.ones(len(ids)), areas, ids, coco.sigmas, 0.9, 0.2)
    assert len(results) == len(ids) == 12
    r = results[0]
    assert set(r) == {"image_id", "category_id", "keypoints", "score"} and len(r["keypoints"]) == 51
    assert r["category_id"] == 1 and r["score"] == pytest.approx(0.9)
    metrics = coco_keypoint_eval(coco.coco, results, coco.sigmas)
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AR"] == pytest.approx(1.0)
    shifted = [dict(r, keypoints=[v + 6.0 if i % 3 < 2 else v for i, v in enumerate(r["keypoints"])])
               for r in results]
    assert coco_keypoint_eval(coco.coco, shifted, coco.sigmas)["AP"] < 0.8
    assert coco_keypoint_eval(coco.coco, [], coco.sigmas) == {k: 0.0 for k in metrics}
    out = tmp_path / "sub" / "res.json"
    write_json_atomic(str(out), results)
    assert json.loads(out.read_text()) == results and [p.name for p in out.parent.iterdir()] == ["res.json"]


def test_format_metric_table():
    table = format_metric_table({"AP": 0.5, "AR": 0.25, "score": 0.5})
    assert table.splitlines() == ["| AP | AR |", "|---|---|", "| 0.5000 | 0.2500 |"]


# ---------------------------------------------------------------- PCKh
def test_pckh_of_ground_truth_and_of_shifted_joints():
    ds = MpiiKeypoints(str(MPII_DIR / "test_mpii.json"), str(MPII_DIR), input_size=(128, 128))
    gt = ds.pckh_ground_truth()
    metrics = pckh(gt["joints"], gt["joints"], gt["visible"], gt["head_size"])
    assert set(metrics) == {f"{n}{s}" for n in ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean")
                            for s in ("", "@0.1")}
    assert all(v == pytest.approx(100.0) for v in metrics.values())
    preds = gt["joints"].copy()
    preds[:, 10, 0] += 0.3 * gt["head_size"]  # r_wrist: fails @0.1, passes @0.5
    preds[:, 1, 1] += 0.6 * gt["head_size"]  # r_knee: fails both
    preds[:, 6, 0] += 5 * gt["head_size"]  # pelvis: excluded from the mean
    metrics = pckh(preds, gt["joints"], gt["visible"], gt["head_size"])
    assert metrics["Wrist"] == 100.0 and metrics["Wrist@0.1"] == pytest.approx(50.0)
    assert metrics["Knee"] == pytest.approx(50.0) and metrics["Head"] == 100.0
    count = gt["visible"].sum(axis=0).astype(float)
    count[[6, 7]] = 0  # the mean weights joints by their visible count, without pelvis and thorax
    assert metrics["Mean"] == pytest.approx(100.0 * (count.sum() - count[1]) / count.sum())
    assert metrics["Mean@0.1"] == pytest.approx(100.0 * (count.sum() - count[1] - count[10]) / count.sum())


# ---------------------------------------------------------------- evaluate_pose and visualisation
def test_evaluate_pose_mpii_oracle_scores_100(tmp_path):
    ds = MpiiKeypoints(str(MPII_DIR / "test_mpii.json"), str(MPII_DIR), input_size=(128, 128))
    model = _oracle_module().TargetOracle(ds)
    metrics = evaluate_pose(model, DataLoader(ds, batch_size=2), ds, flip_test=True, out_dir=str(tmp_path))
    assert metrics["score"] == metrics["Mean"] == pytest.approx(100.0)
    preds = json.loads((tmp_path / "pckh_predictions.json").read_text())
    assert [p["index"] for p in preds] == list(range(5)) and len(preds[0]["keypoints"]) == 48


def test_evaluate_pose_coco_writes_results_and_pngs(coco, tmp_path):
    class Blank(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return torch.zeros(x.shape[0], 17, x.shape[2] // 4, x.shape[3] // 4) + self.p

    model = Blank().train()
    metrics = evaluate_pose(model, DataLoader(coco, batch_size=8), coco, out_dir=str(tmp_path), visualize=True)
    assert model.training and metrics["score"] == metrics["AP"] and metrics["AP"] < 0.05
    results = json.loads((tmp_path / "keypoints_results.json").read_text())
    assert {r["image_id"] for r in results} == set(coco.coco.imgs)
    pngs = sorted((tmp_path / "vis").iterdir())
    assert len(pngs) == 4 and Image.open(pngs[0]).format == "PNG"


def test_draw_poses_marks_joints(tmp_path):
    image = tmp_path / "img.png"
    Image.new("RGB", (60, 40)).save(image)
    pose = np.array([[10, 10, 0.9], [50, 30, 0.9], [30, 5, 0.1]])
    draw_poses(str(image), [pose], [(0, 1), (1, 2)], str(tmp_path / "out.png"))
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (40, 60, 3) and out[10, 10].any() and out[20, 30].any() and not out[5, 30].any()
