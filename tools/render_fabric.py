"""Render the fabrics of a searched model with graphviz (layers left to right, scales top to bottom).

    python tools/render_fabric.py --cfg CFG --ckpt CKPT --out fabric.svg [--view supernet|derived] [KEY VALUE ...]
    python tools/render_fabric.py --genotype genotype.json --out fabric.png [--view supernet|derived]

A checkpoint is pruned with the config's DERIVE.* settings first. Without graphviz's `dot` the `.dot` source
is written instead, with the command that renders it.
"""
import argparse
import sys

from src.architecture.genotype.genotype import load_genotype
from src.architecture.visual.render import VIEWS, render_genotype
from src.config.loader import load_config
from src.engine.cli import run_cli
from src.engine.search_outputs import genotype_from_checkpoint


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--genotype", default="", help="genotype JSON to render")
    p.add_argument("--ckpt", default="", help="supernet checkpoint to prune and render (needs --cfg)")
    p.add_argument("--cfg", default="", help="config of the checkpoint")
    p.add_argument("--out", required=True, help="output picture: .svg, .png or .pdf")
    p.add_argument("--view", default="derived", choices=VIEWS, help="derived: kept cells only; supernet: "
                   "every cell, pruned ones faded")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides (with --cfg)")
    args = p.parse_args(argv)
    if bool(args.genotype) == bool(args.ckpt):
        p.error("give either --genotype or --ckpt (with --cfg)")
    if args.genotype:
        genotype = load_genotype(args.genotype)
    else:
        if not args.cfg:
            p.error("--ckpt needs --cfg")
        _, genotype = genotype_from_checkpoint(load_config(args.cfg, args.opts), args.ckpt)
    print(f"wrote {render_genotype(genotype, args.out, args.view)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
