"""Classification: ImageFolder / zip datasets and their errors, synthetic ImageFolder, task criterion/evaluate,
and a tiny HRFormer that learns the synthetic set."""
import hashlib
import json
import os
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from src.config.loader import load_config
from src.data.imagefolder import ImageFolderDataset, ZipImageDataset, build_transform, read_map_file
from src.data.synthetic_imagefolder import CLASSES, ensure_synthetic_imagefolder
from src.engine.classification_task import ClassificationTask, topk_correct
from src.network_factory.registry import build_model


def write_png(path, value, size=(20, 16)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


@pytest.fixture()
def folder(tmp_path):
    """root/{train,val}/{cat,dog}/*.png (val has no 'dog')."""
    for split, per in (("train", 3), ("val", 2)):
        for c, name in enumerate(("cat", "dog")):
            if split == "val" and name == "dog":
                continue
            for i in range(per):
                write_png(str(tmp_path / split / name / f"{i}.png"), 40 * c + i)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    return tmp_path


def test_imagefolder_loads_with_training_classes(folder):
    train = ImageFolderDataset(str(folder / "train"), build_transform(True, (12, 10)))
    assert train.classes == ["cat", "dog"] and len(train) == 6
    item = train[5]
    assert item["label"] == 1 and item["image"].shape == (3, 12, 10) and item["image"].dtype == torch.float32
    val = ImageFolderDataset(str(folder / "val"), build_transform(False, (12, 10)), classes=train.classes)
    assert val.num_classes == 2 and len(val) == 2 and {val[i]["label"] for i in range(2)} == {0}
    batch = next(iter(DataLoader(train, batch_size=4)))
    assert batch["image"].shape == (4, 3, 12, 10) and batch["label"].dtype == torch.long


def test_val_transform_resizes_and_centre_crops():
    img = Image.fromarray(np.arange(40 * 20 * 3, dtype=np.uint8).reshape(20, 40, 3))
    out = build_transform(False, (16, 16), crop_pct=0.8)(img)  # short side 20 -> 20, centre 16x16
    assert out.shape == (3, 16, 16)


def test_imagefolder_errors_are_one_line(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder not found: .*nope"):
        ImageFolderDataset(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="class folder 'dog' that is not among"):
        ImageFolderDataset(str(folder / "train"), classes=["cat"])
    (folder / "train" / "cat" / "9.png").write_bytes(b"\x89PNG broken")
    ds = ImageFolderDataset(str(folder / "train"))
    with pytest.raises(ValueError) as err:
        ds[[p for p, _ in ds.samples].index(str(folder / "train" / "cat" / "9.png"))]
    assert "cannot read image" in str(err.value) and "9.png" in str(err.value) and "\n" not in str(err.value)


def make_zip(tmp_path, split="train", labels=(0, 1, 2)):
    zpath, mpath = tmp_path / f"{split}.zip", tmp_path / f"{split}_map.txt"
    with zipfile.ZipFile(zpath, "w") as zf:
        for i, label in enumerate(labels):
            img = tmp_path / f"tmp{i}.png"
            write_png(str(img), 50 * i)
            zf.write(img, f"n{label:03d}/img{i}.png")
    mpath.write_text("".join(f"n{label:03d}/img{i}.png\t{label}\n" for i, label in enumerate(labels)))
    return zpath, mpath


def test_zip_dataset_and_task_zip_mode(tmp_path):
    zpath, mpath = make_zip(tmp_path, "train")
    ds = ZipImageDataset(str(zpath), str(mpath), build_transform(False, (8, 8)))
    assert len(ds) == 3 and ds.num_classes == 3 and ds[2]["label"] == 2 and ds[2]["image"].shape == (3, 8, 8)
    items = list(DataLoader(ds, batch_size=3, num_workers=1))  # workers reopen the archive
    assert items[0]["label"].tolist() == [0, 1, 2]
    make_zip(tmp_path, "val", labels=(1, 1))
    opts = ["TASK", "classification", "DATASET.ROOT", str(tmp_path), "DATASET.ZIP_FILE", "{split}.zip",
            "DATASET.MAP_FILE", "{split}_map.txt", "MODEL.INPUT_SIZE", "[8, 8]"]
    task = ClassificationTask(load_config("", opts + ["DATASET.NUM_CLASSES", "3"]))
    assert len(task.build_dataset("train")) == 3 and [task.build_dataset("val")[i]["label"] for i in (0, 1)] == [1, 1]
    with pytest.raises(ValueError, match="DATASET.NUM_CLASSES is 2 but the train data has 3 classes"):
        ClassificationTask(load_config("", opts + ["DATASET.NUM_CLASSES", "2"])).build_dataset("train")
    with pytest.raises(ValueError, match="needs both DATASET.ZIP_FILE and DATASET.MAP_FILE"):
        ClassificationTask(load_config("", opts + ["DATASET.MAP_FILE", ""])).build_dataset("train")


def one_line_error(exc_type, fn):
    with pytest.raises(exc_type) as err:
        fn()
    assert "\n" not in str(err.value)
    return str(err.value)


def test_bad_zip_and_map_errors_are_one_line(tmp_path):
    zpath, mpath = make_zip(tmp_path)
    msg = one_line_error(FileNotFoundError, lambda: ZipImageDataset(str(tmp_path / "no.zip"), str(mpath)))
    assert "zip file not found" in msg and "no.zip" in msg
    notzip = tmp_path / "fake.zip"
    notzip.write_text("hello")
    assert "not a zip file" in one_line_error(ValueError, lambda: ZipImageDataset(str(notzip), str(mpath)))
    assert "map file not found" in one_line_error(FileNotFoundError,
                                                  lambda: ZipImageDataset(str(zpath), str(tmp_path / "m.txt")))
    bad = tmp_path / "bad_map.txt"
    bad.write_text("n000/img0.png\t0\nn001/img1.png\tcat\n")
    msg = one_line_error(ValueError, lambda: read_map_file(str(bad)))
    assert "bad_map.txt line 2" in msg and "integer label" in msg
    missing = tmp_path / "missing_map.txt"
    missing.write_text("n000/img0.png\t0\nn009/ghost.png\t9\n")
    msg = one_line_error(ValueError, lambda: ZipImageDataset(str(zpath), str(missing)))
    assert "n009/ghost.png" in msg and "train.zip" in msg
    empty = tmp_path / "empty_map.txt"
    empty.write_text("\n")
    assert "lists no images" in one_line_error(ValueError, lambda: read_map_file(str(empty)))
    corrupt_zip = tmp_path / "corrupt.zip"
    with zipfile.ZipFile(corrupt_zip, "w") as zf:
        zf.writestr("a/x.png", b"not a png")
    cmap = tmp_path / "corrupt_map.txt"
    cmap.write_text("a/x.png 0\n")  # whitespace separator is accepted too
    ds = ZipImageDataset(str(corrupt_zip), str(cmap))
    msg = one_line_error(ValueError, lambda: ds[0])
    assert "cannot read image" in msg and "corrupt.zip:a/x.png" in msg


def test_oversized_image_is_refused_before_decoding(tmp_path, monkeypatch):
    """Class folders and zip members go through image_io's header check (MAX_IMAGE_PIXELS)."""
    zpath, mpath = make_zip(tmp_path)
    monkeypatch.setattr("src.data.image_io.MAX_IMAGE_PIXELS", 10)
    msg = one_line_error(ValueError, lambda: ZipImageDataset(str(zpath), str(mpath))[0])
    assert "above image_io.MAX_IMAGE_PIXELS" in msg and "train.zip:n000/img0.png" in msg


def tree_digest(root):
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            path = os.path.join(dirpath, f)
            h.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


def test_synthetic_imagefolder_is_deterministic_and_atomic(tmp_path):
    a = ensure_synthetic_imagefolder(str(tmp_path / "a"), 12, 6, 4, seed=3, size=24)
    b = ensure_synthetic_imagefolder(str(tmp_path / "b"), 12, 6, 4, seed=3, size=24)
    c = ensure_synthetic_imagefolder(str(tmp_path / "c"), 12, 6, 4, seed=4, size=24)
    assert tree_digest(a) == tree_digest(b) != tree_digest(c)
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "c"]  # no temporary folders left behind
    assert sorted(os.listdir(tmp_path / "a" / "train")) == sorted(CLASSES[:4])
    assert len(os.listdir(tmp_path / "a" / "val" / CLASSES[0])) == 2
    with Image.open(tmp_path / "a" / "train" / CLASSES[1] / "000001.png") as img:
        assert img.size == (24, 24) and img.mode == "RGB"
    assert ensure_synthetic_imagefolder(a, 12, 6, 4, seed=3, size=24) == a  # reused as is
    with pytest.raises(ValueError, match="generated with other settings"):
        ensure_synthetic_imagefolder(a, 12, 6, 4, seed=5, size=24)
    with pytest.raises(ValueError, match="NUM_CLASSES must be in 2..10"):
        ensure_synthetic_imagefolder(str(tmp_path / "d"), 12, 6, 11)
    (tmp_path / "e").mkdir()
    with pytest.raises(ValueError, match="not a generated synthetic ImageFolder"):
        ensure_synthetic_imagefolder(str(tmp_path / "e"), 12, 6, 4)


def test_make_synthetic_imagefolder_tool(tmp_path, capsys):
    from tools.make_synthetic_imagefolder import main
    root = tmp_path / "syn"
    assert main(["--root", str(root), "--train", "4", "--val", "2", "--classes", "2", "--size", "16"]) == 0
    info = json.loads((root / "synthetic_info.json").read_text())
    assert info["train"] == 4 and info["classes"] == 2 and info["size"] == 16
    from src.engine.cli import run_cli
    assert run_cli(main, ["--root", str(root), "--train", "5", "--val", "2", "--classes", "2", "--size", "16"]) == 1
    assert "other settings" in capsys.readouterr().err


def test_criterion_and_topk_evaluation(tmp_path):
    cfg = load_config("", ["TASK", "classification", "LOSS.LABEL_SMOOTHING", "0.1"])
    task = ClassificationTask(cfg)
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    labels = torch.tensor([0, 2])
    logp = logits.log_softmax(1)
    expect = (0.9 * -logp[torch.arange(2), labels] + 0.1 * -logp.mean(1)).mean()
    torch.testing.assert_close(task.criterion(logits, {"label": labels}), expect)
    assert topk_correct(logits, labels, (1, 2, 5)) == [1, 2, 2]

    class Fixed(nn.Module):  # class scores = one-hot of a rank order given by the image's first pixel
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return F.one_hot(x[:, 0, 0, 0].long() % 10, 10).float() * 10 - torch.arange(10.0) * 0.1

    images = torch.zeros(8, 3, 4, 4)
    images[:, 0, 0, 0] = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7.0])
    labels = torch.tensor([0, 1, 2, 3, 9, 0, 1, 2])  # top-1 hits 4; top-5 of a miss = {pred, 0, 1, 2, 3}
    data = [{"image": im, "label": int(lb)} for im, lb in zip(images, labels)]
    model = Fixed().train()
    m = task.evaluate(model, data, str(tmp_path / "eval"), 3, "cpu")
    assert m["top1"] == 50.0 and m["score"] == 50.0 and m["num_images"] == 8
    assert m["top5"] == 100.0 * 7 / 8
    assert model.training  # mode restored
    assert json.loads((tmp_path / "eval" / "classification_metrics.json").read_text())["top1"] == 50.0


