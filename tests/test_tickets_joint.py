"""SuperTickets jointly with the search strategies (issue 13, point 3): TicketHook under ScaleNAS one-shot
training (a different subnet every step) and under the bilevel fabric search (arch steps between weight steps).
After every training step the masks are those of the last pruning step and every masked weight is zero; the
density follows the schedule; arch parameters are never pruned and still train."""
import pytest
import torch

from src.architecture.arch_params import arch_parameter_names, is_arch_name
from src.config.loader import load_config
from src.engine.hooks import HookBase
from src.engine.trainer import Trainer, seed_all
from src.network_factory.registry import build_model
from src.search.tickets.masks import masks_of, prunable_modules
from tests.conftest import ROOT, tiny_train_opts
from tests.test_scalenas import CFG as SCALE_CFG
from tests.test_scalenas import TINY_SCALE

FABRIC_CFG = str(ROOT / "configs/synthetic_search_demo.yaml")


class MaskWatch(HookBase):
    """Appended after every other hook: the masks after each pruning step (after_epoch), and after every
    training step the check that they did not change and that masked weights are zero."""

    def __init__(self, trainer):
        super().__init__(trainer)
        self.masks, self.densities, self.checked = {}, [], 0

    def after_step(self, epoch, it, n_iter, stats):
        masks = masks_of(self.trainer.core)
        assert masks.keys() == self.masks.keys()
        for name, m in prunable_modules(self.trainer.core):
            if name in masks:
                assert torch.equal(masks[name], self.masks[name]), name
                assert not m.weight.detach()[~masks[name]].any(), name  # zeros stay zero
        self.checked += bool(masks)
        return {}

    def after_epoch(self, epoch):
        self.masks = {k: v.clone() for k, v in masks_of(self.trainer.core).items()}
        kept = sum(int(v.sum()) for v in self.masks.values())
        self.densities.append(kept / sum(v.numel() for v in self.masks.values()) if self.masks else 1.0)


def _fit(cfg_file, out, tiny_synthetic, **opts):
    cfg = load_config(cfg_file, tiny_train_opts(tiny_synthetic, out, **{"TRAIN.EVAL_INTERVAL": 100, **opts}))
    seed_all(cfg.SEED)
    trainer = Trainer(cfg, build_model(cfg))
    watch = MaskWatch(trainer)
    trainer.hooks.append(watch)
    return trainer, watch


def test_ticket_pruning_during_oneshot_training(tiny_synthetic, tmp_path):
    trainer, watch = _fit(SCALE_CFG, tmp_path / "oneshot", tiny_synthetic, **{
        **TINY_SCALE, "TRAIN.EPOCHS": 3, "TICKET.METHOD": "magnitude", "TICKET.SCHEDULE": "cubic",
        "TICKET.TARGET_DENSITY": 0.3, "TICKET.STEPS": 2, "TICKET.INTERVAL": 1})
    assert trainer.strategy.name == "oneshot"
    trained, real = [], trainer.strategy.subnet_of_step

    def recording(step):
        trained.append(real(step).key())
        return real(step)
    trainer.strategy.subnet_of_step = recording
    trainer.fit()
    assert watch.densities == pytest.approx([0.3 + 0.7 / 8, 0.3, 0.3], abs=1e-3)
    assert watch.checked == 4 and len(set(trained[2:])) == 4  # 4 masked steps, each a different subnet
    t = trainer.cfg.TICKET
    assert {n for n, _ in prunable_modules(trainer.core, t.INCLUDE, t.EXCLUDE)} == set(masks_of(trainer.core))
    assert "head.classifier" not in masks_of(trainer.core)  # the prediction layer stays dense by default


@pytest.mark.slow  # ~20 s on 2 busy cores, most of it the end-of-search export (renders, latency comparison)
def test_ticket_pruning_during_the_bilevel_fabric_search(tiny_synthetic, tmp_path):
    trainer, watch = _fit(FABRIC_CFG, tmp_path / "fabric", tiny_synthetic, **{
        "SEARCH.STRATEGY": "first_order_gradient", "SEARCH.WARMUP_EPOCHS": 0, "MODEL.FABRIC.FACTOR": 2,
        "TRAIN.EPOCHS": 2, "TICKET.METHOD": "magnitude", "TICKET.SCHEDULE": "oneshot",
        "TICKET.TARGET_DENSITY": 0.5})
    arch = set(arch_parameter_names(trainer.core))
    assert arch
    before = {n: p.detach().clone() for n, p in trainer.core.named_parameters() if n in arch}
    first = trainer.hooks[[type(h).__name__ for h in trainer.hooks].index("TicketHook")]  # prunes before step 1
    real_before = first.before_epoch

    def before_epoch(epoch):
        real_before(epoch)
        if epoch == 0:
            watch.masks = {k: v.clone() for k, v in masks_of(trainer.core).items()}
    first.before_epoch = before_epoch
    trainer.fit()
    assert (tmp_path / "fabric" / "genotype.json").is_file()  # derived from the pruned supernet (masks folded)
    assert watch.checked >= 2 and watch.densities == pytest.approx([0.5, 0.5], abs=1e-3)
    after = dict(trainer.core.named_parameters())
    assert all(n in after for n in arch)  # arch parameters were never renamed to *_orig by a mask
    assert not [b for b, _ in trainer.core.named_buffers() if b.endswith("_mask") and is_arch_name(b[:-5])]
    assert any(not torch.equal(before[n], after[n].detach()) for n in arch)  # the arch still trained
