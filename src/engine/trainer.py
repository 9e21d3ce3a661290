"""The training / search loop: data and strategy steps; everything else is a hook (src/engine/hooks.py).

    for epoch: before_epoch -> for it: before_step, strategy.step, after_step -> after_epoch
    after_train (only when the loop ended normally)

Hooks run in list order; a hook ends the run early with `trainer.request_stop(reason)`: the epoch ends
after the current iteration, and its after_epoch hooks see `trainer.is_last_epoch`."""
import math
import os
import random

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from src.architecture.arch_params import arch_parameter_names
from src.architecture.genotype.genotype import genotype_of
from src.config.loader import save_config
from src.engine.checkpoint import load_state_checked, save_checkpoint
from src.engine.hooks import default_hooks
from src.engine.pose_task import build_task
from src.engine.prefetch import Prefetcher
from src.engine.run_log import RunLog
from src.network_factory.from_genotype import build_from_genotype, run_fields
from src.search.base import NonFiniteError
from src.search.slimming import build_slimmer
from src.search.split import SplitSampler, bilevel_split
from src.search.strategies import build_strategy, strategy_class
from src.utils import distributed as dist_utils
from src.utils.state_dict import read_checkpoint, tensor_state


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(cfg) -> torch.device:
    if cfg.DEVICE == "auto":
        return torch.device("cuda", dist_utils.get_local_rank()) if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(cfg.DEVICE)


