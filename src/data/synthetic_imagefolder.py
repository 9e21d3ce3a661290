"""A synthetic ImageFolder (`train/<class>/*.png`, `val/<class>/*.png`) of procedurally drawn shapes and textures.

Ten classes: six shapes (circle, square, triangle, cross, ring, star) and four textures (horizontal stripes,
vertical stripes, checkerboard, dots), interleaved, with random colours, sizes, positions, rotations,
gradient backgrounds, clutter lines and pixel noise. Image i of a split depends only on (seed, split, i): same seed, same bytes.
The folder is generated once (src/data/generated.py: a temporary sibling renamed into place).
"""
import math
import os
from typing import Tuple

import numpy as np
from PIL import Image, ImageDraw

from src.data.generated import ensure_generated

CLASSES = ("circle", "stripes_horizontal", "square", "checkerboard", "triangle", "stripes_vertical",
           "cross", "dots", "ring", "star")  # shapes and textures alternate, so any first-K subset mixes both
SHAPES = ("circle", "square", "triangle", "cross", "ring", "star")
_SPLITS = {"train": 0, "val": 1}
_SS = 2  # supersampling factor (anti-aliasing)


def _colour(rng) -> Tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def _contrasting(rng, ref) -> Tuple[int, int, int]:
    for _ in range(20):
        c = _colour(rng)
        if sum(abs(a - b) for a, b in zip(c, ref)) > 180:
            return c
    return tuple(255 - v for v in ref)


def _background(rng, n: int) -> np.ndarray:
    c0, c1 = np.array(_colour(rng), float), np.array(_colour(rng), float)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:n, 0:n] / max(n - 1, 1)
    t = (np.cos(angle) * xx + np.sin(angle) * yy)
    t = (t - t.min()) / max(np.ptp(t), 1e-6)
    return c0 * (1 - t[..., None]) + c1 * t[..., None]


def _polygon(cx, cy, radius, angle, points):
    """Vertices at (radius_k, angle + theta_k) for (radius factor, theta) pairs."""
    return [(cx + radius * r * math.cos(angle + th), cy + radius * r * math.sin(angle + th)) for r, th in points]


def _draw_shape(draw: ImageDraw.ImageDraw, name: str, rng, n: int, colour) -> None:
    r = rng.uniform(0.18, 0.36) * n
    cx, cy = rng.uniform(r, n - r), rng.uniform(r, n - r)
    a = rng.uniform(0, 2 * math.pi)
    if name == "circle":
        e = rng.uniform(0.85, 1.15)
        draw.ellipse([cx - r * e, cy - r / e, cx + r * e, cy + r / e], fill=colour)
    elif name == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=max(1, int(r * rng.uniform(0.2, 0.4))))
    elif name == "square":
        draw.polygon(_polygon(cx, cy, r, a, [(1, k * math.pi / 2 + math.pi / 4) for k in range(4)]), fill=colour)
    elif name == "triangle":
        draw.polygon(_polygon(cx, cy, r, a, [(1, k * 2 * math.pi / 3) for k in range(3)]), fill=colour)
    elif name == "star":
        draw.polygon(_polygon(cx, cy, r, a, [(1 if k % 2 == 0 else 0.45, k * math.pi / 5) for k in range(10)]),
                     fill=colour)
    elif name == "cross":
        t = rng.uniform(0.25, 0.4)
        for rot in (0, math.pi / 2):
            draw.polygon(_polygon(cx, cy, r, a + rot, [(math.hypot(1, t), math.atan2(s * t, c))
                                                       for c, s in ((1, 1), (-1, 1), (-1, -1), (1, -1))]),
                         fill=colour)


