"""Segmentation evaluation: inference with flip and multi-scale test (HRNet-seg conventions), the confusion
matrix over the whole set, mIoU; prediction PNGs and coloured overlays.

The dataset is used by duck typing: items {"image" [3, h, w] (long side at the base size), "label" [H, W] at
the image's own size, "index"}, `.classes`, `.sample_name(i)`, `.load(i)` (the original image, for overlays).
"""
import os
from typing import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from src.evaluation.miou import confusion_matrix, iou_table, seg_metrics
from src.evaluation.visualize import label_palette, save_label_png, save_overlay
from src.utils.atomic import write_json_atomic

VIS_MAX_IMAGES = 20  # --visualize: overlays of the first images only (prediction PNGs are written for all)


@torch.no_grad()
def segment_probs(model, image: torch.Tensor, out_hw: Sequence[int], scales: Sequence[float] = (1.0,),
                  flip: bool = False) -> torch.Tensor:
    """Class probabilities [N, C, *out_hw]: for every scale (the image resized by that factor) and, with
    `flip`, its mirror (logits flipped back), the logits upsampled bilinearly to `out_hw` and softmaxed;
    all averaged."""
    h, w = image.shape[-2:]
    total, views = 0.0, 0
    for s in scales:
        x = image if s == 1 else F.interpolate(image, size=(max(1, round(h * s)), max(1, round(w * s))),
                                               mode="bilinear", align_corners=False, antialias=s < 1)
        for mirrored in (False, True) if flip else (False,):
            logits = model(x.flip(3) if mirrored else x)
            logits = logits.flip(3) if mirrored else logits
            probs = F.interpolate(logits.float(), size=tuple(out_hw), mode="bilinear", align_corners=False).softmax(1)
            total, views = total + probs, views + 1
    return total / views


def evaluate_segmentation(model, dataset, device="cpu", flip: bool = False, scales: Sequence[float] = (1.0,),
                          out_dir: str = "", save_predictions: bool = False, visualize: bool = False,
                          workers: int = 0) -> dict:
    """mIoU (= `score`), pixel and mean class accuracy, per-class IoU (`per_class`, and `table` as text) over
    `dataset`, one image at a time; written to out_dir/seg_metrics.json. `save_predictions`: every predicted
    class-id map as out_dir/pred/<image>.png; `visualize`: overlays of the first images in out_dir/vis."""
    if len(dataset) == 0:
        raise ValueError("segmentation evaluation: the dataset is empty")
    num_classes = len(dataset.classes)
    palette = label_palette(num_classes)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=workers)
    was_training = model.training
    model.eval()
    try:
        for n, batch in enumerate(tqdm(loader, desc="eval", leave=False, disable=None)):
            label = batch["label"].to(device)
            pred = segment_probs(model, batch["image"].to(device), label.shape[-2:], scales, flip).argmax(1)
            confusion += confusion_matrix(pred, label, num_classes)
            index = int(batch["index"][0])
            name = dataset.sample_name(index)
            pred = pred[0].to(torch.uint8).cpu().numpy()
            if out_dir and save_predictions:
                save_label_png(pred, os.path.join(out_dir, "pred", f"{name}.png"), palette)
            if out_dir and visualize and n < VIS_MAX_IMAGES:
                save_overlay(dataset.load(index)[0], pred, os.path.join(out_dir, "vis", f"{name}.png"), palette)
    finally:
        model.train(was_training)
    metrics = seg_metrics(confusion, dataset.classes)
    metrics.update(score=metrics["mIoU"], num_images=len(dataset))
    if out_dir:
        write_json_atomic(os.path.join(out_dir, "seg_metrics.json"),
                          {**metrics, "flip_test": flip, "scales": list(scales)}, indent=1)
    metrics["table"] = iou_table(metrics["per_class"])
    return metrics
