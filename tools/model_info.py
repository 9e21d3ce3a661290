"""Parameters, FLOPs and MACs of any registered model (FLOPs from torch's FlopCounterMode, MACs = FLOPs / 2).

    python tools/model_info.py --cfg configs/cls/hrformer_small.yaml [--input-size H W] [KEY VALUE ...]

The last two lines are `params <integer>` and `macs <integer>`.
"""
import argparse
import sys

from src.config.loader import load_config
from src.engine.cli import run_cli
from src.network_factory.registry import build_model
from src.utils.flops import complexity_table, model_complexity


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", required=True, help="config YAML")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="input height and width (default: MODEL.INPUT_SIZE of the config)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    a = p.parse_args(argv)
    cfg = load_config(a.cfg, a.opts)
    h, w = a.input_size if a.input_size else (cfg.MODEL.INPUT_SIZE[1], cfg.MODEL.INPUT_SIZE[0])
    model = build_model(cfg)
    groups = model.complexity_groups()
    rows = model_complexity(model, (1, 3, h, w), groups)
    print(f"model {cfg.MODEL.NAME}, input {h}x{w} (H x W), batch 1")
    print(complexity_table(rows))
    print(f"flops {rows[0]['flops']}")
    print(f"params {rows[0]['params']}")
    print(f"macs {rows[0]['macs']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
