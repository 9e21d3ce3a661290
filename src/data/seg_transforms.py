"""Segmentation transforms on an (image HxWx3 uint8, label HxW uint8) pair, HRNet-seg style.

Images are resized bilinearly, label maps by nearest neighbour: a label map only ever holds ids it held
before, plus `IGNORE` where a crop reaches beyond the image (the image is padded there with the mean
colour, i.e. 0 once normalised). Sizes are (width, height), as MODEL.INPUT_SIZE.
"""
from typing import Sequence, Tuple

import numpy as np
from PIL import Image

from src.data.transforms import IMAGENET_MEAN

IGNORE = 255  # label of pixels that count in neither loss nor metric


def scaled_size(width: int, height: int, base_size: int, factor: float = 1.0) -> Tuple[int, int]:
    """(w, h) after resizing the long side to `base_size` (0: keep the size) and then by `factor`."""
    s = factor * (base_size / max(width, height) if base_size else 1.0)
    return max(1, int(round(width * s))), max(1, int(round(height * s)))


def resize_image(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize(tuple(size), Image.BILINEAR))


def resize_label(label: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    if (label.shape[1], label.shape[0]) == tuple(size):
        return label
    return np.asarray(Image.fromarray(label).resize(tuple(size), Image.NEAREST))


def pad_to(image: np.ndarray, label: np.ndarray, size: Tuple[int, int]):
    """Pad bottom and right up to at least `size`: the image with the mean colour, the label with IGNORE."""
    h, w = label.shape
    ph, pw = max(size[1] - h, 0), max(size[0] - w, 0)
    if not (ph or pw):
        return image, label
    padded = np.empty((h + ph, w + pw, 3), np.uint8)
    padded[:] = np.round(IMAGENET_MEAN * 255).astype(np.uint8)
    padded[:h, :w] = image
    return padded, np.pad(label, ((0, ph), (0, pw)), constant_values=IGNORE)


def flip_pair(image: np.ndarray, label: np.ndarray):
    """Horizontal mirror of both (the classes have no left/right variants, so labels stay as they are)."""
    return image[:, ::-1], label[:, ::-1]


def train_pair(image: np.ndarray, label: np.ndarray, crop: Sequence[int], base_size: int,
               scale_range: Sequence[float], flip: bool, rng=np.random):
    """Random scale (uniform in `scale_range`, relative to `base_size`), pad, random crop of `crop` (w, h),
    random horizontal flip (when `flip`)."""
    factor = float(rng.uniform(scale_range[0], scale_range[1]))
    size = scaled_size(label.shape[1], label.shape[0], base_size, factor)
    image, label = pad_to(resize_image(image, size), resize_label(label, size), crop)
    h, w = label.shape
    y, x = int(rng.randint(0, h - crop[1] + 1)), int(rng.randint(0, w - crop[0] + 1))
    image, label = image[y:y + crop[1], x:x + crop[0]], label[y:y + crop[1], x:x + crop[0]]
    if flip and rng.rand() < 0.5:
        image, label = flip_pair(image, label)
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


def eval_image(image: np.ndarray, base_size: int) -> np.ndarray:
    """The image an evaluation feeds the network: its long side resized to `base_size` (0: as it is)."""
    return resize_image(image, scaled_size(image.shape[1], image.shape[0], base_size))
