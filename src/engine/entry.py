"""What train.py and test.py run."""
import os
import sys

import torch

from src.architecture.arch_params import arch_parameter_names
from src.engine.checkpoint import load_state_checked
from src.engine.cli import config_from, test_args, train_args
from src.engine.pose_task import build_task
from src.engine.trainer import Trainer, pick_device, place, seed_all
from src.network_factory.registry import build_model
from src.search.tickets.masks import masks_of
from src.search.tickets.report import format_report, ticket_report
from src.utils import distributed as dist_utils
from src.utils.state_dict import read_checkpoint, tensor_state


def build_network(cfg, genotype_path: str = ""):
    """The supernet of the config, or the derived network of a genotype JSON."""
    if genotype_path:
        from src.network_factory.from_genotype import build_from_genotype_file
        return build_from_genotype_file(cfg, genotype_path)
    return build_model(cfg)


def network_for_checkpoint(cfg, path: str, genotype_path: str = ""):
    """The network of checkpoint `path` with its weights (and masks): built from `genotype_path`, else from
    the genotype the checkpoint holds (a network shrunk by slimming), else from the config."""
    if genotype_path:
        model = build_network(cfg, genotype_path)  # a bad genotype is reported before the checkpoint is read
        state = read_checkpoint(path)
    else:
        state = read_checkpoint(path)
        if "genotype" in state:
            from src.network_factory.from_genotype import build_from_genotype
            model = build_from_genotype(cfg, state["genotype"])
        else:
            model = build_network(cfg)
    load_state_checked(model, tensor_state(state, path), path)
    return model, state


def _override(cfg, section: str, key: str, value: str, why: str) -> None:
    """cfg.SECTION.KEY = value, with a note (main rank) saying why, when it changes anything."""
    old = cfg[section][key]
    if old != value:
        if dist_utils.is_main():
            print(f"note: {why}: {section}.{key} {old} -> {value}", file=sys.stderr)
        cfg.defrost()
        cfg[section][key] = value
        cfg.freeze()


def _fixed_masks(cfg, flag: str):
    """--ticket / --transfer train with the ticket's masks fixed: no pruning schedule."""
    _override(cfg, "TICKET", "METHOD", "none", f"{flag} keeps the ticket's masks fixed")


def _on_shrunk_backbone(cfg, genotype: dict, path: str):
    """The config's model built on the backbone of a ticket shrunk by slimming (the shape the genotype in the
    ticket describes); its checkpoints carry its own genotype, from which test.py and --resume rebuild it."""
    from src.network_factory.from_genotype import backbone_of
    from src.network_factory.registry import is_searchable
    if not is_searchable(cfg.MODEL.NAME):
        raise ValueError(f"--transfer: ticket {path} was shrunk by slimming; its backbone transfers only to a model "
                         f"a genotype describes, not MODEL.NAME '{cfg.MODEL.NAME}'")
    try:
        backbone = backbone_of(genotype)
    except ValueError as exc:
        raise ValueError(f"--transfer: the genotype of ticket {path}: {exc}") from None
    with torch.device("meta"):  # only its backbone's kind: nothing allocated
        own = type(build_model(cfg).backbone)
    if type(backbone) is not own:
        raise ValueError(f"--transfer: incompatible backbones: ticket {path} has a {type(backbone).__name__}, "
                         f"MODEL.NAME '{cfg.MODEL.NAME}' of this config a {own.__name__}")
    if dist_utils.is_main():
        print(f"note: --transfer: ticket {path} was shrunk by slimming: {cfg.MODEL.NAME} built on its backbone",
              file=sys.stderr)
    return build_model(cfg, backbone=backbone)


