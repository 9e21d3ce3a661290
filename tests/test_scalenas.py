"""ScaleNAS (issue 12, points 3-6): the one-shot supernet, subnets as genotypes, their sampling operations,
one-shot training (DDP, resume) and BN calibration, on a tiny supernet."""
import copy
import json
import os
import random

import pytest
import torch
import torch.distributed as dist
from torch import nn

from src.architecture.genotype.genotype import genotype_of, load_genotype, parse_genotype, save_genotype
from src.architecture.scale.space import (ScaleSpaceSpec, crossover, groups, largest, mutate, sample_subnet,
                                          smallest, subnet_for_step)
from src.architecture.scale.subnet import parse_subnet
from src.architecture.scale.supernet import ScaleSupernet
from src.config.loader import load_config
from src.network_factory.from_genotype import build_from_genotype, inherit_weights, run_fields
from src.network_factory.registry import build_model
from src.search.bn_calibration import calibrate_bn
from tests.conftest import ROOT, tiny_train_opts, train_on_two_gloo_ranks

CFG = str(ROOT / "configs/synthetic_scalenas_pose.yaml")
SPEC = ScaleSpaceSpec(4, (4, 8, 8), (1, 1, 1), 3, (1, 2, 3))
TINY_SCALE = {"MODEL.SCALE.STEM_CHANNELS": 4, "MODEL.SCALE.WIDTHS": "[4, 8]", "MODEL.SCALE.MODULES": "[1, 1]",
              "MODEL.SCALE.MAX_DEPTH": 2, "MODEL.SCALE.DEPTH_LIST": "[1, 2]", "MODEL.SCALE.HEAD_CHANNELS": 8,
              "ONESHOT.DEPTH_OPTIONS": "[[1, 2]]", "ONESHOT.CALIB_BATCHES": 2, "TRAIN.LR_SCHEDULE": "constant"}


def tiny_cfg(root, out, **extra):
    return load_config(CFG, tiny_train_opts(root, out, **{**TINY_SCALE, **extra}))


def random_subnets(spec, n, seed=0):
    rng = random.Random(seed)
    return [sample_subnet(spec, rng, rng.random(), spec.depth_list) for _ in range(n)]


# ------------------------------------------------------------------ sampling operations
def test_sandwich_ends_and_groups():
    g = groups(SPEC)
    assert g[-2:] == [(0.0, (1,)), (1.0, (3,))] and len(g) == 3 * 2 + 2
    assert sample_subnet(SPEC, random.Random(1), 0.0, (1,)) == smallest(SPEC)
    assert sample_subnet(SPEC, random.Random(1), 1.0, (3,)) == largest(SPEC)
    assert smallest(SPEC).fusion_fraction() == 0.0 and largest(SPEC).fusion_fraction() == 1.0


def test_subnet_of_a_step_depends_on_seed_and_step_only():
    g = groups(SPEC)
    seq = [subnet_for_step(SPEC, 7, t, g).key() for t in range(12)]
    assert seq == [subnet_for_step(SPEC, 7, t, g).key() for t in range(12)]
    assert len(set(seq)) > 6
    assert seq != [subnet_for_step(SPEC, 8, t, g).key() for t in range(12)]


def test_crossover_and_mutation_never_change_their_parents():
    rng = random.Random(3)
    parents = random_subnets(SPEC, 6, seed=1)
    before = [copy.deepcopy(p.to_dict()) for p in parents]
    children = []
    for _ in range(50):
        a, b = rng.sample(parents, 2)
        children.append(mutate(crossover(a, b, rng, 0.5), rng, 0.3, SPEC))
    assert [p.to_dict() for p in parents] == before
    for child in children:  # every child fits the supernet: depths from the list, rows per depth
        assert parse_subnet(child.to_dict(), "child", SPEC) == child
    depths = {tuple(m.depths) for c in children for m in c.modules}
    assert depths - {tuple(m.depths) for p in parents for m in p.modules}, "mutation never changed a depth"
    assert mutate(parents[0], rng, 0.0, SPEC) == parents[0]


