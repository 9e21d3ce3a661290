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
import json
import os
import sys

import torch
from torch.utils.data import DataLoader

from src.config.loader import load_config
from src.engine.checkpoint import load_model_weights
from src.engine.cli import run_cli
from src.engine.pose_task import build_task
from src.engine.trainer import pick_device, place, seed_all
from src.network_factory.registry import build_model
from src.search.base import preserved_buffers
from src.search.evolution import EvolutionSettings, run_evolution
from src.search.evolution_report import write_outputs
from src.utils import distributed as dist_utils
from src.utils.atomic import write_json_atomic
from src.utils.flops import count_flops


class ScaleOps:
    """The engine's SpaceOps over the ScaleNAS space functions (passed in, imported by main)."""

    def __init__(self, spec, group_list, sample_subnet, crossover, mutate, parse_subnet):
        self.spec, self.group_list = spec, list(group_list)
        self._sample, self._crossover, self._mutate, self._parse = sample_subnet, crossover, mutate, parse_subnet

    def groups(self):
        return self.group_list

    def sample(self, rng, group):
        fusion_pct, depth_choices = group
        return self._sample(self.spec, rng, fusion_pct, depth_choices)

    def crossover(self, a, b, rng, prob):
        return self._crossover(a, b, rng, prob)

    def mutate(self, a, rng, prob):
        return self._mutate(a, rng, prob, self.spec)

    def key(self, subnet):
        return subnet.key()

    def to_dict(self, subnet):
        return subnet.to_dict()

    def from_dict(self, d, path):
        return self._parse(d, path, self.spec)


def make_evaluate(cfg, model, supernet, task, train_set, val_set, device, out_dir, calib_batches, calibrate_bn):
    """evaluate(subnet) -> (FLOPs, task score): the subnet active, BN-calibrated, evaluated; the model's
    buffers and active subnet are put back afterwards, so no evaluation changes another."""
    w, h = (int(v) for v in cfg.MODEL.INPUT_SIZE)

    def batches():
        seed_all(cfg.SEED)  # the same augmentation draws for every subnet
        gen = torch.Generator().manual_seed(int(cfg.SEED))
        return DataLoader(train_set, batch_size=cfg.TRAIN.BATCH_SIZE, shuffle=True, drop_last=True, generator=gen,
                          num_workers=cfg.WORKERS)

    def evaluate(subnet):
        previous = supernet.active
        with preserved_buffers(model):
            supernet.set_active(subnet)
            try:
                flops = count_flops(model, (1, 3, h, w))
                calibrate_bn(model, batches(), calib_batches, device)
                model.eval()
                with torch.no_grad():
                    metrics = task.evaluate(model, val_set, out_dir, cfg.TEST.BATCH_SIZE, device)
            finally:
                supernet.set_active(previous)
        return float(flops), float(metrics["score"])
    return evaluate


def _check_recipe(out: str, recipe: dict) -> None:
    """DIR/search.json holds the supernet and config of the search in DIR; another one is refused."""
    path = os.path.join(out, "search.json")
    if os.path.isfile(path):
        with open(path) as f:
            old = json.load(f)
        for name, value in recipe.items():
            if old.get(name) != value:
                raise ValueError(f"{path}: field '{name}' is {old.get(name)!r}, this run has {value!r} "
                                 "(use another --out)")
    elif dist_utils.is_main():
        write_json_atomic(path, recipe, indent=1)


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
    # the ScaleNAS space and BN calibration (src/architecture/scale, src/search/bn_calibration.py)
    from src.architecture.scale.space import ScaleSpaceSpec, crossover, groups, mutate, sample_subnet
    from src.architecture.scale.subnet import parse_subnet
    from src.architecture.scale.supernet import find_scale_supernet
    from src.search.bn_calibration import calibrate_bn

    settings = EvolutionSettings(population=args.population, generations=args.generations,
                                 seed=int(cfg.SEED if args.seed is None else args.seed),
                                 crossover_prob=args.crossover_prob, mutation_prob=args.mutation_prob,
                                 max_tries=args.max_tries)
    calib = int(cfg.ONESHOT.CALIB_BATCHES if args.calib_batches is None else args.calib_batches)
    dist_utils.init_distributed(cfg.DIST.BACKEND)
    try:
        _check_recipe(args.out, {"cfg": os.path.abspath(args.cfg), "opts": list(args.opts),
                                 "ckpt": os.path.abspath(args.ckpt), "calib_batches": calib})
        seed_all(cfg.SEED)
        model = build_model(cfg)
        load_model_weights(model, args.ckpt)
        device = pick_device(cfg)
        place(cfg, model, device)
        supernet = find_scale_supernet(model)
        spec = ScaleSpaceSpec.from_config(cfg.MODEL.SCALE)
        task = build_task(cfg)
        rank_dir = os.path.join(args.out, "eval", f"rank{dist_utils.get_rank()}")  # ranks evaluate side by side
        evaluate = make_evaluate(cfg, model, supernet, task, task.build_dataset("train"), task.build_dataset("val"),
                                 device, rank_dir, calib, calibrate_bn)
        ops = ScaleOps(spec, groups(cfg), sample_subnet, crossover, mutate, parse_subnet)
        state = run_evolution(ops, evaluate, settings, os.path.join(args.out, "state.json"))
        if dist_utils.is_main():
            chosen, paths = write_outputs(state, args.out, args.max_flops, args.min_metric, task.score_name)
            for name, path in paths.items():
                print(f"{name}: {path}")
            _write_genotype(cfg, model, ops.from_dict(chosen.subnet, "subnet"), os.path.join(args.out, "genotype.json"))
            print(f"chosen {chosen.key}: {chosen.flops / 1e9:.4f} GFLOPs, {task.score_name} {chosen.metric:.4f}")
    finally:
        dist_utils.cleanup()
    return 0


def _write_genotype(cfg, model, subnet, path):
    """The genotype of `subnet` (src/engine/oneshot_eval.py's subnet_genotype, on the scale branch)."""
    from src.architecture.genotype.genotype import save_genotype
    from src.engine.oneshot_eval import subnet_genotype
    save_genotype(subnet_genotype(cfg, model, subnet), path)
    print(f"genotype: {path}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
