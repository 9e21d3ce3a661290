"""Trainer hooks (the detectron2 HookBase pattern): what runs around the strategy's step.

| hook               | does                                                                                 |
|--------------------|--------------------------------------------------------------------------------------|
| `TimeBudgetHook`   | TRAIN.TIME_BUDGET_MIN > 0: asks the trainer to stop once the budget is used (option) |
| `SlimmingHook`     | HR-NAS slimming: rho(t) before every step, physical shrink at SLIM.INTERVAL / end;   |
|                    | after training the shrunk network's genotype.json (without a fabric search)          |
| `TicketHook`       | SuperTickets weight pruning: rewind snapshot, gradual / one-shot steps (TICKET.*),   |
|                    | masks carried through the slimming shrinks (src/search/tickets/)                     |
| `ArchMonitorHook`  | at every arch step: softmaxed alpha/beta and their mean normalised entropy to        |
|                    | arch_values.csv / TensorBoard; every SEARCH.EIGEN_EVERY arch steps the dominant      |
|                    | Hessian eigenvalue (collapse monitor, optional early stop); --show_arch_value tables |
|                    | after the last epoch, with DERIVE.AVERAGE_ARCH_STEPS, the averaged arch values       |
| `EvalCheckpointHook` | evaluation every TRAIN.EVAL_INTERVAL epochs and at the end; best.pth / last.pth    |
| `SearchExportHook` | at the end of a search: prune -> genotype.json, renders, plots (search_outputs.py)   |

`before_step` / `after_step` return a dict of scalars merged into the step's log row. `before_shrink` /
`after_shrink(surgery)` surround a structural shrink (`Surgery` of src/architecture/hr/shrink.py, None
when nothing was removed) so that state tied to parameters follows them.
`state_dict()` entries go into every checkpoint; `load_state_dict(state)` reads them on resume.
"""
import itertools
import math
import os
import time
from typing import Dict, List

from src.architecture.arch_params import arch_parameter_names
from src.architecture.genotype.genotype import genotype_of, save_genotype
from src.network_factory.from_genotype import run_fields
from src.search.arch_average import ArchAverage
from src.search.collapse import dominant_eigenvalue
from src.search.tickets.scores import ScoreContext
from src.search.tickets.ticket_pruner import build_ticket_pruner
from src.utils import distributed as dist_utils


