"""Load a run's config: defaults <- YAML file <- trailing KEY VALUE overrides, with one-line errors.

Keys renamed since CONFIG_VERSION 1 are listed in `RENAMED` (old -> new). A YAML file without CONFIG_VERSION (or
with 1) and any KEY VALUE override may use an old name: it loads into the new key, with one line on stderr per
renamed key ("note: config key PRUNE.OPS_TOPK is now DERIVE.OPS_TOPK (FILE)"). A file that declares
CONFIG_VERSION 2 must use the new names. Any other unknown key is an error. The loaded (and saved) config is always
of the current CONFIG_VERSION.
"""
import os
import sys

import yaml
from yacs.config import CfgNode as CN

from src.config.defaults import CONFIG_VERSION, get_default_config
from src.utils.atomic import write_text_atomic


RENAMED = {  # old key -> new key (CONFIG_VERSION 1 -> 2: derivation, slimming and loss keys in their own sections)
    "PRUNE.OPS_TOPK": "DERIVE.OPS_TOPK",
    "PRUNE.BETA_THRESHOLD": "DERIVE.BETA_THRESHOLD",
    "PRUNE.BETA_TOPK": "DERIVE.BETA_TOPK",
    "PRUNE.SELECTION": "DERIVE.SELECTION",
    "PRUNE.PERTURB_BATCHES": "DERIVE.PERTURB_BATCHES",
    "PRUNE.METHOD": "SLIM.METHOD",
    "PRUNE.RHO": "SLIM.RHO",
    "PRUNE.WARMUP_EPOCHS": "SLIM.WARMUP_EPOCHS",
    "PRUNE.THRESHOLD": "SLIM.THRESHOLD",
    "PRUNE.INTERVAL": "SLIM.INTERVAL",
    "PRUNE.TARGET_FLOPS": "SLIM.TARGET_FLOPS",
    "PRUNE.RHO_GAIN": "SLIM.RHO_GAIN",
    "DATASET.LABEL_SMOOTHING": "LOSS.LABEL_SMOOTHING",
}


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the file or key."""


def _rename_yaml(data: dict, source: str, notes: dict, version: int) -> None:
    """Move the old keys of a YAML mapping (in place) to their new names; an emptied old section is dropped."""
    for old, new in RENAMED.items():
        old_sec, old_key = old.split(".")
        section = data.get(old_sec)
        if not isinstance(section, dict) or old_key not in section:
            continue
        if version >= CONFIG_VERSION:
            raise ConfigError(f"config key '{old}' in {source} is '{new}' since CONFIG_VERSION {CONFIG_VERSION}")
        new_sec, new_key = new.split(".")
        target = data.setdefault(new_sec, {})
        if not isinstance(target, dict):
            raise ConfigError(f"config key '{new_sec}' in {source} is not a section")
        if new_key in target:
            raise ConfigError(f"{source} sets both '{old}' and its new name '{new}'")
        target[new_key] = section.pop(old_key)
        notes.setdefault(old, source)
        if not section:
            del data[old_sec]


def _check_version(value, source: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= CONFIG_VERSION:
        raise ConfigError(f"CONFIG_VERSION in {source} must be an integer from 1 to {CONFIG_VERSION}, got {value!r}")


def _check_keys(node: CN, ref: CN, prefix: str, source: str) -> None:
    for key, value in node.items():
        full = f"{prefix}{key}"
        if key not in ref:
            while isinstance(value, CN) and value:  # name the first leaf of an unknown section
                key, value = next(iter(value.items()))
                full += f".{key}"
            raise ConfigError(f"unknown config key '{full}' in {source}")
        if isinstance(value, CN):
            if not isinstance(ref[key], CN):
                raise ConfigError(f"config key '{full}' in {source} is not a section")
            _check_keys(value, ref[key], full + ".", source)


def _merge(cfg: CN, other: CN, source: str) -> None:
    _check_keys(other, cfg, "", source)
    try:
        cfg.merge_from_other_cfg(other)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{source}: {exc}".replace("\n", " ")) from None


def load_config(cfg_file: str = "", opts=None, freeze: bool = True) -> CN:
    """Defaults, then `cfg_file` (YAML), then `opts` = [KEY, VALUE, ...]. Raises ConfigError."""
    cfg = get_default_config()
    notes = {}  # old key -> where it was first used
    if cfg_file:
        if not os.path.isfile(cfg_file):
            raise ConfigError(f"config file not found: {cfg_file}")
        try:
            with open(cfg_file) as f:
                data = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {cfg_file} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {cfg_file} must hold a mapping of keys")
        version = data.pop("CONFIG_VERSION", 1)  # the file's layout; the loaded config is always current
        _check_version(version, cfg_file)
        _rename_yaml(data, cfg_file, notes, version)
        _merge(cfg, CN(data), cfg_file)
    opts = list(opts or [])
    if len(opts) % 2:
        raise ConfigError(f"overrides must be KEY VALUE pairs; '{opts[-1]}' has no value")
    for key, value in zip(opts[0::2], opts[1::2]):
        if key == "CONFIG_VERSION":
            raise ConfigError("CONFIG_VERSION is the layout of a config file; it cannot be overridden")
        if key in RENAMED:
            notes.setdefault(key, "command line")
            key = RENAMED[key]
        node = cfg
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node, CN) or part not in node:
                raise ConfigError(f"unknown config key '{key}'")
            node = node[part]
        if not isinstance(node, CN) or parts[-1] not in node or isinstance(node[parts[-1]], CN):
            raise ConfigError(f"unknown config key '{key}'")
        try:
            cfg.merge_from_list([key, value])
        except (ValueError, KeyError, TypeError, AssertionError) as exc:
            raise ConfigError(f"config key '{key}': {exc}".replace("\n", " ")) from None
    for old, source in notes.items():
        print(f"note: config key {old} is now {RENAMED[old]} ({source})", file=sys.stderr)
    if freeze:
        cfg.freeze()
    return cfg


def save_config(cfg: CN, path: str) -> None:
    """Write the resolved config as YAML (atomically)."""
    write_text_atomic(path, cfg.dump())
