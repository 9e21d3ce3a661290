"""SuperTickets (src/search/tickets/): pruning steps, schedule, reactivation, shrinks, resume, DDP, ticket files."""
import os

import pytest
import torch
import torch.distributed as dist
from torch import nn

from src.architecture.genotype.genotype import genotype_of
from src.config.loader import load_config
from src.data.synthetic_seg import ensure_synthetic_seg
from src.engine.checkpoint import save_checkpoint
from src.engine.cli import run_cli
from src.engine.entry import test_main as run_test_py, train_main
from src.engine.trainer import Trainer, seed_all
from src.network_factory.from_genotype import run_fields
from src.network_factory.registry import build_model
from src.search.slimming import build_slimmer
from src.search.tickets.masks import masks_of, prunable_modules, set_mask, weight_param
from src.search.tickets.pruner import global_prune
from src.search.tickets.report import ticket_report
from src.search.tickets.schedule import DensitySchedule
from src.search.tickets.scores import ScoreContext, lamp_scores, magnitude_scores, score_fn
from src.search.tickets.ticket_pruner import TicketPruner
from src.utils.state_dict import read_checkpoint
from tests.conftest import ROOT, assert_same_state, kill_half_of_the_gates, tiny_train_opts, train_on_two_gloo_ranks

BASE = str(ROOT / "configs/synthetic_baseline.yaml")
HR = str(ROOT / "configs/synthetic_hrnas_dense.yaml")
SEG_HR = str(ROOT / "configs/synthetic_seg_hrnas.yaml")
TINY_HR = {"MODEL.HR.STEM_CHANNELS": 8, "MODEL.HR.WIDTHS": "[4, 8, 12, 16]", "MODEL.HR.LAST_CHANNEL": 8,
           "MODEL.HR.TRANSFORMER_TOKENS": 4, "SLIM.INTERVAL": 1, "SLIM.WARMUP_EPOCHS": 0.0,
           "SLIM.THRESHOLD": 0.05, "SLIM.TARGET_FLOPS": 0.0, "MODEL.HR.GATE_INIT": 0.1}


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 5))


def pruner_for(model, **kw):
    args = dict(method="magnitude", schedule=DensitySchedule("cubic", 0.3, 1, 2), reactivate=False,
                reactivate_values="kept", rewind_epoch=0, keep_masks_on_shrink=True, include=["*"], exclude=[])
    args.update(kw)
    return TicketPruner(model, **args)


def density(model):
    masks = masks_of(model)
    return sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())


@pytest.mark.parametrize("method", ["magnitude", "lamp", "random", "snip", "synflow"])
@pytest.mark.parametrize("d", [0.5, 0.137, 1.0])
def test_global_threshold_leaves_exactly_the_target_density(method, d):
    model = net()
    mods = prunable_modules(model)
    batch = {"image": torch.randn(2, 3, 6, 6), "y": torch.tensor([0, 1])}
    ctx = ScoreContext(model, criterion=lambda out, b: nn.functional.cross_entropy(out, b["y"]),
                       batches=[batch], seed=3, input_shape=(1, 3, 6, 6))
    total = sum(m.weight.numel() for _, m in mods)
    stats = global_prune(mods, score_fn(method)(mods, ctx), d, reactivate=False)
    assert stats["kept"] == round(d * total) and density(model) == stats["kept"] / total
    if method == "magnitude" and d < 1:  # one global threshold: every kept |w| >= every pruned |w|
        kept = torch.cat([weight_param(m)[m.weight_mask.bool()].abs() for _, m in mods])
        pruned = torch.cat([weight_param(m)[~m.weight_mask.bool()].abs() for _, m in mods])
        assert kept.min() >= pruned.max()
    assert all(b.endswith("_mask") for b, _ in model.named_buffers())  # arch / BN untouched
    for _, m in mods:  # the effective weight is zero where masked
        assert torch.equal(m.weight[~m.weight_mask.bool()], torch.zeros_like(m.weight[~m.weight_mask.bool()]))


