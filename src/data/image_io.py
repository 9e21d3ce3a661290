"""Reading images and label maps: one-line errors naming the file, and no decoding of an image whose header
asks for more than `MAX_IMAGE_PIXELS` (the size is read from the header before any pixel is decoded)."""
import os

import numpy as np
from PIL import Image

MAX_IMAGE_PIXELS = 64_000_000  # width x height of any image or label map read [Cityscapes 2048x1024 = 2.1M]
LABEL_MODES = ("L", "P")  # label PNGs: 8-bit grey or palette, read as the stored indices


def _decode(source, what: str, name: str, convert):
    """`convert(img)` of the image in `source` (a path or a file object); ValueError naming `name`."""
    try:
        with Image.open(source) as img:
            w, h = img.size
            if w * h > MAX_IMAGE_PIXELS:
                raise ValueError(f"{w}x{h} pixels, above image_io.MAX_IMAGE_PIXELS ({MAX_IMAGE_PIXELS})")
            return convert(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"cannot read {what} {name}: {reason}") from None


def _read(path: str, what: str, convert) -> np.ndarray:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file not found: {path}")
    return _decode(path, what, path, convert)


def open_rgb(source, name: str) -> Image.Image:
    """The RGB PIL image of a path or file object (e.g. a zip member), `name` naming it in errors."""
    return _decode(source, "image", name, lambda img: img.convert("RGB"))


def load_rgb(path: str) -> np.ndarray:
    """HxWx3 uint8 RGB array."""
    return _read(path, "image", lambda img: np.asarray(img.convert("RGB")))


def _indices(img: Image.Image) -> np.ndarray:
    if img.mode not in LABEL_MODES:
        raise ValueError(f"a label map must be an 8-bit single-channel PNG (mode {' or '.join(LABEL_MODES)}), "
                         f"got mode {img.mode}")
    return np.array(img)


def load_label(path: str) -> np.ndarray:
    """HxW uint8 array of the stored label indices (palette PNGs give their indices, not colours)."""
    return _read(path, "label map", _indices)
