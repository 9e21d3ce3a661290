"""Heatmaps -> keypoints: argmax with a quarter-pixel shift, then heatmap -> input -> image coordinates."""
import numpy as np

from src.utils.geometry import affine_points, get_affine_transform, heatmap_to_input


def heatmap_maxima(heatmaps: np.ndarray):
    """Per-joint argmax of [N, K, H, W] heatmaps, shifted 0.25 px toward the higher neighbour.

    Returns heatmap coordinates [N, K, 2] (x, y) and maxvals [N, K]. A channel whose maximum is <= 0 gives
    the coordinate of its first pixel.
    """
    hm = np.asarray(heatmaps, dtype=np.float64)
    n, k, h, w = hm.shape
    flat = hm.reshape(n, k, h * w)
    idx = flat.argmax(axis=2)
    maxvals = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    px, py = idx % w, idx // w
    coords = np.stack([px, py], axis=-1).astype(np.float64)
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    inner_x = (px > 0) & (px < w - 1)
    inner_y = (py > 0) & (py < h - 1)
    dx = hm[ni, ki, py, np.minimum(px + 1, w - 1)] - hm[ni, ki, py, np.maximum(px - 1, 0)]
    dy = hm[ni, ki, np.minimum(py + 1, h - 1), px] - hm[ni, ki, np.maximum(py - 1, 0), px]
    coords[..., 0] += 0.25 * np.sign(dx) * inner_x
    coords[..., 1] += 0.25 * np.sign(dy) * inner_y
    return coords, maxvals


def decode_heatmaps(heatmaps, centers, scales, rotations, stride: int):
    """Image coordinates [N, K, 2] and maxvals [N, K] of heatmaps predicted on crops (center, scale, rotation)."""
    coords, maxvals = heatmap_maxima(heatmaps)
    n, k, h, w = np.shape(heatmaps)
    input_size = (w * stride, h * stride)
    pts = heatmap_to_input(coords, stride)
    preds = np.empty_like(pts)
    for i in range(n):
        inv = get_affine_transform(centers[i], scales[i], float(rotations[i]), input_size, inv=True)
        preds[i] = affine_points(pts[i], inv)
    return preds, maxvals
