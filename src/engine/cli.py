"""Command lines of train.py and test.py: parse, build, hand over; bad input ends in one line and a non-zero exit."""
import argparse
import os
import sys

from src.config.loader import ConfigError, load_config
from src.search.base import NonFiniteError
from src.utils.malloc import keep_freed_memory


def _message(exc: BaseException) -> str:
    """The first line of the error; for an error re-raised from a DataLoader worker ("Caught ValueError in
    DataLoader worker process 0." + the worker's traceback), the worker's own message."""
    lines = str(exc).splitlines()
    if not lines:
        return type(exc).__name__
    if lines[0].startswith("Caught ") and "worker" in lines[0]:
        prefix = f"{type(exc).__name__}: "
        worker = [line[len(prefix):] for line in lines if line.startswith(prefix)]
        if worker:
            return worker[-1]
    return lines[0]


def _fail(exc: BaseException, code: int) -> int:
    if os.environ.get("FABRICNAS_DEBUG"):
        raise exc
    print(f"error: {_message(exc)}", file=sys.stderr)
    return code


def run_cli(main, argv=None) -> int:
    """Call `main(argv)`; config errors exit 2, other bad input (files, data, checkpoints) and a non-finite
    loss (the last good checkpoint is kept) exit 1."""
    keep_freed_memory()
    try:
        return main(argv) or 0
    except ConfigError as exc:
        return _fail(exc, 2)
    except (ValueError, OSError, KeyError, NonFiniteError) as exc:
        return _fail(exc, 1)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cfg", required=True, help="experiment YAML (see configs/)")
    parser.add_argument("--genotype", default="", help="build the derived network described by this genotype JSON")
    parser.add_argument("--param_flop", action="store_true", help="print parameters and FLOPs of the model (and per part)")
    parser.epilog = "Trailing KEY VALUE pairs override config keys (yacs), e.g. TRAIN.EPOCHS 5."


def train_args(argv=None):
    p = argparse.ArgumentParser(description="Train a network or search an architecture.")
    _common(p)
    p.add_argument("--search", default="", help="search strategy (overrides SEARCH.STRATEGY): none, random, sync, "
                   "first_order_gradient, second_order_gradient, gdas, oneshot")
    p.add_argument("--show_arch_value", action="store_true", help="print softmaxed alpha/beta tables while searching")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last.pth exactly")
    p.add_argument("--inherit", default="", help="with --genotype: start from this supernet checkpoint's weights")
    p.add_argument("--ticket", default="", help="retrain this ticket checkpoint (weights + masks; masks fixed)")
    p.add_argument("--transfer", default="", help="fine-tune this ticket's backbone (masks fixed) with a new head")
    p.add_argument("--task", default="", help="override TASK (pose, classification, segmentation), e.g. with --transfer")
    return _parse(p, argv)


def _parse(parser: argparse.ArgumentParser, argv):
    """Options anywhere; every other word is a KEY VALUE override."""
    args, rest = parser.parse_known_args(argv)
    unknown = [w for w in rest if w.startswith("--") and w != "--"]
    if unknown:
        parser.error(f"unknown option {unknown[0]}")
    args.opts = [w for w in rest if w != "--"]
    return args


def test_args(argv=None):
    p = argparse.ArgumentParser(description="Evaluate a checkpoint.")
    _common(p)
    p.add_argument("--ckpt", default="", help="checkpoint to evaluate (default TEST.CKPT, then OUTPUT_DIR/best.pth)")
    p.add_argument("--flip-test", "--flip_test", dest="flip_test", action="store_true", help="flip test")
    p.add_argument("--use-dt", "--use_dt", dest="use_dt", action="store_true", help="person boxes from DATASET.DET_FILE")
    p.add_argument("--margin", type=float, default=None, help="box margin (default DATASET.MARGIN)")
    p.add_argument("--multi-scale", "--multi_scale", dest="multi_scale", type=_scales, default=None,
                   metavar="S1,S2,...", help="segmentation: average over these image scales (default TEST.SCALES)")
    p.add_argument("--visualize", action="store_true",
                   help="write PNGs of predicted keypoints and skeletons (segmentation: coloured overlays)")
    return _parse(p, argv)


def _scales(text: str) -> list:
    """"0.75,1,1.25" -> [0.75, 1.0, 1.25] (their range is checked with TEST.SCALES by the task)."""
    try:
        return [float(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, e.g. 0.75,1,1.25; got '{text}'") from None


def config_from(args, extra=()):
    return load_config(args.cfg, list(args.opts) + list(extra))
