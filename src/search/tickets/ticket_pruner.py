"""The state of ticket pruning during a run: schedule steps, pruned values, rewind snapshot, shrinks.

    pruner = TicketPruner(model, method=..., schedule=DensitySchedule(...), ...)
    pruner.attach(optimizer)                 # pruned weights keep their values through optimizer steps
    pruner.maybe_snapshot(epoch)             # before each epoch: the rewind snapshot (REACTIVATE_VALUES rewind)
    pruner.step(density, ctx, optimizer)     # one global step (src/search/tickets/pruner.py)
    pruner.before_shrink(); ...shrink...; pruner.after_shrink(surgery)   # masks sliced with the weights, or reset

Values of pruned weights: `weight_orig` keeps them; they get no task gradient (the mask zeroes it), their
first optimizer moments (Adam exp_avg, SGD momentum) are zeroed when they are pruned, and after every
optimizer step they are put back to their value at pruning (so weight decay does not move them either):
"kept" means exactly the value the weight had when it was pruned. With REACTIVATE_VALUES "rewind", pruned
weights take their value of the rewind snapshot before each re-ranking (and keep it if they come back).
"""
from typing import Dict, Optional

import torch
from torch import Tensor, nn

from src.architecture.arch_params import unwrap
from src.search.tickets.masks import is_pruned, mask_of, prunable_modules, set_mask, unmask, weight_param
from src.search.tickets.pruner import global_prune
from src.search.tickets.schedule import DensitySchedule
from src.search.tickets.scores import ScoreContext, score_fn

REACTIVATE_VALUES = ("kept", "rewind")
FIRST_MOMENTS = ("exp_avg", "momentum_buffer")


