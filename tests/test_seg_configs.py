"""The segmentation search configs and the published-size segmentation configs load and build (the published
sizes on the meta device: no memory, no weights)."""
import pytest
import torch

from src.config.loader import load_config
from src.network_factory.registry import build_model
from src.utils.flops import count_params
from tests.conftest import ROOT

PUBLISHED = {  # config -> (classes, backbone widths, params as measured by tools/model_info.py)
    "configs/cityscapes/hrnet_w48_seg.yaml": (19, [48, 96, 192, 384], 18_802_435),
    "configs/ade20k/hrnet_w32_seg.yaml": (150, [32, 64, 128, 256], 8_431_830),
}


@pytest.mark.parametrize("path", sorted(PUBLISHED))
def test_published_size_configs_build(path):
    cfg = load_config(str(ROOT / path))
    classes, widths, params = PUBLISHED[path]
    assert cfg.TASK == "segmentation" and cfg.TRAIN.LR_SCHEDULE == "poly" and cfg.DATASET.NUM_CLASSES == classes
    with torch.device("meta"):
        model = build_model(cfg)
    assert model.backbone.out_channels == widths and model.head.settings.channels == sum(widths)
    assert params is None or count_params(model) == params


@pytest.mark.parametrize("name, searching", [("synthetic_seg_hrnas.yaml", "slimming"),
                                             ("synthetic_seg_fabric.yaml", "first_order_gradient")])
def test_synthetic_search_configs_build_a_search_space(name, searching):
    cfg = load_config(str(ROOT / "configs" / name))
    model = build_model(cfg)
    assert searching in (cfg.SLIM.METHOD, cfg.SEARCH.STRATEGY)
    assert bool(model.arch_parameters()) == (searching != "slimming")
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 3, 96, 128)).shape == (1, 6, 24, 32)
