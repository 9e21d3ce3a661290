"""Shared top-down person dataset: one record per person box -> the pose batch dict of the contract."""
import json
import os
from typing import List

import numpy as np
from torch.utils.data import Dataset

from src.data.image_io import load_rgb
from src.data.keypoint_info import flip_permutation
from src.data.targets import render_targets
from src.data.transforms import (DEFAULT_AUG, crop_affine, half_body_box, normalize_image, sample_augmentation,
                                 warp_image)
from src.utils.geometry import affine_points


def load_json(path: str, what: str):
    """Parsed JSON of `path`; one-line errors naming the file (`what` says which file it is)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} {path} is not valid JSON: {exc}") from None


class TopDownDataset(Dataset):
    """Subclasses fill `self.records` (dicts with image_path, image_id, center, scale, joints [K,3], score)
    and set `flip_pairs`, `skeleton`, `upper_body_ids`."""

    flip_pairs = ()
    skeleton = ()
    upper_body_ids = ()

    def __init__(self, num_joints: int, input_size=(192, 256), stride: int = 4, sigma: float = 2.0,
                 train: bool = False, margin: float = 1.25, aug=None):
        self.num_joints = int(num_joints)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        if self.input_size[0] % stride or self.input_size[1] % stride:
            raise ValueError(f"input size {self.input_size} is not divisible by the heatmap stride {stride}")
        self.stride, self.sigma, self.train, self.margin = int(stride), float(sigma), bool(train), float(margin)
        self.aug = {**DEFAULT_AUG, **(aug or {})}
        self.records = []
        self._cached = (None, None)

    @property
    def aspect_ratio(self) -> float:
        return self.input_size[0] / self.input_size[1]

    def split_groups(self) -> List[int]:
        """The image of every sample: the bilevel split keeps all persons of one image on one side."""
        return [int(r["image_id"]) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def _image(self, path: str) -> np.ndarray:
        if self._cached[0] != path:
            self._cached = (path, load_rgb(path))
        return self._cached[1]

    def __getitem__(self, index: int) -> dict:
        if not self.train:
            return self.make_sample(index)
        params = sample_augmentation(self.aug)
        return self.make_sample(index, **params)

    def make_sample(self, index: int, scale_factor: float = 1.0, rotation: float = 0.0, flip: bool = False,
                    half_body: bool = False) -> dict:
        """The sample of record `index` under the given augmentation (identity by default)."""
        rec = self.records[index]
        joints = rec["joints"]
        center, scale = rec["center"], rec["scale"]
        if half_body and (joints[:, 2] > 0).sum() > self.num_joints // 2:
            box = half_body_box(joints, self.upper_body_ids, self.aspect_ratio)
            if box is not None:
                center, scale = box
        scale = scale * scale_factor
        mat = crop_affine(center, scale, rotation, self.input_size, flip)
        crop = warp_image(self._image(rec["image_path"]), mat, self.input_size)
        pts = affine_points(joints[:, :2], mat)
        visible = joints[:, 2] > 0
        if flip:
            perm = flip_permutation(self.num_joints, self.flip_pairs)
            pts, visible = pts[perm], visible[perm]
        target, weight = render_targets(pts, visible, self.input_size, self.stride, self.sigma)
        return {
            "image": normalize_image(crop),
            "target": target,
            "target_weight": weight,
            "center": np.asarray(center, dtype=np.float64),
            "scale": np.asarray(scale, dtype=np.float64),
            "rotation": float(rotation),
            "image_id": int(rec["image_id"]),
            "score": float(rec["score"]),
            "index": int(index),
        }
