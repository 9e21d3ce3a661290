"""Segmentation metrics from a confusion matrix accumulated over a whole set.

`confusion[t, p]` counts the pixels of true class t predicted as p; pixels labelled IGNORE (or any id
>= num_classes) are not counted. IoU_c = TP / (TP + FP + FN); a class that is neither in the ground truth nor
predicted anywhere in the set has no IoU (NaN) and is left out of the mean (mIoU), as in mmsegmentation.
"""
from typing import Sequence

import numpy as np
import torch


def confusion_matrix(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 [C, C] confusion matrix of predicted and true class ids (tensors of the same shape)."""
    valid = (label >= 0) & (label < num_classes)
    index = label[valid].long() * num_classes + pred[valid].long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes).cpu()


def seg_metrics(confusion, classes: Sequence[str]) -> dict:
    """mIoU, pixel accuracy, mean class accuracy and per-class IoU / accuracy of a confusion matrix."""
    cm = np.asarray(confusion, dtype=np.float64)
    tp, gt, pred = np.diag(cm), cm.sum(1), cm.sum(0)
    union = gt + pred - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt > 0, tp / gt, np.nan)
    total = cm.sum()
    present = ~np.isnan(iou)
    return {"mIoU": float(iou[present].mean()) if present.any() else 0.0,
            "pixel_acc": float(tp.sum() / total) if total else 0.0,
            "mean_acc": float(np.nanmean(acc)) if (gt > 0).any() else 0.0,
            "per_class": [{"class": name, "IoU": _num(i), "acc": _num(a)} for name, i, a in zip(classes, iou, acc)]}


def _num(v: float):
    return None if np.isnan(v) else float(v)


def iou_table(per_class: Sequence[dict]) -> str:
    """Markdown table of the per-class IoU and accuracy ("-": the class is absent from the set)."""
    def cell(v):
        return "-" if v is None else f"{v:.4f}"
    rows = [f"| {i} | {c['class']} | {cell(c['IoU'])} | {cell(c['acc'])} |" for i, c in enumerate(per_class)]
    return "\n".join(["| id | class | IoU | acc |", "|---|---|---|---|"] + rows)
