"""Segmentation: label mapping (Cityscapes, ADE20K), COCO person masks, the synthetic set, transforms,
mIoU, flip / multi-scale inference, OHEM, the model, bad input, and a tiny train.py + test.py run."""
import json
import os
import subprocess
import sys

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from pycocotools.coco import COCO

from src.config.loader import load_config
from src.data.coco_person import CocoPersonSeg, rle_counts
from src.data.seg_transforms import IGNORE, flip_pair, resize_label, train_pair
from src.data.synthetic import generate_synthetic_coco, split_scene
from src.data.synthetic_seg import CLASSES as SYN_CLASSES
from src.data.synthetic_seg import ensure_synthetic_seg
from src.engine.segmentation_task import SegmentationTask, seg_loss
from src.evaluation.miou import confusion_matrix, iou_table, seg_metrics
from src.evaluation.seg_eval import segment_probs
from src.network_factory.registry import build_model
from tests.conftest import ROOT, SHARED_DATA
from tests.test_bad_input import assert_one_line, run

CFG = "configs/synthetic_seg.yaml"
COCO_MINI = SHARED_DATA / "coco_mini"
COCO_ANN = COCO_MINI / "test_coco.json"


def task_for(name, root, num_classes, *opts):
    return SegmentationTask(load_config(str(ROOT / CFG), ["DATASET.NAME", name, "DATASET.ROOT", str(root),
                                                          "DATASET.NUM_CLASSES", str(num_classes),
                                                          "DATASET.BASE_SIZE", "0", *opts]))