class TicketPruner:
    def __init__(self, model: nn.Module, *, method: str, schedule: DensitySchedule, reactivate: bool,
                 reactivate_values: str, rewind_epoch: int, keep_masks_on_shrink: bool, include, exclude):
        if reactivate_values not in REACTIVATE_VALUES:
            raise ValueError(f"unknown TICKET.REACTIVATE_VALUES '{reactivate_values}' ({', '.join(REACTIVATE_VALUES)})")
        if rewind_epoch < 0:
            raise ValueError(f"TICKET.REWIND_EPOCH must be >= 0, got {rewind_epoch}")
        self.core = unwrap(model)
        self.score = score_fn(method)
        self.schedule, self.reactivate, self.values = schedule, reactivate, reactivate_values
        self.rewind_epoch, self.keep_on_shrink = rewind_epoch, keep_masks_on_shrink
        self.include, self.exclude = list(include), list(exclude)
        self._refresh_modules()
        if not self.modules:
            raise ValueError(f"TICKET: no Conv2d/Linear module matches TICKET.INCLUDE {self.include} "
                             f"and not TICKET.EXCLUDE {self.exclude}")
        self.steps_done = 0
        self.rewind: Optional[Dict[nn.Module, Tensor]] = None
        self.stash: Dict[nn.Module, Tensor] = {}
        self._records = []

    def _refresh_modules(self) -> None:
        self.modules = prunable_modules(self.core, self.include, self.exclude)

    # -- values of pruned weights
    def _take_stash(self) -> None:
        self.stash = {m: weight_param(m).detach().clone() for _, m in self.modules if is_pruned(m)}

    @torch.no_grad()
    def restore_pruned(self, *_args) -> None:
        """Put pruned weights back to their value at pruning (an optimizer step-post hook)."""
        for m, value in self.stash.items():
            if is_pruned(m):
                p = m.weight_orig
                p.copy_(torch.where(m.weight_mask.bool(), p, value))

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.register_step_post_hook(self.restore_pruned)

    @torch.no_grad()
    def _zero_first_moments(self, optimizer: Optional[torch.optim.Optimizer]) -> None:
        if optimizer is None:
            return
        for _, m in self.modules:
            state = optimizer.state.get(weight_param(m), {})
            for key in FIRST_MOMENTS:
                if torch.is_tensor(state.get(key)):
                    state[key].mul_(mask_of(m))

    # -- schedule
    def maybe_snapshot(self, epoch: int) -> None:
        if self.values == "rewind" and self.rewind is None and epoch == self.rewind_epoch:
            self.rewind = {m: weight_param(m).detach().clone() for _, m in self.modules}

    @torch.no_grad()
    def _rewind_pruned(self) -> None:
        if self.rewind is None:
            raise ValueError(f"TICKET.REACTIVATE_VALUES rewind: no snapshot yet (TICKET.REWIND_EPOCH "
                             f"{self.rewind_epoch} is after this step)")
        for _, m in self.modules:
            if is_pruned(m):
                p = m.weight_orig
                p.copy_(torch.where(m.weight_mask.bool(), p, self.rewind[m]))

    def step(self, density: float, ctx: ScoreContext, optimizer=None) -> dict:
        """One global step to `density`; returns {density, kept, total, step}."""
        if self.reactivate and self.values == "rewind" and any(is_pruned(m) for _, m in self.modules):
            self._rewind_pruned()
        scores = self.score(self.modules, ctx)
        stats = global_prune(self.modules, scores, density, self.reactivate)
        self.steps_done += 1
        self._zero_first_moments(optimizer)
        self._take_stash()
        return {**stats, "step": self.steps_done}

    # -- structural shrinks (HR-NAS slimming)
    @torch.no_grad()
    def before_shrink(self) -> None:
        """Fold the masks into the weights for the shrink (its folding of removed channels must see the
        masked weights) and remember masks, pruned values and the rewind snapshot per module."""
        self._records = []
        for _, m in self.modules:
            param = weight_param(m)
            mask = mask_of(m)
            rec = {"module": m, "param": param, "mask": mask if is_pruned(m) else None,
                   "stash": self.stash.get(m), "rewind": None if self.rewind is None else self.rewind[m]}
            if is_pruned(m):
                param.mul_(mask)
                unmask(m)
            self._records.append(rec)

    @torch.no_grad()
    def after_shrink(self, surgery=None) -> None:
        """Slice masks, pruned values and snapshot like their weights (TICKET.KEEP_MASKS_ON_SHRINK), or reset
        the masks (every weight active again, with the value it kept); modules that were removed leave."""
        alive = set(self.core.modules())
        self.stash = {}
        if self.rewind is not None:
            self.rewind = {}
        for rec in self._records:
            m = rec["module"]
            if m not in alive:
                continue
            new = m.weight

            def sliced(t, old=rec["param"], new=new):
                return t if t is None or new is old else surgery.slice_like(new, t)
            mask, stash = sliced(rec["mask"]), sliced(rec["stash"])
            if self.rewind is not None:
                self.rewind[m] = sliced(rec["rewind"])
            if mask is not None and stash is not None:
                new.copy_(torch.where(mask, new, stash))  # pruned weights get their kept values back
            if mask is not None and self.keep_on_shrink:
                set_mask(m, mask)
        self._records = []
        self._refresh_modules()
        self._take_stash()

    # -- checkpoints (masks are in the model's state dict)
    def state_dict(self) -> dict:
        names = {m: n for n, m in self.modules}
        state = {"steps_done": self.steps_done}
        if self.rewind is not None:
            state["rewind"] = {names[m]: t for m, t in self.rewind.items() if m in names}
        return state

    def load_state_dict(self, state: dict) -> None:
        self._refresh_modules()
        self.steps_done = int(state["steps_done"])
        if "rewind" in state:
            by_name = dict(self.modules)
            self.rewind = {by_name[n]: t.to(weight_param(by_name[n]).device) for n, t in state["rewind"].items()}
        self._take_stash()


def build_ticket_pruner(cfg, model: nn.Module) -> Optional[TicketPruner]:
    """A TicketPruner with the TICKET.* settings, None for TICKET.METHOD "none"."""
    t = cfg.TICKET
    if t.METHOD == "none":
        return None
    schedule = DensitySchedule(t.SCHEDULE, t.TARGET_DENSITY, t.INTERVAL, t.STEPS)
    return TicketPruner(model, method=t.METHOD, schedule=schedule, reactivate=t.REACTIVATE,
                        reactivate_values=t.REACTIVATE_VALUES, rewind_epoch=t.REWIND_EPOCH,
                        keep_masks_on_shrink=t.KEEP_MASKS_ON_SHRINK, include=t.INCLUDE, exclude=t.EXCLUDE)
