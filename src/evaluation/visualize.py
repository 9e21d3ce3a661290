"""PNGs of predictions: keypoints and skeletons drawn on their images; segmentation label maps and overlays."""
import os

import numpy as np
from PIL import Image, ImageDraw

from src.utils.atomic import atomic_write


def draw_poses(image_path: str, poses, skeleton, out_path: str, conf_thr: float = 0.2) -> None:
    """Draw every pose [K, 3] (x, y, confidence) of `poses` on the image and save a PNG at `out_path`.

    Joints at or below `conf_thr` and limbs touching them are not drawn.
    """
    with Image.open(image_path) as img:
        canvas = img.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    radius = max(2, round(min(canvas.size) / 160))
    for p, pose in enumerate(np.asarray(poses, dtype=np.float64).reshape(len(poses), -1, 3)):
        color = ((60 + 97 * p) % 256, (200 + 53 * p) % 256, (120 + 151 * p) % 256)
        ok = pose[:, 2] > conf_thr
        for a, b in skeleton:
            if ok[a] and ok[b]:
                draw.line([tuple(pose[a, :2]), tuple(pose[b, :2])], fill=color, width=radius)
        for x, y, _ in pose[ok]:
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=(255, 40, 40), outline=color)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    canvas.save(out_path, format="PNG")


def save_visualizations(poses_by_image: dict, image_path_fn, skeleton, out_dir: str, conf_thr: float = 0.2,
                        max_images: int = 20) -> list:
    """Draw the poses of up to `max_images` images ({image_id: [P, K, 3]}) into out_dir; returns the PNG paths."""
    paths = []
    for image_id in sorted(poses_by_image)[:max_images]:
        out_path = os.path.join(out_dir, f"{image_id}.png")
        draw_poses(image_path_fn(image_id), poses_by_image[image_id], skeleton, out_path, conf_thr)
        paths.append(out_path)
    return paths


def label_palette(num_classes: int) -> np.ndarray:
    """uint8 [256, 3] colours of class ids (PASCAL VOC's bit-interleaved palette: 0 black, then distinct)."""
    pal = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for shift in range(7, -1, -1):
            r, g, b = r | ((c & 1) << shift), g | (((c >> 1) & 1) << shift), b | (((c >> 2) & 1) << shift)
            c >>= 3
        pal[i] = (r, g, b)
    pal[num_classes:255] = 0
    pal[255] = (255, 255, 255)  # IGNORE
    return pal


def save_label_png(label: np.ndarray, out_path: str, palette: np.ndarray) -> str:
    """A [H, W] class-id map as a palette PNG: the stored values are the ids, viewers show the colours."""
    img = Image.fromarray(np.asarray(label, np.uint8), mode="P")
    img.putpalette(palette.reshape(-1).tolist())
    return atomic_write(out_path, lambda tmp: img.save(tmp, format="PNG"))


def save_overlay(image: np.ndarray, label: np.ndarray, out_path: str, palette: np.ndarray, alpha: float = 0.5) -> str:
    """The image (HxWx3 uint8) with the class colours of `label` blended in at `alpha`, as a PNG."""
    blend = (1 - alpha) * image.astype(np.float32) + alpha * palette[np.asarray(label, np.uint8)].astype(np.float32)
    img = Image.fromarray(np.clip(blend + 0.5, 0, 255).astype(np.uint8))
    return atomic_write(out_path, lambda tmp: img.save(tmp, format="PNG"))