def test_lamp_scores_rank_within_the_layer_and_never_empty_one():
    layer = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -3.0, 2.0, 0.5]]))
    (score,) = lamp_scores([("l", layer)], ScoreContext(layer))
    sq = torch.tensor([1.0, 9.0, 4.0, 0.25])  # w^2 / sum of w^2 at least as large
    torch.testing.assert_close(score[0], sq / torch.tensor([14.0, 9.0, 13.0, 14.25]))
    model = net()
    with torch.no_grad():
        model[2].weight.mul_(1e-3)  # a layer of tiny weights: global magnitude empties it, LAMP keeps some
    mods = prunable_modules(model)
    global_prune(mods, magnitude_scores(mods, ScoreContext(model)), 0.05, reactivate=False)
    assert int(model[2].weight_mask.sum()) == 0
    global_prune(mods, lamp_scores(mods, ScoreContext(model)), 0.05, reactivate=True)
    assert all(int(m.weight_mask.sum()) >= 1 for _, m in mods)


def test_schedule_reaches_the_target_at_the_documented_epoch(tiny_synthetic, tmp_path):
    s = DensitySchedule("cubic", 0.2, interval=2, steps=3)
    assert [s.step_after(e) for e in range(8)] == [0, 1, 0, 2, 0, 3, 0, 4]
    assert s.density(1) == pytest.approx(0.2 + 0.8 * (2 / 3) ** 3) and s.density(3) == pytest.approx(0.2)
    assert s.density(4) == pytest.approx(0.2) and s.target_epoch() == 6
    assert DensitySchedule("linear", 0.2, 1, 4).density(1) == pytest.approx(0.8)
    cfg = load_config(BASE, tiny_train_opts(tiny_synthetic, tmp_path / "r", **{
        "TRAIN.EPOCHS": 3, "TICKET.METHOD": "magnitude", "TICKET.TARGET_DENSITY": 0.25, "TICKET.STEPS": 2,
        "TICKET.INTERVAL": 1, "TRAIN.EVAL_INTERVAL": 100}))
    seed_all(0)
    trainer = Trainer(cfg, build_model(cfg))
    seen = []
    orig = trainer.hooks[-1].after_epoch  # EvalCheckpointHook runs after TicketHook: sees the step's masks

    def record(epoch):
        seen.append(round(density(trainer.core), 4))
        orig(epoch)
    trainer.hooks[-1].after_epoch = record
    trainer.fit()
    assert seen[0] == pytest.approx(0.25 + 0.75 / 8, abs=1e-4) and seen[1] == seen[2] == 0.25


def test_reactivation_on_and_off():
    for reactivate in (False, True):
        model = net()
        p = pruner_for(model, reactivate=reactivate)
        mods = p.modules
        p.step(0.5, ScoreContext(model))
        m = mods[0][1]
        idx = (~m.weight_mask.bool()).flatten().nonzero()[0]
        with torch.no_grad():  # a pruned weight whose kept value now beats every other
            p.stash[m].view(-1)[idx] = 100.0
            p.restore_pruned()
        assert float(m.weight_orig.detach().view(-1)[idx]) == 100.0 and float(m.weight.detach().view(-1)[idx]) == 0.0
        p.step(0.5, ScoreContext(model))
        assert bool(m.weight_mask.view(-1)[idx]) == reactivate
        assert density(model) == pytest.approx(0.5, abs=1e-3)


def test_reactivated_weights_take_their_rewound_values():
    model = net()
    p = pruner_for(model, reactivate=True, reactivate_values="rewind")
    p.maybe_snapshot(0)
    init = {m: weight_param(m).detach().clone() for _, m in p.modules}
    p.step(0.5, ScoreContext(model))
    first = {m: ~m.weight_mask.bool() for _, m in p.modules}
    with torch.no_grad():
        for _, m in p.modules:
            m.weight_orig.mul_(0.01)  # training shrank every weight: the rewound pruned ones win
    p.step(0.5, ScoreContext(model))
    back = 0
    for _, m in p.modules:  # weights pruned at step 1 carry their rewound (here: initial) values, back or not
        assert torch.equal(weight_param(m)[first[m]], init[m][first[m]])
        back += int((first[m] & m.weight_mask.bool()).sum())
    assert back > 0


