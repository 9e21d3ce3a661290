"""Segmentation genotypes (model seg, task segmentation): round trip, rebuild = original (eval mode), a tiny
HR-NAS slimming run whose shrunk network rebuilds and retrains, a fabric-backbone bilevel search that derives
one, and malformed segmentation genotypes refused in one line naming the field."""
import copy
import json

import pytest
import torch

from src.architecture.genotype.genotype import genotype_of, load_genotype, parse_genotype, save_genotype
from src.architecture.genotype.prune import Prune
from src.config.loader import load_config
from src.data.synthetic_seg import ensure_synthetic_seg
from src.engine.checkpoint import load_model_weights
from src.engine import entry
from src.engine.trainer import Trainer, place, seed_all
from src.network_factory.from_genotype import build_from_genotype, run_fields
from src.network_factory.registry import build_model
from src.utils.state_dict import read_checkpoint
from tests.conftest import ROOT, kill_half_of_the_gates
from tests.test_segmentation import CFG, tiny_opts

FABRIC = {"MODEL.BACKBONE": "fabric", "MODEL.FABRIC.BACKBONE_FACTOR": 2, "MODEL.FABRIC.BACKBONE_LAYERS": 3,
          "MODEL.FABRIC.BACKBONE_OPERATIONS": "['zero', 'skip_connect', 'sep_conv_3x3']"}
SLIM = {"SLIM.METHOD": "slimming", "SLIM.INTERVAL": 1, "SLIM.WARMUP_EPOCHS": 0.0, "SLIM.THRESHOLD": 0.05,
        "MODEL.HR.GATE_INIT": 0.1, "MODEL.HR.KERNEL_SIZES": "[3, 5]"}
BACKBONES = {"hr_supernet": {}, "fabric": FABRIC}


@pytest.fixture(scope="module")
def seg_root(tmp_path_factory):
    return ensure_synthetic_seg(str(tmp_path_factory.mktemp("seg") / "synthetic_seg"), 8, 4, 0)


def cfg_of(root, out, **extra):
    return load_config(str(ROOT / CFG), tiny_opts(root, out, **extra))


def derived_model(cfg):
    """The network a genotype describes: the HR supernet as built, a fabric backbone pruned (first order)."""
    seed_all(0)
    model = build_model(cfg)
    if cfg.MODEL.BACKBONE == "fabric":
        model, _ = Prune(model, run_fields(cfg), "first_order_gradient", log_fn=lambda s: None)
    return model.eval()


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_round_trip_and_the_rebuilt_network_computes_the_same(seg_root, tmp_path, backbone):
    cfg = cfg_of(seg_root, tmp_path, **BACKBONES[backbone])
    model = derived_model(cfg)
    g = genotype_of(run_fields(cfg), model)
    d = g.to_dict()
    assert d["task"] == "segmentation" and d["model"] == "seg" and d["head"] == {"channels": 8, "num_classes": 6}
    assert d["backbone"]["name"] == backbone and ("hr" in d) == (backbone == "hr_supernet")
    assert ("fabric" in d["backbone"]) == (backbone == "fabric")
    assert not {"num_joints", "heatmap_stride", "parts"} & set(d) and d["dataset"] == {"name": "synthetic_seg"}
    path = save_genotype(g, str(tmp_path / "g.json"))
    assert load_genotype(path) == g and parse_genotype(json.loads(json.dumps(d))).to_dict() == d
    rebuilt = build_from_genotype(cfg, load_genotype(path)).eval()
    rebuilt.load_state_dict(model.state_dict())
    assert genotype_of(run_fields(cfg), rebuilt) == g
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))