def _texture(name: str, rng, n: int) -> np.ndarray:
    """Boolean [n, n] pattern of a texture class."""
    yy, xx = np.mgrid[0:n, 0:n].astype(float)
    period = rng.uniform(0.09, 0.2) * n
    tilt = rng.uniform(-0.3, 0.3)
    phase = rng.uniform(0, 1)
    if name == "stripes_horizontal":
        u = -math.sin(tilt) * xx + math.cos(tilt) * yy
        return ((u / period + phase) % 1) < 0.5
    if name == "stripes_vertical":
        u = math.cos(tilt) * xx + math.sin(tilt) * yy
        return ((u / period + phase) % 1) < 0.5
    if name == "checkerboard":
        u = math.cos(tilt) * xx + math.sin(tilt) * yy
        v = -math.sin(tilt) * xx + math.cos(tilt) * yy
        return (np.floor(u / period + phase) + np.floor(v / period + phase)) % 2 == 0
    # dots: a jittered grid of small discs
    mask = np.zeros((n, n), bool)
    step = period * 1.2
    rad = step * rng.uniform(0.18, 0.3)
    for gy in np.arange(rng.uniform(0, step), n, step):
        for gx in np.arange(rng.uniform(0, step), n, step):
            jy, jx = gy + rng.uniform(-0.2, 0.2) * step, gx + rng.uniform(-0.2, 0.2) * step
            mask |= (yy - jy) ** 2 + (xx - jx) ** 2 <= rad ** 2
    return mask


def draw_sample(label: int, rng: np.random.Generator, size: int) -> Image.Image:
    """One RGB image of class `label` (index into CLASSES)."""
    name, n = CLASSES[label], size * _SS
    canvas = _background(rng, n)
    fg = _contrasting(rng, tuple(int(v) for v in canvas[n // 2, n // 2]))
    if name in SHAPES:
        img = Image.fromarray(canvas.astype(np.uint8))
        _draw_shape(ImageDraw.Draw(img), name, rng, n, fg)
        canvas = np.asarray(img, float)
    else:  # texture inside a random rectangle covering most of the image
        h, w = (rng.uniform(0.55, 0.95, 2) * n).astype(int)
        y0, x0 = rng.integers(0, n - h + 1), rng.integers(0, n - w + 1)
        region = np.zeros((n, n), bool)
        region[y0:y0 + h, x0:x0 + w] = True
        canvas[_texture(name, rng, n) & region] = fg
    img = Image.fromarray(canvas.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(0, 4))):  # clutter lines
        pts = [tuple(rng.uniform(0, n, 2)) for _ in range(2)]
        draw.line(pts, fill=_colour(rng), width=int(rng.integers(1, 2 * _SS + 1)))
    img = img.resize((size, size), Image.BOX)
    arr = np.asarray(img, float) + rng.normal(0, rng.uniform(3, 15), (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _write_split(root: str, split: str, count: int, num_classes: int, seed: int, size: int) -> None:
    for name in CLASSES[:num_classes]:
        os.makedirs(os.path.join(root, split, name), exist_ok=True)
    for i in range(count):
        label = i % num_classes
        rng = np.random.default_rng([seed, _SPLITS[split], i])
        draw_sample(label, rng, size).save(os.path.join(root, split, CLASSES[label], f"{i:06d}.png"))


def ensure_synthetic_imagefolder(root: str, num_train: int, num_val: int, num_classes: int = 10, seed: int = 0,
                                 size: int = 64) -> str:
    """Generate the set into `root` unless it is there already (with the same settings). Returns `root`."""
    if not 2 <= num_classes <= len(CLASSES):
        raise ValueError(f"synthetic_imagefolder: DATASET.NUM_CLASSES must be in 2..{len(CLASSES)}, got {num_classes}")
    info = {"format": "fabricnas.synthetic_imagefolder/1", "train": num_train, "val": num_val,
            "classes": num_classes, "seed": seed, "size": size}

    def write(folder: str) -> None:
        for split, count in (("train", num_train), ("val", num_val)):
            _write_split(folder, split, count, num_classes, seed, size)

    return ensure_generated(root, info, "synthetic ImageFolder", write)