def place(cfg, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model on `device`, its 4-d weights in the memory format of cfg.MEMORY_FORMAT (a convolution whose
    weight is channels_last writes channels_last, so the activations follow without touching the inputs)."""
    fmt = cfg.MEMORY_FORMAT
    if fmt not in ("auto", "channels_last", "contiguous"):
        raise ValueError(f"unknown MEMORY_FORMAT '{fmt}' (auto, channels_last, contiguous)")
    last = fmt == "channels_last" or (fmt == "auto" and device.type == "cpu")
    return model.to(device, memory_format=torch.channels_last if last else torch.contiguous_format)


def lr_factor(cfg, progress: float) -> float:
    """The lr multiplier after `progress` epochs (a fraction: the scheduler steps every iteration). "constant",
    "cosine" and "multistep" change at epoch boundaries only (they read whole epochs); "poly" changes every
    iteration, (1 - progress / EPOCHS) ** TRAIN.POLY_POWER, as HRNet-seg."""
    schedule, epochs = cfg.TRAIN.LR_SCHEDULE, max(1, cfg.TRAIN.EPOCHS)
    epoch = math.floor(progress + 1e-9)  # whole epochs done (robust to the float division by the epoch length)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * epoch / epochs))
    if schedule == "multistep":
        return cfg.TRAIN.LR_FACTOR ** sum(epoch >= s for s in cfg.TRAIN.LR_STEPS)
    if schedule == "poly":
        if cfg.TRAIN.POLY_POWER <= 0:
            raise ValueError(f"TRAIN.POLY_POWER must be > 0, got {cfg.TRAIN.POLY_POWER}")
        return max(0.0, 1.0 - progress / epochs) ** cfg.TRAIN.POLY_POWER
    raise ValueError(f"unknown TRAIN.LR_SCHEDULE '{schedule}' (constant, cosine, multistep, poly)")


def to_device(batch, device):
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


class Trainer:
    """Builds the data, the strategy and the hooks from the config, then `fit()`. The model is built by the
    caller (supernet, or derived network from a genotype). A network that is not the config's (`store_genotype`:
    shrunk by slimming, or built on a transferred ticket's shrunk backbone) puts its genotype in every checkpoint;
    a resumed checkpoint that carries one is rebuilt here from it."""

    def __init__(self, cfg, model, *, resume=False, show_arch_value=False, store_genotype=False):
        self.cfg = cfg
        self.store_genotype = store_genotype
        self.distributed = dist_utils.get_world_size() > 1
        self.main = dist_utils.is_main()
        self.device = pick_device(cfg)
        self.out_dir = cfg.OUTPUT_DIR
        self.show_arch_value = show_arch_value
        self.task = build_task(cfg)
        self.train_set = self.task.build_dataset("train")
        self.val_set = self.task.build_dataset("val") if self.main else None
        self.last_path = os.path.join(self.out_dir, "last.pth")
        self.best_path = os.path.join(self.out_dir, "best.pth")
        resume_state = self._load_resume_state() if resume else None
        if resume_state is not None and "genotype" in resume_state:  # shrunk: rebuild what was left
            if arch_parameter_names(model):
                raise ValueError(f"{self.last_path}: resuming a joint fabric + slimming search after a shrink is "
                                 "not supported; retrain from its genotype.json instead")
            model = build_from_genotype(cfg, resume_state["genotype"])
            self.store_genotype = True
        self.core = place(cfg, model, self.device)
        self.slimmer = build_slimmer(cfg, self.core)
        self.model = self._wrap()
        self.strategy = build_strategy(cfg, self.model, self.criterion)
        self._build_loaders()
        n_iter = self.iters_per_epoch()  # the scheduler steps every iteration: lr_factor reads epochs as a fraction
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.strategy.weight_optimizer,
                                                           lambda s: lr_factor(cfg, s / n_iter))
        self.start_epoch, self.step, self.best = 0, 0, -float("inf")
        self.stop_reason, self.is_last_epoch, self.batches = "", False, None
        self.hooks = default_hooks(self)
        if resume_state is not None:
            self._resume(resume_state)
        # only now that every input was read and checked does the run write anything
        self.log = RunLog(self.out_dir, enabled=self.main)
        if self.main:
            save_config(cfg, os.path.join(self.out_dir, "config.yaml"))
            if resume_state is not None:
                self.log.info(f"resumed from {self.last_path} at epoch {self.start_epoch}")

    def _wrap(self):
        if not self.distributed:
            return self.core
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(
            self.core, device_ids=ids, find_unused_parameters=strategy_class(self.cfg).skips_modules)

    def rewrap(self) -> None:
        """After the network's structure changed (a shrink): its new modules in the run's memory format (the
        parameters stay the same objects, so the optimizer keeps them), a new DDP wrapper, the strategy re-bound."""
        place(self.cfg, self.core, self.device)
        self.model = self._wrap()
        self.strategy.rebind(self.model)

    def criterion(self, output, batch):
        """The task loss, plus the slimming penalty when slimming runs. Every strategy calls this one
        criterion, so the penalty enters the arch objective too (see src/search/slimming.py)."""
        loss = self.task.criterion(output, batch)
        return loss + self.slimmer.penalty() if self.slimmer is not None else loss

    # ------------------------------------------------------------------ data
    def _build_loaders(self):
        cfg, n = self.cfg, len(self.train_set)
        if self.strategy.uses_arch_split:
            weight_idx, arch_idx = bilevel_split(self.train_set.split_groups(), cfg.SEARCH.SPLIT_RATIO, cfg.SEED)
        else:
            weight_idx, arch_idx = list(range(n)), []
        self.samplers = [SplitSampler(weight_idx, seed=cfg.SEED)]
        if arch_idx:
            self.samplers.append(SplitSampler(arch_idx, seed=cfg.SEED + 1))
        self.loaders = [DataLoader(self.train_set, batch_size=cfg.TRAIN.BATCH_SIZE, sampler=s, drop_last=True,
                                   num_workers=cfg.WORKERS, persistent_workers=False) for s in self.samplers]
        if len(self.loaders[0]) == 0:
            raise ValueError(f"training set too small: {n} samples for TRAIN.BATCH_SIZE {cfg.TRAIN.BATCH_SIZE}")

    def iters_per_epoch(self) -> int:
        n = len(self.loaders[0])
        if len(self.loaders) > 1:
            n = min(n, len(self.loaders[1]))
        cap = self.cfg.TRAIN.MAX_ITERS_PER_EPOCH
        return min(n, cap) if cap > 0 else n

    # ------------------------------------------------------------------ checkpoints
    def state(self, epoch_done: int) -> dict:
        state = {"model": self.core.state_dict(), "strategy": self.strategy.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "epoch": epoch_done, "step": self.step, "best": self.best}
        for hook in self.hooks:
            state.update(hook.state_dict())
        if self.store_genotype:
            state["genotype"] = genotype_of(run_fields(self.cfg), self.core).to_dict()  # weights_only-loadable
        return state

    def save(self, epoch_done: int, path: str) -> None:
        save_checkpoint(self.state(epoch_done), path)

    def _load_resume_state(self) -> dict:
        if not os.path.isfile(self.last_path):
            raise FileNotFoundError(f"--resume: no checkpoint to resume from at {self.last_path}")
        return read_checkpoint(self.last_path)

    def _resume(self, state: dict):
        load_state_checked(self.core, tensor_state(state, self.last_path), self.last_path)
        for hook in self.hooks:
            hook.load_state_dict(state)
        self.strategy.load_state_dict(state["strategy"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.start_epoch, self.step, self.best = int(state["epoch"]), int(state["step"]), float(state["best"])
        self.scheduler.last_epoch = self.step  # it steps every iteration (checkpoints before poly counted epochs)

    # ------------------------------------------------------------------ loop
    def request_stop(self, reason: str) -> None:
        """End the run after the current epoch (time budget, collapse monitor)."""
        if not self.stop_reason:
            self.stop_reason = reason

    def call(self, event: str, *args) -> None:
        """Run hook event `event` on every hook in order (hooks use it for events they raise, e.g. shrinks)."""
        for hook in self.hooks:
            getattr(hook, event)(*args)

    def fit(self) -> float:
        epoch = self.start_epoch
        try:
            while epoch < self.cfg.TRAIN.EPOCHS:
                self.call("before_epoch", epoch)
                self._train_epoch(epoch)
                self.is_last_epoch = epoch + 1 == self.cfg.TRAIN.EPOCHS or bool(self.stop_reason)
                self.call("after_epoch", epoch)
                epoch += 1
                if self.stop_reason:
                    self.log.info(f"stopped after epoch {epoch}: {self.stop_reason}")
                    break
            self.call("after_train")
            dist_utils.barrier()
        except NonFiniteError as exc:
            self.log.info(f"stopped: {exc}")
            raise
        finally:
            self.log.close()
        return self.best

    def _train_epoch(self, epoch: int) -> None:
        cfg = self.cfg
        seed_all(cfg.SEED * 1000 + epoch)
        for s in self.samplers:
            s.set_epoch(epoch)
        arch_active = epoch >= cfg.SEARCH.WARMUP_EPOCHS
        self.strategy.set_epoch(epoch)
        n_iter = self.iters_per_epoch()
        # progress bars on a terminal only (None: tqdm's own check), so that logs and errors stay plain lines
        bar = tqdm(range(n_iter), desc=f"epoch {epoch}", disable=None if self.main else True, mininterval=2.0,
                   leave=False)
        # the next batch loads in a background thread during each step (same batches, same RNG draws)
        with Prefetcher(zip(*self.loaders), n_iter) as batches:
            for it in bar:
                stats = self._train_step(epoch, it, n_iter, next(batches), arch_active)
                bar.set_postfix(loss=f"{stats['loss']:.5f}", refresh=False)
                if self.stop_reason:
                    break

    def _train_step(self, epoch: int, it: int, n_iter: int, batches, arch_active: bool) -> dict:
        lr = self.strategy.weight_optimizer.param_groups[0]["lr"]
        self.batches = [to_device(b, self.device) for b in batches]
        stats = {}
        for hook in self.hooks:
            stats.update(hook.before_step(epoch, it, n_iter))
        stats.update(self.strategy.step(self.batches[0], self.batches[1] if len(self.batches) > 1 else None,
                                        arch_active=arch_active))
        self.step += 1
        self.scheduler.step()
        for hook in self.hooks:
            stats.update(hook.after_step(epoch, it, n_iter, stats))
        if self.step % self.cfg.PRINT_FREQ == 0 or it == n_iter - 1:
            self.log.scalars({"epoch": epoch, "lr": lr, **stats}, self.step)
            self.log.info(f"epoch {epoch} iter {it + 1}/{n_iter} " +
                          " ".join(f"{k} {v:.5g}" for k, v in stats.items()))
        return stats

    def evaluate(self, epoch: int):
        score = None
        if self.main:
            metrics = self.task.evaluate(self.core, self.val_set, os.path.join(self.out_dir, "eval"),
                                         self.cfg.TEST.BATCH_SIZE, self.device)
            score = float(metrics["score"])
            self.log.scalars({"epoch": epoch, **{f"val/{k}": v for k, v in metrics.items()
                                                 if isinstance(v, (int, float))}}, self.step, kind="eval")
            self.log.info(f"epoch {epoch} eval: " + " ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                                                              if isinstance(v, (int, float))))
        return score