def test_kept_values_do_not_move_through_optimizer_steps():
    model = net()
    p = pruner_for(model)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.5)
    p.attach(opt)
    p.step(0.4, ScoreContext(model), opt)
    before = {m: weight_param(m).detach().clone() for _, m in p.modules}
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(2, 3, 6, 6)).sum().backward()
        opt.step()
    for _, m in p.modules:
        dead = ~m.weight_mask.bool()
        assert torch.equal(weight_param(m)[dead], before[m][dead])
        assert not torch.equal(weight_param(m)[~dead], before[m][~dead])


@pytest.mark.parametrize("keep", [True, False])
def test_masks_survive_a_shrink_or_are_reset(keep):
    cfg = load_config(HR, [str(x) for kv in {**TINY_HR, "MODEL.INPUT_SIZE": "[48, 64]"}.items() for x in kv])
    seed_all(0)
    model = build_model(cfg)
    slimmer = build_slimmer(cfg, model)
    p = pruner_for(model, keep_masks_on_shrink=keep)
    p.step(0.3, ScoreContext(model))
    kill_half_of_the_gates(slimmer)
    model.eval()
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        want = model(x)
    masked_before = sum(int((~m.weight_mask.bool()).sum()) for _, m in p.modules)
    p.before_shrink()
    stats = slimmer.shrink()
    p.after_shrink(stats["surgery"])
    assert slimmer.flops < slimmer.supernet_flops
    if keep:
        for name, m in p.modules:  # every surviving prunable tensor still carries a mask of its shape
            assert m.weight_mask.shape == m.weight_orig.shape, name
        with torch.no_grad():
            torch.testing.assert_close(model(x), want, rtol=1e-4, atol=1e-5)  # exact: masks sliced with weights
        assert 0 < sum(int((~m.weight_mask.bool()).sum()) for _, m in p.modules) < masked_before
        model.to(memory_format=torch.channels_last)  # as the trainer re-places the shrunk network (masks too)
        stats = p.step(0.2, ScoreContext(model))  # the next gradual step after the shrink
        assert stats["kept"] == round(0.2 * stats["total"]) and density(model) == stats["density"]
    else:
        assert masks_of(model) == {}


def _resume_cfg(root, out, epochs):
    return load_config(HR, tiny_train_opts(root, out, **{
        **TINY_HR, "TRAIN.EPOCHS": epochs, "SLIM.METHOD": "none", "TICKET.METHOD": "magnitude",
        "TICKET.TARGET_DENSITY": 0.3, "TICKET.STEPS": 3, "TICKET.REACTIVATE": True,
        "TICKET.REACTIVATE_VALUES": "rewind", "TICKET.REWIND_EPOCH": 1, "TRAIN.EVAL_INTERVAL": 100}))


@pytest.mark.slow
def test_resume_mid_schedule_is_exact(tiny_synthetic, tmp_path):
    def run(out, epochs, resume=False):
        cfg = _resume_cfg(tiny_synthetic, out, epochs)
        seed_all(cfg.SEED)
        t = Trainer(cfg, build_model(cfg), resume=resume)
        t.fit()
        return t.core.state_dict()
    full = run(tmp_path / "full", 4)
    run(tmp_path / "part", 2)
    resumed = run(tmp_path / "part", 4, resume=True)
    assert any(k.endswith("weight_mask") for k in full)
    assert_same_state(full, resumed)