# ------------------------------------------------------------------ supernet and standalone subnets
def test_standalone_subnet_equals_supernet_with_that_subnet_active():
    torch.manual_seed(0)
    supernet = ScaleSupernet(SPEC)
    x = torch.randn(2, 3, 40, 36)
    supernet.train()
    for subnet in random_subnets(SPEC, 3, seed=5):  # move the BN statistics away from their init
        supernet.set_active(subnet)
        supernet(x)
    supernet.eval()
    for subnet in random_subnets(SPEC, 4, seed=9) + [smallest(SPEC), largest(SPEC)]:
        alone = ScaleSupernet(SPEC, only=subnet)
        counts = alone.load_state_dict(supernet.state_dict(), strict=False)
        assert not counts.missing_keys
        supernet.set_active(subnet)
        with torch.no_grad():
            for a, b in zip(supernet(x), alone.eval()(x)):
                assert torch.equal(a, b)
        if subnet != largest(SPEC):
            assert sum(p.numel() for p in alone.parameters()) < sum(p.numel() for p in supernet.parameters())
    assert supernet.subnet_flops(smallest(SPEC), (36, 40)) < supernet.subnet_flops(largest(SPEC), (36, 40))


def test_subnet_genotype_round_trip_rebuild_inherit_and_render(tiny_synthetic, tmp_path):
    cfg = tiny_cfg(tiny_synthetic, tmp_path)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    spec = model.backbone.spec
    subnet = sample_subnet(spec, random.Random(2), 0.5, spec.depth_list)
    model.backbone.set_active(subnet)
    g = genotype_of(run_fields(cfg), model)
    path = save_genotype(g, str(tmp_path / "subnet.json"))
    loaded = load_genotype(path)
    assert loaded == g and loaded.arch.scale.subnet == subnet
    assert parse_genotype(json.loads(json.dumps(g.to_dict()))) == g
    torch.save({"model": model.state_dict()}, tmp_path / "supernet.pth")
    net = build_from_genotype(cfg, loaded)
    counts = inherit_weights(net, str(tmp_path / "supernet.pth"))
    assert counts["missing"] == 0 and counts["unused"] > 0
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert torch.equal(model(x), net.eval()(x))
    assert genotype_of(run_fields(cfg), net) == g
    from src.architecture.visual.render import fabric_graph
    source = fabric_graph(loaded).source
    assert "ScaleNAS subnet" in source and "m1 d1/" in source


def test_segmentation_subnet_genotype_has_no_pose_fields_and_checks_the_classes(tmp_path):
    """A scalenet segmentation genotype follows the segmentation convention (no num_joints, heatmap_stride,
    joint set or parts); its class count is checked against DATASET.NUM_CLASSES."""
    seg_cfg = str(ROOT / "configs/synthetic_scalenas_seg.yaml")
    opts = [str(x) for kv in TINY_SCALE.items() for x in kv] + ["MODEL.INPUT_SIZE", "[48, 64]"]
    cfg = load_config(seg_cfg, opts)
    model = build_model(cfg).eval()
    model.backbone.set_active(sample_subnet(model.backbone.spec, random.Random(1), 0.5, (1, 2)))
    g = genotype_of(run_fields(cfg), model)
    d = g.to_dict()
    assert d["task"] == "segmentation" and not {"num_joints", "heatmap_stride", "parts"} & set(d)
    path = save_genotype(g, str(tmp_path / "seg_subnet.json"))
    net = build_from_genotype(cfg, load_genotype(path)).eval()
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        assert net(x).shape[1] == cfg.DATASET.NUM_CLASSES
    with pytest.raises(ValueError, match="'scale.head.outputs': 6 but DATASET.NUM_CLASSES is 5"):
        build_from_genotype(load_config(seg_cfg, opts + ["DATASET.NUM_CLASSES", "5"]), g)


