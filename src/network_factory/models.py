"""Imports every module that registers a model builder (add new builder modules here)."""
import importlib

for _mod in ("src.network_factory.baseline", "src.network_factory.hrformer",
             "src.network_factory.part_cnf", "src.network_factory.hr_dense", "src.network_factory.seg",
             "src.network_factory.cls", "src.network_factory.scale"):
    importlib.import_module(_mod)
