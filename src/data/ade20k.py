"""ADE20K (SceneParsing challenge 2016): `ROOT/images/{training,validation}/*.jpg` with their twins
`ROOT/annotations/{training,validation}/*.png` (ROOT = the `ADEChallengeData2016` folder). The PNGs store
0 = other / unlabelled and 1..150 = the classes; reduce-zero-label maps 0 to IGNORE and k to k - 1."""
import os

from src.data.seg_dataset import label_lut, paired_files
from src.data.seg_transforms import IGNORE

CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel",
    "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag")
LUT = label_lut({0: IGNORE, **{k: k - 1 for k in range(1, len(CLASSES) + 1)}})  # reduce zero label
SPLITS = {"train": "training", "val": "validation"}


def ade20k_samples(root: str, split: str):
    """(image, annotation PNG) pairs of a split ("train" = training, "val" = validation)."""
    folder = SPLITS.get(split, split)
    return paired_files(os.path.join(root, "images", folder), os.path.join(root, "annotations", folder),
                        ".jpg", ".png", "ADE20K")