@pytest.mark.parametrize("edit, field", [
    (lambda s: s["modules"].pop(), "scale.subnet.modules"),
    (lambda s: s["modules"][1]["depths"].append(1), "scale.subnet.modules[1].depths"),
    (lambda s: s["modules"][0].update(depths=[3]), "scale.subnet.modules[0].depths[0]"),
    (lambda s: s["modules"][1]["fusion"][0][0].__setitem__(1, 2), "scale.subnet.modules[1].fusion[0][0]"),
    (lambda s: s["modules"][1]["fusion"][1][0].__setitem__(1, 0), "scale.subnet.modules[1].fusion[1][0]"),
    (lambda s: s["modules"][1]["fusion"][0].append([1, 0]), "scale.subnet.modules[1].fusion[0]"),
    (lambda s: s["modules"][0].update(extra=1), "scale.subnet.modules[0].extra"),
])
def test_subnet_genotype_that_does_not_fit_names_the_field(tiny_synthetic, tmp_path, edit, field):
    cfg = tiny_cfg(tiny_synthetic, tmp_path)
    model = build_model(cfg)
    model.backbone.set_active(largest(model.backbone.spec))
    d = genotype_of(run_fields(cfg), model).to_dict()
    edit(d["scale"]["subnet"])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError) as info:
        load_genotype(str(path))
    msg = str(info.value)
    assert f"genotype field '{field}'" in msg and "\n" not in msg and str(path) in msg


