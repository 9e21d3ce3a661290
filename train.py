"""Train a network or search an architecture: python train.py --cfg configs/X.yaml [--search S] [KEY VALUE ...]"""
import sys

from src.engine.cli import run_cli
from src.engine.entry import train_main

if __name__ == "__main__":
    sys.exit(run_cli(train_main))
