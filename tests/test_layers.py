"""The shared layers (src/architecture/layers.py) and the key map that lets checkpoints from before them load."""
import pytest
import torch

from src.config.loader import load_config
from src.engine.checkpoint import load_model_weights
from src.network_factory.backbones import load_pretrained
from src.network_factory.registry import build_model

OLD_STEM = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1"}  # flat Stem index -> nested conv_bn block.layer


def old_layout(state: dict) -> dict:
    """The keys of the compact ResNet's stem before it became the shared `Stem`: two nested conv_bn blocks."""
    def key(k):
        head, sep, tail = k.partition("stem.")
        i, _, rest = tail.partition(".")
        return f"{head}stem.{OLD_STEM[i]}.{rest}" if sep else k
    return {key(k): v for k, v in state.items()}


@pytest.mark.parametrize("cfg_path", ["configs/synthetic_baseline.yaml", "configs/synthetic_search_demo.yaml"])
def test_a_checkpoint_with_the_old_stem_keys_loads(cfg_path, tmp_path):
    cfg = load_config(cfg_path)
    torch.manual_seed(0)
    trained = build_model(cfg).eval()
    old = old_layout(trained.state_dict())
    assert "stem.0.0.weight" in " ".join(old) and old.keys() != trained.state_dict().keys()
    torch.save({"model": old, "epoch": 1}, tmp_path / "old.pth")
    torch.manual_seed(1)
    model = build_model(cfg).eval()
    load_model_weights(model, str(tmp_path / "old.pth"))  # strict: every key maps onto the model
    x = torch.randn(1, 3, *reversed(cfg.MODEL.INPUT_SIZE))
    with torch.no_grad():
        torch.testing.assert_close(model(x), trained(x), rtol=0, atol=0)


def test_an_old_compact_resnet_pretrained_file_loads_every_tensor(tmp_path):
    cfg = load_config("configs/synthetic_baseline.yaml")
    encoder = build_model(cfg).encoder
    torch.save(old_layout(encoder.state_dict()), tmp_path / "encoder.pth")
    report = load_pretrained(build_model(cfg).encoder, str(tmp_path / "encoder.pth"))
    n = len(encoder.state_dict())
    assert f"loaded {n}/{n} backbone tensors (0 missing, 0 unexpected" in report