def write_image(path, array):
    """An image file (format from the extension) of a uint8 array."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


# ---------------------------------------------------------------- Cityscapes and ADE20K label mapping
LABEL_IDS = np.array([[0, 7, 8, 11, 24], [26, 33, 4, 255, 30]], np.uint8)
TRAIN_IDS = np.array([[255, 0, 1, 2, 11], [13, 18, 255, 255, 255]], np.uint8)


def cityscapes_tree(root, split="val", label_ids=LABEL_IDS, label_shape=None):
    for city, frame in (("aachen", "000000_000019"), ("bremen", "000001_000020")):
        stem = f"{city}_{frame}"
        write_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                  np.full(LABEL_IDS.shape + (3,), 90))
        write_image(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png",
                  label_ids if label_shape is None else np.zeros(label_shape))
        write_image(root / "gtFine" / split / city / f"{stem}_gtFine_color.png", np.zeros((2, 2, 3)))  # not read
    return root


def test_cityscapes_label_ids_map_to_train_ids(tmp_path):
    ds = task_for("cityscapes", cityscapes_tree(tmp_path), 19).build_dataset("val")
    assert len(ds) == 2 and ds.num_classes == 19 and ds.sample_name(1) == "bremen_000001_000020_leftImg8bit"
    item = ds[0]
    assert item["image"].shape == (3, 2, 5) and item["label"].dtype == np.int64
    np.testing.assert_array_equal(item["label"], TRAIN_IDS)


def test_cityscapes_errors_name_the_file(tmp_path):
    root = cityscapes_tree(tmp_path / "a")
    twin = root / "gtFine/val/bremen/bremen_000001_000020_gtFine_labelIds.png"
    twin.unlink()
    with pytest.raises(FileNotFoundError, match="bremen_000001_000020_gtFine_labelIds.png"):
        task_for("cityscapes", root, 19).build_dataset("val")
    bad = cityscapes_tree(tmp_path / "b", label_ids=np.full(LABEL_IDS.shape, 40))
    with pytest.raises(ValueError, match=r"aachen_000000_000019_gtFine_labelIds.png holds id 40"):
        task_for("cityscapes", bad, 19).build_dataset("val")[0]
    small = cityscapes_tree(tmp_path / "c", label_shape=(2, 4))
    with pytest.raises(ValueError, match=r"labelIds.png is 4x2 but its image .* is 5x2"):
        task_for("cityscapes", small, 19).build_dataset("val")[0]
    with pytest.raises(ValueError, match="DATASET.NUM_CLASSES is 6 but cityscapes has 19 classes"):
        task_for("cityscapes", small, 6).build_dataset("val")


def test_ade20k_reduce_zero_label(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    stored = np.array([[0, 1, 2], [150, 149, 255]], np.uint8)
    for split in ("training", "validation"):
        write_image(root / "images" / split / "ADE_x.jpg", np.full((2, 3, 3), 50))
        write_image(root / "annotations" / split / "ADE_x.png", stored)
    task = task_for("ade20k", root, 150)
    assert len(task.build_dataset("train")) == 1
    np.testing.assert_array_equal(task.build_dataset("val")[0]["label"], [[255, 0, 1], [149, 148, 255]])
    write_image(root / "annotations" / "validation" / "ADE_x.png", np.full((2, 3), 151))
    with pytest.raises(ValueError, match="ADE_x.png holds id 151, which is not a ADE20K label id"):
        task.build_dataset("val")[0]


# ---------------------------------------------------------------- COCO person masks
def test_coco_person_masks_from_the_real_polygons():
    ds = CocoPersonSeg(str(COCO_ANN), str(COCO_MINI))
    coco = COCO(str(COCO_ANN))
    assert len(ds) == 4 and ds.classes == ("background", "person")
    for i in range(len(ds)):
        image, label = ds.load(i)
        image_id = ds.samples[i][1]
        want = np.zeros(image.shape[:2], bool)
        for ann in coco.imgToAnns[image_id]:
            want |= coco.annToMask(ann) > 0
        assert want.sum() > 1000
        np.testing.assert_array_equal(label == 1, want)
        assert set(np.unique(label)) == {0, 1}


def test_coco_person_rle_and_crowd(tmp_path):
    data = json.loads(COCO_ANN.read_text())
    coco = COCO(str(COCO_ANN))
    image_id = 40083
    anns = [a for a in data["annotations"] if a["image_id"] == image_id]
    img = coco.imgs[image_id]
    masks = [coco.annToMask(a) for a in anns]
    compressed = mask_utils.encode(np.asfortranarray(masks[0]))
    counts = rle_counts(compressed["counts"].decode())
    assert sum(counts) == img["height"] * img["width"]
    anns[0]["segmentation"] = {"size": compressed["size"], "counts": compressed["counts"].decode()}  # compressed
    anns[1]["segmentation"] = {"size": compressed["size"], "counts": rle_counts(
        mask_utils.encode(np.asfortranarray(masks[1]))["counts"].decode())}  # uncompressed: a list of run lengths
    anns[1]["iscrowd"] = 1
    ann_file = tmp_path / "rle.json"
    ann_file.write_text(json.dumps(data))
    ds = CocoPersonSeg(str(ann_file), str(COCO_MINI))
    label = ds.load([s[1] for s in ds.samples].index(image_id))[1]
    person = (masks[0] > 0) | (masks[2] > 0)
    np.testing.assert_array_equal(label == 1, person)
    np.testing.assert_array_equal(label == IGNORE, (masks[1] > 0) & ~person)
    assert (label == IGNORE).sum() > 500


@pytest.mark.parametrize("segmentation, match", [
    ([[10, 10, 20, 20]], "even list of >= 6 numbers"),
    ({"size": [1, 1], "counts": [1]}, "RLE size"),
    ({"size": [333, 500], "counts": [1, 2, 3]}, "add up to 333 x 500"),
    ({"size": [333, 500], "counts": "P"}, "truncated RLE"),
    ("person", "list of polygons or an RLE"),
])
def test_malformed_coco_segmentation_is_refused(tmp_path, segmentation, match):
    data = json.loads(COCO_ANN.read_text())
    ann = next(a for a in data["annotations"] if a["image_id"] == 40083)
    ann["segmentation"] = segmentation
    ann_file = tmp_path / "bad.json"
    ann_file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=match) as err:
        CocoPersonSeg(str(ann_file), str(COCO_MINI))
    assert f"bad.json: image 40083: annotation {ann['id']}" in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------- the synthetic set
@pytest.fixture(scope="module")
def tiny_seg(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg") / "synthetic_seg"
    return ensure_synthetic_seg(str(root), 8, 4, 0)


def test_synthetic_set_labels(tiny_seg):
    counts = np.zeros(256, np.int64)
    for split, n in (("train", 8), ("val", 4)):
        names = sorted(os.listdir(os.path.join(tiny_seg, "labels", split)))
        assert names == [f"{i:06d}.png" for i in range(n)]
        for i, name in enumerate(names):
            with Image.open(os.path.join(tiny_seg, "labels", split, name)) as img:
                assert img.mode == "L"
                label = np.array(img)
            scene, persons, _ = split_scene(0, split, i)
            assert label.shape == (scene.size[1], scene.size[0])
            counts += np.bincount(label.ravel(), minlength=256)
            figure = np.isin(label, [1, 2, 3, 4])  # every person's box holds figure pixels
            for p in persons:
                x, y, w, h = p["bbox"]
                assert figure[y:y + h, x:x + w].any()
    assert counts[len(SYN_CLASSES):].sum() == 0  # only the six class ids
    assert (counts[:len(SYN_CLASSES)] > 0).all()  # every class occurs, occluders included
    assert 0.5 < counts[0] / counts.sum() < 0.99
    assert ensure_synthetic_seg(tiny_seg, 8, 4, 0) == tiny_seg
    with pytest.raises(ValueError, match="generated with other settings"):
        ensure_synthetic_seg(tiny_seg, 8, 4, 1)


def test_synthetic_set_has_the_pose_set_images(tiny_seg, tmp_path):
    generate_synthetic_coco(tmp_path / "pose", 0, 2, 0)
    for i in range(2):
        pose = (tmp_path / "pose" / "images" / "val" / f"{1_000_001 + i:012d}.jpg").read_bytes()
        assert pose == open(os.path.join(tiny_seg, "images", "val", f"{i:06d}.jpg"), "rb").read()


# ---------------------------------------------------------------- transforms
def coded_pair(h=37, w=53, seed=0):
    """A label map of blocks and an image whose red channel is 40 x label (exact alignment check)."""
    rng = np.random.default_rng(seed)
    label = np.kron(rng.integers(0, 6, (h // 8 + 1, w // 8 + 1)), np.ones((8, 8), np.int64))[:h, :w].astype(np.uint8)
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = label * 40
    image[..., 1] = np.arange(w)[None, :] * 4 % 256
    return image, label


def test_flip_twice_is_identity_and_flip_keeps_labels():
    image, label = coded_pair()
    i2, l2 = flip_pair(*flip_pair(image, label))
    np.testing.assert_array_equal(i2, image)
    np.testing.assert_array_equal(l2, label)
    fi, fl = flip_pair(image, label)
    np.testing.assert_array_equal(fl[:, ::-1], label)
    np.testing.assert_array_equal(fi[..., 0], fl * 40)


def test_train_crops_stay_aligned():
    image, label = coded_pair()
    rng = np.random.RandomState(0)
    for _ in range(20):  # no scaling: crop, pad and flip must keep every pixel exactly aligned
        ci, cl = train_pair(image, label, (32, 48), 0, (1.0, 1.0), True, rng)
        assert ci.shape == (48, 32, 3) and cl.shape == (48, 32)
        inside = cl != IGNORE
        np.testing.assert_array_equal(ci[..., 0][inside], cl[inside].astype(np.uint8) * 40)
    for _ in range(20):  # scaled: nearest labels hold only the input's ids (+ IGNORE from padding)
        ci, cl = train_pair(image, label, (40, 40), 64, (0.5, 1.5), True, rng)
        assert set(np.unique(cl)) <= set(np.unique(label)) | {IGNORE}
        inside = cl != IGNORE
        agree = np.abs(ci[..., 0][inside].astype(int) - cl[inside].astype(int) * 40) <= 20
        assert agree.mean() > 0.85
    assert set(np.unique(resize_label(label, (101, 13)))) <= set(np.unique(label))


# ---------------------------------------------------------------- metrics, inference, loss
def test_confusion_matrix_miou_by_hand():
    label = torch.tensor([[0, 0, 1, 1], [2, 2, IGNORE, 0]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 3]])  # class 3 is neither true nor ... predicted once
    cm = confusion_matrix(pred, label, 4)
    assert cm.tolist() == [[1, 1, 0, 1], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    m = seg_metrics(cm, ("a", "b", "c", "d"))
    # IoU a = 1 / (3 + 2 - 1), b = 2 / (2 + 3 - 2), c = 1 / (2 + 1 - 1), d = 0 / (0 + 1 - 0)
    iou = [1 / 4, 2 / 3, 1 / 2, 0.0]
    assert [c["IoU"] for c in m["per_class"]] == pytest.approx(iou)
    assert m["mIoU"] == pytest.approx(np.mean(iou)) and m["pixel_acc"] == pytest.approx(4 / 7)
    assert m["mean_acc"] == pytest.approx(np.mean([1 / 3, 1.0, 1 / 2]))  # d has no true pixel: no accuracy
    absent = seg_metrics(confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 1]), 3), ("a", "b", "c"))
    assert absent["mIoU"] == 1.0 and absent["per_class"][2]["IoU"] is None  # c in neither: left out
    assert "| 2 | c | - | - |" in iou_table(absent["per_class"])


class Equivariant(torch.nn.Module):
    """Per-pixel 1x1 conv, then 4x4 average pooling: logits at stride 4, mirror-equivariant for widths % 4 == 0."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, 1)

    def forward(self, x):
        return F.avg_pool2d(self.conv(x), 4)


