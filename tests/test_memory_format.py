"""MEMORY_FORMAT: the run's model is placed channels_last on CPU; outputs, weight steps and the exact
hypergradient agree with the contiguous layout up to float rounding."""
import pytest
import torch

from src.config.defaults import get_default_config
from src.engine.trainer import place
from src.search.hypergradient import compute_hypergradient
from src.search.strategies import build_strategy
from tests.test_search import make_batch, make_cfg, make_model, pose_mse


def _cfg(fmt):
    cfg = get_default_config()
    cfg.MEMORY_FORMAT = fmt
    return cfg


def test_auto_is_channels_last_on_cpu_and_unknown_formats_are_refused():
    model = place(_cfg("auto"), make_model(0, parts=1), torch.device("cpu"))
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    with pytest.raises(ValueError, match="MEMORY_FORMAT"):
        place(_cfg("nhwc"), model, torch.device("cpu"))


def test_channels_last_matches_contiguous_in_output_step_and_hypergradient():
    results = {}
    for fmt in ("contiguous", "channels_last"):
        model = place(_cfg(fmt), make_model(0, parts=1).double(), torch.device("cpu"))
        st = build_strategy(make_cfg("second_order_gradient"), model, pose_mse)
        wb, ab = ({k: v.double() if v.is_floating_point() else v for k, v in make_batch(i).items()} for i in (1, 2))
        st.weight_step(wb)
        hyper = compute_hypergradient(model, pose_mse, st.weight_optimizer, wb, ab, "exact")
        with torch.no_grad():
            results[fmt] = (model(ab["image"]).contiguous(), torch.cat([g.flatten() for g in hyper.arch_grads]))
    (out_c, g_c), (out_l, g_l) = results["contiguous"], results["channels_last"]
    torch.testing.assert_close(out_l, out_c, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(g_l, g_c, rtol=1e-7, atol=1e-10)
