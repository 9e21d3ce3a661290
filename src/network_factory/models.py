"""Imports every module that registers a model builder (add new builder modules here)."""
import importlib

for _mod in ("src.network_factory.baseline",):
    importlib.import_module(_mod)
