"""Object keypoint similarity and greedy OKS-NMS."""
import numpy as np


def oks(ref: np.ndarray, others: np.ndarray, ref_area: float, other_areas: np.ndarray, sigmas) -> np.ndarray:
    """OKS between keypoints ref [K, 2+] and others [M, K, 2+], with the mean of both areas as scale."""
    var = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2
    d2 = ((others[..., :2] - ref[None, :, :2]) ** 2).sum(axis=-1)
    area = (ref_area + np.asarray(other_areas, dtype=np.float64))[:, None] / 2.0 + np.spacing(1)
    return np.exp(-d2 / var[None, :] / area / 2.0).mean(axis=1)


def oks_nms(keypoints, scores, areas, threshold: float, sigmas) -> list:
    """Indices kept by greedy OKS-NMS: take the best remaining candidate, drop all with OKS > threshold to it.

    keypoints [M, K, 2+], scores [M], areas [M]. Every remaining candidate is tested against every kept one
    (no candidate is skipped after a removal).
    """
    kpts = np.asarray(keypoints, dtype=np.float64)
    areas = np.asarray(areas, dtype=np.float64)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        if rest.size:
            rest = rest[oks(kpts[best], kpts[rest], areas[best], areas[rest], sigmas) <= threshold]
        order = rest
    return keep
