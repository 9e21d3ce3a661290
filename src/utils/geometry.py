"""Top-down crop geometry shared by the data pipeline and the decoder.

Conventions (used everywhere, proven by tools/eval_oracle.py):
- Image coordinates are continuous with pixel centres at integers (pixel i covers [i-0.5, i+0.5]).
- A crop is given by `center` (x, y) and `scale` = (w, h) of the box in image pixels, already
  enlarged by the margin and fixed to the input aspect ratio; `rotation` in degrees (counter-clockwise).
- The affine maps the box onto the input so that the box edges land on the input edges:
  box left edge (cx - w/2) -> -0.5, right edge -> W - 0.5.
- A heatmap of stride s covers the input with pixel u centred at input coordinate s*u + (s-1)/2,
  so `input = s * u + (s - 1) / 2`. With this convention a horizontally flipped heatmap lines up
  with the original one by a plain flip (no one-pixel shift).
"""
import math

import numpy as np


def box_to_center_scale(x, y, w, h, aspect_ratio: float, margin: float = 1.25):
    """COCO box (x, y, w, h) -> center and (w, h) fixed to `aspect_ratio` = width / height, times margin."""
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float64)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return center, np.array([w * margin, h * margin], dtype=np.float64)


def get_affine_transform(center, scale, rotation: float, output_size, inv: bool = False) -> np.ndarray:
    """2x3 matrix mapping image -> input (or input -> image with inv=True).

    output_size is (width, height) of the input.
    """
    out_w, out_h = float(output_size[0]), float(output_size[1])
    sx = out_w / float(scale[0])
    sy = out_h / float(scale[1])
    theta = math.radians(rotation)
    cos, sin = math.cos(theta), math.sin(theta)
    # image -> box-centred frame -> rotate -> scale -> input frame whose centre is ((W-1)/2, (H-1)/2)
    rot = np.array([[cos, sin], [-sin, cos]])
    lin = np.diag([sx, sy]) @ rot
    t = np.array([(out_w - 1) * 0.5, (out_h - 1) * 0.5]) - lin @ np.asarray(center, dtype=np.float64)
    mat = np.concatenate([lin, t[:, None]], axis=1)
    if inv:
        mat = invert_affine(mat)
    return mat


def invert_affine(mat: np.ndarray) -> np.ndarray:
    lin_inv = np.linalg.inv(mat[:, :2])
    return np.concatenate([lin_inv, (-lin_inv @ mat[:, 2])[:, None]], axis=1)


def affine_points(points, mat: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to an (N, 2) array of points."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ mat[:, :2].T + mat[:, 2]


def input_to_heatmap(points, stride: int) -> np.ndarray:
    """Input coordinates -> heatmap coordinates (see module docstring)."""
    return (np.asarray(points, dtype=np.float64) - (stride - 1) * 0.5) / stride


def heatmap_to_input(points, stride: int) -> np.ndarray:
    """Heatmap coordinates -> input coordinates (inverse of input_to_heatmap)."""
    return np.asarray(points, dtype=np.float64) * stride + (stride - 1) * 0.5
