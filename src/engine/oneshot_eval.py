"""Evaluate subnets of a one-shot trained ScaleNAS supernet without retraining: BN calibration, then the task's
evaluation; `subnet_scorer`, the (FLOPs, score) function of the evolutionary search; and a subnet's genotype.

`evaluate_subnet` activates the subnet, calibrates the BNs it runs on ONESHOT.CALIB_BATCHES training batches
(with training augmentation, as ScaleNAS; a DataLoader shuffled by a generator seeded with SEED and the global
RNGs seeded with SEED, so every subnet sees the same batches), evaluates, and then puts back the model's
buffers and active subnet: evaluating one subnet never changes what another gets.
"""
from typing import Callable, Optional, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader

from src.architecture.genotype.genotype import Genotype, genotype_of
from src.architecture.scale.subnet import ScaleSubnet
from src.architecture.scale.supernet import active_flops, find_scale_supernet
from src.engine.trainer import seed_all
from src.network_factory.from_genotype import run_fields
from src.search.base import preserved_buffers
from src.search.bn_calibration import calibrate_bn


def calibration_loader(cfg, train_set) -> DataLoader:
    """TRAIN.BATCH_SIZE batches of the training set in an order fixed by SEED."""
    gen = torch.Generator().manual_seed(int(cfg.SEED))
    return DataLoader(train_set, batch_size=cfg.TRAIN.BATCH_SIZE, shuffle=True, drop_last=True, generator=gen,
                      num_workers=cfg.WORKERS)


def calibrate(cfg, model: nn.Module, train_set, device: torch.device, calib_batches: Optional[int] = None) -> None:
    """Calibrate the BNs `model` runs on `calib_batches` (default ONESHOT.CALIB_BATCHES) training batches, the
    same batches for every call (order fixed by SEED)."""
    seed_all(cfg.SEED)
    n = int(cfg.ONESHOT.CALIB_BATCHES if calib_batches is None else calib_batches)
    calibrate_bn(model, calibration_loader(cfg, train_set), n, device)


def evaluate_subnet(cfg, model: nn.Module, subnet: ScaleSubnet, task, train_set, val_set, device: torch.device,
                    out_dir: str, calib_batches: Optional[int] = None) -> dict:
    """The task's metrics of `model` with `subnet` active and its BNs calibrated (see the module doc)."""
    supernet = find_scale_supernet(model)
    previous = supernet.active
    with preserved_buffers(model):
        supernet.set_active(subnet)
        try:
            calibrate(cfg, model, train_set, device, calib_batches)
            model.eval()
            with torch.no_grad():
                return task.evaluate(model, val_set, out_dir, cfg.TEST.BATCH_SIZE, device)
        finally:
            supernet.set_active(previous)


def subnet_scorer(cfg, model: nn.Module, task, train_set, val_set, device: torch.device, out_dir: str,
                  calib_batches: Optional[int] = None) -> Callable[[ScaleSubnet], Tuple[float, float]]:
    """score(subnet) -> (FLOPs of `model` with it active on one MODEL.INPUT_SIZE image, the task's score after
    BN calibration); `model` is left as it was after every call."""
    supernet = find_scale_supernet(model)

    def score(subnet: ScaleSubnet) -> Tuple[float, float]:
        flops = active_flops(model, supernet, subnet, cfg.MODEL.INPUT_SIZE)
        metrics = evaluate_subnet(cfg, model, subnet, task, train_set, val_set, device, out_dir, calib_batches)
        return float(flops), float(metrics["score"])
    return score


def subnet_genotype(cfg, model: nn.Module, subnet: ScaleSubnet) -> Genotype:
    """The genotype of `subnet` of a scalenet supernet (run fields from `cfg`)."""
    supernet = find_scale_supernet(model)
    previous = supernet.active
    supernet.set_active(subnet)
    try:
        return genotype_of(run_fields(cfg), model)
    finally:
        supernet.set_active(previous)
