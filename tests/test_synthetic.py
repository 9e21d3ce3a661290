"""The embedded synthetic COCO-keypoint set: format, determinism, visibility, mirror consistency, CLI."""
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from src.data.synthetic import (FLIP_INDEX, KEYPOINT_NAMES, ensure_synthetic_coco, generate_synthetic_coco,
                                mirror_figure, render_figure, sample_figure)

REPO = Path(__file__).resolve().parents[1]
ANN = "annotations/person_keypoints_{}.json"


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """~30 val images (plus 2 train) shared by the content tests."""
    root = tmp_path_factory.mktemp("synth") / "set"
    summary = generate_synthetic_coco(root, 2, 30, seed=3)
    return root, summary


def _load(root, split):
    return json.loads((root / ANN.format(split)).read_text())


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    a, b, c = (generate_synthetic_coco(tmp_path / name, 3, 2, seed) for name, seed in (("a", 7), ("b", 7), ("c", 8)))
    assert a == b
    fa, fb, fc = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len([f for f in fa if f.endswith(".jpg")]) == 5
    assert sorted(fa) == sorted(fb) and all(fa[k] == fb[k] for k in fa)
    for name in ("annotations/person_keypoints_train.json", "annotations/person_keypoints_val.json",
                 "annotations/person_detections_val.json", "images/train/000000000001.jpg"):
        assert fa[name] != fc[name], name


def test_coco_format_and_gt_as_results_scores_ap_one(synth):
    root, summary = synth
    data = _load(root, "val")
    cat = data["categories"][0]
    assert cat["id"] == 1 and cat["name"] == "person" and cat["keypoints"] == KEYPOINT_NAMES
    assert len(cat["skeleton"]) == 19 and [16, 14] in cat["skeleton"]
    for split in ("train", "val"):
        gt = _quiet(COCO, str(root / ANN.format(split)))
        assert len(gt.getImgIds()) == summary[split]["images"]
        assert len(gt.getAnnIds()) == summary[split]["persons"]
        for img in gt.loadImgs(gt.getImgIds()):
            assert Image.open(root / "images" / split / img["file_name"]).size == (img["width"], img["height"])
            assert 256 <= img["width"] <= 320 and 192 <= img["height"] <= 240
    gt = _quiet(COCO, str(root / ANN.format("val")))
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in gt.loadAnns(gt.getAnnIds())]
    ev = COCOeval(gt, _quiet(gt.loadRes, results), "keypoints")
    _quiet(ev.evaluate)
    _quiet(ev.accumulate)
    _quiet(ev.summarize)
    assert ev.stats[0] == pytest.approx(1.0)


def test_visibility_boxes_and_occlusion_statistics(synth):
    root, _ = synth
    data = _load(root, "val")
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    kps = []
    for ann in data["annotations"]:
        assert ann["category_id"] == 1 and ann["iscrowd"] == 0 and ann["segmentation"] == []
        k = np.array(ann["keypoints"], dtype=float).reshape(17, 3)
        w, h = sizes[ann["image_id"]]
        x, y, bw, bh = ann["bbox"]
        assert set(k[:, 2]) <= {0, 1, 2}
        assert ann["num_keypoints"] == int((k[:, 2] > 0).sum()) >= 8
        assert np.all(k[k[:, 2] == 0, :2] == 0)
        lab = k[k[:, 2] > 0]
        assert np.all((lab[:, 0] >= 0) & (lab[:, 0] <= w - 1) & (lab[:, 1] >= 0) & (lab[:, 1] <= h - 1))
        assert np.all((lab[:, 0] >= x - 1) & (lab[:, 0] <= x + bw) & (lab[:, 1] >= y - 1) & (lab[:, 1] <= y + bh))
        assert x >= 0 and y >= 0 and x + bw <= w and y + bh <= h and bw > 0 and bh > 0
        assert 0 < ann["area"] <= bw * bh
        kps.append(k)
    v = np.stack(kps)[..., 2]
    assert len(data["images"]) == 30 and 1.3 <= len(kps) / 30 <= 2.5  # 1-3 persons per image
    assert 0.08 <= (v == 1).mean() <= 0.35  # occluded joints
    assert 0.03 <= (v == 0).mean() <= 0.2  # truncated joints, and nose and eyes of back views (~0.07)
    heights = [a["bbox"][3] / sizes[a["image_id"]][1] for a in data["annotations"]]
    assert min(heights) < 0.5 and max(heights) > 0.8


