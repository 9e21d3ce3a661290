"""The segmentation task: Cityscapes / ADE20K / COCO person masks / synthetic sets, cross entropy with
ignored pixels (optional OHEM, label smoothing), mIoU evaluation (flip and multi-scale test)."""
import os

import torch
import torch.nn.functional as F

from src.data import ade20k, cityscapes, synthetic_seg
from src.data.coco_person import CocoPersonSeg
from src.data.seg_dataset import LabelPngDataset
from src.data.seg_transforms import IGNORE
from src.evaluation.seg_eval import evaluate_segmentation

PNG_SETS = {  # DATASET.NAME -> (classes, stored id -> class id table, sample lister, name in errors)
    "synthetic_seg": (synthetic_seg.CLASSES, synthetic_seg.LUT, synthetic_seg.synthetic_seg_samples,
                      "synthetic segmentation"),
    "cityscapes": (cityscapes.CLASSES, cityscapes.LUT, cityscapes.cityscapes_samples, "Cityscapes labelIds"),
    "ade20k": (ade20k.CLASSES, ade20k.LUT, ade20k.ade20k_samples, "ADE20K"),
}


def seg_loss(logits: torch.Tensor, label: torch.Tensor, label_smoothing: float = 0.0, ohem: bool = False,
             ohem_thresh: float = 0.9, ohem_min_kept: int = 100000) -> torch.Tensor:
    """Cross entropy of logits [N, C, h, w] (upsampled bilinearly to the label map [N, H, W]) over the pixels
    not labelled IGNORE. With `ohem` only the hard pixels count: those whose true-class probability is below
    `ohem_thresh`, and at least the `ohem_min_kept` lowest of the batch (all its pixels when it has fewer)."""
    if logits.shape[-2:] != label.shape[-2:]:
        logits = F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)
    if not ohem:
        return F.cross_entropy(logits, label, ignore_index=IGNORE, label_smoothing=label_smoothing)
    pixel = F.cross_entropy(logits, label, ignore_index=IGNORE, label_smoothing=label_smoothing,
                            reduction="none").flatten()
    valid = label.flatten() != IGNORE
    if not valid.any():
        return pixel.sum() * 0.0
    pixel = pixel[valid]
    with torch.no_grad():
        true = label.flatten()[valid]
        prob = logits.detach().float().softmax(1).permute(0, 2, 3, 1).reshape(-1, logits.shape[1])[valid]
        prob = prob.gather(1, true[:, None]).squeeze(1)
        keep = max(min(int(ohem_min_kept), prob.numel()), int((prob < ohem_thresh).sum()))
        hardest = prob.argsort()[:keep]
    return pixel[hardest].mean()


class SegmentationTask:
    """Semantic segmentation (TASK: segmentation); score = mIoU (a fraction)."""

    score_name = "mIoU"

    def __init__(self, cfg):
        self.cfg = cfg

    def _path(self, rel: str) -> str:
        return rel if os.path.isabs(rel) else os.path.join(self.cfg.DATASET.ROOT, rel)

    def build_dataset(self, split: str):
        if split not in ("train", "val"):
            raise ValueError(f"unknown split '{split}' (train, val)")
        cfg, d = self.cfg, self.cfg.DATASET
        train = split == "train"
        common = dict(train=train, crop_size=tuple(cfg.MODEL.INPUT_SIZE), base_size=d.BASE_SIZE,
                      scale_range=tuple(d.SCALE_RANGE), flip=d.AUG_FLIP, max_samples=d.MAX_SAMPLES)
        if d.NAME == "synthetic_seg":
            synthetic_seg.ensure_synthetic_seg(d.ROOT, d.SYNTHETIC_TRAIN, d.SYNTHETIC_VAL, d.SYNTHETIC_SEED)
        if d.NAME in PNG_SETS:
            classes, lut, samples, what = PNG_SETS[d.NAME]
            dataset = LabelPngDataset(samples(d.ROOT, split), classes, lut, what, **common)
        elif d.NAME == "coco_person":
            dataset = CocoPersonSeg(self._path(d.TRAIN_ANN if train else d.VAL_ANN),
                                    self._path(d.TRAIN_IMAGES if train else d.VAL_IMAGES), **common)
        else:
            raise ValueError(f"unknown DATASET.NAME '{d.NAME}' for TASK segmentation "
                             f"({', '.join(list(PNG_SETS) + ['coco_person'])})")
        if dataset.num_classes != d.NUM_CLASSES:
            raise ValueError(f"DATASET.NUM_CLASSES is {d.NUM_CLASSES} but {d.NAME} has {dataset.num_classes} classes")
        return dataset

    def criterion(self, output, batch):
        loss = self.cfg.LOSS
        return seg_loss(output, batch["label"], loss.LABEL_SMOOTHING, loss.OHEM, loss.OHEM_THRESH, loss.OHEM_MIN_KEPT)

    def test_options(self, args) -> dict:
        """test.py's options: --flip-test, --multi-scale, --visualize; predictions are written as PNGs."""
        return dict(flip_test=args.flip_test or None, scales=args.multi_scale or None, visualize=args.visualize,
                    save_predictions=True)

    def evaluate(self, model, dataset, out_dir, batch_size, device, flip_test=None, scales=None, visualize=False,
                 save_predictions=False) -> dict:
        """mIoU of `model` on `dataset` (one image at a time, `batch_size` unused); TEST.FLIP_TEST and
        TEST.SCALES unless `flip_test` / `scales` are given."""
        t = self.cfg.TEST
        scales = tuple(t.SCALES if scales is None else scales)
        if not scales or not all(0 < s <= 8 for s in scales):
            raise ValueError(f"test scales (TEST.SCALES, --multi-scale) must be in (0, 8], got {list(scales)}")
        return evaluate_segmentation(model, dataset, device, t.FLIP_TEST if flip_test is None else flip_test,
                                     scales, out_dir, save_predictions, visualize, self.cfg.WORKERS)
