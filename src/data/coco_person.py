"""COCO person masks as a segmentation set: every image of a COCO-format (keypoint) annotation file, labelled
person (1) vs background (0) by rasterising the persons' polygons and RLEs with pycocotools.

Crowd regions (`iscrowd` 1) and the boxes of persons without a segmentation are IGNORE; a person's own mask
wins over them. Every annotation is checked when the set is built, and an RLE's run lengths must add up to
its image's size before pycocotools decodes it (its decoder writes without bounds checks); a malformed
annotation is an error naming the file and the annotation.
"""
import os
from numbers import Real

import numpy as np

from src.data.coco import PERSON, load_coco
from src.data.image_io import MAX_IMAGE_PIXELS
from src.data.seg_dataset import SegmentationDataset
from src.data.seg_transforms import IGNORE

CLASSES = ("background", "person")


def rle_counts(counts: str) -> list:
    """Run lengths of a compressed COCO RLE string (pycocotools' rleFrString, in Python)."""
    out, p = [], 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            if p >= len(counts):
                raise ValueError("truncated RLE string")
            c = ord(counts[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        out.append(x + out[-2] if len(out) > 2 else x)
    return out


def _check_segmentation(seg, height: int, width: int) -> None:
    """ValueError unless `seg` is a list of polygons (>= 3 points each) or an RLE of a height x width image."""
    if isinstance(seg, list):
        for poly in seg:
            if not (isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0
                    and all(isinstance(v, Real) and not isinstance(v, bool) for v in poly)):
                raise ValueError(f"polygon {poly!r:.60} must be an even list of >= 6 numbers")
        return
    if not isinstance(seg, dict) or set(seg) != {"size", "counts"}:
        raise ValueError("segmentation must be a list of polygons or an RLE {'size', 'counts'}")
    if seg["size"] != [height, width]:
        raise ValueError(f"RLE size {seg['size']!r:.40} is not the image's [height, width] [{height}, {width}]")
    counts = seg["counts"]
    if isinstance(counts, str):
        counts = rle_counts(counts)
    elif not (isinstance(counts, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in counts)):
        raise ValueError("RLE counts must be a string or a list of integers")
    if any(c < 0 for c in counts) or sum(counts) != height * width:
        raise ValueError(f"RLE run lengths must be >= 0 and add up to {height} x {width}")


class CocoPersonSeg(SegmentationDataset):
    """Person vs background of every image of `ann_file`, images in `image_dir`."""

    def __init__(self, ann_file: str, image_dir: str, **kwargs):
        self.ann_file = ann_file
        self.coco = load_coco(ann_file)
        samples = [(os.path.join(image_dir, self.coco.imgs[i]["file_name"]), i) for i in sorted(self.coco.imgs)]
        super().__init__(samples, CLASSES, **kwargs)
        for _, image_id in self.samples:
            self._check_image(image_id)

    def _persons(self, image_id) -> list:
        return [a for a in self.coco.imgToAnns.get(image_id, [])
                if isinstance(a, dict) and a.get("category_id", PERSON) == PERSON]

    def _check_image(self, image_id) -> None:
        img = self.coco.imgs[image_id]
        where = f"annotation file {self.ann_file}: image {image_id}"
        w, h = img["width"], img["height"]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (w, h)) or w * h > MAX_IMAGE_PIXELS:
            raise ValueError(f"{where}: width and height must be positive integers with at most "
                             f"{MAX_IMAGE_PIXELS} pixels in all, got {w!r:.20} x {h!r:.20}")
        for ann in self._persons(image_id):
            try:
                if ann.get("segmentation"):
                    _check_segmentation(ann["segmentation"], h, w)
                elif not (isinstance(ann.get("bbox"), list) and len(ann["bbox"]) == 4
                          and all(isinstance(v, Real) and not isinstance(v, bool) for v in ann["bbox"])):
                    raise ValueError("a person without segmentation needs a bbox of 4 numbers")
            except ValueError as exc:
                raise ValueError(f"{where}: annotation {ann.get('id', '?')}: {exc}") from None

    def read_label(self, index: int, image_hw) -> np.ndarray:
        image_id = self.samples[index][1]
        img = self.coco.imgs[image_id]
        if (img["height"], img["width"]) != tuple(image_hw):
            raise ValueError(f"image {self.image_path(index)} is {image_hw[1]}x{image_hw[0]} but annotation file "
                             f"{self.ann_file} says {img['width']}x{img['height']}")
        person = np.zeros(image_hw, bool)
        ignore = np.zeros(image_hw, bool)
        for ann in self._persons(image_id):
            if ann.get("segmentation"):
                (ignore if ann.get("iscrowd", 0) else person)[self.coco.annToMask(ann) > 0] = True
            else:  # no outline: its box is unknown territory
                x, y, bw, bh = ann["bbox"]
                ignore[max(0, int(y)):max(0, int(np.ceil(y + bh))), max(0, int(x)):max(0, int(np.ceil(x + bw)))] = True
        label = np.where(ignore, IGNORE, 0).astype(np.uint8)
        label[person] = 1
        return label