def _ddp_worker(rank, world, store, root, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        cfg = load_config(BASE, tiny_train_opts(root, out, **{
            "TRAIN.EPOCHS": 1, "TICKET.METHOD": "snip", "TICKET.SCHEDULE": "oneshot",
            "TICKET.TARGET_DENSITY": 0.3}))
        seed_all(cfg.SEED + rank)
        trainer = Trainer(cfg, build_model(cfg))
        trainer.fit()
        torch.save({k: v.detach() for k, v in trainer.core.state_dict().items()}, os.path.join(out, f"r{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_gloo_ranks_hold_the_same_masks(tiny_synthetic, tmp_path):
    out = train_on_two_gloo_ranks(_ddp_worker, tmp_path, tiny_synthetic)
    a, b = (torch.load(out / f"r{r}.pt", weights_only=True) for r in (0, 1))
    masks = [k for k in a if k.endswith("weight_mask")]
    assert masks
    for k in a:  # masks and weights (BN running statistics are per rank until the next forward)
        if "running_" not in k and "num_batches" not in k:
            assert torch.equal(a[k], b[k]), k


def _ticket_file(cfg, path, d=0.4, seed=0):
    seed_all(seed)
    model = build_model(cfg)
    mods = prunable_modules(model)
    global_prune(mods, magnitude_scores(mods, None), d, reactivate=False)
    save_checkpoint({"model": model.state_dict()}, str(path))
    return model


def test_inheriting_from_a_ticket_folds_its_masks(tiny_synthetic, tmp_path):
    from src.network_factory.from_genotype import inherit_weights
    cfg = load_config(BASE, tiny_train_opts(tiny_synthetic, tmp_path / "t"))
    ticket = _ticket_file(cfg, tmp_path / "ticket.pth").eval()
    seed_all(1)
    plain = build_model(cfg).eval()
    counts = inherit_weights(plain, str(tmp_path / "ticket.pth"))
    assert counts["loaded"] == counts["total"] and counts["unused"] == 0
    x = torch.randn(2, 3, *cfg.MODEL.INPUT_SIZE[::-1])
    with torch.no_grad():
        assert torch.equal(plain(x), ticket(x))


def test_ticket_checkpoint_loads_weights_only_and_finalizes_to_the_same_outputs(tiny_synthetic, tmp_path, capsys):
    from tools.ticket import main as ticket_main
    opts = tiny_train_opts(tiny_synthetic, tmp_path / "t")
    cfg = load_config(BASE, opts)
    model = _ticket_file(cfg, tmp_path / "ticket.pth").eval()
    state = torch.load(tmp_path / "ticket.pth", weights_only=True)
    assert any(k.endswith("weight_mask") for k in state["model"])
    assert ticket_main(["--cfg", BASE, "--ckpt", str(tmp_path / "ticket.pth"), "--finalize",
                        str(tmp_path / "plain.pth"), *opts]) == 0
    assert "sparse" in capsys.readouterr().out
    plain = build_model(cfg).eval()
    plain.load_state_dict(read_checkpoint(str(tmp_path / "plain.pth"))["model"])  # strict: a plain state dict
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), model(x))


def test_sparse_macs_are_counted_per_layer():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.Conv2d(4, 3, 1, stride=2, bias=False))  # fewer MACs per weight
    m1, m2 = model[0], model[1]
    mask1 = torch.zeros(4, 2, 3, 3, dtype=torch.bool)
    mask1.view(-1)[:18] = True  # density 0.25
    mask2 = torch.ones(3, 4, 1, 1, dtype=torch.bool)
    mask2[0] = False  # density 2/3
    set_mask(m1, mask1)
    set_mask(m2, mask2)
    with torch.no_grad():
        m1.weight_orig.fill_(1.0)
        m2.weight_orig.fill_(1.0)
    rep = ticket_report(model, (1, 2, 5, 5))
    macs1, macs2 = 4 * 2 * 9 * 25, 3 * 4 * 9
    assert [r["macs"] for r in rep["layers"]] == [macs1, macs2]
    assert [r["density"] for r in rep["layers"]] == pytest.approx([0.25, 2 / 3])
    assert rep["total"]["sparse_macs"] == pytest.approx(0.25 * macs1 + 2 / 3 * macs2)
    assert rep["total"]["nonzero_params"] == 18 + 8
    assert rep["total"]["sparse_macs"] != pytest.approx(rep["total"]["dense_macs"] * rep["total"]["density"])


