"""Oracles of the pose and segmentation pipelines: the ground truth fed through the real evaluation path.

Pose (`--task pose`, the default): a "model" answers each crop with its own target heatmaps (and each mirrored
crop with the target rendered for the mirrored crop), so the AP printed measures only the geometry of targets,
flip test and decoding.

Segmentation (`--task seg`): the COCO person masks of ANN (rasterised by pycocotools, src/data/coco_person.py)
go through the evaluation's transforms (the image's long side to `--base-size`, 0 = its own size; normalised;
mirrored for the flip test) to a "model" that answers each view with the one-hot logits of its GT label map in
that view's geometry; the evaluation inverts the view (flips the logits back, resizes them to the label map),
and scores mIoU. At base size 0 every step is exact, so anything below 1 is a geometry bug; with a resize, the
nearest-neighbour GT answered at the smaller size cannot be exact at class boundaries.

    python tools/eval_oracle.py --ann ANN.json --images DIR [--flip-test] [--input-size W H] [--stride 4] [--sigma 2]
    python tools/eval_oracle.py --task seg --ann ANN.json --images DIR [--flip-test] [--base-size 0]

The last line printed is `AP <value>` (pose) or `mIoU <value>` (seg).
"""
import argparse
import hashlib
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from src.data.coco import CocoKeypoints
from src.data.coco_person import CocoPersonSeg
from src.data.seg_transforms import IGNORE
from src.engine.cli import run_cli
from src.evaluation.pose_eval import evaluate_pose, format_metric_table
from src.evaluation.seg_eval import evaluate_segmentation


def _key(image) -> str:
    return hashlib.sha1(np.ascontiguousarray(torch.as_tensor(image).numpy()).tobytes()).hexdigest()


class MirrorTable(torch.nn.Module):
    """Answers an image it was given (`self.table[key] = (answer, answer for the mirrored image)`) or the mirror
    of one."""

    def __init__(self):
        super().__init__()
        self.table = {}

    def answer(self, image: torch.Tensor) -> torch.Tensor:
        key = _key(image)
        if key in self.table:
            return self.table[key][0]
        mirrored = _key(image.flip(2))
        if mirrored not in self.table:
            raise KeyError("the oracle was given an image it did not render")
        return self.table[mirrored][1]


class TargetOracle(MirrorTable):
    """Maps a crop to its rendered target; a mirrored crop to the target rendered for the mirrored crop."""

    def __init__(self, dataset):
        super().__init__()
        for i in range(len(dataset)):
            sample = dataset.make_sample(i)
            self.table[_key(sample["image"])] = (sample["target"], dataset.make_sample(i, flip=True)["target"])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.answer(image) for image in images]))


class LabelOracle(MirrorTable):
    """Maps an evaluation image (or its mirror) to the one-hot logits of its GT label map at the image's size
    (nearest neighbour; IGNORE pixels answer class 0, they are not scored). `shift` rolls the answer by that
    many pixels to the right, and `mirror_aware=False` answers a mirrored image with the unmirrored labels:
    both show that the oracle is not vacuous."""

    def __init__(self, dataset, shift: int = 0, mirror_aware: bool = True):
        super().__init__()
        num_classes = len(dataset.classes)
        for i in range(len(dataset)):
            item = dataset[i]
            image, label = torch.as_tensor(item["image"]), torch.as_tensor(item["label"])
            label = F.interpolate(label[None, None].float(), size=image.shape[-2:], mode="nearest")[0, 0].long()
            label[label == IGNORE] = 0
            logits = F.one_hot(label, num_classes).permute(2, 0, 1).float().roll(shift, dims=2)
            self.table[_key(image)] = (logits, logits.flip(2) if mirror_aware else logits)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.answer(image) for image in images])


def run_oracle(ann: str, images: str, flip_test: bool = False, input_size=(192, 256), stride: int = 4,
               sigma: float = 2.0, out_dir: str = None, batch_size: int = 16) -> dict:
    """COCOeval metrics of the oracle on the GT boxes of `ann`."""
    dataset = CocoKeypoints(ann, images, input_size=tuple(input_size), stride=stride, sigma=sigma)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    model = TargetOracle(dataset)
    with tempfile.TemporaryDirectory() as tmp:
        return evaluate_pose(model, loader, dataset, flip_test=flip_test, out_dir=out_dir or tmp)


def run_seg_oracle(ann: str, images: str, flip_test: bool = False, base_size: int = 0, shift: int = 0,
                   mirror_aware: bool = True) -> dict:
    """Segmentation metrics (mIoU, per class) of the label oracle on the person masks of `ann` (see the module
    docstring; `shift`, `mirror_aware`: see LabelOracle)."""
    dataset = CocoPersonSeg(ann, images, train=False, base_size=base_size)
    model = LabelOracle(dataset, shift, mirror_aware)
    return evaluate_segmentation(model, dataset, "cpu", flip_test, (1.0,))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=("pose", "seg"), default="pose", help="the pipeline to check")
    parser.add_argument("--ann", required=True, help="COCO keypoint annotation JSON")
    parser.add_argument("--images", required=True, help="folder of the annotation's images")
    parser.add_argument("--flip-test", action="store_true", help="average with the mirrored pass")
    parser.add_argument("--input-size", type=int, nargs=2, default=[192, 256], metavar=("W", "H"))
    parser.add_argument("--stride", type=int, default=4, help="input size / heatmap size")
    parser.add_argument("--sigma", type=float, default=2.0, help="target Gaussian sigma in heatmap pixels")
    parser.add_argument("--out", default=None, help="pose: folder for the results JSON (default: a temporary one)")
    parser.add_argument("--base-size", type=int, default=0, help="seg: long side of the evaluated image (0: own size)")
    args = parser.parse_args(argv)
    if args.task == "seg":
        metrics = run_seg_oracle(args.ann, args.images, args.flip_test, args.base_size)
        print(metrics["table"])
        print(f"mIoU {metrics['mIoU']:.4f}")
        return 0
    metrics = run_oracle(args.ann, args.images, args.flip_test, args.input_size, args.stride, args.sigma,
                         out_dir=args.out)
    print(format_metric_table(metrics))
    print(f"AP {metrics['AP']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
