"""COCO keypoint results (instance scores, OKS-NMS, results JSON) and the pycocotools COCOeval wrapper."""
import contextlib
import io

import numpy as np
from pycocotools.cocoeval import COCOeval

from src.evaluation.nms import oks_nms

COCO_METRICS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def instance_scores(maxvals: np.ndarray, box_scores: np.ndarray, conf_thr: float) -> np.ndarray:
    """Box score x mean maxval of the joints above `conf_thr` (0 when no joint passes)."""
    above = maxvals > conf_thr
    count = above.sum(axis=1)
    mean = np.where(count > 0, (maxvals * above).sum(axis=1) / np.maximum(count, 1), 0.0)
    return np.asarray(box_scores, dtype=np.float64) * mean


def coco_results(preds, maxvals, box_scores, areas, image_ids, sigmas, oks_nms_thr: float, conf_thr: float) -> list:
    """COCO results-format dicts (one per kept person) after per-image OKS-NMS.

    preds [N, K, 2] image coordinates, maxvals [N, K], box_scores/areas/image_ids [N].
    """
    maxvals = np.asarray(maxvals, dtype=np.float64)
    kpts = np.concatenate([np.asarray(preds, dtype=np.float64), maxvals[..., None]], axis=-1)
    scores = instance_scores(maxvals, box_scores, conf_thr)
    image_ids = np.asarray(image_ids)
    results = []
    for image_id in np.unique(image_ids):
        idx = np.flatnonzero(image_ids == image_id)
        keep = oks_nms(kpts[idx], scores[idx], np.asarray(areas)[idx], oks_nms_thr, sigmas)
        for j in idx[keep]:
            results.append(dict(image_id=int(image_id), category_id=1,
                                keypoints=[round(float(v), 3) for v in kpts[j].ravel()], score=float(scores[j])))
    return results


def coco_keypoint_eval(coco_gt, results: list, sigmas, image_ids=None) -> dict:
    """COCOeval(keypoints) of `results` against `coco_gt` -> {AP, AP50, AP75, APm, APl, AR, ...}.

    `image_ids` restricts the evaluation to those images. Without results every metric is 0. As in pycocotools,
    a metric over an empty area range (e.g. no medium persons) is -1.
    """
    if not results:
        return {name: 0.0 for name in COCO_METRICS}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes([dict(r) for r in results])
        evaluator = COCOeval(coco_gt, coco_dt, "keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        if image_ids is not None:
            evaluator.params.imgIds = sorted({int(i) for i in image_ids})
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(v) for name, v in zip(COCO_METRICS, evaluator.stats)}
