"""Evaluate subnets of a one-shot trained ScaleNAS supernet (BN-calibrated, no retraining) and export them.

    python tools/scale_subnet.py --cfg CFG --ckpt SUPERNET.pth --subnet smallest middle largest [G.json ...]
        [--calib-batches N] [--genotype-out DIR] [KEY VALUE ...]

A subnet is `smallest`, `middle` (every branch at the middle depth of the list, fusion bits drawn at 0.5 with
SEED), `largest`, or a genotype JSON of a scalenet. Each is activated, its BNs are calibrated on
ONESHOT.CALIB_BATCHES (or N) training batches and it is evaluated on the val set; one JSON line per subnet
(name, params of its standalone network, FLOPs at MODEL.INPUT_SIZE, the task's metrics) goes to stdout. With
--genotype-out, DIR/<name>.json is its genotype (retrain with train.py --genotype ... --inherit SUPERNET.pth)
and DIR/<name>.pth the standalone network's weights with the calibrated BN statistics (test.py --genotype
DIR/<name>.json --ckpt DIR/<name>.pth evaluates exactly what was measured here).
"""
import argparse
import json
import os
import random
import sys

import torch

from src.architecture.genotype.genotype import load_genotype, save_genotype
from src.architecture.scale.space import largest, sample_subnet, smallest
from src.architecture.scale.supernet import find_scale_supernet
from src.config.loader import load_config
from src.engine.checkpoint import load_model_weights, save_checkpoint
from src.engine.cli import run_cli
from src.engine.oneshot_eval import calibrate, evaluate_subnet, subnet_genotype
from src.engine.pose_task import build_task
from src.engine.trainer import pick_device, seed_all
from src.network_factory.from_genotype import build_from_genotype, inherit_weights
from src.network_factory.registry import build_model
from src.utils.flops import count_params

NAMED = ("smallest", "middle", "largest")


def named_subnet(name: str, spec, seed: int):
    if name == "smallest":
        return smallest(spec)
    if name == "largest":
        return largest(spec)
    return sample_subnet(spec, random.Random(seed), 0.5, (spec.depth_list[len(spec.depth_list) // 2],))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", required=True, help="config of the supernet (MODEL.NAME scalenet)")
    p.add_argument("--ckpt", required=True, help="one-shot trained supernet checkpoint")
    p.add_argument("--subnet", nargs="+", default=list(NAMED), help="smallest, middle, largest or genotype JSONs")
    p.add_argument("--calib-batches", type=int, default=None, help="BN calibration batches (ONESHOT.CALIB_BATCHES)")
    p.add_argument("--genotype-out", default="", help="write DIR/<name>.json (genotype) and DIR/<name>.pth")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = p.parse_args(argv)
    cfg = load_config(args.cfg, args.opts)
    seed_all(cfg.SEED)
    model = build_model(cfg)
    load_model_weights(model, args.ckpt)
    device = pick_device(cfg)
    model.to(device)
    spec = find_scale_supernet(model).spec
    task = build_task(cfg)
    train_set, val_set = task.build_dataset("train"), task.build_dataset("val")
    for item in args.subnet:
        if item in NAMED:
            name, subnet = item, named_subnet(item, spec, cfg.SEED)
        else:
            g = load_genotype(item)
            if g.arch.scale is None or g.arch.scale.space != spec:
                raise ValueError(f"genotype {item}: not a subnet of this supernet (its 'scale.space' differs)")
            name, subnet = os.path.splitext(os.path.basename(item))[0], g.arch.scale.subnet
        out_dir = os.path.join(cfg.OUTPUT_DIR, "subnets", name)
        metrics = evaluate_subnet(cfg, model, subnet, task, train_set, val_set, device, out_dir, args.calib_batches)
        genotype = subnet_genotype(cfg, model, subnet)
        with torch.device("meta"):
            params = count_params(build_from_genotype(cfg, genotype))
        flops = find_scale_supernet(model).subnet_flops(subnet, cfg.MODEL.INPUT_SIZE)
        row = {"subnet": name, "params": params, "backbone_flops": flops,
               "mean_depth": subnet.mean_depth(), "fusion": subnet.fusion_fraction(),
               **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
        print(json.dumps(row), flush=True)
        if args.genotype_out:
            export(cfg, genotype, args.ckpt, train_set, device, args.calib_batches,
                   os.path.join(args.genotype_out, name))
    return 0


def export(cfg, genotype, supernet_ckpt: str, train_set, device, calib_batches, stem: str) -> None:
    """stem.json (genotype) and stem.pth (standalone network, supernet weights, calibrated BNs)."""
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    save_genotype(genotype, stem + ".json")
    net = build_from_genotype(cfg, genotype)
    inherit_weights(net, supernet_ckpt)
    net.to(device)
    calibrate(cfg, net, train_set, device, calib_batches)
    save_checkpoint({"model": net.state_dict()}, stem + ".pth")


if __name__ == "__main__":
    sys.exit(run_cli(main))
