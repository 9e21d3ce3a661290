"""The training / search loop: data, strategy steps, logging, evaluation, checkpoints, exact resume."""
import math
import os
import random
import time

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from src.architecture.arch_params import is_arch_name
from src.architecture.genotype import genotype_of
from src.config.loader import save_config
from src.engine.checkpoint import load_state_checked, save_checkpoint
from src.engine.pose_task import build_task
from src.engine.run_log import RunLog
from src.engine.search_outputs import export_search_results
from src.network_factory.from_genotype import build_from_genotype
from src.search.base import NonFiniteError
from src.search.slimming import build_slimmer
from src.search.split import SplitSampler, bilevel_split
from src.search.strategies import build_strategy
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


def lr_factor(cfg, epoch: int) -> float:
    schedule = cfg.TRAIN.LR_SCHEDULE
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * epoch / max(1, cfg.TRAIN.EPOCHS)))
    if schedule == "multistep":
        return cfg.TRAIN.LR_FACTOR ** sum(epoch >= s for s in cfg.TRAIN.LR_STEPS)
    raise ValueError(f"unknown TRAIN.LR_SCHEDULE '{schedule}' (constant, cosine, multistep)")


def to_device(batch, device):
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


class Trainer:
    """Builds everything from the config, then `fit()`."""

    def __init__(self, cfg, model, *, resume=False, show_arch_value=False):
        self.cfg = cfg
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
        if resume_state is not None and "genotype" in resume_state:  # shrunk by slimming: rebuild what was left
            if any(is_arch_name(n) for n, _ in model.named_parameters()):
                raise ValueError(f"{self.last_path}: resuming a joint fabric + slimming search after a shrink is "
                                 "not supported; retrain from its genotype.json instead")
            model = build_from_genotype(cfg, resume_state["genotype"])
        self.core = model.to(self.device)
        self.slimmer = build_slimmer(cfg, self.core)
        self.model = self._wrap()
        self.strategy = build_strategy(cfg, self.model, self.criterion)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.strategy.weight_optimizer, lambda e: lr_factor(cfg, e))
        self._build_loaders()
        self.start_epoch, self.step, self.best, self.shrunk = 0, 0, -float("inf"), False
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
        return torch.nn.parallel.DistributedDataParallel(self.core, device_ids=ids)

    def criterion(self, output, batch):
        loss = self.task.criterion(output, batch)
        return loss + self.slimmer.penalty() if self.slimmer is not None else loss

    # ------------------------------------------------------------------ data
    def _build_loaders(self):
        cfg, n = self.cfg, len(self.train_set)
        if self.strategy.uses_arch_split:
            weight_idx, arch_idx = bilevel_split(n, cfg.SEARCH.SPLIT_RATIO, cfg.SEED)
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
    def _state(self, epoch_done: int) -> dict:
        state = {"model": self.core.state_dict(), "strategy": self.strategy.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "epoch": epoch_done, "step": self.step, "best": self.best}
        if self.slimmer is not None:
            state["slimmer"] = self.slimmer.state_dict()
            if self.shrunk:
                state["genotype"] = genotype_of(self.cfg, self.core)
        return state

    def _load_resume_state(self) -> dict:
        if not os.path.isfile(self.last_path):
            raise FileNotFoundError(f"--resume: no checkpoint to resume from at {self.last_path}")
        return read_checkpoint(self.last_path)

    def _resume(self, state: dict):
        self.shrunk = "genotype" in state
        load_state_checked(self.core, tensor_state(state, self.last_path), self.last_path)
        if self.slimmer is not None:
            self.slimmer.load_state_dict(state["slimmer"])
        self.strategy.load_state_dict(state["strategy"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.start_epoch, self.step, self.best = int(state["epoch"]), int(state["step"]), float(state["best"])

    # ------------------------------------------------------------------ loop
    def fit(self) -> float:
        cfg, t0 = self.cfg, time.time()
        budget = cfg.TRAIN.TIME_BUDGET_MIN * 60
        epoch = self.start_epoch
        try:
            while epoch < cfg.TRAIN.EPOCHS:
                out_of_time = self._train_epoch(epoch, t0, budget)
                last = epoch + 1 == cfg.TRAIN.EPOCHS or out_of_time
                self._slim(epoch, last)
                epoch += 1
                self.scheduler.step()
                score = None
                if last or epoch % cfg.TRAIN.EVAL_INTERVAL == 0:
                    score = self.evaluate(epoch)
                if self.main:
                    if score is not None and score > self.best:
                        self.best = score
                        save_checkpoint(self._state(epoch), self.best_path)
                    save_checkpoint(self._state(epoch), self.last_path)
                dist_utils.barrier()
                if out_of_time:
                    self.log.info(f"time budget of {cfg.TRAIN.TIME_BUDGET_MIN} min reached after epoch {epoch}")
                    break
            if self.main and cfg.SEARCH.STRATEGY != "none" and any(
                    is_arch_name(n) for n, _ in self.core.named_parameters()):  # a search: derive its architecture
                export_search_results(cfg, self.core, self.out_dir, log_fn=self.log.info)
            dist_utils.barrier()
        except NonFiniteError as exc:
            self.log.info(f"stopped: {exc}")
            raise
        finally:
            self.log.close()
        return self.best

    def _train_epoch(self, epoch: int, t0: float, budget: float) -> bool:
        cfg = self.cfg
        seed_all(cfg.SEED * 1000 + epoch)
        for s in self.samplers:
            s.set_epoch(epoch)
        arch_active = epoch >= cfg.SEARCH.WARMUP_EPOCHS
        n_iter = self.iters_per_epoch()
        iters = zip(*self.loaders)
        bar = tqdm(range(n_iter), desc=f"epoch {epoch}", disable=not self.main, mininterval=2.0, leave=False)
        lr = self.strategy.weight_optimizer.param_groups[0]["lr"]
        for it in bar:
            batches = [to_device(b, self.device) for b in next(iters)]
            rho = self.slimmer.update_rho(epoch + it / n_iter) if self.slimmer is not None else None
            stats = self.strategy.step(batches[0], batches[1] if len(batches) > 1 else None, arch_active=arch_active)
            if rho is not None:
                stats["rho"] = rho
            self.step += 1
            bar.set_postfix(loss=f"{stats['loss']:.5f}", refresh=False)
            if "arch_loss" in stats:
                self.log.arch_values(self.core.arch_state(), self.step, epoch)
            if self.step % cfg.PRINT_FREQ == 0 or it == n_iter - 1:
                self.log.scalars({"epoch": epoch, "lr": lr, **stats}, self.step)
                self.log.info(f"epoch {epoch} iter {it + 1}/{n_iter} " +
                              " ".join(f"{k} {v:.5g}" for k, v in stats.items()))
            if self.show_arch_value and (self.step % cfg.SEARCH.SHOW_ARCH_EVERY == 0 or it == n_iter - 1):
                self.print_arch()
            if budget > 0 and time.time() - t0 > budget:
                return True
        return False

    def _slim(self, epoch: int, last: bool) -> None:
        """Slimming: physically shrink at PRUNE.INTERVAL and at the end; re-wrap DDP on a new structure."""
        if self.slimmer is None:
            return
        opt = self.strategy.weight_optimizer
        stats = self.slimmer.shrink(opt) if last else self.slimmer.maybe_shrink(epoch, opt)
        if stats is None:
            return
        self.shrunk = True
        self.model = self._wrap()
        self.strategy.model = self.model
        self.log.info(f"epoch {epoch} shrink: FLOPs {stats['flops_before'] / 1e6:.2f}M -> {stats['flops'] / 1e6:.2f}M; "
                      + self.slimmer.report().replace("\n", ";"))

    def print_arch(self) -> None:
        table = getattr(self.core, "arch_table", None)
        if table is not None:
            self.log.info("architecture values (softmax):\n" + table())

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
