"""Export a derived network (or HRFormer) to ONNX, check it against PyTorch with onnxruntime, time both.

    python tools/export_onnx.py --genotype G --ckpt retrain/best.pth --out net.onnx [--cfg CFG] [KEY VALUE ...]
    python tools/export_onnx.py --cfg CFG --ckpt CKPT --out net.onnx [KEY VALUE ...]   # a model without search space
    (--random-init instead of --ckpt: random weights, for a try or a latency figure)

The network (a genotype's derived network: part_cnf / fabric / hr_dense; or the config's model when it has no
search space: hrformer_pose, ...) is exported in eval mode at MODEL.INPUT_SIZE, input "image" [batch, 3, H, W]
with a dynamic batch axis (src/engine/onnx_export.py). Without --cfg, the config is the defaults with the
genotype's run fields. The file is written atomically, and only when onnxruntime's outputs on random inputs
match PyTorch's. stderr: human-readable lines; stdout: one JSON line (file, parity differences and tolerance,
ms per image at batch 1 in PyTorch and onnxruntime on --threads threads). What cannot be exported (a
supernet, an op the exporter rejects, outputs that do not match) exits 1 with one line on stderr and writes
nothing.
"""
import argparse
import json
import os
import sys

import torch

from src.architecture.genotype.genotype import load_genotype
from src.config.loader import load_config
from src.engine.checkpoint import load_model_weights
from src.engine.cli import run_cli
from src.engine.entry import build_network
from src.engine.onnx_export import INPUT, OPSET, export_onnx, latency
from src.engine.trainer import place
from src.network_factory.from_genotype import config_opts
from src.network_factory.registry import is_searchable


def build(args):
    """(config, network with its weights) of the command line."""
    base = config_opts(load_genotype(args.genotype)) if args.genotype and not args.cfg else []
    cfg = load_config(args.cfg, base + list(args.opts))
    if not args.genotype and is_searchable(cfg.MODEL.NAME):
        raise ValueError(f"MODEL.NAME {cfg.MODEL.NAME} is a search space (its config builds the supernet): "
                         "give --genotype G to export its derived network")
    torch.manual_seed(cfg.SEED)
    model = build_network(cfg, args.genotype)
    if args.ckpt:
        load_model_weights(model, args.ckpt)
    return cfg, place(cfg, model, torch.device("cpu")).eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--genotype", default="", help="genotype JSON of the derived network to export")
    p.add_argument("--cfg", default="", help="config (needed without --genotype)")
    p.add_argument("--ckpt", default="", help="checkpoint of the network's weights (e.g. the retrain's best.pth)")
    p.add_argument("--random-init", action="store_true", help="random weights instead of --ckpt")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--threads", type=int, default=1, help="threads of PyTorch and onnxruntime (default 1)")
    p.add_argument("--runs", type=int, default=10, help="timed runs per runtime; the best counts (default 10)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = p.parse_args(argv)
    if bool(args.ckpt) == args.random_init:
        p.error("give --ckpt CKPT, or --random-init for random weights")
    if not args.genotype and not args.cfg:
        p.error("give --genotype G (a derived network) or --cfg CFG (a model without a search space)")
    if args.threads < 1 or args.runs < 1:
        p.error("--threads and --runs must be >= 1")
    torch.set_num_threads(args.threads)
    cfg, model = build(args)
    w, h = (int(v) for v in cfg.MODEL.INPUT_SIZE)
    output = "heatmaps" if cfg.TASK == "pose" else "logits"
    parity = export_onnx(model, args.out, (3, h, w), output, args.threads)
    timing = latency(model, args.out, (3, h, w), args.threads, args.runs)
    summary = {"out": args.out, "bytes": os.path.getsize(args.out), "model": cfg.MODEL.NAME,
               "genotype": args.genotype or None, "ckpt": args.ckpt or None, "opset": OPSET,
               "input": {"name": INPUT, "shape": ["batch", 3, h, w]}, "output": output,
               "parity": parity, "latency": timing}
    log = sys.stderr
    print(f"wrote {args.out} ({summary['bytes'] / 1e6:.2f} MB, opset {OPSET}, {cfg.MODEL.NAME}, "
          f"input {INPUT} [batch, 3, {h}, {w}])", file=log)
    print(f"parity onnxruntime vs PyTorch (random inputs, batch {', '.join(map(str, parity['batches']))}): "
          f"max abs diff {parity['max_abs_diff']:.3g}, max rel diff {parity['max_rel_diff']:.3g} "
          f"(of max |output|), tolerance {parity['tolerance']:.3g} = {parity['atol']:g} + {parity['rtol']:g} "
          "x max |output|", file=log)
    print(f"latency at batch 1, {args.threads} thread(s), best of {args.runs}: PyTorch "
          f"{timing['pytorch_ms']:.2f} ms, onnxruntime {timing['onnxruntime_ms']:.2f} ms "
          f"(ratio {timing['ratio']:.2f})", file=log)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
