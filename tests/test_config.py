import subprocess
import sys
from pathlib import Path

import pytest

from src.config.defaults import get_default_config
from src.config.loader import ConfigError, load_config

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
