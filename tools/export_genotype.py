"""Write the genotype JSON of a search checkpoint (prune with the config's DERIVE.* settings).

    python tools/export_genotype.py --cfg CFG --ckpt OUTPUT_DIR/last.pth --out genotype.json [--average-steps N]
        [KEY VALUE ...]

Prints the prune report (what was removed, params and FLOPs saved). A search run with DERIVE.AVERAGE_ARCH_STEPS M
keeps its last M arch steps in last.pth; --average-steps N (1 <= N <= M) derives from the mean of the last N of
them instead of the saved average (N = 1: the last arch step's values, what the search would have derived with
DERIVE.AVERAGE_ARCH_STEPS 0).
"""
import argparse
import sys

from src.architecture.genotype.genotype import save_genotype
from src.config.loader import load_config
from src.engine.cli import run_cli
from src.engine.search_outputs import genotype_from_checkpoint


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", required=True, help="the search's config YAML")
    p.add_argument("--ckpt", required=True, help="supernet checkpoint (e.g. OUTPUT_DIR/last.pth)")
    p.add_argument("--out", default="genotype.json", help="genotype JSON to write")
    p.add_argument("--average-steps", type=int, default=0, metavar="N",
                   help="derive from the mean of the last N arch steps recorded in the checkpoint (1 = the last "
                        "step); default: the checkpoint's arch values as saved")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides (e.g. DERIVE.OPS_TOPK 2)")
    args = p.parse_args(argv)
    cfg = load_config(args.cfg, args.opts)
    _, genotype = genotype_from_checkpoint(cfg, args.ckpt, average_steps=args.average_steps)
    print(f"wrote {save_genotype(genotype, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
