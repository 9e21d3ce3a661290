"""The base of the data sets whose samples are whole images: `samples` (one per image) and class names."""
from typing import List, Sequence

from torch.utils.data import Dataset


class ImageSamples(Dataset):
    """Subclasses set `self.samples` (one entry per image) and `self.classes` (index = class id)."""

    samples: Sequence = ()
    classes: Sequence[str] = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def split_groups(self) -> List[int]:
        """Every sample is its own image (the bilevel split's groups)."""
        return list(range(len(self.samples)))
