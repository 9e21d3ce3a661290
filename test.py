"""Evaluate a checkpoint: python test.py --cfg configs/X.yaml --ckpt PATH [--flip-test] [--use-dt] [--margin M]
[--multi-scale 0.75,1,1.25] [--visualize]"""
import sys

from src.engine.cli import run_cli
from src.engine.entry import test_main

if __name__ == "__main__":
    sys.exit(run_cli(test_main))