def test_flip_and_multi_scale_inference():
    torch.manual_seed(0)
    model, x = Equivariant().eval(), torch.randn(2, 3, 32, 48)
    plain = segment_probs(model, x, (37, 50))
    assert plain.shape == (2, 5, 37, 50)
    torch.testing.assert_close(plain.sum(1), torch.ones(2, 37, 50))
    torch.testing.assert_close(segment_probs(model, x, (37, 50), flip=True), plain)
    multi = segment_probs(model, x, (32, 48), scales=(0.5, 1.0, 1.5), flip=True)
    assert multi.shape == (2, 5, 32, 48) and not torch.allclose(multi, segment_probs(model, x, (32, 48)))


def test_ohem_keeps_the_hardest_pixels_and_at_least_min_kept():
    torch.manual_seed(0)
    label = torch.randint(0, 3, (2, 8, 8))
    label[0, 0] = IGNORE
    logits = F.one_hot(label.clamp(max=2), 3).permute(0, 3, 1, 2).float() * 6 + 0.3 * torch.randn(2, 3, 8, 8)
    pixel = F.cross_entropy(logits, label, ignore_index=IGNORE, reduction="none")[label != IGNORE]
    prob = torch.exp(-pixel)  # true-class probability
    assert (prob > 0.9).all()  # every pixel is easy: OHEM keeps exactly the min_kept hardest
    for kept in (1, 10, 50):
        want = pixel.sort(descending=True).values[:kept].mean()
        torch.testing.assert_close(seg_loss(logits, label, ohem=True, ohem_thresh=0.9, ohem_min_kept=kept), want)
    assert seg_loss(logits, label, ohem=True, ohem_min_kept=10 ** 6) == pytest.approx(float(pixel.mean()))
    hard = seg_loss(logits, label, ohem=True, ohem_thresh=1.0, ohem_min_kept=1)  # all below 1.0: all kept
    assert hard == pytest.approx(float(pixel.mean()))
    assert seg_loss(logits, label) == pytest.approx(float(pixel.mean()))


