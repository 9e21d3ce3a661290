"""Gaussian heatmap targets at 1/stride of the input, centred at the sub-pixel joint position."""
import numpy as np

from src.utils.geometry import input_to_heatmap


def render_targets(joints_input: np.ndarray, visible: np.ndarray, input_size, stride: int, sigma: float):
    """Heatmaps [K, H/s, W/s] (peak value 1 at the exact joint) and target weights [K].

    `joints_input` [K, 2] are input (crop) coordinates. A joint gets weight 0 and an all-zero heatmap when it is
    not labelled (`visible` false) or lies outside the crop [-0.5, W-0.5] x [-0.5, H-0.5].
    """
    in_w, in_h = int(input_size[0]), int(input_size[1])
    hm_w, hm_h = in_w // stride, in_h // stride
    pts = np.asarray(joints_input, dtype=np.float64).reshape(-1, 2)
    inside = (pts[:, 0] >= -0.5) & (pts[:, 0] <= in_w - 0.5) & (pts[:, 1] >= -0.5) & (pts[:, 1] <= in_h - 0.5)
    weight = (np.asarray(visible, dtype=bool) & inside).astype(np.float32)
    mu = input_to_heatmap(pts, stride)
    gx = np.exp(-((np.arange(hm_w)[None, :] - mu[:, :1]) ** 2) / (2.0 * sigma ** 2))
    gy = np.exp(-((np.arange(hm_h)[None, :] - mu[:, 1:]) ** 2) / (2.0 * sigma ** 2))
    target = gy[:, :, None] * gx[:, None, :] * weight[:, None, None]
    return target.astype(np.float32), weight
