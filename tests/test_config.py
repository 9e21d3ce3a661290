import subprocess
import sys
from pathlib import Path

import pytest

from src.config.defaults import get_default_config
from src.config.loader import RENAMED, ConfigError, load_config, save_config

ROOT = Path(__file__).resolve().parents[1]


def test_every_default_key_is_commented():
    text = (ROOT / "src/config/defaults.py").read_text()
    for line in text.splitlines():
        if line.startswith("_C.") and "= CN()" not in line:
            assert "#" in line, f"uncommented key: {line}"


def test_file_and_overrides_merge(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("TRAIN:\n  LR: 0.01\nMODEL:\n  INPUT_SIZE: [64, 96]\n")
    cfg = load_config(str(f), ["TRAIN.EPOCHS", "3", "SEARCH.STRATEGY", "sync"])
    assert cfg.TRAIN.LR == 0.01 and cfg.TRAIN.EPOCHS == 3 and cfg.SEARCH.STRATEGY == "sync"
    assert list(cfg.MODEL.INPUT_SIZE) == [64, 96]


@pytest.mark.parametrize("yaml_text, key", [
    ("TRAIN:\n  LRR: 0.1\n", "TRAIN.LRR"),
    ("NOPE: 1\n", "NOPE"),
    ("TRAIN:\n  LR: [1, 2]\n", "LR"),
])
def test_bad_file_keys_name_the_key(tmp_path, yaml_text, key):
    f = tmp_path / "c.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(str(f))


@pytest.mark.parametrize("opts, key", [(["TRAIN.NOPE", "1"], "TRAIN.NOPE"), (["TRAIN.EPOCHS", "abc"], "TRAIN.EPOCHS"),
                                       (["TRAIN", "1"], "TRAIN"), (["TRAIN.EPOCHS"], "TRAIN.EPOCHS")])
def test_bad_overrides_name_the_key(opts, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("", opts)


def test_missing_and_invalid_config_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("TRAIN: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(str(bad))


@pytest.mark.parametrize("script", ["train.py", "test.py"])
def test_cli_unknown_key_exits_2_with_one_line(script):
    extra = ["--ckpt", "x.pth"] if script == "test.py" else []
    proc = subprocess.run([sys.executable, script, "--cfg", "configs/synthetic_baseline.yaml", *extra,
                           "TRAIN.NOT_A_KEY", "1"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: unknown config key 'TRAIN.NOT_A_KEY'"


def test_defaults_are_fresh_copies():
    a = get_default_config()
    a.TRAIN.LR = 5.0
    assert get_default_config().TRAIN.LR != 5.0


OLD_YAML = """\
DATASET:
  LABEL_SMOOTHING: 0.2
PRUNE:
  OPS_TOPK: 2
  BETA_THRESHOLD: 0.34
  METHOD: slimming
  INTERVAL: 3
"""


def test_old_yaml_and_overrides_load_into_the_new_keys_with_one_note_each(tmp_path, capsys):
    f = tmp_path / "old.yaml"
    f.write_text(OLD_YAML)
    cfg = load_config(str(f), ["PRUNE.OPS_TOPK", "3", "PRUNE.SELECTION", "perturbation", "PRUNE.RHO", "0.5"])
    assert cfg.DERIVE.OPS_TOPK == 3 and cfg.DERIVE.BETA_THRESHOLD == 0.34 and cfg.DERIVE.SELECTION == "perturbation"
    assert cfg.SLIM.METHOD == "slimming" and cfg.SLIM.INTERVAL == 3 and cfg.SLIM.RHO == 0.5
    assert cfg.LOSS.LABEL_SMOOTHING == 0.2 and cfg.CONFIG_VERSION == 2
    assert "PRUNE" not in cfg and "LABEL_SMOOTHING" not in cfg.DATASET
    lines = capsys.readouterr().err.splitlines()
    renamed = ["DATASET.LABEL_SMOOTHING", "PRUNE.OPS_TOPK", "PRUNE.BETA_THRESHOLD", "PRUNE.METHOD", "PRUNE.INTERVAL",
               "PRUNE.SELECTION", "PRUNE.RHO"]
    assert len(lines) == len(renamed)  # OPS_TOPK is in the file and an override: still one note
    for old, line in zip(sorted(renamed), sorted(lines)):
        assert line.startswith(f"note: config key {old} is now {RENAMED[old]} ")
    # the saved config is of the current version and loads without notes
    save_config(cfg, str(tmp_path / "saved.yaml"))
    again = load_config(str(tmp_path / "saved.yaml"))
    assert again == cfg and capsys.readouterr().err == ""


def test_every_renamed_key_exists_under_its_new_name():
    defaults = get_default_config()
    for old, new in RENAMED.items():
        section, key = new.split(".")
        assert key in defaults[section], new
        assert old.split(".")[0] not in defaults or old.split(".")[1] not in defaults[old.split(".")[0]], old


@pytest.mark.parametrize("yaml_text, opts, match", [
    ("PRUNE:\n  OPS_TOPK: 2\n  NOT_A_KEY: 1\n", [], r"PRUNE\.NOT_A_KEY"),  # a renamed key does not hide the rest
    ("", ["PRUNE.NOT_A_KEY", "1"], r"PRUNE\.NOT_A_KEY"),
    ("CONFIG_VERSION: 2\nPRUNE:\n  OPS_TOPK: 2\n", [], r"PRUNE\.OPS_TOPK.*DERIVE\.OPS_TOPK"),  # v2 files use new names
    ("PRUNE:\n  OPS_TOPK: 2\nDERIVE:\n  OPS_TOPK: 3\n", [], r"PRUNE\.OPS_TOPK.*DERIVE\.OPS_TOPK"),  # both names
    ("CONFIG_VERSION: 3\n", [], "CONFIG_VERSION"),
    ("", ["CONFIG_VERSION", "1"], "CONFIG_VERSION"),
])
def test_unknown_and_conflicting_keys_still_fail(tmp_path, capsys, yaml_text, opts, match):
    f = tmp_path / "c.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ConfigError, match=match):
        load_config(str(f), opts)
    assert capsys.readouterr().err == ""  # no notes before an error


def test_cli_old_override_with_an_unknown_key_exits_2_with_one_line():
    proc = subprocess.run([sys.executable, "train.py", "--cfg", "configs/synthetic_baseline.yaml", "PRUNE.OPS_TOPK", "2",
                           "PRUNE.NOT_A_KEY", "1"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: unknown config key 'PRUNE.NOT_A_KEY'"