def test_unknown_dataset_name():
    task = ClassificationTask(load_config("", ["TASK", "classification", "DATASET.NAME", "coco"]))
    with pytest.raises(ValueError, match="unknown DATASET.NAME 'coco' for TASK classification"):
        task.build_dataset("train")


@pytest.mark.slow
def test_tiny_hrformer_learns_synthetic_imagefolder(tmp_path):
    """Circles vs horizontal stripes (the first two synthetic classes) at 64x64, 80 steps of batch 16."""
    opts = ["DATASET.ROOT", str(tmp_path / "syn"), "DATASET.NUM_CLASSES", "2", "DATASET.SYNTHETIC_TRAIN", "160",
            "DATASET.SYNTHETIC_VAL", "60", "DATASET.CROP_SCALE", "[0.8, 1.0]",
            "MODEL.HRT.NUM_CHANNELS", "[8, 16, 32, 64]", "MODEL.HRT.NUM_HEADS", "[1, 1, 2, 2]",
            "MODEL.HRT.NUM_MODULES", "[1, 1, 1]", "MODEL.HRT.NUM_BLOCKS", "1", "MODEL.HRT.STEM_CHANNELS", "16",
            "MODEL.HRT.STAGE1_BLOCKS", "1", "MODEL.HRT.HEAD_CHANNELS", "[4, 8, 16, 32]",
            "MODEL.HRT.HEAD_FINAL_CHANNELS", "64"]
    cfg = load_config("configs/cls/synthetic_hrformer_cls.yaml", opts)
    assert cfg.MODEL.INPUT_SIZE == [64, 64] and cfg.DATASET.NAME == "synthetic_imagefolder"
    task = ClassificationTask(cfg)
    train, val = task.build_dataset("train"), task.build_dataset("val")
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    loader = DataLoader(train, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    for _ in range(8):
        for batch in loader:
            loss = task.criterion(model(batch["image"]), batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
    metrics = task.evaluate(model, val, str(tmp_path / "eval"), 30, "cpu")
    print("synthetic top-1", metrics["top1"])
    assert metrics["top1"] >= 80.0  # chance is 50
