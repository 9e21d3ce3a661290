"""COCO-format top-down keypoint dataset (any annotation file + image folder; GT or detected boxes)."""
import contextlib
import io
import os
from numbers import Real

import numpy as np
from pycocotools.coco import COCO

from src.architecture.limits import MAX_JOINTS
from src.data.keypoint_info import COCO_KEYPOINTS, COCO_SIGMAS, COCO_SKELETON, flip_pairs_from_names, upper_body_ids
from src.data.topdown import TopDownDataset, load_json
from src.utils.geometry import box_to_center_scale

PERSON = 1
_ANN_KEYS = ("id", "image_id", "bbox", "keypoints", "num_keypoints", "area")


def _numbers(value, count: int) -> bool:
    return isinstance(value, list) and len(value) == count and all(isinstance(v, Real) for v in value)


def load_coco(ann_file: str) -> COCO:
    """pycocotools COCO of `ann_file`, checked for the keys the pipeline and COCOeval need."""
    data = load_json(ann_file, "annotation file")
    if not isinstance(data, dict):
        raise ValueError(f"annotation file {ann_file} must hold a JSON object")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"annotation file {ann_file} has no '{key}' list")
    for img in data["images"]:
        if not isinstance(img, dict) or any(k not in img for k in ("id", "file_name", "width", "height")):
            raise ValueError(f"annotation file {ann_file}: image entry {img!r:.80} needs id, file_name, width, height")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoKeypoints(TopDownDataset):
    """Persons of a COCO keypoint annotation file, cropped top-down (see `TopDownDataset`)."""

    def __init__(self, ann_file: str, image_dir: str, input_size=(192, 256), stride: int = 4, sigma: float = 2.0,
                 train: bool = False, margin: float = 1.25, use_dt: bool = False, det_file: str = None,
                 det_score_threshold: float = 0.0, aug=None, max_samples: int = 0):
        self.ann_file, self.image_dir = ann_file, image_dir
        self.coco = load_coco(ann_file)
        names = self._keypoint_names()
        super().__init__(len(names), input_size, stride, sigma, train, margin, aug)
        self.keypoint_names = names
        self.flip_pairs = flip_pairs_from_names(names)
        self.upper_body_ids = upper_body_ids(names)
        cat = self.coco.cats.get(PERSON, {})
        if cat.get("skeleton"):
            self.skeleton = tuple((a - 1, b - 1) for a, b in cat["skeleton"])
        else:
            self.skeleton = COCO_SKELETON if tuple(names) == COCO_KEYPOINTS else ()
        self.sigmas = COCO_SIGMAS if self.num_joints == 17 else np.full(self.num_joints, COCO_SIGMAS.mean())
        if use_dt:
            if not det_file:
                raise ValueError("use_dt needs a detections file (det_file)")
            self.records = self._detection_records(det_file, det_score_threshold)
        else:
            self.records = self._gt_records()
        if max_samples > 0:
            self.records = self.records[:max_samples]

    def _keypoint_names(self) -> tuple:
        names = self.coco.cats.get(PERSON, {}).get("keypoints")
        if not names:
            anns = [a for a in self.coco.dataset["annotations"] if isinstance(a, dict) and "keypoints" in a]
            count = len(anns[0]["keypoints"]) // 3 if anns else len(COCO_KEYPOINTS)
            names = COCO_KEYPOINTS if count == len(COCO_KEYPOINTS) else tuple(f"joint_{i}" for i in range(count))
        if len(names) > MAX_JOINTS:  # every sample would allocate a heatmap per keypoint
            raise ValueError(f"annotation file {self.ann_file}: {len(names)} person keypoints, above {MAX_JOINTS} "
                             "(limits.MAX_JOINTS)")
        return tuple(names)

    def image_path(self, image_id: int) -> str:
        return os.path.join(self.image_dir, self.coco.imgs[image_id]["file_name"])

    def _clipped_box(self, image_id: int, box):
        """Box clipped to the image, as (x, y, w, h), or None when nothing is left."""
        img = self.coco.imgs[image_id]
        x, y, w, h = (float(v) for v in box)
        x1, y1 = max(0.0, x), max(0.0, y)
        x2, y2 = min(img["width"] - 1.0, x + max(0.0, w)), min(img["height"] - 1.0, y + max(0.0, h))
        if x2 <= x1 or y2 <= y1:
            return None
        return x1, y1, x2 - x1, y2 - y1

    def _record(self, image_id: int, box, joints: np.ndarray, score: float):
        center, scale = box_to_center_scale(*box, self.aspect_ratio, self.margin)
        return dict(image_path=self.image_path(image_id), image_id=image_id, center=center, scale=scale,
                    joints=joints, score=score)

    def _gt_records(self) -> list:
        records = []
        for image_id in sorted(self.coco.imgs):
            for ann in self.coco.imgToAnns.get(image_id, []):
                if ann.get("category_id", PERSON) != PERSON or ann.get("iscrowd", 0):
                    continue
                self._check_annotation(ann)
                joints = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
                if not (joints[:, 2] > 0).any():
                    continue
                box = self._clipped_box(image_id, ann["bbox"])
                if box is not None:
                    records.append(self._record(image_id, box, joints, 1.0))
        return records

    def _check_annotation(self, ann: dict) -> None:
        where = f"annotation file {self.ann_file}: annotation {ann.get('id', '?')}"
        missing = [k for k in _ANN_KEYS if k not in ann]
        if missing:
            raise ValueError(f"{where} lacks {', '.join(missing)}")
        if not _numbers(ann["bbox"], 4):
            raise ValueError(f"{where}: bbox must be 4 numbers, got {ann['bbox']!r:.80}")
        if not _numbers(ann["keypoints"], 3 * self.num_joints):
            raise ValueError(f"{where}: keypoints must be {3 * self.num_joints} numbers, got {ann['keypoints']!r:.80}")

    def _detection_records(self, det_file: str, threshold: float) -> list:
        dets = load_json(det_file, "detections file")
        if not isinstance(dets, list):
            raise ValueError(f"detections file {det_file} must hold a JSON list")
        records = []
        empty = np.zeros((self.num_joints, 3))
        for i, det in enumerate(dets):
            if not isinstance(det, dict) or not _numbers(det.get("bbox"), 4) or not isinstance(det.get("score"), Real):
                raise ValueError(f"detections file {det_file}: entry {i} needs bbox (4 numbers), score, image_id")
            if det.get("category_id", PERSON) != PERSON or det["score"] < threshold:
                continue
            if det.get("image_id") not in self.coco.imgs:
                raise ValueError(f"detections file {det_file}: entry {i} has unknown image_id {det.get('image_id')!r}")
            box = self._clipped_box(det["image_id"], det["bbox"])
            if box is not None:
                records.append(self._record(det["image_id"], box, empty, float(det["score"])))
        return records
