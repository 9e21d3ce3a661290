"""Pose evaluation over a DataLoader: inference (+ flip test), decoding, then COCOeval or PCKh by dataset kind.

The dataset is used by duck typing only: `.flip_pairs`, `.skeleton`, `.image_path(image_id)`, and either
`.coco` + `.sigmas` (COCO-style) or `.pckh_ground_truth()` (MPII).
"""
import os

import numpy as np
import torch
from tqdm import tqdm

from src.evaluation.coco_eval import coco_keypoint_eval, coco_results
from src.utils.atomic import write_json_atomic
from src.evaluation.decode import decode_heatmaps
from src.evaluation.flip import infer_heatmaps
from src.evaluation.pckh import pckh
from src.evaluation.visualize import save_visualizations

VIS_MAX_IMAGES = 20


def predict_keypoints(model, loader, flip_pairs, flip_test: bool, device="cpu") -> dict:
    """Decoded predictions of every sample: preds [N, K, 2] (image px), maxvals [N, K], and the batch's
    center, scale, score, image_id, index."""
    keys = ("center", "scale", "score", "image_id", "index")
    parts = {k: [] for k in ("preds", "maxvals") + keys}
    was_training = getattr(model, "training", False)
    if was_training:
        model.eval()
    try:
        for batch in tqdm(loader, desc="eval", leave=False, disable=None):
            images = batch["image"].to(device)
            heatmaps = infer_heatmaps(model, images, flip_pairs, flip_test).float().cpu().numpy()
            stride = images.shape[-1] // heatmaps.shape[-1]
            preds, maxvals = decode_heatmaps(heatmaps, batch["center"].numpy(), batch["scale"].numpy(),
                                             batch["rotation"].numpy(), stride)
            parts["preds"].append(preds)
            parts["maxvals"].append(maxvals)
            for k in keys:
                parts[k].append(torch.as_tensor(batch[k]).numpy())
    finally:
        if was_training:
            model.train()
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}


def evaluate_pose(model, loader, dataset, flip_test: bool = False, out_dir: str = None, oks_nms_thr: float = 0.9,
                  conf_thr: float = 0.2, device="cpu", visualize: bool = False) -> dict:
    """Metrics of `model` on `dataset` (AP... for COCO-style, PCKh for MPII) with `score` = AP or PCKh Mean.

    Writes the predictions (COCO results format for COCO-style data) to out_dir and, with `visualize`,
    PNGs of the first images to out_dir/vis.
    """
    out = predict_keypoints(model, loader, dataset.flip_pairs, flip_test, device)
    empty = len(out["index"]) == 0
    kpts = [] if empty else np.concatenate([out["preds"], out["maxvals"][..., None]], axis=-1)
    if hasattr(dataset, "pckh_ground_truth"):
        if empty:
            raise ValueError("PCKh evaluation: the dataset has no persons")
        gt = dataset.pckh_ground_truth()
        idx = out["index"].astype(np.int64)
        metrics = pckh(out["preds"], gt["joints"][idx], gt["visible"][idx], gt["head_size"][idx])
        metrics["score"] = metrics["Mean"]
        results = [dict(index=int(i), image_id=int(img), keypoints=[round(float(v), 3) for v in k.ravel()])
                   for i, img, k in zip(idx, out["image_id"], kpts)]
        name = "pckh_predictions.json"
    else:
        results = [] if empty else coco_results(out["preds"], out["maxvals"], out["score"],
                                                np.prod(out["scale"], axis=-1), out["image_id"], dataset.sigmas,
                                                oks_nms_thr, conf_thr)
        metrics = coco_keypoint_eval(dataset.coco, results, dataset.sigmas, image_ids=out["image_id"])
        metrics["score"] = metrics["AP"]
        name = "keypoints_results.json"
    if out_dir:
        write_json_atomic(os.path.join(out_dir, name), results)
        if visualize:
            poses = {}
            for r in results:
                poses.setdefault(r["image_id"], []).append(r["keypoints"])
            save_visualizations(poses, dataset.image_path, dataset.skeleton, os.path.join(out_dir, "vis"),
                                conf_thr, VIS_MAX_IMAGES)
    return metrics


def format_metric_table(metrics: dict) -> str:
    """Two-row markdown table of the metrics (the `score` alias left out)."""
    names = [k for k in metrics if k != "score"]
    return "\n".join(["| " + " | ".join(names) + " |", "|" + "---|" * len(names),
                      "| " + " | ".join(f"{metrics[k]:.4f}" for k in names) + " |"])
