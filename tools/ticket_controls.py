"""Lottery-ticket controls (Frankle & Carbin): is a ticket more than its layer-wise sparsity?

    python tools/ticket_controls.py --cfg configs/synthetic_hrnas_cpu.yaml --sparsity 0.5 0.9 \
        --pretrain-epochs 3 --prune-epochs 2 --retrain-epochs 2 --out output/ticket_controls [KEY VALUE ...]

1. dense pre-training (`--pretrain-epochs`, SLIM and TICKET off), shared by every sparsity;
2. per sparsity s: gradual global pruning (`--method`: magnitude, or LAMP's layer-adaptive magnitude) from
   those weights to density 1 - s (cubic schedule, one step per epoch, `--prune-epochs` steps): the ticket
   (weights + masks);
3. one retrain recipe (`--retrain-epochs`, the config's optimizer and LR, masks fixed) for
   (a) the ticket, (b) a random mask with the ticket's layer-wise densities on the ticket's weights,
   (c) the ticket's mask on re-initialised weights (seed SEED + 1);
   (d) the dense network: the pre-trained weights trained for prune + retrain epochs without masks (the
   same number of epochs as the ticket had), shared by every sparsity.
   `--sparsity 0` runs the ticket's two runs at density 1 (no mask, hence no controls): the cost of splitting
   the epochs into a pruning run and a retrain run (each with its own schedule and optimizer state) for a
   dense network, apart from any pruning.
Every run ends with an evaluation (no flip test). Writes `results.json` (finished runs are skipped on a
rerun; runs started separately on one --out, e.g. one per --sparsity once `dense` exists, keep each other's
entries) and `table.md` into `--out`. Epochs are counted, never minutes.
"""
import argparse
import json
import os
import sys

from src.config.loader import load_config
from src.engine.checkpoint import load_state_checked
from src.engine.cli import run_cli
from src.engine.trainer import Trainer, seed_all
from src.network_factory.registry import build_model
from src.search.tickets.masks import masks_of, prunable_modules, set_mask
from src.search.tickets.pruner import layer_densities, random_masks_like
from src.utils.atomic import update_json_locked, write_text_atomic
from src.utils.state_dict import read_checkpoint, tensor_state


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cfg", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--sparsity", type=float, nargs="+", default=[0.5, 0.9], help="fractions of weights removed")
    p.add_argument("--pretrain-epochs", type=int, default=3)
    p.add_argument("--prune-epochs", type=int, default=2)
    p.add_argument("--retrain-epochs", type=int, default=2)
    p.add_argument("--method", default="magnitude", choices=["magnitude", "lamp"],
                   help="scores of the gradual pruning (TICKET.METHOD); results of another method than magnitude "
                        "are kept under METHOD/ in --out, beside the shared pretrain and dense runs")
    args, opts = p.parse_known_args(argv)
    for s in args.sparsity:
        if not 0 <= s < 1:
            raise ValueError(f"--sparsity must be in [0, 1) (0: the dense pipeline row), got {s:g}")
    args.opts = opts
    return args


def run(args, name: str, epochs: int, prepare=None, **keys) -> dict:
    """Train `epochs` epochs into OUT/name (weights from `prepare(model)`); its last checkpoint and score."""
    out = os.path.join(args.out, name)
    opts = {"OUTPUT_DIR": out, "TRAIN.EPOCHS": epochs, "TRAIN.EVAL_INTERVAL": 10 ** 6, "SLIM.METHOD": "none",
            "TICKET.METHOD": "none", **keys}
    cfg = load_config(args.cfg, list(args.opts) + [str(x) for kv in opts.items() for x in kv])
    seed_all(cfg.SEED)
    model = build_model(cfg)
    if prepare is not None:
        prepare(model, cfg)
    score = Trainer(cfg, model).fit()
    return {"score": score, "ckpt": os.path.join(out, "last.pth"), "epochs": epochs}


def loader(path):
    def prepare(model, cfg):
        load_state_checked(model, tensor_state(read_checkpoint(path), path), path)
    return prepare


