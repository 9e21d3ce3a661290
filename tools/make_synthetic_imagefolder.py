"""Generate the synthetic ImageFolder (shapes and textures): ROOT/train/<class>/*.png, ROOT/val/<class>/*.png.

    python tools/make_synthetic_imagefolder.py --root data/synthetic_cls --train 2000 --val 500 --classes 10 --seed 0
"""
import argparse
import sys

from src.data.synthetic_imagefolder import CLASSES, ensure_synthetic_imagefolder
from src.engine.cli import run_cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="output folder (must not exist, or hold the same settings)")
    p.add_argument("--train", type=int, default=2000, help="training images (classes take turns)")
    p.add_argument("--val", type=int, default=500, help="validation images")
    p.add_argument("--classes", type=int, default=len(CLASSES), help=f"number of classes (2..{len(CLASSES)})")
    p.add_argument("--seed", type=int, default=0, help="generator seed (same seed, same bytes)")
    p.add_argument("--size", type=int, default=64, help="side of the square images in pixels")
    a = p.parse_args(argv)
    ensure_synthetic_imagefolder(a.root, a.train, a.val, a.classes, a.seed, a.size)
    print(f"synthetic ImageFolder ready: {a.root} ({a.train} train, {a.val} val, {a.classes} classes)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
