"""Every bad input named in DEVELOPERS.md: a one-line error naming the thing, a non-zero exit, nothing lost."""
import collections
import json
import pickle
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT, tiny_train_opts

CFG = "configs/synthetic_baseline.yaml"


def run(script, *args):
    proc = subprocess.run([sys.executable, script, *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    return proc.returncode, lines


def assert_one_line(code, lines, *words):
    assert code != 0
    assert len(lines) == 1, lines
    for w in words:
        assert w in lines[0], lines[0]


def test_missing_checkpoint(tmp_path):
    code, lines = run("test.py", "--cfg", CFG, "--ckpt", tmp_path / "nope.pth")
    assert_one_line(code, lines, "nope.pth", "not found")


@pytest.mark.parametrize("content", ["junk", "list", "pickle", "truncated"])
def test_checkpoint_that_is_not_a_state_dict(tmp_path, content):
    path = tmp_path / "bad.pth"
    if content == "junk":
        path.write_bytes(b"not a checkpoint at all")
    elif content == "list":
        torch.save([1, 2, 3], path)  # loadable, but a list
    elif content == "pickle":  # a plain pickle (protocol 4): torch warns on stderr before it refuses
        path.write_bytes(pickle.dumps(collections.Counter(a=1), protocol=4))
    else:
        torch.save({"model": {"w": torch.zeros(8)}}, path)
        path.write_bytes(path.read_bytes()[:100])
    code, lines = run("test.py", "--cfg", CFG, "--ckpt", path)
    assert_one_line(code, lines, "bad.pth")
    assert "weights_only" not in lines[0]  # not torch's advice to load it unsafely


def test_checkpoint_of_another_model(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"model": {"weird.weight": torch.zeros(1)}}, path)
    code, lines = run("test.py", "--cfg", CFG, "--ckpt", path)
    assert_one_line(code, lines, "other.pth", "does not fit")


def test_missing_annotation_file(tiny_synthetic, tmp_path):
    out = tmp_path / "run"
    code, lines = run("train.py", "--cfg", CFG, *tiny_train_opts(tiny_synthetic, out),
                      "DATASET.TRAIN_ANN", str(tmp_path / "missing.json"))
    assert_one_line(code, lines, "missing.json")
    assert not out.exists()  # nothing was written for a run that could not start


def test_malformed_annotation(tiny_synthetic, tmp_path):
    ann = json.loads((tiny_synthetic / "annotations/person_keypoints_train.json").read_text())
    ann["annotations"][0]["keypoints"] = [1, 2]
    bad = tmp_path / "bad_ann.json"
    bad.write_text(json.dumps(ann))
    code, lines = run("train.py", "--cfg", CFG, *tiny_train_opts(tiny_synthetic, tmp_path / "run"),
                      "DATASET.TRAIN_ANN", bad)
    assert_one_line(code, lines, "bad_ann.json")


def test_corrupt_image_names_the_file(tiny_synthetic, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    files = sorted((tiny_synthetic / "images/val").iterdir())
    for f in files:
        (images / f.name).write_bytes(f.read_bytes())
    first = files[0].name
    (images / first).write_bytes(b"garbage")
    ckpt = tmp_path / "m.pth"
    from src.config.loader import load_config
    from src.network_factory.registry import build_model
    cfg = load_config(str(ROOT / CFG), tiny_train_opts(tiny_synthetic, tmp_path / "run"))
    torch.save({"model": build_model(cfg).state_dict()}, ckpt)
    code, lines = run("test.py", "--cfg", CFG, "--ckpt", ckpt, *tiny_train_opts(tiny_synthetic, tmp_path / "run"),
                      "DATASET.VAL_IMAGES", images)
    assert_one_line(code, lines, first)


def test_malformed_genotype(tmp_path):
    bad = tmp_path / "g.json"
    bad.write_text(json.dumps({"format": "fabricnas.genotype/1", "model": "part_cnf"}))
    code, lines = run("train.py", "--cfg", "configs/synthetic_search_demo.yaml", "--genotype", bad,
                      "OUTPUT_DIR", tmp_path / "run")
    assert_one_line(code, lines, "genotype")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("sparsity", ["1", "1.5", "-0.1"])
def test_ticket_controls_sparsity_outside_0_1(tmp_path, sparsity):
    code, lines = run("tools/ticket_controls.py", "--cfg", CFG, "--out", tmp_path / "o", "--sparsity", "0.5", sparsity)
    assert_one_line(code, lines, "--sparsity must be in [0, 1)")
    assert not (tmp_path / "o").exists()


def test_resume_with_a_corrupt_checkpoint_keeps_the_run(tiny_synthetic, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pth").write_bytes(b"truncated")
    (out / "config.yaml").write_text("previous run\n")
    code, lines = run("train.py", "--cfg", CFG, "--resume", *tiny_train_opts(tiny_synthetic, out))
    assert_one_line(code, lines, "last.pth")
    assert (out / "last.pth").read_bytes() == b"truncated"
    assert (out / "config.yaml").read_text() == "previous run\n"



def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_synthetic, tmp_path):
    from src.config.loader import load_config
    from src.engine.trainer import Trainer
    from src.network_factory.registry import build_model
    from src.search.base import NonFiniteError
    out = tmp_path / "run"
    cfg = load_config(str(ROOT / CFG), tiny_train_opts(tiny_synthetic, out, **{"TRAIN.EPOCHS": 2}))
    trainer = Trainer(cfg, build_model(cfg))
    train_epoch = trainer._train_epoch

    def poisoned(epoch, *args):
        if epoch == 1:  # after one good epoch the weights blow up
            with torch.no_grad():
                trainer.core.head.bias.fill_(float("nan"))
        return train_epoch(epoch, *args)

    trainer._train_epoch = poisoned
    with pytest.raises(NonFiniteError, match="non-finite training loss"):
        trainer.fit()
    state = torch.load(out / "last.pth", weights_only=True)
    assert state["epoch"] == 1 and torch.isfinite(state["model"]["head.bias"]).all()
