"""Cityscapes (fine annotations): `ROOT/leftImg8bit/{split}/{city}/*_leftImg8bit.png` with their twins
`ROOT/gtFine/{split}/{city}/*_gtFine_labelIds.png`; the 34 labelIds map to the 19 trainIds of the benchmark,
every other labelId (void, and classes not evaluated) to IGNORE."""
import os

from src.data.seg_dataset import label_lut, paired_files
from src.data.seg_transforms import IGNORE

CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
           "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
# labelId -> trainId of the evaluated classes (cityscapesScripts' labels.py); labelIds 0..33 exist
TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
             27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
LUT = label_lut({label_id: TRAIN_IDS.get(label_id, IGNORE) for label_id in range(34)})


def cityscapes_samples(root: str, split: str):
    """(image, labelIds PNG) pairs of a split ("train", "val", "test")."""
    return paired_files(os.path.join(root, "leftImg8bit", split), os.path.join(root, "gtFine", split),
                        "_leftImg8bit.png", "_gtFine_labelIds.png", "Cityscapes", recursive=True)
