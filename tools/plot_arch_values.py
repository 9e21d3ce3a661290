"""Plot the alpha and beta trajectories of a search run (one row per part, alpha left, beta right).

    python tools/plot_arch_values.py --run OUTPUT_DIR [--out arch_values.png]

Reads OUTPUT_DIR/arch_values.csv (op names from its config.yaml, part names from its genotype.json).
"""
import argparse
import sys

from src.architecture.visual.arch_plot import plot_arch_values
from src.engine.cli import run_cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="run directory holding arch_values.csv")
    p.add_argument("--out", default="", help="PNG to write (default RUN/arch_values.png)")
    args = p.parse_args(argv)
    print(f"wrote {plot_arch_values(args.run, args.out or None)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