def test_mirrored_figure_renders_as_the_flipped_image_with_swapped_labels():
    """The mirror image of a figure with left/right swapped is again a figure: flip augmentation is valid."""
    w, h = 161, 150
    for i in range(24):
        rng = np.random.default_rng([11, i])
        fig = sample_figure(rng, rng.uniform(60, 140))
        offset = rng.uniform((40, 80), (120, 100))
        img, kps = render_figure(fig, (w, h), offset)
        mirrored, mkps = render_figure(mirror_figure(fig), (w, h), (w - 1 - offset[0], offset[1]))
        assert (img != img[:, ::-1]).any(), "figure is itself symmetric: the test would prove nothing"
        np.testing.assert_array_equal(mirrored, img[:, ::-1])  # pixel-exact
        flipped = mkps[FLIP_INDEX]
        np.testing.assert_array_equal(flipped[:, 2], kps[:, 2])
        lab = kps[:, 2] > 0
        np.testing.assert_allclose(flipped[lab, 0], w - 1 - kps[lab, 0], atol=1e-6)
        np.testing.assert_allclose(flipped[lab, 1], kps[lab, 1], atol=1e-6)


def test_left_and_right_limbs_share_their_colour(synth):
    root, _ = synth
    data = _load(root, "val")
    files = {im["id"]: im["file_name"] for im in data["images"]}
    colours = []  # per person: {joint: RGB at the joint} for visible elbows and knees
    for ann in data["annotations"]:
        img = np.asarray(Image.open(root / "images" / "val" / files[ann["image_id"]]), dtype=float)
        k = np.array(ann["keypoints"], dtype=float).reshape(17, 3)
        colours.append({j: img[int(round(k[j, 1])), int(round(k[j, 0]))] for j in (7, 8, 13, 14) if k[j, 2] == 2})

    def matches(pairs):
        return [np.abs(a - b).max() < 40 for a, b in pairs]

    same = matches((c[l], c[r]) for c in colours for l, r in ((7, 8), (13, 14)) if l in c and r in c)
    other = matches((c[l], d[r]) for c, d in zip(colours, colours[1:]) for l, r in ((7, 8), (13, 14))
                    if l in c and r in d)
    assert len(same) > 50 and len(other) > 30
    assert np.mean(same) > 0.97 and np.mean(other) < 0.4  # one palette per figure, varied across figures


def test_front_and_back_views_occur_and_back_views_leave_the_face_unlabelled():
    figs = [sample_figure(np.random.default_rng([5, i]), 100.0) for i in range(400)]
    assert 0.5 < np.mean([f["front"] for f in figs]) < 0.7
    for fig in figs[:40]:
        _, kps = render_figure(fig, (160, 160), (80, 100))
        assert (kps[3:, 2] > 0).all()  # the whole figure is in the canvas
        if fig["front"]:  # face labelled; the person's left shoulder on the image right
            assert kps[0, 2] > 0 and kps[5, 0] > kps[6, 0]
        else:
            assert (kps[:3] == 0).all() and kps[5, 0] < kps[6, 0]


def test_person_left_is_on_the_image_right_in_front_views_only(synth):
    root, _ = synth
    k = np.array([a["keypoints"] for a in _load(root, "val")["annotations"]], dtype=float).reshape(-1, 17, 3)
    v = k[..., 2]
    shoulders = (v[:, 5] > 0) & (v[:, 6] > 0)
    front = shoulders & (v[:, 0] > 0)
    back = shoulders & (v[:, 0] == 0) & (v[:, 3] > 0) & (v[:, 4] > 0)  # head in the image, face unlabelled
    assert front.sum() >= 15 and back.sum() >= 8
    left_on_right = k[:, 5, 0] > k[:, 6, 0]
    assert left_on_right[front].mean() > 0.9 and left_on_right[back].mean() < 0.1
    assert (v[back][:, 3:5] == 2).any()  # ears of back views are seen


