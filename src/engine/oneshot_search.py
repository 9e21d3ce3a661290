"""The evolutionary search over a one-shot trained ScaleNAS supernet, as tools/evolve.py runs it (in one process
or on every torchrun rank): the supernet's weights loaded, subnets scored by `subnet_scorer` (FLOPs,
BN-calibrated task score), NSGA-II (src/search/evolution.py) over `ScaleSpaceOps`, and on rank 0 the outputs
(evaluated.csv, pareto.png, chosen.json) plus the chosen subnet's genotype.json.

OUT/search.json records what the search in OUT runs on (config, overrides, supernet, calibration batches);
a rerun with another one on the same OUT is refused, so that a resumed state never mixes two supernets.
"""
import os
from typing import Callable, Dict, Optional

from src.architecture.genotype.genotype import save_genotype
from src.architecture.scale.space import ScaleSpaceSpec, groups
from src.data.topdown import load_json
from src.engine.checkpoint import load_model_weights
from src.engine.oneshot_eval import subnet_genotype, subnet_scorer
from src.engine.pose_task import build_task
from src.engine.trainer import pick_device, place, seed_all
from src.network_factory.registry import build_model
from src.search.evolution import EvolutionSettings, run_evolution
from src.search.evolution_report import write_outputs
from src.search.scale_ops import ScaleSpaceOps
from src.utils import distributed as dist_utils
from src.utils.atomic import write_json_atomic


def check_search_recipe(out: str, recipe: dict) -> None:
    """OUT/search.json holds `recipe` (written by rank 0 on the first run); a different one is refused."""
    path = os.path.join(out, "search.json")
    if os.path.isfile(path):
        old = load_json(path, "search record")
        if not isinstance(old, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(old).__name__}")
        for name, value in recipe.items():
            if old.get(name) != value:
                raise ValueError(f"{path}: field '{name}' is {old.get(name)!r}, this run has {value!r} "
                                 "(use another --out)")
    elif dist_utils.is_main():
        write_json_atomic(path, recipe, indent=1)
    dist_utils.barrier()


def evolve_supernet(cfg, ckpt: str, out: str, settings: EvolutionSettings, recipe: dict,
                    calib_batches: Optional[int] = None, max_flops: Optional[float] = None,
                    min_metric: Optional[float] = None, log: Callable[[str], None] = print) -> Optional[Dict[str, str]]:
    """Run (or resume) the search in `out`; on rank 0 returns {output name: path} (csv, png, chosen, genotype),
    elsewhere None."""
    calib = int(cfg.ONESHOT.CALIB_BATCHES if calib_batches is None else calib_batches)
    check_search_recipe(out, {**recipe, "calib_batches": calib})
    seed_all(cfg.SEED)
    model = build_model(cfg)
    load_model_weights(model, ckpt)
    device = pick_device(cfg)
    place(cfg, model, device)
    task = build_task(cfg)
    rank_dir = os.path.join(out, "eval", f"rank{dist_utils.get_rank()}")  # ranks evaluate side by side
    score = subnet_scorer(cfg, model, task, task.build_dataset("train"), task.build_dataset("val"), device,
                          rank_dir, calib)
    ops = ScaleSpaceOps(ScaleSpaceSpec.from_config(cfg.MODEL.SCALE), groups(cfg))
    state = run_evolution(ops, score, settings, os.path.join(out, "state.json"), log)
    if not dist_utils.is_main():
        return None
    chosen, paths = write_outputs(state, out, max_flops, min_metric, task.score_name)
    paths["genotype"] = os.path.join(out, "genotype.json")
    save_genotype(subnet_genotype(cfg, model, ops.from_dict(chosen.subnet, "subnet")), paths["genotype"])
    log(f"chosen {chosen.key}: {chosen.flops / 1e9:.4f} GFLOPs, {task.score_name} {chosen.metric:.4f}")
    return paths
