"""Embedded synthetic segmentation set: the scenes of the synthetic pose set (src/data/synthetic.py, same
seed -> the same images) with per-pixel labels of background, head, torso, arm, leg and occluder.

Layout: `ROOT/images/{train,val}/{i:06d}.jpg` and `ROOT/labels/{train,val}/{i:06d}.png` (8-bit class ids),
plus the settings in `ROOT/synthetic_info.json`; generated on first use (src/data/generated.py). The classes
have no left/right variants (both arms are "arm"), so a mirrored image keeps its labels.
"""
import os

import numpy as np
from PIL import Image

from src.data.generated import ensure_generated
from src.data.seg_dataset import label_lut, paired_files
from src.data.synthetic import OCCLUDER_PART, part_map, split_scene

CLASSES = ("background", "head", "torso", "arm", "leg", "occluder")
_PART_CLASS = np.array([1, 2, 3, 3, 4, 4, 5, 0], np.uint8)  # part_map value (0..5 groups, 6 occluder, -1) -> class
assert _PART_CLASS[OCCLUDER_PART] == CLASSES.index("occluder")
LUT = label_lut({k: k for k in range(len(CLASSES))})


def scene_labels(owner: np.ndarray) -> np.ndarray:
    """uint8 class ids of a scene's owner map."""
    return _PART_CLASS[part_map(owner)]  # -1 (background) indexes the last entry


def _write_split(root: str, split: str, count: int, seed: int) -> None:
    for kind in ("images", "labels"):
        os.makedirs(os.path.join(root, kind, split), exist_ok=True)
    for i in range(count):
        img, _, owner = split_scene(seed, split, i)
        img.save(os.path.join(root, "images", split, f"{i:06d}.jpg"), quality=90)
        Image.fromarray(scene_labels(owner)).save(os.path.join(root, "labels", split, f"{i:06d}.png"))


def ensure_synthetic_seg(root: str, num_train: int, num_val: int, seed: int = 0) -> str:
    """Generate the set into `root` unless it is there already (with the same settings). Returns `root`."""
    for name, value in (("SYNTHETIC_TRAIN", num_train), ("SYNTHETIC_VAL", num_val)):
        if int(value) != value or value < 1:
            raise ValueError(f"synthetic segmentation set: DATASET.{name} must be a positive integer, got {value!r}")
    info = {"format": "fabricnas.synthetic_seg/1", "train": num_train, "val": num_val, "seed": seed}

    def write(folder: str) -> None:
        for split, count in (("train", num_train), ("val", num_val)):
            _write_split(folder, split, count, seed)

    return ensure_generated(root, info, "synthetic segmentation set", write)


def synthetic_seg_samples(root: str, split: str):
    """(image, label PNG) pairs of a split ("train", "val")."""
    return paired_files(os.path.join(root, "images", split), os.path.join(root, "labels", split), ".jpg", ".png",
                        "synthetic segmentation set")