@pytest.mark.parametrize("backbone, opts", [
    ("hr_supernet", ["MODEL.HR.WIDTHS", "[8, 16, 16, 16]", "MODEL.HR.STEM_CHANNELS", "8"]),
    ("compact_resnet", ["MODEL.BACKBONE_WIDTH_MULT", "0.25"]),
])
def test_seg_model_on_existing_backbones(backbone, opts):
    cfg = load_config(str(ROOT / CFG), ["MODEL.BACKBONE", backbone, "MODEL.SEG_HEAD_CHANNELS", "16", *opts])
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 40, 56))
    assert out.shape == (2, 6, 10, 14)
    assert model.complexity_groups() == {"backbone": "backbone", "head": "head"}


# ---------------------------------------------------------------- end to end and bad input
def tiny_opts(root, out, **extra):
    opts = {"OUTPUT_DIR": out, "DATASET.ROOT": root, "DATASET.SYNTHETIC_TRAIN": 8, "DATASET.SYNTHETIC_VAL": 4,
            "DATASET.BASE_SIZE": 64, "MODEL.INPUT_SIZE": "[48, 32]", "MODEL.HR.STEM_CHANNELS": 8,
            "MODEL.HR.WIDTHS": "[8, 8, 8, 8]", "MODEL.HR.KERNEL_SIZES": "[3]", "MODEL.SEG_HEAD_CHANNELS": 8,
            "TRAIN.BATCH_SIZE": 4, "TRAIN.EPOCHS": 1, "TRAIN.MAX_ITERS_PER_EPOCH": 2, "WORKERS": 0, "PRINT_FREQ": 1}
    opts.update(extra)
    return [str(x) for kv in opts.items() for x in kv]


