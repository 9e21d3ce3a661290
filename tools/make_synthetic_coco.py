#!/usr/bin/env python
"""Generate the embedded synthetic COCO-keypoint data set.

python tools/make_synthetic_coco.py --out data/synthetic --train 1200 --val 100 --seed 0 [--width W --height H]
"""
import argparse
import json
import time

from src.data.generated import write_info
from src.data.synthetic import generate_synthetic_coco, synthetic_coco_info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output directory (must be new or empty)")
    parser.add_argument("--train", type=int, default=1200, help="number of training images (the configs: 1200)")
    parser.add_argument("--val", type=int, default=100, help="number of val images")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (same seed, same bytes)")
    parser.add_argument("--width", type=int, default=None, help="fixed image width (default: 256..320)")
    parser.add_argument("--height", type=int, default=None, help="fixed image height (default: 192..240)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        summary = generate_synthetic_coco(args.out, args.train, args.val, args.seed, args.width, args.height)
        write_info(args.out, synthetic_coco_info(args.train, args.val, args.seed, args.width, args.height))
    except (ValueError, FileExistsError) as err:
        parser.exit(2, f"error: {err}\n")
    summary["seconds"] = round(time.perf_counter() - start, 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