# ------------------------------------------------------------------ BN calibration
class TwoPaths(nn.Module):
    """conv -> BN on the active path only; `active` picks path 0 or 1."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(3, 4, 3, padding=1) for _ in range(2))
        self.bns = nn.ModuleList(nn.BatchNorm2d(4) for _ in range(2))
        self.active = 0

    def forward(self, x):
        return self.bns[self.active](self.convs[self.active](x))


def test_calibrated_bn_statistics_equal_a_direct_pass():
    torch.manual_seed(0)
    model = TwoPaths().eval()
    batches = [torch.randn(5, 3, 6, 7) * (1 + i) + i for i in range(4)]
    other = {k: v.clone() for k, v in model.bns[1].state_dict().items()}
    model.bns[0].running_mean.fill_(3.0)
    assert calibrate_bn(model, batches + batches, num_batches=4) == 4
    with torch.no_grad():
        feats = [model.convs[0](b) for b in batches]
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(model.bns[0].running_mean, mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.bns[0].running_var, var, rtol=1e-5, atol=1e-6)
    for k, v in model.bns[1].state_dict().items():  # the inactive path keeps its statistics
        assert torch.equal(v, other[k]), k
    assert not model.training and not any(m.training for m in model.modules())
    assert model.bns[0].momentum == 0.1


# ------------------------------------------------------------------ one-shot training: NaN, resume and DDP
def test_oneshot_step_stops_on_a_nan_loss_and_refuses_a_model_without_supernet(tiny_synthetic, tmp_path):
    from src.search.base import NonFiniteError
    from src.search.strategies import build_strategy
    cfg = tiny_cfg(tiny_synthetic, tmp_path)
    strategy = build_strategy(cfg, build_model(cfg), lambda out, batch: out.mean())
    image = torch.randn(2, 3, 64, 48)
    image[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="non-finite"):
        strategy.step({"image": image})
    assert strategy.supernet.active == largest(strategy.supernet.spec)
    from src.architecture.model_interface import ModelInterface

    class Plain(ModelInterface, nn.Conv2d):
        pass
    with pytest.raises(ValueError, match="no ScaleNAS supernet"):
        build_strategy(cfg, Plain(3, 3, 1), lambda out, batch: out.mean())


def make_trainer(root, out, resume=False, **extra):
    from src.engine.trainer import Trainer, seed_all
    cfg = tiny_cfg(root, out, **extra)
    seed_all(cfg.SEED)
    return Trainer(cfg, build_model(cfg), resume=resume)


def record_subnets(trainer):
    seen, real = [], trainer.strategy.subnet_of_step

    def recording(step):
        subnet = real(step)
        seen.append(subnet.key())
        return subnet
    trainer.strategy.subnet_of_step = recording
    return seen


def test_resume_continues_the_sampling_sequence(tiny_synthetic, tmp_path):
    full = make_trainer(tiny_synthetic, tmp_path / "full")
    full_seq = record_subnets(full)
    full.fit()
    cut = make_trainer(tiny_synthetic, tmp_path / "cut", **{"TRAIN.EPOCHS": 1})
    cut_seq = record_subnets(cut)
    cut.fit()
    resumed = make_trainer(tiny_synthetic, tmp_path / "cut", resume=True)
    assert resumed.strategy.steps == 2
    resumed_seq = record_subnets(resumed)
    resumed.fit()
    assert cut_seq + resumed_seq == full_seq and len(set(full_seq)) > 1
    ref, state = full.core.state_dict(), resumed.core.state_dict()
    for k, v in ref.items():
        assert torch.equal(v, state[k]), k


def _ddp_worker(rank, world, store, root, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        from src.engine.trainer import seed_all
        trainer = make_trainer(root, out, **{"TRAIN.EPOCHS": 1})
        seed_all(rank)  # a different global RNG state per rank must not matter for the subnets
        seq = record_subnets(trainer)
        trainer.fit()
        params = {k: v.detach() for k, v in trainer.core.named_parameters()}
        torch.save({"seq": seq, "params": params}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_subnet_of_a_step_is_the_same_on_two_gloo_ranks(tiny_synthetic, tmp_path):
    out = train_on_two_gloo_ranks(_ddp_worker, tmp_path, tiny_synthetic)
    a = torch.load(out / "rank0.pt", weights_only=True)
    b = torch.load(out / "rank1.pt", weights_only=True)
    assert a["seq"] == b["seq"] and len(set(a["seq"])) == 2  # 8 persons, 4 per batch, 2 ranks: 2 steps
    for k in a["params"]:
        assert torch.equal(a["params"][k], b["params"][k]), k


SCALENAS_PUBLISHED = {  # config -> (task, widths, params measured on the meta device; ScaleNAS' supernets in A2)
    "configs/coco/scalenas_w32_256x192.yaml": ("pose", (32, 64, 128, 256), 47_378_289),  # ScaleNAS: 47.6M
    "configs/coco/scalenas_w48_384x288.yaml": ("pose", (48, 96, 192, 384), 106_443_585),  # 106.5M
    "configs/cityscapes/scalenas_seg_w32.yaml": ("segmentation", (32, 64, 128, 256), 47_379_251),  # 47.9M
    "configs/cityscapes/scalenas_seg_w48.yaml": ("segmentation", (48, 96, 192, 384), 106_445_027),  # 107.0M
    "configs/ade20k/scalenas_seg_w32.yaml": ("segmentation", (32, 64, 128, 256), 47_442_262),  # 150 classes
}


@pytest.mark.parametrize("path", sorted(SCALENAS_PUBLISHED))
def test_published_size_scalenas_configs_build(path):
    """The W32 / W48 supernets build (meta device: no memory, no weights) with the measured sizes."""
    from src.utils.flops import count_params
    cfg = load_config(str(ROOT / path))
    task, widths, params = SCALENAS_PUBLISHED[path]
    assert cfg.TASK == task and cfg.SEARCH.STRATEGY == "oneshot" and tuple(cfg.MODEL.SCALE.DEPTH_LIST) == (2, 3, 4, 5)
    with torch.device("meta"):
        model = build_model(cfg)
    assert tuple(model.backbone.spec.widths) == widths and count_params(model) == params
