"""Top-down transforms: the crop affine (with optional mirror), exact bilinear warping, augmentation, normalisation.

All coordinates follow `src.utils.geometry` (pixel centres at integers).
"""
import numpy as np

from src.utils.geometry import box_to_center_scale, get_affine_transform, invert_affine

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

DEFAULT_AUG = dict(scale=0.3, rotation=40.0, rotation_prob=0.6, flip=True, half_body_prob=0.0)


def crop_affine(center, scale, rotation: float, input_size, flip: bool = False) -> np.ndarray:
    """2x3 image -> input matrix; with `flip` the image is first mirrored about the box centre.

    Mirroring about the centre equals flipping the whole image and cropping at the mirrored centre, and the
    result is exactly the horizontal flip of the unflipped crop.
    """
    mat = get_affine_transform(center, scale, rotation, input_size)
    if flip:
        mirror = np.array([[-1.0, 0.0, 2.0 * float(center[0])], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        mat = mat @ mirror
    return mat


def warp_image(image: np.ndarray, mat: np.ndarray, input_size) -> np.ndarray:
    """Bilinear sampling of an HxWxC image through the image -> input affine `mat`.

    Output pixel (x, y) (centre at integer coordinates) reads the image at inv(mat) @ (x, y, 1), also in
    centre-at-integer coordinates; samples outside the image blend with zeros. Returns float32 HxWxC in the
    image's value range (no rounding): the float32 image values, blended in float64. The blend runs on
    channel planes gathered with `np.take` from the flat padded image (the result is a view of a CxHxW
    array), which `normalize_image` turns back into planes without a strided copy.
    """
    out_w, out_h = int(input_size[0]), int(input_size[1])
    inv = invert_affine(mat)
    xs, ys = np.meshgrid(np.arange(out_w, dtype=np.float64), np.arange(out_h, dtype=np.float64))
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    x0, y0 = np.floor(sx), np.floor(sy)
    h, w, c = image.shape
    # uint8 values are exact in float64; any other image is read as float32, as the network will see it
    padded = np.zeros((h + 2, w + 2, c), dtype=np.uint8 if image.dtype == np.uint8 else np.float32)
    padded[1:-1, 1:-1] = image
    flat = padded.reshape(-1)
    # padded index = image index + 1; anything beyond the border reads the zero frame
    xa = np.clip(x0 + 1, 0, w + 1).astype(np.intp)
    xb = np.clip(x0 + 2, 0, w + 1).astype(np.intp)
    ya = np.clip(y0 + 1, 0, h + 1).astype(np.intp) * (w + 2)
    yb = np.clip(y0 + 2, 0, h + 1).astype(np.intp) * (w + 2)
    channel = np.arange(c, dtype=np.intp)[:, None, None]

    def corner(row, col):  # [C, out_h, out_w] float64
        return np.take(flat, (row + col) * c + channel).astype(np.float64)

    fx, fy = sx - x0, sy - y0
    gx, gy = 1 - fx, 1 - fy
    top = corner(ya, xa) * gx + corner(ya, xb) * fx
    bottom = corner(yb, xa) * gx + corner(yb, xb) * fx
    return (top * gy + bottom * fy).astype(np.float32).transpose(1, 2, 0)


def normalize_image(crop: np.ndarray) -> np.ndarray:
    """HxWx3 RGB in [0, 255] -> 3xHxW float32, ImageNet mean/std normalised."""
    planes = crop.transpose(2, 0, 1)
    return np.ascontiguousarray((planes / 255.0 - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None],
                                dtype=np.float32)


def sample_augmentation(aug: dict, rng=np.random) -> dict:
    """Random scale factor, rotation (degrees) and flip of one training sample (HRNet recipe)."""
    sf, rf = float(aug["scale"]), float(aug["rotation"])
    scale = float(np.clip(rng.randn() * sf + 1.0, 1.0 - sf, 1.0 + sf))
    rotation = float(np.clip(rng.randn() * rf, -2.0 * rf, 2.0 * rf)) if rng.rand() < aug["rotation_prob"] else 0.0
    flip = bool(aug["flip"]) and rng.rand() < 0.5
    half_body = rng.rand() < aug["half_body_prob"]
    return dict(scale_factor=scale, rotation=rotation, flip=flip, half_body=half_body)


def half_body_box(joints: np.ndarray, upper_ids, aspect_ratio: float, rng=np.random):
    """Center/scale of a box around the visible upper or lower body joints (x1.5), or None if too few."""
    visible = joints[:, 2] > 0
    upper = [i for i in range(len(joints)) if visible[i] and i in upper_ids]
    lower = [i for i in range(len(joints)) if visible[i] and i not in upper_ids]
    chosen = upper if (rng.rand() < 0.5 and len(upper) > 2) or not lower else lower
    if len(chosen) < 2:
        return None
    pts = joints[chosen, :2]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return box_to_center_scale(lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1], aspect_ratio, margin=1.5)