def main(argv=None) -> int:
    args = parse(argv)
    os.makedirs(args.out, exist_ok=True)
    res_path = os.path.join(args.out, "results.json")
    results = json.load(open(res_path)) if os.path.isfile(res_path) else {}

    def once(key, fn):
        if key not in results:
            record = fn()
            results.update(update_json_locked(res_path, lambda current: {**(current or {}), key: record}))
        return results[key]

    pre = once("pretrain", lambda: run(args, "pretrain", args.pretrain_epochs))
    once("dense", lambda: run(args, "dense", args.prune_epochs + args.retrain_epochs, loader(pre["ckpt"])))
    for s in args.sparsity:
        tag = sparsity_tag(args, s)
        ticket = once(f"{tag}/ticket_search", lambda: run(
            args, f"{tag}/ticket_search", args.prune_epochs, loader(pre["ckpt"]), **{
                "TICKET.METHOD": args.method, "TICKET.SCHEDULE": "cubic", "TICKET.TARGET_DENSITY": 1 - s,
                "TICKET.INTERVAL": 1, "TICKET.STEPS": args.prune_epochs}))

        def with_ticket(change=None, reinit_seed=None):
            def prepare(model, cfg):
                if reinit_seed is not None:  # the ticket's masks on fresh weights (another init than pretrain's)
                    seed_all(cfg.SEED + reinit_seed)
                    model.load_state_dict(build_model(cfg).state_dict())
                    donor = build_model(cfg)
                    loader(ticket["ckpt"])(donor, cfg)
                    masks = masks_of(donor)
                    for name, m in prunable_modules(model):
                        if name in masks:
                            set_mask(m, masks[name])
                    return
                loader(ticket["ckpt"])(model, cfg)
                if change is not None:
                    change(model)
            return prepare

        def densities(name):
            cfg = load_config(args.cfg, list(args.opts))
            model = build_model(cfg)
            loader(results[name]["ckpt"])(model, cfg)
            return layer_densities(prunable_modules(model))

        once(f"{tag}/ticket", lambda: run(args, f"{tag}/ticket", args.retrain_epochs, with_ticket()))
        if s == 0:  # no mask to control: the row shows what the prune + retrain runs cost a dense network
            continue
        once(f"{tag}/random_mask", lambda: run(
            args, f"{tag}/random_mask", args.retrain_epochs,
            with_ticket(change=lambda m: random_masks_like(prunable_modules(m), seed=1))))
        once(f"{tag}/reinit", lambda: run(args, f"{tag}/reinit", args.retrain_epochs, with_ticket(reinit_seed=1)))
        assert densities(f"{tag}/random_mask") == densities(f"{tag}/ticket")
    write_text_atomic(os.path.join(args.out, "table.md"), table(args, results))
    print(table(args, results))
    return 0


def sparsity_tag(args, s: float) -> str:
    return f"s{s:g}" if args.method == "magnitude" else f"{args.method}/s{s:g}"


def table(args, results) -> str:
    lines = [f"pretrain {args.pretrain_epochs} epochs (dense), prune {args.prune_epochs}, retrain "
             f"{args.retrain_epochs} (masks fixed); AP without flip test", "",
             "| sparsity | (a) ticket | (b) random mask | (c) ticket mask, re-init | (d) dense | a - b | a - d |",
             "|---|---|---|---|---|---|---|"]
    dense = results["dense"]["score"]
    for s in args.sparsity:
        tag = sparsity_tag(args, s)
        a, b, c = (results.get(f"{tag}/{k}", {}).get("score") for k in ("ticket", "random_mask", "reinit"))
        b_, c_, ab = ("-", "-", "-") if s == 0 else (f"{b:.4f}", f"{c:.4f}", f"{a - b:+.4f}")
        label = f"{s:.0%}" if args.method == "magnitude" else f"{s:.0%} ({args.method})"
        lines.append(f"| {label} | {a:.4f} | {b_} | {c_} | {dense:.4f} | {ab} | {a - dense:+.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(run_cli(main))