@pytest.mark.slow
def test_slimming_run_shrinks_and_its_genotype_rebuilds_and_retrains(seg_root, tmp_path, capsys):
    out = tmp_path / "slim"
    cfg = cfg_of(seg_root, out, **SLIM)
    seed_all(cfg.SEED)
    trainer = Trainer(cfg, build_model(cfg))
    kill_half_of_the_gates(trainer.slimmer, kinds=None)  # every kind, so that the shrink has work to do
    flops = trainer.slimmer.flops
    trainer.fit()
    assert trainer.slimmer.flops < flops
    state = read_checkpoint(str(out / "last.pth"))
    g = load_genotype(str(out / "genotype.json"))
    assert state["genotype"] == g.to_dict() and g.task == "segmentation"
    assert any(b.channels and b.channels[0] < 24 for b in g.arch.hr.blocks.values())  # paths of 3 x 8, halved
    rebuilt = place(cfg, build_from_genotype(cfg, g), torch.device("cpu"))
    load_model_weights(rebuilt, str(out / "last.pth"))
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        assert torch.allclose(trainer.core.eval()(x), rebuilt.eval()(x), atol=1e-6)
    opts = tiny_opts(seg_root, out / "retrain", **{"SLIM.METHOD": "none", "MODEL.HR.KERNEL_SIZES": "[3, 5]"})
    assert entry.train_main(["--cfg", CFG, "--genotype", str(out / "genotype.json"), "--inherit", str(out / "last.pth"),
                       *opts]) == 0
    assert entry.test_main(["--cfg", CFG, "--genotype", str(out / "genotype.json"), "--ckpt",
                      str(out / "retrain" / "last.pth"), *opts]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("mIoU ")


@pytest.mark.parametrize("strategy", ["first_order_gradient", "second_order_gradient"])
def test_fabric_backbone_search_derives_a_genotype_that_rebuilds(seg_root, tmp_path, strategy):
    out = tmp_path / "search"
    cfg = cfg_of(seg_root, out, **FABRIC, **{"SEARCH.STRATEGY": strategy, "TRAIN.MAX_ITERS_PER_EPOCH": 1})
    seed_all(cfg.SEED)
    trainer = Trainer(cfg, build_model(cfg))
    trainer.fit()
    g = load_genotype(str(out / "genotype.json"))
    assert g.task == "segmentation" and g.arch.backbone.fabric is not None and g.search.strategy == strategy
    assert all(len(ops) == 1 for c in g.arch.backbone.fabric.cells for ops in c.edges.values())
    derived = build_from_genotype(cfg, g)
    assert not any("alpha" in n or "beta" in n for n, _ in derived.named_parameters())
    with torch.no_grad():
        assert derived.eval()(torch.randn(1, 3, 32, 48)).shape == (1, 6, 8, 12)


def seg_genotype(seg_root, tmp_path):
    cfg = cfg_of(seg_root, tmp_path)
    return cfg, genotype_of(run_fields(cfg), derived_model(cfg)).to_dict()


def setter(keys, value):
    def apply(d):
        for k in keys[:-1]:
            d = d[k]
        if value is KeyError:
            del d[keys[-1]]
        else:
            d[keys[-1]] = value
    return apply


@pytest.mark.parametrize("change, field", [
    (setter(["head"], KeyError), "head"),
    (setter(["head", "num_classes"], 0), "head.num_classes"),
    (setter(["head", "num_classes"], 10 ** 6), "head.num_classes"),
    (setter(["head", "num_classes"], "6"), "head.num_classes"),
    (setter(["head", "channels"], -1), "head.channels"),
    (setter(["head", "channels"], 10 ** 9), "head.channels"),
    (setter(["head", "vector_dim"], 8), "head.vector_dim"),
    (setter(["num_joints"], 17), "num_joints"),
    (setter(["parts"], []), "parts"),
    (setter(["dataset", "joint_set"], "coco"), "dataset.joint_set"),
    (setter(["backbone", "out_channels"], [8, 8, 8, 9]), "backbone.out_channels"),
    (setter(["backbone", "name"], "resnet18"), "hr"),
    (setter(["hr"], KeyError), "hr"),
    (setter(["model"], "part_cnf"), "parts"),
    (setter(["model"], "hr_dense"), "hr"),
])
def test_malformed_seg_genotype_is_refused_naming_the_field(seg_root, tmp_path, change, field):
    cfg, d = seg_genotype(seg_root, tmp_path)
    bad = copy.deepcopy(d)
    change(bad)
    with pytest.raises(ValueError) as err:
        build_from_genotype(cfg, bad)
    msg = str(err.value)
    assert msg.startswith(f"genotype field '{field}': ") and "\n" not in msg, msg


def test_seg_genotype_must_agree_with_the_config(seg_root, tmp_path):
    _, d = seg_genotype(seg_root, tmp_path)
    for opts, field in ((["DATASET.NUM_CLASSES", "19"], "head.num_classes"), (["TASK", "pose"], "task"),
                        (["MODEL.INPUT_SIZE", "[64, 64]"], "input_size")):
        cfg = load_config(str(ROOT / CFG), tiny_opts(seg_root, tmp_path) + opts)
        with pytest.raises(ValueError, match=f"^genotype field '{field}': "):
            build_from_genotype(cfg, d)
