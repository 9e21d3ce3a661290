"""Oracle of the pose pipeline: rendered GT targets fed through the real inference/decoding/COCOeval path.

A "model" answers each crop with its own target heatmaps (and each mirrored crop with the target rendered for
the mirrored crop), so the AP printed measures only the geometry of targets, flip test and decoding.

    python tools/eval_oracle.py --ann ANN.json --images DIR [--flip-test] [--input-size W H] [--stride 4] [--sigma 2]

The last line printed is `AP <value>`.
"""
import argparse
import hashlib
import sys
import tempfile

import numpy as np
import torch
from torch.utils.data import DataLoader

from src.data.coco import CocoKeypoints
from src.engine.cli import run_cli
from src.evaluation.pose_eval import evaluate_pose, format_metric_table


def _key(image) -> str:
    return hashlib.sha1(np.ascontiguousarray(torch.as_tensor(image).numpy()).tobytes()).hexdigest()


class TargetOracle(torch.nn.Module):
    """Maps a crop to its rendered target; a mirrored crop to the target rendered for the mirrored crop."""

    def __init__(self, dataset):
        super().__init__()
        self.table = {}
        for i in range(len(dataset)):
            sample = dataset.make_sample(i)
            self.table[_key(sample["image"])] = (sample["target"], dataset.make_sample(i, flip=True)["target"])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for image in images:
            key = _key(image)
            if key in self.table:
                out.append(self.table[key][0])
                continue
            mirrored = _key(image.flip(2))
            if mirrored not in self.table:
                raise KeyError("the oracle was given a crop it did not render")
            out.append(self.table[mirrored][1])
        return torch.from_numpy(np.stack(out))


def run_oracle(ann: str, images: str, flip_test: bool = False, input_size=(192, 256), stride: int = 4,
               sigma: float = 2.0, out_dir: str = None, batch_size: int = 16) -> dict:
    """COCOeval metrics of the oracle on the GT boxes of `ann`."""
    dataset = CocoKeypoints(ann, images, input_size=tuple(input_size), stride=stride, sigma=sigma)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    model = TargetOracle(dataset)
    with tempfile.TemporaryDirectory() as tmp:
        return evaluate_pose(model, loader, dataset, flip_test=flip_test, out_dir=out_dir or tmp)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ann", required=True, help="COCO keypoint annotation JSON")
    parser.add_argument("--images", required=True, help="folder of the annotation's images")
    parser.add_argument("--flip-test", action="store_true", help="average with the mirrored pass")
    parser.add_argument("--input-size", type=int, nargs=2, default=[192, 256], metavar=("W", "H"))
    parser.add_argument("--stride", type=int, default=4, help="input size / heatmap size")
    parser.add_argument("--sigma", type=float, default=2.0, help="target Gaussian sigma in heatmap pixels")
    parser.add_argument("--out", default=None, help="folder for the results JSON (default: a temporary one)")
    args = parser.parse_args(argv)
    metrics = run_oracle(args.ann, args.images, args.flip_test, args.input_size, args.stride, args.sigma,
                         out_dir=args.out)
    print(format_metric_table(metrics))
    print(f"AP {metrics['AP']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