def test_transferred_ticket_keeps_its_zeros_through_training(tiny_synthetic, tmp_path):
    hr = {**TINY_HR, "SLIM.METHOD": "none", "TRAIN.EPOCHS": 1}
    cls_cfg = load_config(HR, tiny_train_opts(tiny_synthetic, tmp_path / "c", **{
        **hr, "MODEL.NAME": "cls", "MODEL.BACKBONE": "hr_supernet", "DATASET.NUM_CLASSES": 10}))
    ticket = _ticket_file(cls_cfg, tmp_path / "cls_ticket.pth", d=0.3)
    out = tmp_path / "pose"
    assert run_cli(train_main, ["--cfg", HR, "--transfer", str(tmp_path / "cls_ticket.pth"), "--task", "pose",
                                *tiny_train_opts(tiny_synthetic, out, **hr)]) == 0
    after = read_checkpoint(str(out / "last.pth"))["model"]
    before = ticket.state_dict()
    n = 0
    for k, mask in before.items():
        if k.startswith("backbone.") and k.endswith("weight_mask"):
            orig = after[k.replace("_mask", "_orig")]
            assert torch.equal(after[k], mask)
            assert torch.count_nonzero(orig * mask) <= int(mask.sum())
            n += 1
    assert n > 10 and not any(k.startswith("head.") and k.endswith("_mask") for k in after)
    changed = [k for k in before if k.endswith("weight_orig") and k.startswith("backbone.")
               and not torch.equal(before[k], after[k])]
    assert changed  # it trained


def test_bad_inputs_give_one_line_errors(tiny_synthetic, tmp_path, capsys):
    opts = tiny_train_opts(tiny_synthetic, tmp_path / "x")
    cfg = load_config(BASE, opts)
    _ticket_file(cfg, tmp_path / "ticket.pth")
    state = torch.load(tmp_path / "ticket.pth", weights_only=True)
    key = next(k for k in state["model"] if k.endswith("weight_mask"))
    state["model"][key] = state["model"][key][:1]
    torch.save(state, tmp_path / "bad.pth")
    assert run_cli(train_main, ["--cfg", BASE, "--ticket", str(tmp_path / "bad.pth"), *opts]) == 1
    err = capsys.readouterr().err.strip()
    assert "mask" in err and "shape" in err and len(err.splitlines()) == 1
    assert run_cli(train_main, ["--cfg", BASE, *opts, "TICKET.METHOD", "magnitude",
                                "TICKET.TARGET_DENSITY", "1.5"]) == 1
    assert "TICKET.TARGET_DENSITY must be in (0, 1]" in capsys.readouterr().err
    assert run_cli(train_main, ["--cfg", BASE, *opts, "TICKET.METHOD", "magnitude",
                                "TICKET.TARGET_DENSITY", "0.0"]) == 1
    capsys.readouterr()
    hr = {**TINY_HR, "SLIM.METHOD": "none", "MODEL.NAME": "cls", "MODEL.BACKBONE": "hr_supernet",
          "DATASET.NUM_CLASSES": 10}
    _ticket_file(load_config(HR, tiny_train_opts(tiny_synthetic, tmp_path / "c", **hr)), tmp_path / "cls.pth")
    hr_opts = tiny_train_opts(tiny_synthetic, tmp_path / "y", **{**TINY_HR, "SLIM.METHOD": "none",
                                                                 "MODEL.HR.WIDTHS": "[4, 8, 12, 24]"})
    assert run_cli(train_main, ["--cfg", HR, "--transfer", str(tmp_path / "cls.pth"), *hr_opts]) == 1
    err = capsys.readouterr().err.strip()
    assert "incompatible backbones" in err and len(err.splitlines()) == 1


