"""Can the one-shot ranking be trusted? Kendall tau between subnets' BN-calibrated one-shot score and their
score after a short standalone fine-tune.

    python tools/oneshot_rank.py --cfg CFG --ckpt SUPERNET --evo DIR [--count 8] [--finetune-epochs 2]
        [--out DIR/rank] [KEY VALUE ...]

Takes --count subnets spread over the Pareto front of the evolutionary search in DIR (tools/evolve.py's
state.json; evenly by FLOPs along the front, the next fronts when it is too small), and for each: its genotype,
a fine-tune of the standalone subnet from the supernet's weights (train.py --genotype G --inherit SUPERNET
TRAIN.EPOCHS E SEARCH.STRATEGY none), test.py on its last checkpoint. The one-shot score is the one the search
measured. Writes OUT/rank.json (tau-b, p-value, every subnet's numbers) and OUT/rank.md (the table); a rerun
skips finished fine-tunes.
"""
import argparse
import os
import sys

from src.config.loader import load_config
from src.engine.checkpoint import load_model_weights
from src.engine.cli import run_cli
from src.engine.pose_task import build_task
from src.engine.runs import finished, run_script, tested_score
from src.network_factory.registry import build_model
from src.search.evolution_state import load_state
from src.search.oneshot_rank import MIN_SUBNETS, spread_over_front, write_rank_report


def finetune_and_test(cfg_file, opts, genotype, ckpt, epochs, run_dir, score_name) -> float:
    common = [*opts, "SEARCH.STRATEGY", "none", "OUTPUT_DIR", run_dir]
    if not finished(run_dir, epochs):
        run_script(["train.py", "--cfg", cfg_file, "--genotype", genotype, "--inherit", ckpt, *common,
                    "TRAIN.EPOCHS", epochs, "TRAIN.EVAL_INTERVAL", epochs], os.path.join(run_dir, "train_stdout.log"))
    last = run_script(["test.py", "--cfg", cfg_file, "--genotype", genotype, "--ckpt",
                       os.path.join(run_dir, "last.pth"), *common], os.path.join(run_dir, "test_stdout.log"))
    return tested_score(last, score_name)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", required=True, help="the one-shot config the search used")
    p.add_argument("--ckpt", required=True, help="the one-shot trained supernet checkpoint")
    p.add_argument("--evo", required=True, help="output directory of tools/evolve.py (holds state.json)")
    p.add_argument("--count", type=int, default=MIN_SUBNETS, help=f"subnets to fine-tune (>= {MIN_SUBNETS})")
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--out", default="", help="output directory (default: EVO/rank)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides for every run")
    args = p.parse_args(argv)
    if args.count < MIN_SUBNETS:
        raise ValueError(f"--count must be at least {MIN_SUBNETS}, got {args.count}")
    cfg = load_config(args.cfg, args.opts)
    out = args.out or os.path.join(args.evo, "rank")
    # the ScaleNAS space and a subnet's genotype (src/architecture/scale, src/engine/oneshot_eval.py)
    from src.architecture.genotype.genotype import save_genotype
    from src.architecture.scale.space import ScaleSpaceSpec
    from src.architecture.scale.subnet import parse_subnet
    from src.engine.oneshot_eval import subnet_genotype

    spec = ScaleSpaceSpec.from_config(cfg.MODEL.SCALE)
    state = load_state(os.path.join(args.evo, "state.json"), lambda d, path: parse_subnet(d, path, spec))
    picked = spread_over_front(list(state.evaluated.values()), args.count)
    model = build_model(cfg)
    load_model_weights(model, args.ckpt)
    score_name = build_task(cfg).score_name
    rows = []
    for i, rec in enumerate(picked):
        run_dir = os.path.join(out, f"subnet{i:02d}")
        os.makedirs(run_dir, exist_ok=True)
        genotype = os.path.join(run_dir, "genotype.json")
        save_genotype(subnet_genotype(cfg, model, parse_subnet(rec.subnet, "subnet", spec)), genotype)
        score = finetune_and_test(args.cfg, args.opts, genotype, args.ckpt, args.finetune_epochs, run_dir, score_name)
        rows.append({"key": rec.key, "flops": rec.flops, "oneshot": rec.metric, "finetuned": score,
                     "generation": rec.generation, "run": run_dir})
        print(f"{i + 1}/{len(picked)} {rec.key}: one-shot {rec.metric:.4f}, fine-tuned {score:.4f}", flush=True)
    meta = {"evo": os.path.abspath(args.evo), "ckpt": os.path.abspath(args.ckpt), "cfg": os.path.abspath(args.cfg),
            "opts": list(args.opts), "finetune_epochs": args.finetune_epochs, "score": score_name}
    paths = write_rank_report(out, rows, meta, score_name)
    with open(paths["table"]) as f:
        print(f.read(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
