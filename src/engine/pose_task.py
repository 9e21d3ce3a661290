"""The pose task: datasets (COCO-format, MPII, synthetic), heatmap loss, and evaluation."""
import os

import torch
from torch.utils.data import DataLoader

from src.data.coco import CocoKeypoints
from src.data.mpii import MpiiKeypoints
from src.data.synthetic import ensure_synthetic_coco
from src.evaluation.pose_eval import evaluate_pose


def joints_mse(output: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Visibility-weighted heatmap MSE: 0.5 * mean over batch, joints and pixels of w * (pred - gt)^2."""
    per_joint = (output - target).pow(2).mean(dim=(2, 3))
    return 0.5 * (per_joint * weight).mean()


class PoseTask:
    """Top-down human pose estimation."""

    score_name = "AP"

    def __init__(self, cfg, use_dt: bool = False, margin: float = None):
        self.cfg = cfg
        self.use_dt = use_dt
        self.margin = cfg.DATASET.MARGIN if margin is None else margin

    def _path(self, rel: str) -> str:
        return rel if os.path.isabs(rel) else os.path.join(self.cfg.DATASET.ROOT, rel)

    def build_dataset(self, split: str):
        cfg, d = self.cfg, self.cfg.DATASET
        train = split == "train"
        if d.NAME == "synthetic":
            ensure_synthetic_coco(d.ROOT, d.SYNTHETIC_TRAIN, d.SYNTHETIC_VAL, d.SYNTHETIC_SEED)
        common = dict(input_size=tuple(cfg.MODEL.INPUT_SIZE), stride=cfg.MODEL.HEATMAP_STRIDE, sigma=cfg.MODEL.SIGMA,
                      train=train, margin=self.margin, max_samples=d.MAX_SAMPLES,
                      aug=dict(scale=d.AUG_SCALE, rotation=d.AUG_ROTATION, rotation_prob=d.AUG_ROTATION_PROB,
                               flip=d.AUG_FLIP, half_body_prob=d.AUG_HALF_BODY_PROB))
        ann = self._path(d.TRAIN_ANN if train else d.VAL_ANN)
        images = self._path(d.TRAIN_IMAGES if train else d.VAL_IMAGES)
        if d.NAME in ("coco", "synthetic"):
            use_dt = self.use_dt and not train
            return CocoKeypoints(ann, images, use_dt=use_dt, det_file=self._path(d.DET_FILE) if use_dt else None,
                                 det_score_threshold=d.DET_SCORE_THRESHOLD, **common)
        if d.NAME == "mpii":
            return MpiiKeypoints(ann, images, **common)
        raise ValueError(f"unknown DATASET.NAME '{d.NAME}' for TASK pose (coco, mpii, synthetic)")

    def criterion(self, output, batch):
        weight = batch["target_weight"] if self.cfg.LOSS.USE_TARGET_WEIGHT else torch.ones_like(batch["target_weight"])
        return joints_mse(output, batch["target"], weight)

    def test_options(self, args) -> dict:
        """test.py's options: --flip-test (without it TEST.FLIP_TEST decides), --visualize."""
        return dict(flip_test=args.flip_test or None, visualize=args.visualize)

    def evaluate(self, model, dataset, out_dir, batch_size, device, flip_test=None, visualize=False):
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=self.cfg.WORKERS)
        flip = self.cfg.TEST.FLIP_TEST if flip_test is None else flip_test
        return evaluate_pose(model, loader, dataset, flip_test=flip, out_dir=out_dir,
                             oks_nms_thr=self.cfg.TEST.OKS_NMS_THRESHOLD, conf_thr=self.cfg.TEST.CONFIDENCE_THRESHOLD,
                             device=device, visualize=visualize)


def build_task(cfg, **kwargs):
    if cfg.TASK == "pose":
        return PoseTask(cfg, **kwargs)
    if cfg.TASK == "classification":
        from src.engine.classification_task import ClassificationTask
        return ClassificationTask(cfg)
    if cfg.TASK == "segmentation":
        from src.engine.segmentation_task import SegmentationTask
        return SegmentationTask(cfg)
    raise ValueError(f"unknown TASK '{cfg.TASK}' (pose, classification, segmentation)")
