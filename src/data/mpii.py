"""MPII top-down keypoint dataset in the HRNet / SimpleBaseline JSON layout.

Each entry: `image` (file name), `center` (x, y), `scale` (person height / 200 px), `joints` [16, 2] and
`joints_vis` [16], 1-based (MATLAB) coordinates, MPII joint order (see `keypoint_info.MPII_KEYPOINTS`).
As in HRNet the centre moves down by 15 * scale px, the box is a 200 * scale px square enlarged by `margin`
(HRNet's factor 1.25), and coordinates are made 0-based.

PCKh head size: the layout has no head boxes, so the head segment length is approximated by the distance
between the annotated head_top and upper_neck joints (the length the usual 0.6 x head-box diagonal
estimates).
"""
import os
from numbers import Real

import numpy as np

from src.data.keypoint_info import (MPII_FLIP_PAIRS, MPII_HEAD_TOP, MPII_KEYPOINTS, MPII_SKELETON, MPII_UPPER_NECK,
                                    upper_body_ids)
from src.data.topdown import TopDownDataset, load_json
from src.utils.geometry import box_to_center_scale

NUM_JOINTS = len(MPII_KEYPOINTS)


class MpiiKeypoints(TopDownDataset):
    """Persons of an MPII JSON file (see module docstring); `pckh_ground_truth()` feeds the PCKh metric."""

    flip_pairs = MPII_FLIP_PAIRS
    skeleton = MPII_SKELETON
    upper_body_ids = upper_body_ids(MPII_KEYPOINTS)
    keypoint_names = MPII_KEYPOINTS

    def __init__(self, json_file: str, image_dir: str, input_size=(256, 256), stride: int = 4, sigma: float = 2.0,
                 train: bool = False, margin: float = 1.25, aug=None, max_samples: int = 0):
        super().__init__(NUM_JOINTS, input_size, stride, sigma, train, margin, aug)
        self.json_file, self.image_dir = json_file, image_dir
        entries = load_json(json_file, "MPII annotation file")
        if not isinstance(entries, list):
            raise ValueError(f"MPII annotation file {json_file} must hold a JSON list")
        self.image_names = sorted({e.get("image") for e in entries if isinstance(e, dict)} - {None})
        ids = {name: i for i, name in enumerate(self.image_names)}
        self.records = [self._record(i, e, ids) for i, e in enumerate(entries)]
        if max_samples > 0:
            self.records = self.records[:max_samples]

    def _record(self, i: int, entry, ids: dict) -> dict:
        where = f"MPII annotation file {self.json_file}: entry {i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            raise ValueError(f"{where} needs an 'image' file name")
        center = np.asarray(entry.get("center", ()), dtype=np.float64)
        s = entry.get("scale")
        if center.shape != (2,) or not isinstance(s, Real) or s <= 0:
            raise ValueError(f"{where} ({entry['image']}) needs center [x, y] and a positive scale")
        try:
            joints = np.asarray(entry.get("joints", np.zeros((NUM_JOINTS, 2))), dtype=np.float64)
            vis = np.asarray(entry.get("joints_vis", np.zeros(NUM_JOINTS)), dtype=np.float64)
        except (TypeError, ValueError):
            joints = vis = np.zeros(0)
        if joints.shape != (NUM_JOINTS, 2) or vis.shape != (NUM_JOINTS,):
            raise ValueError(f"{where} ({entry['image']}): joints must be {NUM_JOINTS}x2 and joints_vis {NUM_JOINTS}")
        if center[0] != -1:
            center = center + np.array([0.0, 15.0 * s])
        side = 200.0 * s
        center, scale = box_to_center_scale(center[0] - 1 - side / 2, center[1] - 1 - side / 2, side, side,
                                            self.aspect_ratio, self.margin)
        return dict(image_path=os.path.join(self.image_dir, entry["image"]), image_id=ids[entry["image"]],
                    center=center, scale=scale, joints=np.concatenate([joints - 1.0, (vis > 0)[:, None]], axis=1),
                    score=1.0)

    def image_path(self, image_id: int) -> str:
        return os.path.join(self.image_dir, self.image_names[image_id])

    def pckh_ground_truth(self) -> dict:
        """GT joints [N, 16, 2] (0-based image px), visibility [N, 16] and head sizes [N] of the records."""
        joints = np.stack([r["joints"] for r in self.records]) if self.records else np.zeros((0, NUM_JOINTS, 3))
        head = np.linalg.norm(joints[:, MPII_HEAD_TOP, :2] - joints[:, MPII_UPPER_NECK, :2], axis=1)
        return dict(joints=joints[:, :, :2], visible=joints[:, :, 2] > 0, head_size=head)
