"""Load a run's config: defaults <- YAML file <- trailing KEY VALUE overrides, with one-line errors."""
import os

import yaml
from yacs.config import CfgNode as CN

from src.config.defaults import get_default_config
from src.utils.atomic import write_text_atomic


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the file or key."""


def _check_keys(node: CN, ref: CN, prefix: str, source: str) -> None:
    for key, value in node.items():
        full = f"{prefix}{key}"
        if key not in ref:
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
        _merge(cfg, CN(data), cfg_file)
    opts = list(opts or [])
    if len(opts) % 2:
        raise ConfigError(f"overrides must be KEY VALUE pairs; '{opts[-1]}' has no value")
    for key, value in zip(opts[0::2], opts[1::2]):
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
    if freeze:
        cfg.freeze()
    return cfg


def save_config(cfg: CN, path: str) -> None:
    """Write the resolved config as YAML (atomically)."""
    write_text_atomic(path, cfg.dump())
