"""A ticket's report and its deployment export:

    python tools/ticket.py --cfg CFG --ckpt TICKET.pth [--json report.json] [--finalize plain.pth] [KEY VALUE ...]

prints the true density of every prunable layer and in total, the non-zero parameters and the sparse MACs
counted per layer (src/search/tickets/report.py) at MODEL.INPUT_SIZE; `--finalize` folds the masks into the
weights and writes a plain state dict (`model`, and the `genotype` of a shrunk network), after checking that
it gives the masked network's outputs on a random batch."""
import argparse
import sys

import torch

from src.config.loader import load_config
from src.engine.checkpoint import save_checkpoint
from src.engine.cli import run_cli
from src.engine.entry import network_for_checkpoint
from src.search.tickets.masks import finalize, masks_of
from src.search.tickets.report import format_report, ticket_report
from src.utils.atomic import write_json_atomic


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cfg", required=True)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--genotype", default="")
    p.add_argument("--json", default="", help="write the report as JSON here")
    p.add_argument("--finalize", default="", help="write the masks folded into the weights here")
    args, opts = p.parse_known_args(argv)
    cfg = load_config(args.cfg, opts)
    model, state = network_for_checkpoint(cfg, args.ckpt, args.genotype)
    if not masks_of(model):
        raise ValueError(f"{args.ckpt} holds no masks (not a ticket)")
    model.eval()
    w, h = cfg.MODEL.INPUT_SIZE
    report = ticket_report(model, (1, 3, h, w))
    print(format_report(report))
    if args.json:
        write_json_atomic(args.json, report, indent=1)
    if args.finalize:
        x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            before = model(x)
            after = finalize(model)(x)
        diff = float((before - after).abs().max())
        if diff > 1e-6 * max(1.0, float(before.abs().max())):
            raise ValueError(f"--finalize: outputs differ by {diff:.3g} after folding the masks")
        out = {"model": model.state_dict()}
        if "genotype" in state:
            out["genotype"] = state["genotype"]
        save_checkpoint(out, args.finalize)
        print(f"finalized {args.finalize}: plain state dict, max |output difference| {diff:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