def _ticket_model(cfg, args):
    """The model of --ticket (the ticket itself) or --transfer (the config's model, the ticket's backbone), and
    whether it is a shrunk network no genotype file describes (its checkpoints must carry its genotype)."""
    from src.search.tickets.transfer import has_masks, transfer_backbone
    if args.ticket:
        model, state = network_for_checkpoint(cfg, args.ticket, args.genotype)
        if not has_masks(tensor_state(state, args.ticket)):
            raise ValueError(f"--ticket: {args.ticket} holds no masks (not a ticket)")
        _fixed_masks(cfg, "--ticket")
        return model, "genotype" in state and not args.genotype  # a shrunk ticket, rebuilt from its genotype
    state = read_checkpoint(args.transfer)
    shrunk = "genotype" in state and not args.genotype  # by slimming: the config's model on the ticket's backbone
    model = _on_shrunk_backbone(cfg, state["genotype"], args.transfer) if shrunk else build_network(cfg, args.genotype)
    n = transfer_backbone(model, tensor_state(state, args.transfer), args.transfer)
    if dist_utils.is_main():
        print(f"note: --transfer took {n} backbone tensors (masks included) from {args.transfer}", file=sys.stderr)
    _fixed_masks(cfg, "--transfer")
    return model, shrunk


def train_main(argv=None) -> int:
    args = train_args(argv)
    if args.inherit and not args.genotype:
        raise ValueError("--inherit needs --genotype (the derived network that inherits the supernet's weights)")
    if sum(map(bool, (args.inherit, args.ticket, args.transfer))) > 1:
        raise ValueError("--inherit, --ticket and --transfer exclude each other")
    extra = ["SEARCH.STRATEGY", args.search] if args.search else []
    extra += ["TASK", args.task] if args.task else []
    cfg = config_from(args, extra)
    dist_utils.init_distributed(cfg.DIST.BACKEND)
    try:
        seed_all(cfg.SEED)
        model, store_genotype = (_ticket_model(cfg, args) if args.ticket or args.transfer
                                 else (build_network(cfg, args.genotype), False))
        if args.genotype and not arch_parameter_names(model):  # nothing to search
            _override(cfg, "SEARCH", "STRATEGY", "none", "--genotype retrains the derived network")
        if args.inherit:
            from src.network_factory.from_genotype import inherit_weights
            inherit_weights(model, args.inherit)
        if args.param_flop and dist_utils.is_main():
            from src.engine.model_report import print_param_flop
            print_param_flop(cfg, model)
        best = Trainer(cfg, model, resume=args.resume, show_arch_value=args.show_arch_value,
                       store_genotype=store_genotype).fit()
        if dist_utils.is_main():
            print(f"best {best:.4f}")
    finally:
        dist_utils.cleanup()
    return 0


def test_main(argv=None) -> int:
    args = test_args(argv)
    cfg = config_from(args)
    ckpt = args.ckpt or cfg.TEST.CKPT or os.path.join(cfg.OUTPUT_DIR, "best.pth")
    model, _ = network_for_checkpoint(cfg, ckpt, args.genotype)
    if masks_of(model):  # a ticket: its true densities and sparse MACs
        w, h = cfg.MODEL.INPUT_SIZE
        print(format_report(ticket_report(model, (1, 3, h, w))))
    if args.param_flop:
        from src.engine.model_report import print_param_flop
        print_param_flop(cfg, model)
    device = pick_device(cfg)
    place(cfg, model, device).eval()
    use_dt = args.use_dt or not cfg.TEST.USE_GT_BBOX
    task = build_task(cfg, use_dt=use_dt, margin=args.margin) if cfg.TASK == "pose" else build_task(cfg)
    dataset = task.build_dataset("val")
    out_dir = os.path.join(cfg.OUTPUT_DIR, "test")
    with torch.no_grad():
        metrics = task.evaluate(model, dataset, out_dir, cfg.TEST.BATCH_SIZE, device, **task.test_options(args))
    if "table" in metrics:  # segmentation: per-class IoU
        print(metrics["table"])
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and k != "score":
            print(f"{k:>10s} {v:.4f}")
    print(f"{task.score_name} {metrics['score']:.4f}")
    return 0
