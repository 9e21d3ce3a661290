"""Classification datasets: class folders (`split/<class>/<image>`) or a zip + map file, and their transforms.

Items are dicts {"image": float[3,H,W] (RGB, ImageNet mean/std normalised), "label": int}.
"""
import io
import os
import zipfile
import zlib
from typing import Callable, List, Optional, Sequence, Tuple

from torchvision import transforms as T

from src.data.image_io import open_rgb
from src.data.samples import ImageSamples

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".webp", ".tif", ".tiff")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def build_transform(train: bool, size_hw: Tuple[int, int], crop_scale: Sequence[float] = (0.08, 1.0),
                    crop_pct: float = 0.875) -> Callable:
    """Train: random resized crop (bicubic) + horizontal flip; val: resize short side to size/crop_pct + centre crop."""
    h, w = int(size_hw[0]), int(size_hw[1])
    if train:
        head = [T.RandomResizedCrop((h, w), scale=tuple(crop_scale), interpolation=T.InterpolationMode.BICUBIC),
                T.RandomHorizontalFlip()]
    else:
        head = [T.Resize(int(round(max(h, w) / crop_pct)), interpolation=T.InterpolationMode.BICUBIC),
                T.CenterCrop((h, w))]
    return T.Compose(head + [T.ToTensor(), T.Normalize(MEAN, STD)])


def list_classes(split_dir: str) -> List[str]:
    """Sorted class folder names of a split directory."""
    if not os.path.isdir(split_dir):
        raise FileNotFoundError(f"image folder not found: {split_dir}")
    classes = sorted(d.name for d in os.scandir(split_dir) if d.is_dir())
    if not classes:
        raise ValueError(f"image folder {split_dir} has no class sub-folders")
    return classes


class ImageFolderDataset(ImageSamples):
    """`split_dir/<class>/<image>`; labels index `classes` (default: the sorted sub-folders of split_dir)."""

    def __init__(self, split_dir: str, transform: Optional[Callable] = None, classes: Optional[Sequence[str]] = None):
        found = list_classes(split_dir)
        self.classes = list(classes) if classes is not None else found
        unknown = sorted(set(found) - set(self.classes))
        if unknown:
            raise ValueError(f"image folder {split_dir} has class folder '{unknown[0]}' that is not among the "
                             f"{len(self.classes)} training classes")
        self.transform = transform
        self.samples: List[Tuple[str, int]] = []
        for label, name in enumerate(self.classes):
            folder = os.path.join(split_dir, name)
            if not os.path.isdir(folder):
                continue
            for root, _, files in sorted(os.walk(folder)):
                self.samples += [(os.path.join(root, f), label) for f in sorted(files)
                                 if f.lower().endswith(IMAGE_EXTENSIONS)]
        if not self.samples:
            raise ValueError(f"image folder {split_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)})")

    def __getitem__(self, index: int) -> dict:
        path, label = self.samples[index]
        img = open_rgb(path, path)
        return {"image": self.transform(img) if self.transform else img, "label": label}


def read_map_file(map_file: str) -> List[Tuple[str, int]]:
    """Lines "path/in/zip<TAB>label" (label a non-negative integer); blank lines are skipped."""
    if not os.path.isfile(map_file):
        raise FileNotFoundError(f"map file not found: {map_file}")
    entries = []
    with open(map_file, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t") if "\t" in line else line.rsplit(None, 1)
            if len(parts) != 2 or not parts[1].strip().isdigit() or not parts[0]:
                raise ValueError(f"map file {map_file} line {n}: expected 'path<TAB>label' with an integer label, "
                                 f"got {line[:80]!r}")
            entries.append((parts[0], int(parts[1])))
    if not entries:
        raise ValueError(f"map file {map_file} lists no images")
    return entries


class ZipImageDataset(ImageSamples):
    """Images inside a zip archive, listed with their labels by a map file (Swin / HRT-Cls zip format)."""

    def __init__(self, zip_file: str, map_file: str, transform: Optional[Callable] = None):
        if not os.path.isfile(zip_file):
            raise FileNotFoundError(f"zip file not found: {zip_file}")
        if not zipfile.is_zipfile(zip_file):
            raise ValueError(f"not a zip file: {zip_file}")
        self.zip_file, self.transform = zip_file, transform
        self.samples = read_map_file(map_file)
        with zipfile.ZipFile(zip_file) as zf:
            names = set(zf.namelist())
        missing = [p for p, _ in self.samples if p not in names]
        if missing:
            raise ValueError(f"map file {map_file} lists {len(missing)} image(s) missing from {zip_file} "
                             f"(e.g. {missing[0]})")
        self.classes = [str(c) for c in range(max(label for _, label in self.samples) + 1)]  # the map has ids only
        self._zip, self._pid = None, None

    def __getstate__(self):  # the open archive handle is per process (DataLoader workers reopen it)
        state = dict(self.__dict__)
        state["_zip"], state["_pid"] = None, None
        return state

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None or self._pid != os.getpid():
            self._zip, self._pid = zipfile.ZipFile(self.zip_file), os.getpid()
        return self._zip

    def __getitem__(self, index: int) -> dict:
        name, label = self.samples[index]
        try:
            data = self._archive().read(name)
        except (zipfile.BadZipFile, zlib.error, OSError) as exc:
            raise ValueError(f"cannot read {name} from {self.zip_file}: {exc}") from None
        img = open_rgb(io.BytesIO(data), f"{self.zip_file}:{name}")
        return {"image": self.transform(img) if self.transform else img, "label": label}
