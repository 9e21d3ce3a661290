"""MPII PCKh (SimpleBaseline / HRNet protocol) from prediction and ground-truth arrays, MPII joint order."""
import numpy as np

# MPII joint indices: 0 r_ankle 1 r_knee 2 r_hip 3 l_hip 4 l_knee 5 l_ankle 6 pelvis 7 thorax 8 upper_neck
# 9 head_top 10 r_wrist 11 r_elbow 12 r_shoulder 13 l_shoulder 14 l_elbow 15 l_wrist
GROUPS = (("Head", (9,)), ("Shoulder", (12, 13)), ("Elbow", (11, 14)), ("Wrist", (10, 15)),
          ("Hip", (2, 3)), ("Knee", (1, 4)), ("Ankle", (0, 5)))
EXCLUDED_FROM_MEAN = (6, 7)  # pelvis and thorax, as in the standard protocol


def pckh_per_joint(preds, gt, visible, head_size, threshold: float):
    """Per-joint PCKh (%) [K] and visible-joint counts [K]; joints never visible give NaN."""
    err = np.linalg.norm(np.asarray(preds, dtype=np.float64)[..., :2] - np.asarray(gt, dtype=np.float64), axis=-1)
    visible = np.asarray(visible, dtype=bool)
    scaled = err / np.maximum(np.asarray(head_size, dtype=np.float64), np.spacing(1))[:, None]
    hits = ((scaled <= threshold) & visible).sum(axis=0)
    count = visible.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, 100.0 * hits / count, np.nan), count


def _mean(pck, count) -> float:
    weight = count.astype(np.float64)
    weight[list(EXCLUDED_FROM_MEAN)] = 0.0
    valid = weight > 0
    return float((pck[valid] * weight[valid]).sum() / weight[valid].sum()) if valid.any() else float("nan")


def pckh(preds, gt, visible, head_size, thresholds=(0.5, 0.1)) -> dict:
    """{Head, Shoulder, ..., Ankle, Mean} at the first threshold, the same keys suffixed '@t' for the others."""
    out = {}
    for i, thr in enumerate(thresholds):
        pck, count = pckh_per_joint(preds, gt, visible, head_size, thr)
        suffix = "" if i == 0 else f"@{thr:g}"
        for name, joints in GROUPS:
            out[name + suffix] = float(np.nanmean(pck[list(joints)])) if count[list(joints)].any() else float("nan")
        out["Mean" + suffix] = _mean(pck, count)
    return out