@pytest.mark.slow
def test_train_and_test_end_to_end(tiny_seg, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "train.py", "--cfg", CFG, *tiny_opts(tiny_seg, out)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("best ")
    proc = subprocess.run([sys.executable, "test.py", "--cfg", CFG, "--ckpt", out / "last.pth", "--flip-test",
                           "--multi-scale", "0.75,1", "--visualize", *tiny_opts(tiny_seg, out)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("mIoU ") and 0 <= float(lines[-1].split()[1]) <= 1
    assert "| 5 | occluder |" in proc.stdout and any(line.strip().startswith("pixel_acc") for line in lines)
    assert sorted(os.listdir(out / "test" / "pred")) == [f"{i:06d}.png" for i in range(4)]
    assert len(os.listdir(out / "test" / "vis")) == 4
    with Image.open(out / "test" / "pred" / "000000.png") as img:
        assert img.mode == "P" and np.array(img).max() < 6
    metrics = json.loads((out / "test" / "seg_metrics.json").read_text())
    assert metrics["flip_test"] is True and metrics["scales"] == [0.75, 1.0] and len(metrics["per_class"]) == 6


def copy_set(src, dst):
    for dirpath, _, files in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        os.makedirs(os.path.join(dst, rel), exist_ok=True)
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fin, open(os.path.join(dst, rel, f), "wb") as fout:
                fout.write(fin.read())
    return dst


@pytest.mark.slow
@pytest.mark.parametrize("damage, named", [
    ("missing_label", "labels/train/000003.png"),
    ("corrupt_image", "images/train/000002.jpg"),
    ("corrupt_label", "labels/train/000001.png"),
])
def test_bad_synthetic_set_files_give_one_line(tiny_seg, tmp_path, damage, named):
    root = copy_set(tiny_seg, str(tmp_path / "set"))
    path = os.path.join(root, named)
    if damage == "missing_label":
        os.remove(path)
    else:
        with open(path, "wb") as f:
            f.write(b"\x89PNG garbage" if path.endswith(".png") else b"garbage")
    code, lines = run("train.py", "--cfg", CFG, *tiny_opts(root, tmp_path / "run", **{"WORKERS": 1}))
    assert_one_line(code, lines, named)
    assert code == 1


@pytest.mark.slow
def test_malformed_coco_annotation_gives_one_line(tmp_path):
    data = json.loads(COCO_ANN.read_text())
    data["annotations"][3]["segmentation"] = [[1, 2, 3]]
    bad = tmp_path / "bad_ann.json"
    bad.write_text(json.dumps(data))
    code, lines = run("train.py", "--cfg", CFG, *tiny_opts(COCO_MINI, tmp_path / "run", **{
        "DATASET.NAME": "coco_person", "DATASET.NUM_CLASSES": 2, "DATASET.TRAIN_ANN": bad,
        "DATASET.TRAIN_IMAGES": COCO_MINI}))
    assert_one_line(code, lines, "bad_ann.json", str(data["annotations"][3]["id"]))
    assert code == 1 and not (tmp_path / "run").exists()
