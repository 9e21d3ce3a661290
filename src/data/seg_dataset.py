"""Semantic segmentation data sets: images with per-pixel class ids (0..C-1, `IGNORE` = 255).

`SegmentationDataset` holds the samples and the transforms; a subclass says how a sample's label map is
read (`read_label`). `LabelPngDataset` reads label PNGs through a look-up table from stored ids to class
ids (Cityscapes labelIds -> trainIds, ADE20K reduce-zero-label, the synthetic set's identity; a stored 255
is IGNORE everywhere); stored ids the table does not know stop the run with an error naming the file.

Items: training {"image": float32 [3, h, w] (normalised crop of MODEL.INPUT_SIZE), "label": int64 [h, w],
"index"}; evaluation {"image": the whole image, long side resized to `base_size`, "label": the label map at the
image's own size, "index"} (images differ in size: evaluation goes one image at a time).
"""
import os
from typing import List, Sequence, Tuple

import numpy as np

from src.data.image_io import load_label, load_rgb
from src.data.samples import ImageSamples
from src.data.seg_transforms import IGNORE, eval_image, train_pair
from src.data.transforms import normalize_image


def label_lut(table: dict) -> np.ndarray:
    """int16 [256] look-up table: stored id -> class id (or IGNORE); a stored IGNORE (255) stays IGNORE in
    every data set; -1 marks the ids a valid map never holds."""
    lut = np.full(256, -1, np.int16)
    lut[IGNORE] = IGNORE
    for stored, cls in table.items():
        lut[stored] = cls
    lut.flags.writeable = False
    return lut


class SegmentationDataset(ImageSamples):
    """`samples`: (image path, label source) pairs; `classes`: class names (index = class id)."""

    def __init__(self, samples: Sequence[Tuple[str, object]], classes: Sequence[str], train: bool = False,
                 crop_size: Sequence[int] = (512, 512), base_size: int = 0, scale_range: Sequence[float] = (1.0, 1.0),
                 flip: bool = True, max_samples: int = 0):
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"DATASET.SCALE_RANGE must be [low, high] with 0 < low <= high, got {list(scale_range)}")
        self.samples = list(samples)[:max_samples] if max_samples > 0 else list(samples)
        self.classes = tuple(classes)
        self.train, self.flip = bool(train), bool(flip)
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.base_size, self.scale_range = int(base_size), (float(scale_range[0]), float(scale_range[1]))

    def image_path(self, index: int) -> str:
        return self.samples[index][0]

    def sample_name(self, index: int) -> str:
        """File stem of the image (prediction PNGs are named after it)."""
        return os.path.splitext(os.path.basename(self.image_path(index)))[0]

    def read_label(self, index: int, image_hw: Tuple[int, int]) -> np.ndarray:
        """uint8 [H, W] class ids of sample `index` (an image of `image_hw` pixels)."""
        raise NotImplementedError

    def load(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """The image (HxWx3 uint8) and its class-id map."""
        image = load_rgb(self.image_path(index))
        return image, self.read_label(index, image.shape[:2])

    def __getitem__(self, index: int) -> dict:
        image, label = self.load(index)
        if self.train:
            image, label = train_pair(image, label, self.crop_size, self.base_size, self.scale_range, self.flip)
        else:
            image = eval_image(image, self.base_size)
        return {"image": normalize_image(image), "label": label.astype(np.int64), "index": int(index)}


class LabelPngDataset(SegmentationDataset):
    """Label maps stored as PNGs beside the images (`samples`: (image path, label PNG path)); `lut` maps the
    stored ids to class ids (see `label_lut`)."""

    def __init__(self, samples, classes, lut: np.ndarray, what: str, **kwargs):
        super().__init__(samples, classes, **kwargs)
        self.lut, self.what = lut, what

    def read_label(self, index: int, image_hw: Tuple[int, int]) -> np.ndarray:
        path = self.samples[index][1]
        stored = load_label(path)
        if stored.shape != tuple(image_hw):
            raise ValueError(f"label map {path} is {stored.shape[1]}x{stored.shape[0]} but its image "
                             f"{self.image_path(index)} is {image_hw[1]}x{image_hw[0]}")
        label = self.lut[stored]
        if (label < 0).any():
            bad = sorted(set(np.unique(stored[label < 0]).tolist()))
            raise ValueError(f"label map {path} holds id {bad[0]}, which is not a {self.what} label id")
        return label.astype(np.uint8)


def paired_files(image_dir: str, label_dir: str, image_suffix: str, label_suffix: str,
                 what: str, recursive: bool = False) -> List[Tuple[str, str]]:
    """(image, label) pairs: every `*image_suffix` file below `image_dir` (in sub-folders too with `recursive`)
    and its twin in `label_dir` (same relative folder, the suffix swapped), sorted; a missing twin, a missing
    folder or no image at all is an error naming the path."""
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(f"{what} image folder not found: {image_dir}")
    pairs: List[Tuple[str, str]] = []
    for folder, dirs, files in os.walk(image_dir):
        dirs.sort()
        if not recursive:
            dirs.clear()
        rel = os.path.relpath(folder, image_dir)
        for name in sorted(f for f in files if f.endswith(image_suffix)):
            twin = os.path.normpath(os.path.join(label_dir, rel, name[:-len(image_suffix)] + label_suffix))
            if not os.path.isfile(twin):
                raise FileNotFoundError(f"{what}: label map of {os.path.join(folder, name)} not found: {twin}")
            pairs.append((os.path.join(folder, name), twin))
    if not pairs:
        raise ValueError(f"{what} image folder {image_dir} holds no *{image_suffix} images")
    return pairs