class HookBase:
    def __init__(self, trainer):
        self.trainer = trainer

    def before_epoch(self, epoch: int) -> None:
        pass

    def before_step(self, epoch: int, it: int, n_iter: int) -> Dict[str, float]:
        return {}

    def after_step(self, epoch: int, it: int, n_iter: int, stats: dict) -> Dict[str, float]:
        return {}

    def after_epoch(self, epoch: int) -> None:
        pass

    def before_shrink(self) -> None:
        pass

    def after_shrink(self, surgery) -> None:
        pass

    def after_train(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class TimeBudgetHook(HookBase):
    """Wall-clock budget (TRAIN.TIME_BUDGET_MIN): an option for users; runs that must reproduce count epochs."""

    def __init__(self, trainer):
        super().__init__(trainer)
        self.budget, self.t0 = trainer.cfg.TRAIN.TIME_BUDGET_MIN * 60, time.time()

    def after_step(self, epoch, it, n_iter, stats):
        if self.budget > 0 and time.time() - self.t0 > self.budget:
            self.trainer.request_stop(f"time budget of {self.trainer.cfg.TRAIN.TIME_BUDGET_MIN} min reached")
        return {}


class SlimmingHook(HookBase):
    """rho(t) before every step; shrink every SLIM.INTERVAL epochs and after the last one, then re-wrap DDP
    and re-bind the strategy. A shrunk network's genotype goes into every checkpoint (`trainer.store_genotype`:
    resume rebuilds it) and, after training, into genotype.json (a joint fabric search's is written by
    SearchExportHook instead)."""

    def __init__(self, trainer):
        super().__init__(trainer)
        self.slimmer = trainer.slimmer

    def before_step(self, epoch, it, n_iter):
        return {"rho": self.slimmer.update_rho(epoch + it / n_iter)}

    def after_epoch(self, epoch):
        t = self.trainer
        if not (t.is_last_epoch or self.slimmer.due(epoch)):
            return
        t.call("before_shrink")
        stats = self.slimmer.shrink(t.strategy.weight_optimizer)
        t.call("after_shrink", None if stats is None else stats["surgery"])
        if stats is None:
            return
        t.store_genotype = True
        t.rewrap()
        t.log.info(f"epoch {epoch} shrink: FLOPs {stats['flops_before'] / 1e6:.2f}M -> {stats['flops'] / 1e6:.2f}M; "
                   + self.slimmer.report().replace("\n", ";"))

    def after_train(self):
        t = self.trainer
        if t.store_genotype and t.main and not arch_parameter_names(t.core):
            path = save_genotype(genotype_of(run_fields(t.cfg), t.core), os.path.join(t.out_dir, "genotype.json"))
            t.log.info(f"shrunk network's genotype written to {path} (retrain: train.py --cfg CFG --genotype {path} "
                       f"--inherit {t.last_path} SLIM.METHOD none)")

    def state_dict(self):
        return {"slimmer": self.slimmer.state_dict()}

    def load_state_dict(self, state):
        self.slimmer.load_state_dict(state["slimmer"])


class TicketHook(HookBase):
    """SuperTickets: the rewind snapshot before each epoch; a one-shot step before the first training step
    or a gradual step after every TICKET.INTERVAL epochs (after the slimming shrink of that epoch); masks,
    pruned values and snapshot follow every shrink. Only weights of Conv2d / Linear modules are pruned
    (never arch parameters or gates), so it runs with plain training, slimming and the bilevel search alike."""

    def __init__(self, trainer):
        super().__init__(trainer)
        self.pruner = build_ticket_pruner(trainer.cfg, trainer.core)
        self.pruner.attach(trainer.strategy.weight_optimizer)

    def before_epoch(self, epoch):
        self.pruner.maybe_snapshot(epoch)
        if self.pruner.schedule.kind == "oneshot" and self.pruner.steps_done == 0:
            self._prune(self.pruner.schedule.target, epoch)

    def after_epoch(self, epoch):
        k = self.pruner.schedule.step_after(epoch)
        if k:
            self._prune(self.pruner.schedule.density(k), epoch)

    def _prune(self, density: float, epoch: int) -> None:
        from src.engine.trainer import to_device  # the trainer imports this module
        t = self.trainer
        n = t.cfg.TICKET.SCORE_BATCHES if t.cfg.TICKET.METHOD == "snip" else 0
        batches = [to_device(b, t.device) for b in itertools.islice(iter(t.loaders[0]), n)]
        w, h = t.cfg.MODEL.INPUT_SIZE
        ctx = ScoreContext(t.core, criterion=t.task.criterion, batches=batches,
                           seed=t.cfg.SEED * 1000 + self.pruner.steps_done, input_shape=(1, 3, h, w))
        stats = self.pruner.step(density, ctx, t.strategy.weight_optimizer)
        t.log.info(f"epoch {epoch} ticket step {stats['step']}: density {stats['density']:.4f} "
                   f"({stats['kept']}/{stats['total']} prunable weights kept)")

    def before_shrink(self):
        self.pruner.before_shrink()

    def after_shrink(self, surgery):
        self.pruner.after_shrink(surgery)

    def state_dict(self):
        return {"ticket": self.pruner.state_dict()}

    def load_state_dict(self, state):
        if "ticket" in state:
            self.pruner.load_state_dict(state["ticket"])


class ArchMonitorHook(HookBase):
    """Arch values and entropy at every arch step; the collapse monitor; the --show_arch_value tables."""

    def __init__(self, trainer):
        super().__init__(trainer)
        s = trainer.cfg.SEARCH
        self.every, self.iters, self.stop_factor = s.EIGEN_EVERY, s.EIGEN_ITERS, s.EIGEN_STOP_FACTOR
        self.arch_steps, self.eigen, self.eigen_ref = 0, float("nan"), float("nan")
        n = trainer.cfg.DERIVE.AVERAGE_ARCH_STEPS
        self.average = ArchAverage(n) if n else None

    def after_step(self, epoch, it, n_iter, stats):
        t = self.trainer
        out = {}
        if "arch_loss" in stats:
            self.arch_steps += 1
            out["arch_entropy"] = t.core.arch_entropy()
            if self.every > 0 and self.arch_steps % self.every == 0:
                out.update(self._eigen())
            state = t.core.arch_state()
            t.log.arch_values(state, t.step, epoch, extra=out)
            if self.average is not None:
                self.average.add(state)
        if t.show_arch_value and (t.step % t.cfg.SEARCH.SHOW_ARCH_EVERY == 0 or it == n_iter - 1):
            self.print_arch()
        return out

    def _eigen(self) -> dict:
        t = self.trainer
        self.eigen = dominant_eigenvalue(t.core, t.criterion, t.batches[-1], self.iters, seed=t.step)
        if math.isnan(self.eigen_ref):
            self.eigen_ref = self.eigen
        elif self.stop_factor > 0 and abs(self.eigen) > self.stop_factor * abs(self.eigen_ref):
            t.request_stop(f"collapse monitor: Hessian eigenvalue {self.eigen:.4g} > {self.stop_factor} x "
                           f"the first one ({self.eigen_ref:.4g}), SEARCH.EIGEN_STOP_FACTOR")
        return {"hessian_eigenvalue": self.eigen}

    def after_epoch(self, epoch):
        """After the last epoch (before its evaluation and last.pth), the averaged arch values, if asked."""
        t = self.trainer
        if t.is_last_epoch and self.average is not None:
            n = self.average.apply(t.core)
            t.log.info(f"arch values averaged over the last {n} arch steps (DERIVE.AVERAGE_ARCH_STEPS); "
                       f"mean normalised entropy {t.core.arch_entropy():.3f}")
            if t.show_arch_value:
                self.print_arch()

    def print_arch(self) -> None:
        t = self.trainer
        text = t.core.arch_table()
        if text:
            text += f"\nmean normalised entropy {t.core.arch_entropy():.3f} (uniform = 1)"
            if not math.isnan(self.eigen):
                text += f"; dominant Hessian eigenvalue {self.eigen:.4g} (first {self.eigen_ref:.4g})"
            t.log.info("architecture values (softmax):\n" + text)

    def state_dict(self):
        mon = {"arch_steps": self.arch_steps, "eigen": self.eigen, "eigen_ref": self.eigen_ref}
        if self.average is not None:
            mon["average"] = self.average.state_dict()
        return {"arch_monitor": mon}

    def load_state_dict(self, state):
        mon = state.get("arch_monitor", {})
        self.arch_steps = int(mon.get("arch_steps", 0))
        self.eigen, self.eigen_ref = float(mon.get("eigen", "nan")), float(mon.get("eigen_ref", "nan"))
        if self.average is not None:
            self.average.load_state_dict(mon.get("average", {}))


class EvalCheckpointHook(HookBase):
    """Evaluate every TRAIN.EVAL_INTERVAL epochs and after the last; write best.pth (on a better score) and
    last.pth (every epoch), atomically, on the main process."""

    def after_epoch(self, epoch):
        t = self.trainer
        done = epoch + 1
        score = t.evaluate(done) if t.is_last_epoch or done % t.cfg.TRAIN.EVAL_INTERVAL == 0 else None
        if t.main:
            if score is not None and score > t.best:
                t.best = score
                t.save(done, t.best_path)
            t.save(done, t.last_path)
        dist_utils.barrier()


class SearchExportHook(HookBase):
    """At the end of a search (arch parameters and a strategy other than `none`): derive and export."""

    def __init__(self, trainer):
        super().__init__(trainer)
        # imported here (heavy: graphviz, matplotlib; searches only), not at the end: an import that fails stops
        # the run at its start, and code edited while the search runs cannot break the export at its end
        from src.engine.search_outputs import export_search_results
        self.export = export_search_results

    def after_train(self):
        t = self.trainer
        if t.main:
            self.export(t.cfg, t.core, t.out_dir, log_fn=t.log.info)


def default_hooks(trainer) -> List[HookBase]:
    hooks: List[HookBase] = [TimeBudgetHook(trainer)]
    if trainer.slimmer is not None:
        hooks.append(SlimmingHook(trainer))
    if trainer.cfg.TICKET.METHOD != "none":
        hooks.append(TicketHook(trainer))
    searching = bool(arch_parameter_names(trainer.core))
    if searching:
        hooks.append(ArchMonitorHook(trainer))
    hooks.append(EvalCheckpointHook(trainer))
    if searching and trainer.cfg.SEARCH.STRATEGY != "none":
        hooks.append(SearchExportHook(trainer))
    return hooks