def _shrunk_seg_ticket(path):
    """A seg ticket on the HR supernet, pruned to density 0.3 and then shrunk by slimming (half of every channel
    gate cut), saved as the trainer saves one: model state + the shrunk network's genotype."""
    cfg = load_config(SEG_HR, [str(x) for kv in {**TINY_HR, "MODEL.INPUT_SIZE": "[48, 64]"}.items() for x in kv])
    seed_all(0)
    model = build_model(cfg)
    slimmer = build_slimmer(cfg, model)
    p = pruner_for(model)
    p.step(0.3, ScoreContext(model))
    kill_half_of_the_gates(slimmer)
    p.before_shrink()
    p.after_shrink(slimmer.shrink()["surgery"])
    save_checkpoint({"model": model.state_dict(), "genotype": genotype_of(run_fields(cfg), model).to_dict()}, str(path))
    return model


def test_a_shrunk_ticket_transfers_on_its_shrunk_backbone(tiny_synthetic, tmp_path, capsys):
    ticket = _shrunk_seg_ticket(tmp_path / "seg_ticket.pth")
    want = {k: v for k, v in ticket.state_dict().items() if k.startswith("backbone.")}
    seg_root = ensure_synthetic_seg(str(tmp_path / "seg_set"), 8, 4, 0)
    keys = {**TINY_HR, "SLIM.METHOD": "none", "TRAIN.EPOCHS": 1}
    for task, cfg_file, root in (("segmentation", SEG_HR, seg_root), ("pose", HR, tiny_synthetic)):
        out = tmp_path / task  # segmentation -> segmentation (a new head), segmentation -> pose
        opts = tiny_train_opts(root, out, **keys)
        assert run_cli(train_main, ["--cfg", cfg_file, "--transfer", str(tmp_path / "seg_ticket.pth"), "--task", task,
                                    *opts]) == 0
        assert "was shrunk by slimming" in capsys.readouterr().err
        after = read_checkpoint(str(out / "last.pth"))["model"]
        for k, v in want.items():  # the shrunk shapes, the same masks, no weight revived
            assert after[k].shape == v.shape, k
            if k.endswith("weight_mask"):
                assert torch.equal(after[k], v)
                assert torch.count_nonzero(after[k.replace("_mask", "_orig")] * v) <= v.sum()
        assert run_cli(run_test_py, ["--cfg", cfg_file, "--ckpt", str(out / "last.pth"), *opts]) == 0  # its genotype
        assert run_cli(train_main, ["--cfg", cfg_file, "--resume", *opts, "TRAIN.EPOCHS", "2"]) == 0  # rebuilt
    opts = tiny_train_opts(seg_root, tmp_path / "retrain", **keys)  # the shrunk ticket retrained with fixed masks
    assert run_cli(train_main, ["--cfg", SEG_HR, "--ticket", str(tmp_path / "seg_ticket.pth"), *opts]) == 0
    assert run_cli(run_test_py, ["--cfg", SEG_HR, "--ckpt", str(tmp_path / "retrain" / "last.pth"), *opts]) == 0
    for cfg_file, root, extra, why in (  # a classifier; a seg model on another backbone
            (HR, tiny_synthetic, {"MODEL.NAME": "cls", "DATASET.NUM_CLASSES": 10},
             "transfers only to a model a genotype describes"),
            (SEG_HR, seg_root, {"MODEL.BACKBONE": "compact_resnet"}, "incompatible backbones")):
        opts = tiny_train_opts(root, tmp_path / "bad", **keys, **extra)
        assert run_cli(train_main, ["--cfg", cfg_file, "--transfer", str(tmp_path / "seg_ticket.pth"), *opts]) == 1
        err = capsys.readouterr().err.strip()
        assert why in err and len(err.splitlines()) == 1, err