def test_detections_are_jittered_gt_plus_low_score_false_positives(synth):
    root, _ = synth
    gt = _quiet(COCO, str(root / ANN.format("val")))
    dets = json.loads((root / "annotations/person_detections_val.json").read_text())
    dt = _quiet(gt.loadRes, str(root / "annotations/person_detections_val.json"))
    assert len(dt.getAnnIds()) == len(dets)
    high = [d for d in dets if d["score"] >= 0.75]
    assert len(high) == len(gt.getAnnIds()) and len(dets) > len(high)
    assert all(d["score"] < 0.3 for d in dets if d["score"] < 0.75)
    for d in high:
        anns = gt.loadAnns(gt.getAnnIds(imgIds=d["image_id"]))
        x, y, w, h = d["bbox"]
        best = 0.0
        for a in anns:
            ax, ay, aw, ah = a["bbox"]
            iw = max(0.0, min(x + w, ax + aw) - max(x, ax))
            ih = max(0.0, min(y + h, ay + ah) - max(y, ay))
            best = max(best, iw * ih / (w * h + aw * ah - iw * ih))
        assert best > 0.6


def test_cli_fixed_size_and_refuses_non_empty_output(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "tools/make_synthetic_coco.py", "--out", str(out), "--train", "2", "--val", "2",
           "--seed", "5", "--width", "160", "--height", "120"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["val"]["images"] == 2
    for split in ("train", "val"):
        images = _load(out, split)["images"]
        assert [(i["width"], i["height"]) for i in images] == [(160, 120)] * 2
        assert all(Image.open(out / "images" / split / i["file_name"]).size == (160, 120) for i in images)
    before = _files(out)
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and str(out) in again.stderr and "not empty" in again.stderr
    assert _files(out) == before


def test_ensure_generates_once_atomically(tmp_path):
    root = tmp_path / "data" / "synthetic"
    assert ensure_synthetic_coco(root, 2, 2, seed=0) == root
    assert sorted(p.name for p in root.parent.iterdir()) == ["synthetic"]  # no temp directory left behind
    before = _files(root)
    assert before["annotations/person_keypoints_val.json"]
    assert ensure_synthetic_coco(root, 2, 2, seed=0) == root  # present with these settings: left untouched
    assert _files(root) == before
    for other in ((3, 2, 0), (2, 3, 0), (2, 2, 1)):  # another size or seed is refused, not silently reused
        with pytest.raises(ValueError, match=f"{root}.*other settings"):
            ensure_synthetic_coco(root, *other[:2], seed=other[2])
    assert _files(root) == before
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="stray"):
        ensure_synthetic_coco(stray, 2, 2, seed=0)
    assert (stray / "notes.txt").read_text() == "keep me"


def test_bad_counts_are_refused(tmp_path):
    with pytest.raises(ValueError, match="n_train"):
        generate_synthetic_coco(tmp_path / "x", -1, 2, 0)
    with pytest.raises(ValueError, match="width"):
        generate_synthetic_coco(tmp_path / "y", 1, 1, 0, width=8)


def test_cli_set_records_its_settings_for_the_config(tmp_path):
    """A set written by the tool is the one a config with the same settings trains on (same bytes as one the
    config generates); a fixed image size is another set."""
    for name, extra in (("default", []), ("fixed", ["--width", "160", "--height", "120"])):
        done = subprocess.run([sys.executable, "tools/make_synthetic_coco.py", "--out", str(tmp_path / name),
                               "--train", "2", "--val", "1", "--seed", "3", *extra],
                              cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    assert ensure_synthetic_coco(tmp_path / "default", 2, 1, seed=3) == tmp_path / "default"
    assert _files(tmp_path / "default") == _files(ensure_synthetic_coco(tmp_path / "own", 2, 1, seed=3))
    with pytest.raises(ValueError, match="other settings"):
        ensure_synthetic_coco(tmp_path / "fixed", 2, 1, seed=3)
