"""BN calibration of a one-shot subnet: re-estimate the running statistics of the BNs it runs.

The supernet's running statistics mix every subnet trained; a subnet evaluated without retraining needs its
own. `calibrate_bn(model, batches)` sets every BatchNorm's momentum to None (PyTorch's cumulative moving
average), resets its running statistics, runs the model in train mode (no gradients) on the batches, and
then puts back the old statistics of the BNs that did not run (those outside the active subnet), the
momenta and the train/eval state of every module.

What is stored (with the same batch size throughout): running_mean = the mean over batches of the per-batch
means, running_var = the mean over batches of the per-batch *unbiased* variances (what BN's training
forward feeds its running_var); no between-batch term, as in ScaleNAS / OFA calibration.
"""
from typing import Iterable, Optional

import torch
from torch import nn


def _bns(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def calibrate_bn(model: nn.Module, batches: Iterable, num_batches: Optional[int] = None,
                 device: Optional[torch.device] = None) -> int:
    """Re-estimate the running statistics of the BNs that `model` runs on `batches` (image tensors, or dicts
    with an "image"), at most `num_batches` of them; returns how many were used."""
    bns = _bns(model)
    saved = {bn: (bn.momentum, bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
             for bn in bns}
    modes = {m: m.training for m in model.modules()}
    used = 0
    try:
        for bn in bns:
            bn.momentum = None
            bn.reset_running_stats()
        model.train()
        for batch in batches:
            if num_batches is not None and used >= num_batches:
                break
            x = batch["image"] if isinstance(batch, dict) else batch
            model(x.to(device) if device is not None else x)
            used += 1
        if used == 0:
            raise ValueError("BN calibration got no batch")
    finally:
        for bn, (momentum, mean, var, tracked) in saved.items():
            bn.momentum = momentum
            if used == 0 or int(bn.num_batches_tracked) == 0:  # not run by the active subnet: keep its statistics
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)
                bn.num_batches_tracked.copy_(tracked)
        for m, mode in modes.items():
            m.training = mode
    return used
