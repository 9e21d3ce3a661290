"""Evolutionary search (NSGA-II) over the subnets of a one-shot trained ScaleNAS supernet.

    python tools/evolve.py --cfg CFG --ckpt SUPERNET --out DIR [--generations 3] [--population 20] [--seed S]
        [--crossover-prob 0.25] [--mutation-prob 0.2] [--calib-batches N] [--max-flops F | --min-metric M]
        [KEY VALUE ...]
    torchrun --nproc_per_node 2 tools/evolve.py ...      # the same search, each rank evaluating its share

Generation 0 samples --population subnets over the one-shot sampling groups (fusion percentage x depth
range); every later generation breeds --population children (binary tournament on front rank and crowding
distance, module-wise crossover, mutation of depths and fusion bits, duplicates redrawn) and keeps the best
--population of parents + children (src/search/evolution.py). A subnet is evaluated without retraining: FLOPs
of the supernet with it active (FlopCounterMode, one MODEL.INPUT_SIZE image), its BNs calibrated on
--calib-batches training batches (the same batches for every subnet and every rank, fixed by SEED), then the
task's score on the validation set (AP for pose, mIoU for segmentation).

DIR/state.json is rewritten after every evaluation round: the same command continues an interrupted search
exactly, or extends a finished one to a larger --generations. DIR/search.json records the supernet and the
config; a rerun with another one on the same DIR is refused. At the end (rank 0): DIR/evaluated.csv,
DIR/pareto.png, DIR/chosen.json (the subnet chosen by --max-flops: best score at or under F FLOPs, or by
--min-metric: fewest FLOPs reaching M; neither: the best score) and DIR/genotype.json (its genotype).
"""
import argparse
import os
import sys

from src.config.loader import load_config
from src.engine.cli import run_cli
from src.engine.oneshot_search import evolve_supernet
from src.search.evolution import EvolutionSettings
from src.utils import distributed as dist_utils


def parse_args(argv=None):
    d = EvolutionSettings()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", required=True, help="the one-shot config (MODEL.SCALE, ONESHOT)")
    p.add_argument("--ckpt", required=True, help="the one-shot trained supernet checkpoint")
    p.add_argument("--out", required=True, help="output directory (state.json, evaluated.csv, pareto.png, ...)")
    p.add_argument("--generations", type=int, default=d.generations, help="generations after the initial one")
    p.add_argument("--population", type=int, default=d.population, help="subnets per generation")
    p.add_argument("--seed", type=int, default=None, help="seed of the search (default: the config's SEED)")
    p.add_argument("--crossover-prob", type=float, default=d.crossover_prob, help="per-module crossover probability")
    p.add_argument("--mutation-prob", type=float, default=d.mutation_prob, help="per-depth and per-bit mutation "
                                                                                "probability")
    p.add_argument("--max-tries", type=int, default=d.max_tries, help="draws per new subnet before giving up")
    p.add_argument("--calib-batches", type=int, default=None, help="BN calibration batches (default: "
                                                                   "ONESHOT.CALIB_BATCHES)")
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--max-flops", type=float, default=None, help="choose the best score at or under F FLOPs")
    rule.add_argument("--min-metric", type=float, default=None, help="choose the fewest FLOPs reaching score M")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.cfg, args.opts)
    settings = EvolutionSettings(population=args.population, generations=args.generations,
                                 seed=int(cfg.SEED if args.seed is None else args.seed),
                                 crossover_prob=args.crossover_prob, mutation_prob=args.mutation_prob,
                                 max_tries=args.max_tries)
    recipe = {"cfg": os.path.abspath(args.cfg), "opts": list(args.opts), "ckpt": os.path.abspath(args.ckpt)}
    dist_utils.init_distributed(cfg.DIST.BACKEND)
    try:
        paths = evolve_supernet(cfg, args.ckpt, args.out, settings, recipe, args.calib_batches, args.max_flops,
                                args.min_metric)
        for name, path in (paths or {}).items():
            print(f"{name}: {path}")
    finally:
        dist_utils.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
