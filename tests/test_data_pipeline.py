"""Top-down data pipeline: metadata, exact warping, targets, COCO / MPII datasets, augmentation, bad inputs."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from src.architecture.limits import MAX_JOINTS
from src.data.coco import CocoKeypoints
from src.data.keypoint_info import (COCO_FLIP_PAIRS, COCO_KEYPOINTS, MPII_FLIP_PAIRS, MPII_KEYPOINTS,
                                    flip_pairs_from_names, flip_permutation, upper_body_ids)
from src.data.mpii import MpiiKeypoints
from src.data.targets import render_targets
from src.data.transforms import crop_affine, normalize_image, warp_image
from src.utils.geometry import affine_points, invert_affine

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
COCO_DIR = DATA / "coco_mini"
COCO_ANN = COCO_DIR / "test_coco.json"
DET_FILE = COCO_DIR / "test_coco_det_AP_H_56.json"
MPII_DIR = DATA / "mpii_mini"
SIZE = (96, 128)


@pytest.fixture(scope="module")
def coco():
    return CocoKeypoints(str(COCO_ANN), str(COCO_DIR), input_size=SIZE)


def _one_line_error(exc_info, *names):
    msg = str(exc_info.value)
    assert "\n" not in msg
    for name in names:
        assert str(name) in msg, msg


# ---------------------------------------------------------------- metadata
def test_flip_pairs_and_body_halves_from_names():
    assert flip_pairs_from_names(COCO_KEYPOINTS) == COCO_FLIP_PAIRS
    assert {frozenset(p) for p in flip_pairs_from_names(MPII_KEYPOINTS)} == {frozenset(p) for p in MPII_FLIP_PAIRS}
    perm = flip_permutation(17, COCO_FLIP_PAIRS)
    assert list(perm[:5]) == [0, 2, 1, 4, 3] and np.array_equal(perm[perm], np.arange(17))
    assert upper_body_ids(COCO_KEYPOINTS) == tuple(range(11))
    assert upper_body_ids(MPII_KEYPOINTS) == (7, 8, 9, 10, 11, 12, 13, 14, 15)


# ---------------------------------------------------------------- warping
def test_identity_crop_reproduces_the_image():
    img = np.random.default_rng(0).integers(0, 256, size=(20, 30, 3)).astype(np.uint8)
    mat = crop_affine(((30 - 1) / 2, (20 - 1) / 2), (30, 20), 0.0, (30, 20))
    assert np.array_equal(warp_image(img, mat, (30, 20)), img.astype(np.float32))


def test_warp_samples_at_pixel_centres_exactly():
    # bilinear sampling reproduces a linear ramp exactly, so every output pixel must read the ramp at
    # inv(mat) @ (x, y): this pins the pixel-centre convention (no half-pixel offset anywhere)
    h, w = 300, 400
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    ramp = (0.25 * xs + 0.5 * ys + 3.0)[..., None]
    mat = crop_affine((201.3, 148.7), (150.0, 200.0), 23.0, SIZE)
    out = warp_image(ramp.astype(np.float32), mat, SIZE)[..., 0]
    u, v = np.meshgrid(np.arange(SIZE[0]), np.arange(SIZE[1]))
    src = affine_points(np.stack([u.ravel(), v.ravel()], 1), invert_affine(mat))
    expected = (0.25 * src[:, 0] + 0.5 * src[:, 1] + 3.0).reshape(SIZE[1], SIZE[0])
    assert np.abs(out - expected).max() < 1e-3


def test_mirrored_crop_is_the_flip_of_the_crop():
    from src.data.topdown import load_rgb
    img = load_rgb(str(COCO_DIR / "000000000785.jpg"))
    for rot in (0.0, 17.0):  # mirroring reverses the rotation's sense
        plain = warp_image(img, crop_affine((390.1, 218.3), (240.0, 320.0), -rot, SIZE), SIZE)
        mirrored = warp_image(img, crop_affine((390.1, 218.3), (240.0, 320.0), rot, SIZE, flip=True), SIZE)
        assert np.abs(mirrored - plain[:, ::-1]).max() < 1e-3


def test_normalize_image_layout():
    crop = np.full((4, 5, 3), 255.0 * np.array([0.485, 0.456, 0.406]), dtype=np.float32)
    out = normalize_image(crop)
    assert out.shape == (3, 4, 5) and out.dtype == np.float32 and np.abs(out).max() < 1e-5


# ---------------------------------------------------------------- targets
def test_targets_are_subpixel_gaussians_with_weights():
    joints = np.array([[37.3, 51.8], [10.0, 10.0], [96.2, 20.0], [-0.5, 127.5]])
    visible = np.array([True, False, True, True])
    target, weight = render_targets(joints, visible, SIZE, 4, 2.0)
    assert target.shape == (4, 32, 24) and weight.tolist() == [1, 0, 0, 1]
    mu = ((37.3 - 1.5) / 4, (51.8 - 1.5) / 4)  # input -> heatmap: (x - (s-1)/2) / s, not rounded
    v, u = np.unravel_index(target[0].argmax(), target[0].shape)
    assert (u, v) == (9, 13)
    assert target[0, 13, 9] == pytest.approx(np.exp(-((9 - mu[0]) ** 2 + (13 - mu[1]) ** 2) / 8.0), rel=1e-5)
    assert target[0, 0, 0] == pytest.approx(np.exp(-(mu[0] ** 2 + mu[1] ** 2) / 8.0), rel=1e-4, abs=1e-12)
    assert not target[1].any() and not target[2].any()
    on_pixel, _ = render_targets(np.array([[4 * 5 + 1.5, 4 * 7 + 1.5]]), [True], SIZE, 4, 2.0)
    assert on_pixel.max() == pytest.approx(1.0) and on_pixel[0, 7, 5] == pytest.approx(1.0)


# ---------------------------------------------------------------- COCO
def test_coco_dataset_samples_and_collate(coco):
    assert len(coco) == 12  # 14 persons, two without keypoints
    assert coco.num_joints == 17 and coco.flip_pairs == COCO_FLIP_PAIRS and len(coco.skeleton) == 19
    assert coco.sigmas.shape == (17,) and coco.image_path(785) == str(COCO_DIR / "000000000785.jpg")
    batch = next(iter(DataLoader(coco, batch_size=3)))
    assert batch["image"].shape == (3, 3, 128, 96) and batch["image"].dtype == torch.float32
    assert batch["target"].shape == (3, 17, 32, 24) and batch["target_weight"].shape == (3, 17)
    assert batch["center"].shape == (3, 2) and batch["scale"].shape == (3, 2) and batch["rotation"].shape == (3,)
    assert batch["image_id"].dtype == torch.int64 and batch["index"].tolist() == [0, 1, 2]
    assert batch["score"].tolist() == [1.0, 1.0, 1.0]
    # box -> center/scale keeps the input aspect ratio and the margin
    w, h = 218.7, 346.68
    assert batch["center"][0].tolist() == pytest.approx([280.79 + w / 2, 44.73 + h / 2])
    assert batch["scale"][0].tolist() == pytest.approx([h * 0.75 * 1.25, h * 1.25])
    ann = coco.coco.anns[442619]
    assert batch["target_weight"][0].sum() == ann["num_keypoints"]


def test_targets_follow_the_keypoints_through_the_crop(coco):
    sample = coco.make_sample(0, scale_factor=0.9, rotation=25.0)
    rec = coco.records[0]
    mat = crop_affine(rec["center"], rec["scale"] * 0.9, 25.0, SIZE)
    expect = (affine_points(rec["joints"][:, :2], mat) - 1.5) / 4
    for k in np.flatnonzero(sample["target_weight"]):
        v, u = np.unravel_index(sample["target"][k].argmax(), sample["target"][k].shape)
        assert abs(u - expect[k, 0]) <= 0.5 and abs(v - expect[k, 1]) <= 0.5


def test_flip_augmentation_swaps_pairs(coco):
    plain, flipped = coco.make_sample(1), coco.make_sample(1, flip=True)
    perm = flip_permutation(17, coco.flip_pairs)
    assert np.array_equal(flipped["target_weight"], plain["target_weight"][perm])
    assert np.abs(flipped["image"] - plain["image"][:, :, ::-1]).max() < 1e-4


def test_training_augmentation_runs_and_varies():
    ds = CocoKeypoints(str(COCO_ANN), str(COCO_DIR), input_size=SIZE, train=True,
                       aug=dict(scale=0.3, rotation=40, rotation_prob=1.0, flip=True, half_body_prob=1.0))
    np.random.seed(0)
    samples = [ds[0] for _ in range(4)]
    assert all(s["image"].shape == (3, 128, 96) for s in samples)
    assert len({round(s["rotation"], 6) for s in samples}) == 4
    assert len({tuple(np.round(s["scale"], 4)) for s in samples}) > 1


def test_max_samples():
    assert len(CocoKeypoints(str(COCO_ANN), str(COCO_DIR), input_size=SIZE, max_samples=5)) == 5


def test_detection_boxes_with_threshold():
    dets = json.loads(DET_FILE.read_text())
    ds = CocoKeypoints(str(COCO_ANN), str(COCO_DIR), input_size=SIZE, use_dt=True, det_file=str(DET_FILE),
                       det_score_threshold=0.5)
    kept = [d for d in dets if d["score"] >= 0.5 and d["category_id"] == 1]
    assert 0 < len(ds) == len(kept) < len(dets)
    sample = ds[0]
    assert sample["score"] == pytest.approx(kept[0]["score"]) and sample["image_id"] == kept[0]["image_id"]
    assert not sample["target_weight"].any() and not sample["target"].any()
    all_dets = CocoKeypoints(str(COCO_ANN), str(COCO_DIR), input_size=SIZE, use_dt=True, det_file=str(DET_FILE))
    assert len(all_dets) == len(dets)


# ---------------------------------------------------------------- bad inputs
def _write_ann(tmp_path, mutate):
    data = json.loads(COCO_ANN.read_text())
    mutate(data)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def test_missing_annotation_file(tmp_path):
    with pytest.raises(FileNotFoundError) as exc:
        CocoKeypoints(str(tmp_path / "nope.json"), str(COCO_DIR))
    _one_line_error(exc, tmp_path / "nope.json")


def test_annotation_file_not_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{ not json")
    with pytest.raises(ValueError) as exc:
        CocoKeypoints(str(path), str(COCO_DIR))
    _one_line_error(exc, path)


def test_malformed_annotation_names_file_and_id(tmp_path):
    path = _write_ann(tmp_path, lambda d: d["annotations"][2].update(keypoints=[1, 2, 2]))
    with pytest.raises(ValueError) as exc:
        CocoKeypoints(str(path), str(COCO_DIR))
    _one_line_error(exc, path, 230195, "keypoints")
    path = _write_ann(tmp_path, lambda d: d["annotations"][0].pop("bbox"))
    with pytest.raises(ValueError) as exc:
        CocoKeypoints(str(path), str(COCO_DIR))
    _one_line_error(exc, path, 442619, "bbox")


def test_more_keypoints_than_the_limit_are_refused(tmp_path):
    names = [f"k{i}" for i in range(MAX_JOINTS + 1)]  # a heatmap per keypoint in every sample
    path = _write_ann(tmp_path, lambda d: d["categories"][0].update(keypoints=names))
    with pytest.raises(ValueError) as exc:
        CocoKeypoints(str(path), str(COCO_DIR))
    _one_line_error(exc, path, MAX_JOINTS + 1, "MAX_JOINTS")


def test_missing_and_corrupt_images(tmp_path):
    ds = CocoKeypoints(str(COCO_ANN), str(tmp_path), input_size=SIZE)
    with pytest.raises(FileNotFoundError) as exc:
        ds[0]
    _one_line_error(exc, tmp_path / "000000000785.jpg")
    (tmp_path / "000000000785.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(ValueError) as exc:
        ds[0]
    _one_line_error(exc, tmp_path / "000000000785.jpg")


def test_bad_detection_files(tmp_path):
    with pytest.raises(FileNotFoundError) as exc:
        CocoKeypoints(str(COCO_ANN), str(COCO_DIR), use_dt=True, det_file=str(tmp_path / "dets.json"))
    _one_line_error(exc, tmp_path / "dets.json")
    bad = tmp_path / "bad_dets.json"
    bad.write_text(json.dumps([{"bbox": [1, 2, 3, 4], "score": 0.9, "image_id": 12345, "category_id": 1}]))
    with pytest.raises(ValueError) as exc:
        CocoKeypoints(str(COCO_ANN), str(COCO_DIR), use_dt=True, det_file=str(bad))
    _one_line_error(exc, bad, 12345)


# ---------------------------------------------------------------- MPII
def test_mpii_dataset_and_ground_truth():
    ds = MpiiKeypoints(str(MPII_DIR / "test_mpii.json"), str(MPII_DIR), input_size=(128, 128))
    entries = json.loads((MPII_DIR / "test_mpii.json").read_text())
    assert len(ds) == len(entries) == 5 and ds.num_joints == 16 and ds.flip_pairs == MPII_FLIP_PAIRS
    e = entries[0]
    rec = ds.records[0]
    s = e["scale"]
    assert rec["center"].tolist() == pytest.approx([e["center"][0] - 1, e["center"][1] + 15 * s - 1])
    assert rec["scale"].tolist() == pytest.approx([200 * s * 1.25] * 2)
    gt = ds.pckh_ground_truth()
    assert gt["joints"].shape == (5, 16, 2) and gt["visible"].shape == (5, 16)
    assert gt["joints"][0, 0].tolist() == pytest.approx(np.subtract(e["joints"][0], 1).tolist())
    assert (gt["head_size"] > 10).all()
    sample = ds[0]
    assert sample["image"].shape == (3, 128, 128) and sample["target"].shape == (16, 32, 32)
    assert sample["target_weight"].sum() == sum(v > 0 for v in e["joints_vis"])
    assert ds.image_path(sample["image_id"]) == str(MPII_DIR / e["image"])


def test_mpii_malformed_entry(tmp_path):
    entries = json.loads((MPII_DIR / "test_mpii.json").read_text())
    entries[3]["joints"] = entries[3]["joints"][:5]
    path = tmp_path / "mpii.json"
    path.write_text(json.dumps(entries))
    with pytest.raises(ValueError) as exc:
        MpiiKeypoints(str(path), str(MPII_DIR))
    _one_line_error(exc, path, "entry 3", entries[3]["image"])
